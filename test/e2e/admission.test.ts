// The admission path against a real control plane (DESIGN sections 2, 4, 5, 8): the API server calls the
// webhook process over TLS through the shipped MutatingWebhookConfiguration, and the controller manager's
// ReplicaSets say whether a write rolled.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { httpsCall } from '../support/https.ts';
import { metricSum } from './support/install.ts';
import {
  configMap,
  expectedChecksum,
  Scenario,
  SETTLE_MS,
  sleep,
  sourcesAnnotation,
  templateChecksum,
  workload,
} from './support/scenario.ts';

const TIMEOUT = { timeout: 180_000 };
const scenario = new Scenario();
after(() => scenario.close());

test('opted-in namespace: a Deployment gets the checksum of the ConfigMap it mounts and names its source', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-opt-in', { optIn: true });
  const config = configMap(namespace, 'app-config', { 'app.yaml': 'level: info\n', feature: 'on' }, { 'logo.bin': Buffer.from([0, 1, 2, 255]).toString('base64') });
  await scenario.client.create(config);
  const deployment = workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config' });

  const created = (await scenario.client.create(deployment)).body;

  const expected = expectedChecksum(deployment, [config]);
  assert.match(expected.checksum, /^[0-9a-f]{64}$/);
  assert.equal(templateChecksum(created), expected.checksum);
  assert.equal(sourcesAnnotation(created), 'configmap/app-config');
  const stored = await scenario.read(deployment);
  assert.equal(templateChecksum(stored), expected.checksum, 'the checksum is persisted, not only returned');
  const [replicaSet] = await scenario.waitForOwned('ReplicaSet', stored, 1);
  assert.equal(templateChecksum(replicaSet!), expected.checksum, 'the ReplicaSet runs the annotated template');
});

test('namespace without the opt-in label: the Deployment is untouched', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-not-opted-in', { optIn: false });
  await scenario.client.create(configMap(namespace, 'app-config', { key: 'value' }));
  const deployment = workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config' });

  const created = (await scenario.client.create(deployment)).body;

  assert.equal(created['metadata']['annotations'], undefined, 'no workload annotation added');
  assert.equal(created['spec']['template']['metadata']['annotations'], undefined, 'no pod-template annotation added');
  assert.deepEqual(created['spec']['template']['metadata']['labels'], deployment['spec']['template']['metadata']['labels']);
});

test('ConfigMap changed, then the Deployment re-applied with a change: new checksum, new ReplicaSet', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-config-change', { optIn: true });
  const before = configMap(namespace, 'app-config', { 'app.yaml': 'level: info\n' });
  const deployment = workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config', env: { MODE: 'a' } });
  await scenario.kubectl.apply(before);
  await scenario.kubectl.apply(deployment);
  const first = await scenario.waitForObserved(deployment);
  await scenario.waitForOwned('ReplicaSet', first, 1);
  const oldChecksum = expectedChecksum(deployment, [before]).checksum;
  assert.equal(templateChecksum(first), oldChecksum);

  const changed = configMap(namespace, 'app-config', { 'app.yaml': 'level: debug\n' });
  await scenario.kubectl.apply(changed);
  const reapplied = workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config', env: { MODE: 'b' } });
  await scenario.kubectl.apply(reapplied);

  const updated = await scenario.waitForObserved(deployment);
  const newChecksum = expectedChecksum(reapplied, [changed]).checksum;
  assert.notEqual(newChecksum, oldChecksum);
  assert.equal(templateChecksum(updated), newChecksum);
  await scenario.waitForOwned('ReplicaSet', updated, 2);
  // With the watch path on, it also saw the ConfigMap change: it must find nothing left to do.
  await sleep(scenario.configChangeSettleMs);
  const replicaSets = await scenario.owned('ReplicaSet', updated);
  assert.equal(replicaSets.length, 2, 'one new ReplicaSet, not two');
  assert.deepEqual(replicaSets.map(templateChecksum).sort(), [oldChecksum, newChecksum].sort(), 'the new ReplicaSet carries the new checksum');
  assert.equal(templateChecksum(await scenario.read(deployment)), newChecksum);
});

test('the unchanged Deployment re-applied (PUT of the object as read): same checksum, no new ReplicaSet', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-no-op', { optIn: true });
  const config = configMap(namespace, 'app-config', { 'app.yaml': 'level: info\n' });
  await scenario.client.create(config);
  const deployment = workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config' });
  await scenario.client.create(deployment);
  const current = await scenario.waitForObserved(deployment);
  await scenario.waitForOwned('ReplicaSet', current, 1);

  const { read, response } = await scenario.putAsRead(deployment);

  assert.equal(templateChecksum(response.body), expectedChecksum(deployment, [config]).checksum);
  assert.equal(response.body['metadata']['generation'], current['metadata']['generation'], 'the spec did not change');
  assert.equal(response.body['metadata']['resourceVersion'], read['metadata']['resourceVersion'], 'nothing was written');
  await sleep(SETTLE_MS);
  assert.equal((await scenario.owned('ReplicaSet', current)).length, 1, 'no new ReplicaSet');
});

