// Scope and kinds against a real control plane: the workload opt-out, and StatefulSets and DaemonSets
// treated like Deployments (DESIGN sections 2 and 3). "Rolled" for a StatefulSet: a new ControllerRevision.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { configMap, expectedChecksum, OPT_OUT_ANNOTATION, Scenario, sourcesAnnotation, templateChecksum, workload } from './support/scenario.ts';

const TIMEOUT = { timeout: 180_000 };
const scenario = new Scenario();
after(() => scenario.close());

test('the opt-out annotation config-checksum.io/inject: "false" is respected', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-opt-out', { optIn: true });
  await scenario.client.create(configMap(namespace, 'app-config', { key: 'value' }));
  const deployment = workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config', annotations: { [OPT_OUT_ANNOTATION]: 'false' } });

  const created = (await scenario.client.create(deployment)).body;

  assert.equal(templateChecksum(created), undefined);
  assert.equal(sourcesAnnotation(created), undefined);
  assert.deepEqual(created['metadata']['annotations'], { [OPT_OUT_ANNOTATION]: 'false' }, 'workload annotations untouched');
  assert.equal(created['spec']['template']['metadata']['annotations'], undefined, 'pod template untouched');
});

test('a StatefulSet gets the checksum, and a ConfigMap change plus a re-apply makes a new ControllerRevision', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-statefulset', { optIn: true });
  const before = configMap(namespace, 'db-config', { 'postgresql.conf': 'max_connections = 100\n' });
  await scenario.client.create(before);
  const statefulSet = workload('StatefulSet', namespace, 'db', { volumeConfigMap: 'db-config' });

  const created = (await scenario.client.create(statefulSet)).body;

  const oldChecksum = expectedChecksum(statefulSet, [before]).checksum;
  assert.equal(templateChecksum(created), oldChecksum);
  assert.equal(sourcesAnnotation(created), 'configmap/db-config');
  const current = await scenario.waitForObserved(statefulSet);
  await scenario.waitForOwned('ControllerRevision', current, 1);

  const changed = configMap(namespace, 'db-config', { 'postgresql.conf': 'max_connections = 200\n' });
  await scenario.putAsRead(before, { change: (stored) => (stored['data'] = changed['data']) });
  // The object exactly as read: the only thing that can change its template is the webhook.
  const reapplied = (await scenario.putAsRead(statefulSet)).response.body;

  const newChecksum = expectedChecksum(statefulSet, [changed]).checksum;
  assert.notEqual(newChecksum, oldChecksum);
  assert.equal(templateChecksum(reapplied), newChecksum);
  const updated = await scenario.waitForObserved(statefulSet);
  const revisions = await scenario.waitForOwned('ControllerRevision', updated, 2);
  assert.notEqual(updated['status']['updateRevision'], current['status']['updateRevision'], 'the update revision moved');
  assert.ok(
    revisions.some((revision) => revision['metadata']['name'] === updated['status']['updateRevision']),
    'the new ControllerRevision is the update revision',
  );
});

test('a DaemonSet gets the checksum like a Deployment', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-daemonset', { optIn: true });
  const config = configMap(namespace, 'agent-config', { 'agent.toml': 'interval = "10s"\n' });
  await scenario.client.create(config);
  const daemonSet = workload('DaemonSet', namespace, 'agent', { envFromConfigMap: 'agent-config' });

  const created = (await scenario.client.create(daemonSet)).body;

  assert.equal(templateChecksum(created), expectedChecksum(daemonSet, [config]).checksum);
  assert.equal(sourcesAnnotation(created), 'configmap/agent-config');
  assert.equal(templateChecksum(await scenario.read(daemonSet)), expectedChecksum(daemonSet, [config]).checksum);
});
