// Shutdown loses nothing. A steady load of admissions over keep-alive connections (autocannon,
// bounded in time) runs against startServer over TLS; stop() is called in the middle. During the drain
// window /readyz answers 503, every admission still succeeds with the same answer, and no request fails.

import assert from 'node:assert/strict';
import net from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { CLOSE_GRACE_MS, startServer } from '../../src/server/https.ts';
import { admissionRequest, reviewBody, workload } from '../support/fakes.ts';
import { CANARY, RecordingReader, traceParts } from '../support/observation.ts';
import { httpsCall } from '../support/https.ts';
import { writeTls } from '../support/tls.ts';

interface AutocannonResult {
  readonly requests: { readonly total: number };
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  readonly mismatches: number;
  readonly resets: number;
  readonly '2xx': number;
}
interface AutocannonInstance {
  on(event: 'response', listener: (client: unknown, statusCode: number, bytes: number, responseTime: number) => void): void;
  on(event: 'reqError', listener: (error: Error) => void): void;
  on(event: 'done', listener: (result: AutocannonResult) => void): void;
  stop(): void;
}
type Autocannon = (options: Record<string, unknown>) => AutocannonInstance;
// autocannon ships no types; this is the part used here.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

// Long enough to see many requests inside it on a busy 2-core machine; the shipped default is 15 s.
const DRAIN_SECONDS = 4;
const CONNECTIONS = 8;
// stop() comes this long after the load starts. autocannon ends its load only on its 1 s tick, so the
// load is given a whole number of seconds that ends 1.5 s before the drain window does (the port closes
// then, and any request after that would fail for a reason that is not the drain's).
const LEAD_IN_MS = 1_500;
const LOAD_SECONDS = 4;

test('stop() during a steady load: /readyz 503 for the whole drain, zero failed admissions', { timeout: 60_000 }, async (t) => {
  const tls = writeTls();
  const reader = new RecordingReader({ 'app-config': { data: { LOG_LEVEL: CANARY } } });
  const parts = traceParts(reader);
  const server = await startServer(parts, { host: '127.0.0.1', port: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, drainSeconds: DRAIN_SECONDS });
  const body = JSON.stringify(reviewBody(admissionRequest(workload(), { uid: 'drain-load' })));
  try {
    // Every answer must be this one, byte for byte (autocannon counts any other as a mismatch).
    const expected = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/mutate', body, contentType: 'application/json' });
    assert.equal(expected.status, 200);
    assert.match(expected.text, /"uid":"drain-load"/);

    const phases = { before: { ok: 0, failed: 0 }, draining: { ok: 0, failed: 0 } };
    let drainStartedAt: number | undefined;
    const phase = (): typeof phases.before => (drainStartedAt === undefined ? phases.before : phases.draining);
    const load = autocannon({
      url: `https://127.0.0.1:${server.port}/mutate`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      connections: CONNECTIONS,
      pipelining: 1,
      duration: LOAD_SECONDS,
      timeout: 5,
      expectBody: expected.text,
    });
    load.on('response', (_client, statusCode) => {
      if (statusCode === 200) phase().ok++;
      else failure(`HTTP ${statusCode}`);
    });
    const failures = new Map<string, number>();
    const failure = (what: string): void => {
      phase().failed++;
      failures.set(what, (failures.get(what) ?? 0) + 1);
    };
    load.on('reqError', (error) => failure(String((error as { code?: string }).code ?? error.message)));
    const done = new Promise<AutocannonResult>((resolve) => load.on('done', resolve));

    await new Promise((resolve) => setTimeout(resolve, LEAD_IN_MS));
    assert.equal((await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/readyz' })).status, 200, 'ready before stop()');
    drainStartedAt = performance.now();
    const stopped = server.stop();
    const readyz: number[] = [];
    let loadEnded = false;
    const result = done.finally(() => (loadEnded = true));
    while (!loadEnded) {
      readyz.push((await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/readyz', timeoutMs: 2_000 })).status);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const drainedFor = performance.now() - drainStartedAt;
    const totals = await result;
    await stopped;
    const stoppedAfter = performance.now() - drainStartedAt;

    t.diagnostic(`load: ${totals.requests.total} requests over ${CONNECTIONS} keep-alive connections; before stop() ${phases.before.ok} ok / ${phases.before.failed} failed; during the drain (${Math.round(drainedFor)} ms of load) ${phases.draining.ok} ok / ${phases.draining.failed} failed; failures ${JSON.stringify(Object.fromEntries(failures))}`);
    t.diagnostic(`autocannon: 2xx ${totals['2xx']}, non2xx ${totals.non2xx}, errors ${totals.errors}, timeouts ${totals.timeouts}, mismatches ${totals.mismatches}, resets ${totals.resets}; /readyz during the drain: ${readyz.length} polls, statuses ${[...new Set(readyz)].join(',')}; closed ${Math.round(stoppedAfter)} ms after stop()`);
    assert.ok(drainedFor < DRAIN_SECONDS * 1000, `the load ended inside the drain window (${Math.round(drainedFor)} ms)`);
    assert.ok(phases.before.ok > 0, 'load ran before stop()');
    assert.ok(phases.draining.ok > 0, 'admissions were answered during the drain');
    assert.equal(phases.before.failed + phases.draining.failed, 0, 'no request failed');
    assert.equal(totals.errors, 0, 'no connection or request errors');
    assert.equal(totals.timeouts, 0, 'no timeouts');
    assert.equal(totals.non2xx, 0, 'no non-2xx answer');
    assert.equal(totals.mismatches, 0, 'every answer was the expected AdmissionReview');
    assert.ok(readyz.length >= 5, `/readyz was polled during the drain (${readyz.length})`);
    assert.deepEqual([...new Set(readyz)], [503], '/readyz answered 503 for the whole drain');
    assert.ok(stoppedAfter >= DRAIN_SECONDS * 1000 - 50, 'the server kept serving for the drain window');
    await assert.rejects(httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz', timeoutMs: 2_000 }), /ECONNREFUSED/, 'closed after the drain');
    assert.deepEqual(parts.log.leaks, []);
  } finally {
    await server.stop();
    tls.cleanup();
  }
});

test('stop() always ends: a connection that never finishes its TLS handshake and a request whose body never arrives are closed after the grace period', { timeout: 30_000 }, async (t) => {
  const tls = writeTls();
  const parts = traceParts(new RecordingReader({}));
  const server = await startServer(parts, { host: '127.0.0.1', port: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, drainSeconds: 0 });
  // A TCP connection that never sends a ClientHello, and a request whose headers promise a body never sent.
  const silent = net.connect(server.port, '127.0.0.1');
  await new Promise((resolve) => silent.once('connect', resolve));
  const stuck = tlsConnect({ host: '127.0.0.1', port: server.port, ca: tls.ca.certificate });
  await new Promise((resolve) => stuck.once('secureConnect', resolve));
  stuck.write('POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{');
  const closed = (socket: net.Socket) => new Promise<void>((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
  try {
    const started = performance.now();
    await server.stop();
    const ms = performance.now() - started;
    t.diagnostic(`stop() took ${Math.round(ms)} ms (grace ${CLOSE_GRACE_MS} ms)`);
    assert.ok(ms < CLOSE_GRACE_MS + 3_000, `stop() ended within the grace period: ${Math.round(ms)} ms`);
    await Promise.all([closed(silent), closed(stuck)]);
  } finally {
    silent.destroy();
    stuck.destroy();
    tls.cleanup();
  }
});