test("ConfigMap and Deployment changed together in Helm's order: exactly one new ReplicaSet", TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-helm-order', { optIn: true });
  const release1 = {
    config: configMap(namespace, 'app-config', { 'app.yaml': 'replicas: 1\n' }),
    deployment: workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config', image: 'registry.invalid/app:1' }),
  };
  // Helm installs ConfigMaps before Deployments (its kind order), and so does this test.
  await scenario.kubectl.apply(release1.config);
  await scenario.kubectl.apply(release1.deployment);
  const installed = await scenario.waitForObserved(release1.deployment);
  await scenario.waitForOwned('ReplicaSet', installed, 1);

  const release2 = {
    config: configMap(namespace, 'app-config', { 'app.yaml': 'replicas: 2\n' }),
    deployment: workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config', image: 'registry.invalid/app:2' }),
  };
  await scenario.kubectl.apply(release2.config);
  await scenario.kubectl.apply(release2.deployment);

  const upgraded = await scenario.waitForObserved(release2.deployment);
  assert.equal(templateChecksum(upgraded), expectedChecksum(release2.deployment, [release2.config]).checksum);
  assert.equal(upgraded['metadata']['generation'], installed['metadata']['generation'] + 1, 'one write changed the spec');
  await scenario.waitForOwned('ReplicaSet', upgraded, 2);
  // Past the watch path's coalescing window: the ConfigMap change must not roll a second time.
  await sleep(scenario.configChangeSettleMs);
  const replicaSets = await scenario.owned('ReplicaSet', upgraded);
  assert.equal(replicaSets.length, 2, 'exactly one new ReplicaSet, no second rollout');
  const newest = replicaSets.find((rs) => rs['spec']['template']['spec']['containers'][0]['image'] === 'registry.invalid/app:2');
  assert.ok(newest, 'the new ReplicaSet runs the new image');
  assert.equal(templateChecksum(newest), templateChecksum(upgraded), '...and the new checksum, in the same rollout');
});

test('server-side dry run of an update after a ConfigMap change shows the new checksum and persists nothing', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-dry-run', { optIn: true });
  const before = configMap(namespace, 'app-config', { 'app.yaml': 'level: info\n' });
  await scenario.client.create(before);
  const deployment = workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config' });
  await scenario.client.create(deployment);
  const current = await scenario.waitForObserved(deployment);
  await scenario.waitForOwned('ReplicaSet', current, 1);
  const changed = configMap(namespace, 'app-config', { 'app.yaml': 'level: debug\n' });
  await scenario.putAsRead(before, { change: (stored) => (stored['data'] = changed['data']) });

  // What `kubectl diff` / `helm diff --dry-run=server` send. It runs well inside the watch path's
  // coalescing window, so the re-read below shows what the dry run left behind, not the watcher's work.
  const dryRun = (await scenario.putAsRead(deployment, { query: { dryRun: 'All' } })).response.body;
  const reread = await scenario.read(deployment);

  const oldChecksum = expectedChecksum(deployment, [before]).checksum;
  const newChecksum = expectedChecksum(deployment, [changed]).checksum;
  assert.notEqual(newChecksum, oldChecksum);
  assert.equal(templateChecksum(dryRun), newChecksum, 'the dry run shows the pending config rollout');
  assert.equal(templateChecksum(reread), oldChecksum, 'the stored object keeps the old checksum');
  assert.equal(reread['metadata']['generation'], current['metadata']['generation'], 'the stored spec did not change');

  if (scenario.state.webhook.watch) {
    // The watch path then performs exactly the rollout the dry run previewed: one, with that checksum.
    const rolled = await scenario.waitForOwned('ReplicaSet', current, 2);
    assert.ok(rolled.some((rs) => templateChecksum(rs) === newChecksum), 'the rollout carries the previewed checksum');
  }
  await sleep(scenario.configChangeSettleMs);
  const expectedCount = scenario.state.webhook.watch ? 2 : 1;
  assert.equal((await scenario.owned('ReplicaSet', current)).length, expectedCount, 'the dry run itself rolled nothing');
});

