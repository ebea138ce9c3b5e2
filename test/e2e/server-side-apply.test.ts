// kubectl apply --server-side, as users and GitOps tools apply plain manifests (DESIGN section 2): a manifest
// that sets its own checksum/config keeps owning it. The watcher asks for a rollout on the workload's
// metadata and the webhook writes the pod template inside that request, so the applier's next apply,
// without --force-conflicts, succeeds and rolls nothing.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { resourcePath, waitFor, type KubeObject } from '../../src/local/kube.ts';
import {
  assertOwnsOnlyTheRequest,
  checksumOwners,
  configMap,
  expectedChecksum,
  REQUESTED_ANNOTATION,
  Scenario,
  sleep,
  templateChecksum,
  workload,
} from './support/scenario.ts';

const TIMEOUT = { timeout: 240_000 };
const scenario = new Scenario();
after(() => scenario.close());

/** `kubectl apply --server-side` with kubectl's default field manager, as a user types it. */
function applyServerSide(objects: KubeObject | readonly KubeObject[], extraArgs: readonly string[] = []): ReturnType<typeof scenario.kubectl.apply> {
  return scenario.kubectl.apply(objects, ['--server-side', ...extraArgs]);
}

test('a plain manifest with its own checksum/config, applied server-side: the config alone changes and rolls once; the same manifest applied again (server-side, then client-side) succeeds without --force-conflicts and rolls nothing', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-ssa', { optIn: true });
  const config = configMap(namespace, 'app-config', { 'app.yaml': 'level: info\n' });
  const manifest = workload('Deployment', namespace, 'app', { volumeConfigMap: 'app-config' });
  // What a chart or a kustomize patch would render: a value of its own under the webhook's key.
  manifest['spec']['template']['metadata']['annotations'] = { 'checksum/config': 'set-by-the-manifest' };

  await applyServerSide([config, manifest]);
  const stored = await scenario.waitForObserved(manifest);
  assert.equal(templateChecksum(stored), expectedChecksum(stored, [config]).checksum, "the webhook's checksum replaced the manifest's value");
  assert.deepEqual(checksumOwners(stored), ['kubectl (Apply)'], 'the applier owns the key it applied');
  await scenario.waitForOwned('ReplicaSet', stored, 1);

  // Only the ConfigMap changes, applied server-side as well.
  const changed = configMap(namespace, 'app-config', { 'app.yaml': 'level: debug\n' });
  const changedAt = performance.now();
  await applyServerSide(changed);
  const expected = expectedChecksum(stored, [changed]).checksum;
  await waitFor('the watcher-requested rollout', async () => templateChecksum(await scenario.read(stored)) === expected, { timeoutMs: 60_000, intervalMs: 50 });
  t.diagnostic(`ConfigMap applied -> new checksum stored: ${Math.round(performance.now() - changedAt)} ms (coalescing window ${scenario.state.webhook.coalesceWindowMs} ms)`);
  await scenario.waitForOwned('ReplicaSet', stored, 2);
  await sleep(scenario.configChangeSettleMs);
  const rolled = await scenario.read(stored);
  assert.equal((await scenario.owned('ReplicaSet', rolled)).length, 2, 'one rollout');
  assert.equal(rolled['metadata']['annotations'][REQUESTED_ANNOTATION], expected, 'the watcher asked for exactly this checksum');
  assertOwnsOnlyTheRequest(rolled);
  assert.deepEqual(checksumOwners(rolled), ['kubectl (Apply)'], 'the applier still owns checksum/config');

  // The unchanged manifest again, server-side (no --force-conflicts), then client-side.
  const again = await scenario.kubectl.run(['apply', '--server-side', '-f', '-'], JSON.stringify(manifest));
  assert.equal(again.code, 0, `kubectl apply --server-side succeeded without --force-conflicts: ${again.stderr}`);
  const clientSide = await scenario.kubectl.run(['apply', '-f', '-'], JSON.stringify(manifest));
  assert.equal(clientSide.code, 0, `kubectl apply (client-side) succeeded: ${clientSide.stderr}`);
  await sleep(scenario.configChangeSettleMs);
  const final = await scenario.read(stored);
  assert.equal(templateChecksum(final), expected, 'the checksum stayed');
  // (Not the generation: a Deployment's generation also counts annotation changes, and client-side apply
  // adds kubectl.kubernetes.io/last-applied-configuration.)
  assert.deepEqual(final['spec'], rolled['spec'], 'no spec change was stored');
  assert.equal((await scenario.owned('ReplicaSet', final)).length, 2, 'nothing more rolled');
  assertOwnsOnlyTheRequest(final);
});

test('a manifest without checksum/config, applied server-side by a GitOps-style field manager: config changes roll once each, and the next apply never conflicts', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-ssa-plain', { optIn: true });
  const fieldManager = ['--field-manager', 'gitops-controller'];
  const manifest = workload('Deployment', namespace, 'app', { envFromConfigMap: 'env' });
  await applyServerSide([configMap(namespace, 'env', { LEVEL: 'info' }), manifest], fieldManager);
  const stored = await scenario.waitForObserved(manifest);
  await scenario.waitForOwned('ReplicaSet', stored, 1);

  for (const [round, level] of ['debug', 'warn'].entries()) {
    const changed = configMap(namespace, 'env', { LEVEL: level });
    await applyServerSide(changed, fieldManager);
    const expected = expectedChecksum(stored, [changed]).checksum;
    await waitFor(`rollout ${round + 1}`, async () => templateChecksum(await scenario.read(stored)) === expected, { timeoutMs: 60_000, intervalMs: 100 });
    const reapplied = await scenario.kubectl.run(['apply', '--server-side', ...fieldManager, '-f', '-'], JSON.stringify(manifest));
    assert.equal(reapplied.code, 0, `re-apply ${round + 1} succeeded: ${reapplied.stderr}`);
    await scenario.waitForOwned('ReplicaSet', stored, round + 2);
  }
  await sleep(scenario.configChangeSettleMs);
  const final = await scenario.read(stored);
  assert.equal((await scenario.owned('ReplicaSet', final)).length, 3, 'one rollout per config change, none for the re-applies');
  assertOwnsOnlyTheRequest(final);
  assert.deepEqual(checksumOwners(final), [], 'nobody owns checksum/config: only the webhook sets it, inside requests');
  assert.equal((await scenario.client.get(resourcePath('ConfigMap', namespace, 'env')))['data']['LEVEL'], 'warn');
});
