// Lease faults: a leader whose API server stops answering (a black-holed connection: accepted,
// never answered) must stop believing it leads once its lease could have expired, because another replica
// takes the Lease over after leaseDurationSeconds. A fake API server on 127.0.0.1 grants the Lease, then
// swallows every request.

import assert from 'node:assert/strict';
import https from 'node:https';
import { test } from 'node:test';
import { KubeHttp } from '../../../src/kube/http.ts';
import { LeaderElector } from '../../../src/watch/leader.ts';
import { listenAsApiServer } from '../../support/fakes.ts';
import { servingPair } from '../../support/tls.ts';

// Every Lease call carries a deadline of one retry period, so a hung renewal counts as a failed one and the
// leader steps down (after 2/3 of the lease without a renewal) before another replica may take over.

test('a leader whose renewals hang steps down within the lease duration', { timeout: 30_000 }, async (t) => {
  const { ca, serving } = servingPair('fake-api-server');
  let lease: Record<string, unknown> | undefined;
  let answering = true;
  const hung: Array<() => void> = [];
  const server = https.createServer({ cert: serving.certificate, key: serving.privateKey }, (request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    request.on('end', () => {
      if (!answering) {
        hung.push(() => response.destroy());
        return;
      }
      const reply = (status: number, object: unknown): void => {
        response.writeHead(status, { 'content-type': 'application/json' });
        response.end(JSON.stringify(object));
      };
      if (request.method === 'GET') return lease ? reply(200, lease) : reply(404, { kind: 'Status', code: 404 });
      lease = { ...(JSON.parse(body) as Record<string, unknown>), metadata: { name: 'l', namespace: 'n', resourceVersion: String(Date.now()) } };
      return reply(request.method === 'POST' ? 201 : 200, lease);
    });
  });
  const kubeConfig = await listenAsApiServer(server, ca.certificate);
  const http = new KubeHttp(kubeConfig);
  const changes: boolean[] = [];
  const leaseSeconds = 2;
  const elector = new LeaderElector(http, { namespace: 'n', name: 'l', identity: 'me', leaseDurationSeconds: leaseSeconds, retryPeriodMs: 400, onChange: (leading) => changes.push(leading) });
  try {
    elector.start();
    const deadline = Date.now() + 5_000;
    while (!elector.leading && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(elector.leading, true, 'took the free Lease');
    answering = false;
    const silentAt = performance.now();
    // Another replica may take the Lease leaseSeconds after the last renewal; allow one retry period more.
    const limit = silentAt + leaseSeconds * 1000 + 1_500;
    while (elector.leading && performance.now() < limit) await new Promise((resolve) => setTimeout(resolve, 50));
    t.diagnostic(`${hung.length} requests hanging; still leading ${Math.round(performance.now() - silentAt)} ms after the API server went silent: ${elector.leading}`);
    assert.equal(elector.leading, false, 'must not lead past the lease duration without a successful renewal');
  } finally {
    answering = true;
    for (const release of hung) release();
    await elector.stop().catch(() => {});
    http.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
