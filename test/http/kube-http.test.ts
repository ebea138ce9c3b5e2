// The API-server client (src/kube/http.ts) against a loopback HTTPS server standing in for kube-apiserver:
// how requests leave the process. IPv6 server URLs, a path prefix in the kubeconfig's server URL, the
// field manager on writes and the User-Agent on every request (DESIGN section 7). Then what is read as a
// stream: watches (src/kube/watch.ts: events as they arrive, the inactivity timeout, abort, error answers)
// and LIST pages (src/kube/list.ts: each object handed out as soon as it is complete, one over the cap).

import assert from 'node:assert/strict';
import type http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node/dist/config.js';
import { ApiError, KubeHttp, MAX_RESPONSE_BYTES, ResponseTooLargeError } from '../../src/kube/http.ts';
import { GoneError, listPage } from '../../src/kube/list.ts';
import { watchSource, type WatchSource } from '../../src/kube/watch.ts';
import { OperationalError } from '../../src/util/errors.ts';
import { PRODUCT_VERSION } from '../../src/product.ts';
import { createCertificateAuthority, issueCertificate } from '../../src/tls/certs.ts';
import packageJson from '../../package.json' with { type: 'json' };

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly userAgent: string | undefined;
  readonly authorization: string | undefined;
}

type Answer = (request: http.IncomingMessage, response: http.ServerResponse) => void;

const authority = createCertificateAuthority('kube-http-test-ca');
const serving = issueCertificate(authority, { commonName: 'kube-apiserver', ipAddresses: ['127.0.0.1', '::1'], dnsNames: ['localhost'], usage: 'server', validityMs: 3_600_000 });
const servers: https.Server[] = [];
const clients: KubeHttp[] = [];
after(() => {
  clients.forEach((client) => client.close());
  servers.forEach((server) => {
    server.closeAllConnections();
    server.close();
  });
});

const answerEmptyObject: Answer = (request, response) => {
  request.resume();
  request.on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
};

