// kustomize as users run it (`kubectl apply -k`, client-side and server-side): a configMapGenerator with
// its name suffix hash renames the ConfigMap on every change, so the Deployment's own apply carries the
// new name and the webhook hashes the new ConfigMap in that request; without the suffix
// (disableNameSuffixHash) the ConfigMap is updated in place and the Deployment's manifest does not change.
// Either way: one new ReplicaSet per config change, none for a re-apply, and no field conflict.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { resourcePath, uniqueName, waitFor, type KubeObject } from '../../src/local/kube.ts';
import { expectedChecksum, Scenario, sleep, templateChecksum, workload } from './support/scenario.ts';

const TIMEOUT = { timeout: 240_000 };
const scenario = new Scenario();
after(() => scenario.close());

const VARIANTS = [
  { suffix: true, serverSide: false },
  { suffix: true, serverSide: true },
  { suffix: false, serverSide: false },
  { suffix: false, serverSide: true },
] as const;

/** A kustomization: the Deployment reads the generated ConfigMap app-config through envFrom. */
function writeKustomization(dir: string, namespace: string, level: string, suffix: boolean): void {
  mkdirSync(dir, { recursive: true });
  const deployment = workload('Deployment', namespace, 'app', { envFromConfigMap: 'app-config' });
  writeFileSync(path.join(dir, 'deployment.json'), JSON.stringify(deployment));
  writeFileSync(path.join(dir, 'kustomization.yaml'), [
    `namespace: ${namespace}`,
    'resources: [deployment.json]',
    'configMapGenerator:',
    '  - name: app-config',
    `    literals: [LEVEL=${level}]`,
    ...(suffix ? [] : ['    options:', '      disableNameSuffixHash: true']),
    '',
  ].join('\n'));
}

async function generatedConfigMaps(namespace: string): Promise<KubeObject[]> {
  return (await scenario.client.list(resourcePath('ConfigMap', namespace))).filter((cm) => String(cm['metadata']['name']).startsWith('app-config'));
}

for (const { suffix, serverSide } of VARIANTS) {
  const label = `${suffix ? 'with' : 'without'} the name suffix hash, kubectl apply -k${serverSide ? ' --server-side' : ''}`;
  test(`kustomize ${label}: a config change rolls once, a re-apply rolls nothing and never conflicts`, TIMEOUT, async (t) => {
    const namespace = await scenario.namespace(`e2e-kustomize-${suffix ? 'hash' : 'plain'}-${serverSide ? 'ssa' : 'csa'}`, { optIn: true });
    const dir = path.join(scenario.state.runDir, uniqueName('kustomize'));
    const apply = async (): Promise<void> => {
      const result = await scenario.kubectl.run(['apply', '-k', dir, ...(serverSide ? ['--server-side'] : [])]);
      assert.equal(result.code, 0, `kubectl apply -k: ${result.stderr}`);
    };
    const reference = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { namespace, name: 'app' } };
    const stored = async (): Promise<KubeObject> => scenario.read(reference);
    const settled = async (count: number): Promise<void> => {
      await scenario.waitForOwned('ReplicaSet', await stored(), count);
      await sleep(scenario.configChangeSettleMs);
      assert.equal((await scenario.owned('ReplicaSet', await stored())).length, count, `${count} ReplicaSet(s) once settled`);
    };
    const expected = async (): Promise<string> => {
      const live = await stored();
      const consumed = await generatedConfigMaps(namespace);
      return expectedChecksum(live, consumed).checksum;
    };

    writeKustomization(dir, namespace, 'info', suffix);
    await apply();
    await scenario.waitForObserved(reference);
    assert.equal(templateChecksum(await stored()), await expected(), 'admitted with the checksum of the generated ConfigMap');
    await settled(1);

    writeKustomization(dir, namespace, 'debug', suffix);
    const changedAt = performance.now();
    await apply();
    const want = await expected();
    await waitFor('the new checksum', async () => templateChecksum(await stored()) === want, { timeoutMs: 60_000, intervalMs: 100 });
    t.diagnostic(`${label}: new checksum stored ${Math.round(performance.now() - changedAt)} ms after kubectl apply started`);
    await settled(2);

    await apply();
    await settled(2);
    const names = (await generatedConfigMaps(namespace)).map((cm) => cm['metadata']['name']);
    t.diagnostic(`${label}: ConfigMaps ${names.join(', ')}`);
    assert.equal(names.length, suffix ? 2 : 1, suffix ? 'a new ConfigMap per change (kustomize does not prune)' : 'one ConfigMap, updated in place');
  });
}
