// The reflector against a fake API server on 127.0.0.1. Watch faults: while the API server refuses watches
// (an outage, a restart), it backs off exponentially, not hammering the API server; an expired watch (410,
// as a status or as an ERROR event) lists again, and objects deleted meanwhile are removed; a silent watch
// is re-opened. Large objects: LIST pages are read as they arrive and bounded by bytes as well as by count,
// so a namespace of 1 MiB ConfigMaps still syncs; one object over the cap fails its page.

import assert from 'node:assert/strict';
import type http from 'node:http';
import https from 'node:https';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeHttp, MAX_RESPONSE_BYTES, ResponseTooLargeError } from '../../../src/kube/http.ts';
import { watchSource, type WatchSourceOptions } from '../../../src/kube/watch.ts';
import { Reflector, type ReflectorHandlers, type ReflectorOptions } from '../../../src/watch/reflector.ts';
import type { JsonObject } from '../../../src/util/json.ts';
import { listenAsApiServer } from '../../support/fakes.ts';
import { servingPair } from '../../support/tls.ts';

// The backoff is reset only by a watch that worked (an event, or open for a while), so a watch that keeps
// failing is retried at a growing interval rather than every ~250 ms.

const WINDOW_MS = 6_000;
// With full-jitter exponential backoff from 500 ms (0.25 + 0.5 + 1 + 2 + 4 s expected sleeps), about 5
// attempts fit in 6 s; allow twice that for unlucky draws.
const MAX_ATTEMPTS = 10;