/** An HTTPS server on `host` that answers with `answer` ({} unless given) and records what reached it. */
async function apiServer(host: string, answer: Answer = answerEmptyObject): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = https.createServer({ cert: serving.certificate, key: serving.privateKey }, (request, response) => {
    seen.push({ method: request.method ?? '', url: request.url ?? '', userAgent: request.headers['user-agent'], authorization: request.headers.authorization });
    answer(request, response);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { port: (server.address() as AddressInfo).port, seen };
}

function clientFor(server: string): KubeHttp {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server, caData: Buffer.from(authority.certificate).toString('base64') }],
    users: [{ name: 'u', token: 'test-token' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const client = new KubeHttp(kubeConfig);
  clients.push(client);
  return client;
}

/** A client of a fake API server on 127.0.0.1 that answers with `answer`. */
async function fakeApi(answer: Answer): Promise<{ http: KubeHttp; seen: Seen[] }> {
  const { port, seen } = await apiServer('127.0.0.1', answer);
  return { http: clientFor(`https://127.0.0.1:${port}`), seen };
}

/** Writes `body` `pieceBytes` at a time, each piece on its own turn of the event loop, so it travels alone. */
async function writeInPieces(response: http.ServerResponse, body: string | Buffer, pieceBytes: number): Promise<void> {
  const bytes = Buffer.from(body);
  for (let at = 0; at < bytes.length; at += pieceBytes) {
    response.write(bytes.subarray(at, at + pieceBytes));
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Writes `piece` over and over, `totalBytes` in all, as fast as the client reads; returns the bytes written before the client closed. */
async function writeUntilClosed(response: http.ServerResponse, piece: string, totalBytes: number): Promise<number> {
  let written = 0;
  let closed = false;
  response.on('close', () => (closed = true));
  while (!closed && written < totalBytes) {
    written += piece.length;
    if (!response.write(piece)) {
      await new Promise<void>((resolve) => {
        const proceed = (): void => {
          response.off('drain', proceed).off('close', proceed);
          resolve();
        };
        response.on('drain', proceed).on('close', proceed);
      });
    }
  }
  return written;
}

/** Resolves once `predicate` holds, checking every few milliseconds; gives up (throws) after `limitMs`. */
async function until(predicate: () => boolean, limitMs = 10_000): Promise<void> {
  const giveUp = performance.now() + limitMs;
  while (!predicate()) {
    if (performance.now() > giveUp) throw new Error(`still waiting after ${limitMs} ms`);
    await sleep(2);
  }
}

test('an IPv6 server URL with a path prefix: requests reach [::1] under the prefix', async () => {
  const { port, seen } = await apiServer('::1');
  const http = clientFor(`https://[::1]:${port}/k8s/clusters/c-x/`);
  try {
    assert.equal((await http.request('GET', '/api/v1/namespaces/a/configmaps/b')).status, 200);
    assert.deepEqual(seen.map((s) => s.url), ['/k8s/clusters/c-x/api/v1/namespaces/a/configmaps/b']);
  } finally {
    http.close();
  }
});

test('writes name the field manager (added to any query they have); reads do not; every request carries the User-Agent', async () => {
  const { port, seen } = await apiServer('127.0.0.1');
  const http = clientFor(`https://127.0.0.1:${port}`);
  try {
    await http.request('GET', '/apis/apps/v1/namespaces/a/deployments/d');
    await http.request('PATCH', '/apis/apps/v1/namespaces/a/deployments/d', { body: [], contentType: 'application/json-patch+json' });
    await http.request('POST', '/api/v1/namespaces/a/events?dryRun=All', { body: {} });
    await http.request('PUT', '/apis/coordination.k8s.io/v1/namespaces/a/leases/l', { body: {} });
  } finally {
    http.close();
  }
  assert.deepEqual(seen.map((s) => `${s.method} ${s.url}`), [
    'GET /apis/apps/v1/namespaces/a/deployments/d',
    'PATCH /apis/apps/v1/namespaces/a/deployments/d?fieldManager=config-checksum-webhook',
    'POST /api/v1/namespaces/a/events?dryRun=All&fieldManager=config-checksum-webhook',
    'PUT /apis/coordination.k8s.io/v1/namespaces/a/leases/l?fieldManager=config-checksum-webhook',
  ]);
  assert.equal(PRODUCT_VERSION, packageJson.version, 'the version comes from package.json');
  for (const request of seen) assert.equal(request.userAgent, `config-checksum-webhook/${packageJson.version}`);
});

test('a stream carries the credentials and the User-Agent, under the path prefix of an IPv6 server URL; its body arrives piece by piece', { timeout: 20_000 }, async () => {
  const body = '{"kind":"Status","message":"é😀 in pieces"}';
  const { port, seen } = await apiServer('::1', (_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    void writeInPieces(response, body, 4).then(() => response.end());
  });
  const http = clientFor(`https://[::1]:${port}/k8s/clusters/c-x/`);
  const stream = await http.stream('/api/v1/configmaps?watch=1', { idleTimeoutMs: 5_000 });
  const chunks: Buffer[] = [];
  await stream.read((chunk) => chunks.push(chunk));
  assert.equal(stream.status, 200);
  assert.equal(Buffer.concat(chunks).toString('utf8'), body);
  assert.ok(chunks.length > 5, `read as it arrived, in ${chunks.length} pieces`);
  assert.deepEqual(seen.map((s) => `${s.method} ${s.url}`), ['GET /k8s/clusters/c-x/api/v1/configmaps?watch=1']);
  assert.equal(seen[0]?.authorization, 'Bearer test-token');
  assert.equal(seen[0]?.userAgent, `config-checksum-webhook/${packageJson.version}`);
});

interface WatchRun {
  readonly events: Array<[string, unknown]>;
  /** The error onDone was called with (undefined: a clean end). */
  readonly done: Promise<unknown>;
  readonly controller: AbortController;
  readonly doneCalls: () => number;
}

const WATCH_QUERY = { resourceVersion: '1', allowWatchBookmarks: true, timeoutSeconds: 300, labelSelector: 'app=web' };

async function startWatch(source: WatchSource, onEvent: (events: Array<[string, unknown]>) => void = () => {}): Promise<WatchRun> {
  const events: Array<[string, unknown]> = [];
  let calls = 0;
  let finished!: (error: unknown) => void;
  const done = new Promise<unknown>((resolve) => (finished = resolve));
  const controller = await source.watch('/api/v1/configmaps', WATCH_QUERY, (type, object) => {
    events.push([type, object]);
    onEvent(events);
  }, (error) => {
    calls++;
    finished(error);
  });
  return { events, done, controller, doneCalls: () => calls };
}

const configMap = (name: string, resourceVersion: string, value: string): unknown => ({ metadata: { name, namespace: 'shop', resourceVersion }, data: { value } });

test('watch: events cut anywhere (inside a UTF-8 character, inside an escape) reach onEvent whole, in order, each as soon as it has arrived', { timeout: 20_000 }, async () => {
  const events: Array<[string, unknown]> = [
    ['ADDED', configMap('a', '2', 'é😀 "quoted" \\ back\\slash \u0000')],
    ['MODIFIED', configMap('a', '3', 'ü'.repeat(100))],
    ['BOOKMARK', { metadata: { resourceVersion: '4' } }],
    ['DELETED', configMap('a', '5', '')],
  ];
  const lines = events.map(([type, object]) => `${JSON.stringify({ type, object })}\n`);
  let firstReceived!: () => void;
  const received = new Promise<void>((resolve) => (firstReceived = resolve));
  const { http, seen } = await fakeApi((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    // The rest is written only once the client has handed out the first event: a client that waited for
    // more of the stream (or its end) would never see it.
    void writeInPieces(response, lines[0] ?? '', 3)
      .then(() => received)
      .then(() => writeInPieces(response, lines.slice(1).join(''), 3))
      .then(() => response.end());
  });
  const run = await startWatch(watchSource(http), (seenSoFar) => {
    if (seenSoFar.length === 1) firstReceived();
  });
  assert.equal(await run.done, undefined, 'the server ended the watch: no error');
  assert.deepEqual(run.events, events);
  assert.equal(run.doneCalls(), 1);
  const query = new URL(seen[0]?.url ?? '', 'https://x').searchParams;
  assert.deepEqual(Object.fromEntries(query), { watch: '1', resourceVersion: '1', allowWatchBookmarks: 'true', timeoutSeconds: '300', labelSelector: 'app=web' });
});

test('watch: silent for the inactivity timeout, it ends with a TimeoutError; a stream that keeps sending stays open', { timeout: 20_000 }, async () => {
  const idleTimeoutMs = 300;
  const quiet = await fakeApi((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.write(`${JSON.stringify({ type: 'ADDED', object: configMap('a', '2', 'x') })}\n`);
  });
  const opened = performance.now();
  const idle = await startWatch(watchSource(quiet.http, { idleTimeoutMs }));
  const error = await idle.done;
  const elapsed = performance.now() - opened;
  assert.equal((error as Error).name, 'TimeoutError');
  assert.equal(idle.events.length, 1);
  assert.ok(elapsed >= idleTimeoutMs - 20 && elapsed < idleTimeoutMs + 2_000, `ended after ${Math.round(elapsed)} ms`);

  // No answer at all (not even the status line) times out the same way.
  const mute = await fakeApi(() => {});
  assert.equal(((await (await startWatch(watchSource(mute.http, { idleTimeoutMs }))).done) as Error).name, 'TimeoutError');

  // A bookmark every 100 ms for 0.8 s: each one restarts the timeout, so the stream lasts until the server ends it.
  const busy = await fakeApi((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    void (async () => {
      for (let index = 0; index < 8; index++) {
        response.write(`${JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: String(index) } } })}\n`);
        await sleep(100);
      }
      response.end();
    })();
  });
  const kept = await startWatch(watchSource(busy.http, { idleTimeoutMs }));
  assert.equal(await kept.done, undefined);
  assert.equal(kept.events.length, 8);
});

test('watch: the controller closes the stream: onDone once, and the API server sees the connection close', { timeout: 20_000 }, async () => {
  let serverSawClose!: () => void;
  const closedOnServer = new Promise<void>((resolve) => (serverSawClose = resolve));
  const { http } = await fakeApi((_request, response) => {
    response.on('close', () => serverSawClose());
    response.writeHead(200, { 'content-type': 'application/json' });
    response.write(`${JSON.stringify({ type: 'ADDED', object: configMap('a', '2', 'x') })}\n`);
  });
  const run = await startWatch(watchSource(http));
  await until(() => run.events.length === 1);
  run.controller.abort();
  assert.equal(((await run.done) as Error).name, 'AbortError');
  await closedOnServer;
  await sleep(20);
  assert.equal(run.doneCalls(), 1);
});

test('watch: an answer other than 200 ends it with an error naming the status (410: GoneError, so the reflector lists again)', { timeout: 20_000 }, async () => {
  for (const status of [500, 403, 410]) {
    const { http } = await fakeApi((_request, response) => {
      response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', code: status, message: 'secret detail' }));
    });
    const run = await startWatch(watchSource(http));
    const error = await run.done;
    assert.deepEqual(run.events, []);
    if (status === 410) {
      assert.ok(error instanceof GoneError, `410: ${String(error)}`);
    } else {
      assert.ok(error instanceof ApiError, `${status}: ${String(error)}`);
      assert.equal(error.status, status);
      assert.equal(error.message, `WATCH /api/v1/configmaps: HTTP ${status}`);
    }
  }
});

test('watch: one event line over MAX_RESPONSE_BYTES ends it with ResponseTooLargeError, without reading on; a line that is not JSON ends it too', { timeout: 20_000 }, async () => {
  let written: Promise<number> | undefined;
  const huge = await fakeApi((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.write('{"type":"ADDED","object":{"data":{"v":"');
    written = writeUntilClosed(response, 'x'.repeat(256 * 1024), 8 * MAX_RESPONSE_BYTES);
  });
  const run = await startWatch(watchSource(huge.http));
  assert.ok((await run.done) instanceof ResponseTooLargeError);
  assert.ok((await written!) < 4 * MAX_RESPONSE_BYTES, 'the rest of the line was not read');

  const garbled = await fakeApi((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' }).end('{"type":"ADDED","object":{"data":{"secret":"value"}}}\n{"type":"ADDED","obj\n');
  });
  const broken = await startWatch(watchSource(garbled.http));
  const error = await broken.done;
  assert.ok(error instanceof OperationalError);
  assert.equal(error.message, 'a watch event is not valid JSON');
  assert.equal(broken.events.length, 1, 'the event before it was delivered');
});

test('LIST page: objects arriving in many small pieces are handed out one by one, each once complete; metadata after the items', { timeout: 20_000 }, async () => {
  const items = Array.from({ length: 6 }, (_, index) => configMap(`cm-${index}`, String(10 + index), `é😀 ${'"\\'.repeat(index)} ${'z'.repeat(index * 50)}`));
  const texts = items.map((item) => JSON.stringify(item));
  const head = '{"kind":"ConfigMapList","apiVersion":"v1","items":[';
  const tail = '],"metadata":{"resourceVersion":"42","continue":"next-page"}}';
  const body = head + texts.join(',') + tail;
  const handedOut: unknown[] = [];
  const { http, seen } = await fakeApi((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    void (async () => {
      await writeInPieces(response, head, 5);
      for (const [index, text] of texts.entries()) {
        await writeInPieces(response, (index > 0 ? ',' : '') + text, 5);
        // The next bytes are written only once this object has been handed out.
        await until(() => handedOut.length === index + 1);
      }
      await writeInPieces(response, tail, 5);
      response.end();
    })();
  });
  const page = await listPage(http, '/api/v1/configmaps', { limit: 6, labelSelector: 'app=web', fieldSelector: 'type!=helm.sh/release.v1', continueToken: 'this-page' }, (item) => handedOut.push(item));
  assert.deepEqual(handedOut, items);
  assert.deepEqual(page, { count: 6, bytes: Buffer.byteLength(body), continueToken: 'next-page', resourceVersion: '42' });
  assert.deepEqual(seen.map((s) => s.url), ['/api/v1/configmaps?limit=6&labelSelector=app%3Dweb&fieldSelector=type%21%3Dhelm.sh%2Frelease.v1&continue=this-page']);
});

test('LIST page: one object over MAX_RESPONSE_BYTES fails the page with ResponseTooLargeError after the objects before it; a page far over that size is fine', { timeout: 20_000 }, async () => {
  const small = (name: string): string => JSON.stringify(configMap(name, '1', 'v'));
  const oversized = await fakeApi((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.write(`{"items":[${small('a')},${small('b')},{"metadata":{"name":"huge"},"data":{"v":"`);
    void writeUntilClosed(response, 'x'.repeat(256 * 1024), 2 * MAX_RESPONSE_BYTES).then(() => response.end(`"}},${small('c')}],"metadata":{}}`));
  });
  const handedOut: string[] = [];
  await assert.rejects(
    listPage(oversized.http, '/api/v1/configmaps', { limit: 500 }, (item) => handedOut.push(String((item as { metadata: { name: string } }).metadata.name))),
    ResponseTooLargeError,
  );
  assert.deepEqual(handedOut, ['a', 'b']);

  // 12 objects of 1 MiB: 12 MiB in one page, over the cap for one object but not for a page.
  const value = 'v'.repeat(1024 * 1024);
  const large = await fakeApi((_request, response) => {
    const items = Array.from({ length: 12 }, (_, index) => configMap(`big-${index}`, '1', value));
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ metadata: { resourceVersion: '9' }, items }));
  });
  let count = 0;
  const page = await listPage(large.http, '/api/v1/configmaps', { limit: 12 }, () => count++);
  assert.equal(count, 12);
  assert.equal(page.count, 12);
  assert.ok(page.bytes > 12 * 1024 * 1024 && page.bytes > MAX_RESPONSE_BYTES);
  assert.equal(page.resourceVersion, '9');
});

test('LIST page: 410 is GoneError (the continuation expired), another status an ApiError naming it', { timeout: 20_000 }, async () => {
  for (const status of [410, 500]) {
    const { http } = await fakeApi((_request, response) => response.writeHead(status).end(JSON.stringify({ kind: 'Status', code: status })));
    const attempt = listPage(http, '/api/v1/configmaps', { limit: 10, continueToken: 'old' }, () => assert.fail('no item'));
    if (status === 410) await assert.rejects(attempt, GoneError);
    else await assert.rejects(attempt, (error: unknown) => error instanceof ApiError && error.status === 500 && error.message === 'LIST /api/v1/configmaps: HTTP 500');
  }
});
