// Fail-open (DESIGN section 7, failurePolicy: Ignore): with the webhook process gone, workload writes
// still succeed. The webhook is restarted on the same port afterwards, so the other files are unaffected
// whatever the order; the restarted process is registered with the run, so the teardown stops it.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { configMap, expectedChecksum, Scenario, templateChecksum, workload } from './support/scenario.ts';
import { httpsStatus } from '../../src/local/webhook.ts';

const scenario = new Scenario();
after(() => scenario.close());

test('with the webhook process stopped, Deployment writes still succeed; after a restart it mutates again', { timeout: 180_000 }, async () => {
  const namespace = await scenario.namespace('e2e-webhook-down', { optIn: true });
  const config = configMap(namespace, 'app-config', { 'app.yaml': 'level: info\n' });
  await scenario.client.create(config);
  const deployment = workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config' });
  const { webhook } = scenario.state;
  const ca = readFileSync(webhook.files.caFile);

  await scenario.stopWebhook();
  try {
    await assert.rejects(httpsStatus(webhook.port, '/healthz', ca), /ECONNREFUSED/, 'the webhook is really down');

    const created = await scenario.client.create(deployment);
    assert.equal(created.status, 201);
    assert.equal(templateChecksum(created.body), undefined, 'admitted without the webhook');
    const updated = (await scenario.putAsRead(deployment, { change: (stored) => (stored['spec']['template']['metadata']['labels']['release'] = 'r2') })).response;
    assert.equal(updated.status, 200);
    assert.equal(updated.body['spec']['template']['metadata']['labels']['release'], 'r2', 'the update went through');
    assert.equal(templateChecksum(updated.body), undefined);
  } finally {
    await scenario.restartWebhook();
  }

  const reapplied = (await scenario.putAsRead(deployment)).response;
  assert.equal(templateChecksum(reapplied.body), expectedChecksum(deployment, [config]).checksum, 'the restarted webhook mutates again');
});
