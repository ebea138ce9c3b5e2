// The reflector against a fake API server on 127.0.0.1. Watch faults: while the API server refuses watches
// (an outage, a restart), it backs off exponentially, not hammering the API server. Large objects: LIST
// pages are bounded by bytes as well as by count, so a namespace of 1 MiB ConfigMaps still syncs.

import assert from 'node:assert/strict';
import https from 'node:https';
import { test } from 'node:test';
import { KubeHttp } from '../../../src/kube/http.ts';
import { watchSource } from '../../../src/kube/watch.ts';
import { Reflector } from '../../../src/watch/reflector.ts';
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
    if (url.searchParams.get('watch') === 'true') {
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
  const reflector = new Reflector(http, watchSource(kubeConfig), { path: '/api/v1/configmaps', onRestart: (reason) => restarts.push(reason) }, { upsert: () => {}, remove: () => {} });
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

test('a LIST of 20 ConfigMaps of 1 MiB each (20 MiB, over the 8 MiB response cap at any count above 7): synced, page by page', { timeout: 60_000 }, async (t) => {
  const { ca, serving } = servingPair('fake-api-server');
  const value = 'v'.repeat(1024 * 1024);
  const names = Array.from({ length: 20 }, (_, index) => `big-${String(index).padStart(2, '0')}`);
  const limits: number[] = [];
  const server = https.createServer({ cert: serving.certificate, key: serving.privateKey }, (request, response) => {
    const url = new URL(request.url ?? '/', 'https://fake');
    response.setHeader('content-type', 'application/json');
    if (url.searchParams.get('watch') === 'true') {
      response.end(); // an empty watch that ends: the reflector opens another later
      return;
    }
    // The API server's paging: `limit` objects from the `continue` position.
    const limit = Number(url.searchParams.get('limit'));
    const start = Number(url.searchParams.get('continue') ?? '0');
    limits.push(limit);
    const page = names.slice(start, start + limit);
    const next = start + page.length < names.length ? String(start + page.length) : undefined;
    const items = page.map((name) => ({ metadata: { name, namespace: 'big', resourceVersion: '1' }, data: { value } }));
    response.end(JSON.stringify({ kind: 'ConfigMapList', apiVersion: 'v1', metadata: { resourceVersion: '1', ...(next ? { continue: next } : {}) }, items }));
  });
  const kubeConfig = await listenAsApiServer(server, ca.certificate);
  const http = new KubeHttp(kubeConfig);
  const upserted: string[] = [];
  let synced!: () => void;
  const listed = new Promise<void>((resolve) => (synced = resolve));
  const reflector = new Reflector(http, watchSource(kubeConfig), { path: '/api/v1/configmaps' }, {
    upsert: (object) => upserted.push(String((object['metadata'] as { name: string }).name)),
    remove: () => {},
    synced: () => synced(),
  });
  try {
    reflector.start();
    await listed;
    t.diagnostic(`page limits asked for: ${limits.join(', ')}`);
    assert.deepEqual(upserted, names, 'every ConfigMap listed, once, in order');
    assert.equal(limits[0], 500, 'the first page asks for the usual count');
    // Too large: half as many each time, until a page fits (7 x 1 MiB); then pages aim at 4 MiB (3 objects).
    const fitted = limits.indexOf(7);
    assert.deepEqual(limits.slice(0, fitted + 1), [500, 250, 125, 62, 31, 15, 7]);
    assert.ok(limits.slice(fitted + 1).every((limit) => limit === 3), `then 3 at a time: ${limits.join(', ')}`);
  } finally {
    reflector.stop();
    http.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