test('failing watches are retried with a growing backoff', { timeout: 30_000 }, async (t) => {
  const { ca, serving } = servingPair('fake-api-server');
  let lists = 0;
  let watches = 0;
  const server = https.createServer({ cert: serving.certificate, key: serving.privateKey }, (request, response) => {
    const url = new URL(request.url ?? '/', 'https://fake');
    response.setHeader('content-type', 'application/json');
    if (url.searchParams.get('watch') === '1') {
      watches++;
      response.writeHead(500);
      response.end(JSON.stringify({ kind: 'Status', code: 500, message: 'injected' }));
      return;
    }
    lists++;
    response.end(JSON.stringify({ kind: 'ConfigMapList', apiVersion: 'v1', metadata: { resourceVersion: '1' }, items: [] }));
  });
  const kubeConfig = await listenAsApiServer(server, ca.certificate);
  const http = new KubeHttp(kubeConfig);
  const restarts: string[] = [];
  const reflector = new Reflector(http, watchSource(http), { path: '/api/v1/configmaps', onRestart: (reason) => restarts.push(reason) }, { upsert: () => {}, remove: () => {} });
  try {
    reflector.start();
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS));
    t.diagnostic(`in ${WINDOW_MS} ms of failing watches: ${lists} LIST, ${watches} WATCH attempts, ${restarts.length} restarts`);
    assert.equal(lists, 1, 'listed once');
    assert.ok(watches >= 2, 'the watch was retried');
    assert.ok(watches <= MAX_ATTEMPTS, `${watches} watch attempts in ${WINDOW_MS} ms: the backoff does not grow`);
  } finally {
    reflector.stop();
    http.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

interface FakeApi {
  readonly http: KubeHttp;
  close(): Promise<void>;
}

const fakeApiPair = servingPair('fake-api-server');

/** A fake API server answering every request with `answer` (JSON), and a client of it. */
async function fakeApiServer(answer: (url: URL, response: http.ServerResponse) => void): Promise<FakeApi> {
  const server = https.createServer({ cert: fakeApiPair.serving.certificate, key: fakeApiPair.serving.privateKey }, (request, response) => {
    response.setHeader('content-type', 'application/json');
    answer(new URL(request.url ?? '/', 'https://fake'), response);
  });
  const client = new KubeHttp(await listenAsApiServer(server, fakeApiPair.ca.certificate));
  return {
    http: client,
    close: async () => {
      client.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Runs a reflector against `api` until `body` is done with it, then stops it and the server. */
async function withReflector(api: FakeApi, options: ReflectorOptions & { watch?: WatchSourceOptions }, handlers: ReflectorHandlers, body: (reflector: Reflector) => Promise<void>): Promise<void> {
  const reflector = new Reflector(api.http, watchSource(api.http, options.watch), options, handlers);
  try {
    reflector.start();
    await body(reflector);
  } finally {
    reflector.stop();
    await api.close();
  }
}

/** Resolves once `predicate` holds, checking every few milliseconds; gives up (throws) after `limitMs`. */
async function until(predicate: () => boolean, limitMs = 10_000): Promise<void> {
  const giveUp = performance.now() + limitMs;
  while (!predicate()) {
    if (performance.now() > giveUp) throw new Error(`still waiting after ${limitMs} ms`);
    await sleep(5);
  }
}

/** Writes `piece` over and over, `totalBytes` in all, as fast as the client reads; stops when the client closes. */
async function writeUntilClosed(response: http.ServerResponse, piece: string, totalBytes: number): Promise<boolean> {
  let closed = false;
  response.on('close', () => (closed = true));
  for (let written = 0; !closed && written < totalBytes; written += piece.length) {
    if (response.write(piece)) continue;
    await new Promise<void>((resolve) => {
      const proceed = (): void => {
        response.off('drain', proceed).off('close', proceed);
        resolve();
      };
      response.on('drain', proceed).on('close', proceed);
    });
  }
  return !closed;
}

const nameOf = (object: JsonObject): string => String((object['metadata'] as { name: string }).name);

/** The API server's paging over `objects`: `limit` objects from the `continue` position. */
function pageOf<T>(objects: readonly T[], url: URL): { page: T[]; next: string | undefined } {
  const limit = Number(url.searchParams.get('limit'));
  const start = Number(url.searchParams.get('continue') ?? '0');
  const page = objects.slice(start, start + limit);
  return { page, next: start + page.length < objects.length ? String(start + page.length) : undefined };
}

test('a LIST of 20 ConfigMaps of 1 MiB each: a first page of 10 MiB (over the cap for one object) streams through, then pages aim at 4 MiB', { timeout: 60_000 }, async (t) => {
  const value = 'v'.repeat(1024 * 1024);
  const names = Array.from({ length: 20 }, (_, index) => `big-${String(index).padStart(2, '0')}`);
  const limits: number[] = [];
  const api = await fakeApiServer((url, response) => {
    if (url.searchParams.has('watch')) return void response.end(); // an empty watch that ends: the reflector opens another later
    limits.push(Number(url.searchParams.get('limit')));
    const { page, next } = pageOf(names, url);
    const items = page.map((name) => ({ metadata: { name, namespace: 'big', resourceVersion: '1' }, data: { value } }));
    response.end(JSON.stringify({ kind: 'ConfigMapList', apiVersion: 'v1', metadata: { resourceVersion: '1', ...(next ? { continue: next } : {}) }, items }));
  });
  const upserted: string[] = [];
  let synced = false;
  await withReflector(api, { path: '/api/v1/configmaps', pageSize: 10 }, { upsert: (object) => upserted.push(nameOf(object)), remove: () => {}, synced: () => (synced = true) }, async () => {
    await until(() => synced, 40_000);
  });
  t.diagnostic(`page limits asked for: ${limits.join(', ')}`);
  assert.deepEqual(upserted, names, 'every ConfigMap listed, once, in order');
  assert.ok(10 * value.length > MAX_RESPONSE_BYTES, 'the first page is over the cap for one object');
  // 10 at first (the reflector's page size), then as many as fit in 4 MiB: 3.
  assert.deepEqual(limits, [10, 3, 3, 3, 3]);
});

test('one object over MAX_RESPONSE_BYTES: pages shrink until the objects before it are listed, then its page of one fails the list (ResponseTooLargeError)', { timeout: 60_000 }, async () => {
  const names = ['a', 'b', 'huge', 'c'];
  const limits: number[] = [];
  const api = await fakeApiServer((url, response) => {
    if (url.searchParams.has('watch')) return void response.end();
    limits.push(Number(url.searchParams.get('limit')));
    const { page, next } = pageOf(names, url);
    void (async () => {
      response.write(`{"metadata":{"resourceVersion":"1"${next ? `,"continue":"${next}"` : ''}},"items":[`);
      for (const [index, name] of page.entries()) {
        response.write(`${index > 0 ? ',' : ''}{"metadata":{"name":"${name}","namespace":"ns"},"data":{"v":"`);
        // The huge object's value never ends: the client must give up on it by itself.
        if (name === 'huge' && !(await writeUntilClosed(response, 'x'.repeat(256 * 1024), 4 * MAX_RESPONSE_BYTES))) return;
        response.write('"}}');
      }
      response.end(']}');
    })();
  });
  const upserted = new Set<string>();
  const errors: unknown[] = [];
  const restarts: string[] = [];
  let synced = false;
  await withReflector(api, { path: '/api/v1/configmaps', pageSize: 8, onError: (error) => errors.push(error), onRestart: (reason) => restarts.push(reason) }, {
    upsert: (object) => upserted.add(nameOf(object)),
    remove: () => {},
    synced: () => (synced = true),
  }, async () => {
    await until(() => errors.length > 0, 40_000);
  });
  // From the start: 8, 4, 2 (a and b, without the huge one), then from the huge one: 8, 4, 2, 1.
  assert.deepEqual(limits, [8, 4, 2, 8, 4, 2, 1]);
  assert.ok(errors[0] instanceof ResponseTooLargeError, String(errors[0]));
  assert.deepEqual(restarts, ['error']);
  assert.deepEqual([...upserted].sort(), ['a', 'b'], 'the objects before it were handed out; none after it');
  assert.equal(synced, false);
});

test('a LIST page is handed to the handlers as it arrives: the first object before the API server has sent the rest', { timeout: 20_000 }, async () => {
  const upserted: string[] = [];
  const api = await fakeApiServer((url, response) => {
    if (url.searchParams.has('watch')) return; // a watch that stays open, silent
    void (async () => {
      response.write('{"kind":"ConfigMapList","items":[{"metadata":{"name":"first","namespace":"ns"}}');
      await until(() => upserted.length === 1);
      response.end(',{"metadata":{"name":"second","namespace":"ns"}}],"metadata":{"resourceVersion":"3"}}');
    })();
  });
  let synced = false;
  await withReflector(api, { path: '/api/v1/configmaps' }, { upsert: (object) => upserted.push(nameOf(object)), remove: () => {}, synced: () => (synced = true) }, async () => {
    await until(() => synced);
  });
  assert.deepEqual(upserted, ['first', 'second']);
});

for (const expiry of [
  { how: 'HTTP 410', path: '/api/v1/namespaces', namespace: undefined },
  { how: 'an ERROR event with code 410', path: '/api/v1/configmaps', namespace: 'shop' },
]) {
  test(`a watch that expired (${expiry.how}) lists again; an object gone meanwhile is removed by name and namespace`, { timeout: 20_000 }, async () => {
    const object = (name: string): JsonObject => ({ metadata: { name, ...(expiry.namespace ? { namespace: expiry.namespace } : {}), resourceVersion: '1', uid: `uid-${name}` }, data: { k: name } });
    const lists: string[] = [];
    const watchedFrom: string[] = [];
    const api = await fakeApiServer((url, response) => {
      if (!url.searchParams.has('watch')) {
        lists.push(url.pathname);
        const items = lists.length === 1 ? [object('kept'), object('deleted')] : [object('kept')];
        return void response.end(JSON.stringify({ metadata: { resourceVersion: String(lists.length * 10) }, items }));
      }
      watchedFrom.push(url.searchParams.get('resourceVersion') ?? '');
      if (watchedFrom.length > 1) return void response.writeHead(200).flushHeaders(); // stays open
      if (expiry.how === 'HTTP 410') return void response.writeHead(410).end(JSON.stringify({ kind: 'Status', code: 410 }));
      response.end(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } })}\n`);
    });
    const upserted: string[] = [];
    const removed: JsonObject[] = [];
    const restarts: string[] = [];
    await withReflector(api, { path: expiry.path, onRestart: (reason) => restarts.push(reason) }, { upsert: (o) => upserted.push(nameOf(o)), remove: (o) => removed.push(o) }, async () => {
      await until(() => watchedFrom.length === 2);
    });
    assert.deepEqual(lists, [expiry.path, expiry.path]);
    assert.deepEqual(restarts, ['expired']);
    assert.deepEqual(watchedFrom, ['10', '20'], 'each watch from its list');
    assert.deepEqual(upserted, ['kept', 'deleted', 'kept']);
    // Rebuilt from the key the reflector kept: name, and namespace for a namespaced object.
    assert.deepEqual(removed, [{ metadata: { name: 'deleted', ...(expiry.namespace ? { namespace: expiry.namespace } : {}) } }]);
  });
}

test('watch events reach the handlers however the stream is cut; a watch silent for the inactivity timeout is re-opened from the last resourceVersion', { timeout: 20_000 }, async () => {
  const watchedFrom: string[] = [];
  const events = [
    { type: 'ADDED', object: { metadata: { name: 'new', namespace: 'ns', resourceVersion: '2' }, data: { k: 'é😀"\\' } } },
    { type: 'MODIFIED', object: { metadata: { name: 'new', namespace: 'ns', resourceVersion: '3' }, data: { k: 'ü' } } },
    { type: 'DELETED', object: { metadata: { name: 'old', namespace: 'ns', resourceVersion: '4' } } },
  ];
  const api = await fakeApiServer((url, response) => {
    if (!url.searchParams.has('watch')) return void response.end(JSON.stringify({ metadata: { resourceVersion: '1' }, items: [{ metadata: { name: 'old', namespace: 'ns' } }] }));
    watchedFrom.push(url.searchParams.get('resourceVersion') ?? '');
    response.writeHead(200).flushHeaders();
    if (watchedFrom.length > 1) return; // silent
    void (async () => {
      const bytes = Buffer.from(events.map((event) => `${JSON.stringify(event)}\n`).join(''));
      for (let at = 0; at < bytes.length; at += 7) {
        response.write(bytes.subarray(at, at + 7));
        await sleep(1);
      }
    })(); // then silent
  });
  const seen: string[] = [];
  const restarts: string[] = [];
  const idleTimeoutMs = 300;
  await withReflector(api, { path: '/api/v1/configmaps', onRestart: (reason) => restarts.push(reason), watch: { idleTimeoutMs } }, {
    upsert: (object) => seen.push(`upsert ${nameOf(object)} ${JSON.stringify(object['data'] ?? null)}`),
    remove: (object) => seen.push(`remove ${nameOf(object)} ${JSON.stringify(object['metadata'])}`),
  }, async () => {
    await until(() => watchedFrom.length === 2);
  });
  assert.deepEqual(seen, [
    'upsert old null',
    'upsert new {"k":"é😀\\"\\\\"}',
    'upsert new {"k":"ü"}',
    'remove old {"name":"old","namespace":"ns","resourceVersion":"4"}',
  ]);
  assert.deepEqual(restarts, ['idle']);
  assert.deepEqual(watchedFrom, ['1', '4']);
});
