// Watch faults: while the API server refuses watches (an outage, a restart), the reflector
// must back off exponentially, as its header promises, not hammer the API server. A fake API server on
// 127.0.0.1 answers the LIST and fails every WATCH with HTTP 500; the watch attempts are counted.

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