test('a Deployment consuming a missing required ConfigMap is admitted, and the client sees the warning', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-missing', { optIn: true });
  const deployment = workload('Deployment', namespace, 'web', { envFromConfigMap: 'absent-config' });

  const applied = await scenario.kubectl.apply(deployment);

  assert.match(applied.stderr, /Warning: config-checksum: .*absent-config/, `kubectl printed: ${applied.stderr}`);
  const stored = await scenario.read(deployment);
  assert.equal(templateChecksum(stored), expectedChecksum(deployment, []).checksum, 'hashed as absent');
  assert.equal(sourcesAnnotation(stored), 'configmap/absent-config(missing)');

  // The raw header as the API server sends it, and what happens once the ConfigMap exists.
  const again = (await scenario.putAsRead(deployment)).response;
  assert.ok(
    again.warnings.some((text) => text.startsWith('config-checksum: ') && text.includes('"absent-config"')),
    `Warning headers: ${JSON.stringify(again.warnings)}`,
  );
  const config = configMap(namespace, 'absent-config', { LOG_LEVEL: 'info' });
  await scenario.client.create(config);
  const afterCreate = (await scenario.putAsRead(deployment)).response;
  assert.equal(templateChecksum(afterCreate.body), expectedChecksum(deployment, [config]).checksum, 'the checksum changes when the ConfigMap appears');
  assert.equal(sourcesAnnotation(afterCreate.body), 'configmap/absent-config');
  assert.deepEqual(afterCreate.warnings, []);
});

test('names no ConfigMap can have, which the API server stores in volumes: never read (no LIST of the namespace), hashed as absent, a warning each', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-invalid-names', { optIn: true });
  const app = configMap(namespace, 'app', { 'app.yaml': 'level: info\n' });
  await scenario.client.create(app);
  const hostile = ['/', 'app/', 'APP', 'a%2Fb'];
  const deployment = workload('Deployment', namespace, 'web', { volumeConfigMap: 'app' });
  deployment['spec']['template']['spec']['volumes'].push(...hostile.map((name, index) => ({ name: `hostile-${index}`, configMap: { name } })));
  const { webhook } = scenario.state;
  const reads = async (): Promise<number> => metricSum((await httpsCall({ port: webhook.port, path: '/metrics', ca: readFileSync(webhook.files.caFile) })).text, 'config_checksum_configmap_reads_total');
  const before = await reads();

  const created = await scenario.client.create(deployment, { dryRun: 'All' });
  assert.equal(created.status, 201, 'the API server stores such names');
  assert.equal(await reads() - before, 1, 'one read: ConfigMap app, nothing for the hostile names');
  assert.equal(templateChecksum(created.body), expectedChecksum(deployment, [app]).checksum, 'hashed as absent');
  const ours = created.warnings.filter((text) => text.includes('is not a valid ConfigMap name'));
  assert.equal(ours.length, hostile.length, `Warning headers: ${JSON.stringify(created.warnings)}`);
});

test('a "__proto__" key the API server stores (CSI volumeAttributes) is data: the Deployment is admitted with its checksum', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-proto-key', { optIn: true });
  const app = configMap(namespace, 'app', { level: 'info' });
  await scenario.client.create(app);
  const deployment = workload('Deployment', namespace, 'web', { envFromConfigMap: 'app' });
  // JSON.parse defines "__proto__" as an own key, so JSON.stringify sends it as the user wrote it.
  deployment['spec']['template']['spec']['volumes'] = [{ name: 'csi', csi: { driver: 'secrets-store.csi.k8s.io', volumeAttributes: JSON.parse('{"__proto__":"x","secretProviderClass":"p"}') } }];
  assert.match(JSON.stringify(deployment), /"__proto__":"x"/);
  const created = await scenario.client.create(deployment);
  assert.equal(created.status, 201);
  assert.equal(created.body['spec']['template']['spec']['volumes'][0]['csi']['volumeAttributes']['__proto__'], 'x', 'the API server stored the key');
  assert.equal(templateChecksum(created.body), expectedChecksum(deployment, [app]).checksum, 'admitted with its checksum');
});

test('a Deployment whose annotations are near the API server\'s 256 KiB limit is still accepted: the checksum is set, the sources annotation left out with a warning', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-annotations-full', { optIn: true });
  const app = configMap(namespace, 'app', { level: 'info' });
  await scenario.client.create(app);
  // Keys and values together just under the limit: the sources annotation (about 40 bytes) would cross it.
  const deployment = workload('Deployment', namespace, 'web', { envFromConfigMap: 'app', annotations: { filler: 'x'.repeat(256 * 1024 - 'filler'.length - 20) } });
  const created = await scenario.client.request('POST', `/apis/apps/v1/namespaces/${namespace}/deployments`, { body: deployment });
  assert.equal(created.status, 201, `the API server accepted the write: ${String(created.body['message'] ?? '')}`);
  assert.equal(templateChecksum(created.body), expectedChecksum(deployment, [app]).checksum);
  assert.equal(sourcesAnnotation(created.body), undefined);
  assert.ok(created.warnings.some((text) => text.includes('not written')), `Warning headers: ${JSON.stringify(created.warnings)}`);
});
