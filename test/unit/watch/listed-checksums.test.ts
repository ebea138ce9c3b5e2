// The start-up pass's shortcut: checksums computed while the ConfigMaps are listed. It may only ever say
// "up to date" when the webhook would compute the very checksum the workload carries; every doubt
// (disorder, budget, a later change, a different checksum) leaves the workload to the live check.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { ConfigMapLookup } from '../../../src/checksum/compute.ts';
import type { JsonObject } from '../../../src/util/json.ts';
import { DependencyIndex } from '../../../src/watch/dependents.ts';
import { ListedChecksums, MAX_KEPT_BYTES } from '../../../src/watch/listed-checksums.ts';
import { decideWorkload } from '../../../src/workload/decision.ts';

type Data = Record<string, string>;
type Cluster = Map<string, Map<string, Data>>;

const SETTINGS = { checksumAnnotation: 'checksum/config', maxConfigMaps: 64, configMapReadTimeoutMs: 1000 };

/** A Deployment of `namespace` consuming `uses` (name, and keys when not all), with the checksum the webhook gives it over `cluster`. */
async function admitted(cluster: Cluster, namespace: string, name: string, uses: ReadonlyArray<{ name: string; keys?: string[]; optional?: boolean }>): Promise<Record<string, any>> {
  const object: Record<string, any> = {
    metadata: { name, namespace },
    spec: {
      template: {
        metadata: { annotations: {} },
        spec: {
          containers: [{ name: 'app', image: 'app:1' }],
          volumes: uses.map((use) => ({ name: use.name, configMap: { name: use.name, optional: use.optional ?? false, ...(use.keys ? { items: use.keys.map((key) => ({ key, path: key })) } : {}) } })),
        },
      },
    },
  };
  const reader = { read: async (ns: string, cm: string): Promise<ConfigMapLookup> => {
    const data = cluster.get(ns)?.get(cm);
    return data ? { state: 'found', data, binaryData: undefined } : { state: 'missing' };
  } };
  const decision = await decideWorkload(object, namespace, { configMaps: reader }, SETTINGS);
  assert.equal(decision.kind, 'computed');
  if (decision.kind === 'computed') object['spec']['template']['metadata']['annotations']['checksum/config'] = decision.checksum;
  return object;
}

/** Lists `cluster` in key order (namespace, then name), as the API server does. */
function listAll(listed: ListedChecksums, cluster: Cluster): void {
  for (const namespace of [...cluster.keys()].sort()) {
    for (const name of [...cluster.get(namespace)!.keys()].sort()) listed.listed({ metadata: { name, namespace }, data: cluster.get(namespace)!.get(name) }, namespace, name);
  }
  listed.finish();
}

function indexOf(objects: readonly JsonObject[]): DependencyIndex {
  const index = new DependencyIndex('checksum/config');
  for (const object of objects) index.upsert('Deployment', object);
  return index;
}

function workload(index: DependencyIndex, name: string) {
  const found = [...index.workloads()].find((candidate) => candidate.name === name);
  assert.ok(found, name);
  return found;
}

test('up to date when listed: the checksum from the listed data equals the one the workload carries; keys, missing optional ConfigMaps and namespaces are respected', async () => {
  const cluster: Cluster = new Map([
    ['a', new Map<string, Data>([['app', { level: 'info', other: 'x' }], ['env', { A: '1' }]])],
    ['b', new Map<string, Data>([['app', { level: 'debug' }]])],
  ]);
  const objects = [
    await admitted(cluster, 'a', 'whole', [{ name: 'app' }, { name: 'env' }]),
    await admitted(cluster, 'a', 'keyed', [{ name: 'app', keys: ['level'] }, { name: 'absent', optional: true }]),
    await admitted(cluster, 'b', 'other-namespace', [{ name: 'app' }]),
  ];
  // Config changed while nobody watched: only the ones that consume it are stale.
  cluster.get('a')!.set('env', { A: '2' });
  const index = indexOf(objects);
  const listed = new ListedChecksums(index);
  listAll(listed, cluster);
  assert.equal(listed.upToDate(workload(index, 'whole')), false, 'env changed after it was admitted');
  assert.equal(listed.upToDate(workload(index, 'keyed')), true);
  assert.equal(listed.upToDate(workload(index, 'other-namespace')), true);

  listed.changed('b', 'app');
  assert.equal(listed.upToDate(workload(index, 'other-namespace')), false, 'a change after the list spoils it');
});

test('a namespace whose ConfigMaps do not come together: nothing is trusted', async () => {
  const cluster: Cluster = new Map([['a', new Map([['one', { v: '1' }], ['two', { v: '2' }]])], ['b', new Map([['x', { v: '1' }]])]]);
  const index = indexOf([await admitted(cluster, 'a', 'app', [{ name: 'one' }, { name: 'two', optional: true }])]);
  const listed = new ListedChecksums(index);
  // "two" comes after another namespace: a checksum computed when "a" seemed complete would miss it.
  listed.listed({ metadata: { name: 'one', namespace: 'a' }, data: { v: '1' } }, 'a', 'one');
  listed.listed({ metadata: { name: 'x', namespace: 'b' }, data: { v: '1' } }, 'b', 'x');
  listed.listed({ metadata: { name: 'two', namespace: 'a' }, data: { v: '2' } }, 'a', 'two');
  listed.finish();
  assert.equal(listed.upToDate(workload(index, 'app')), false);
  assert.equal(listed.size, 0);
});

test('consumed data over the budget is not kept: its consumers are left to the live check', async () => {
  const big = 'v'.repeat(MAX_KEPT_BYTES / 2 + 1);
  const cluster: Cluster = new Map([['a', new Map([['big-1', { v: big }], ['big-2', { v: big }], ['small', { v: '1' }]])]]);
  const index = indexOf([
    await admitted(cluster, 'a', 'first', [{ name: 'big-1' }]),
    await admitted(cluster, 'a', 'second', [{ name: 'big-2' }]),
    await admitted(cluster, 'a', 'third', [{ name: 'small' }]),
  ]);
  const listed = new ListedChecksums(index);
  listAll(listed, cluster);
  assert.equal(listed.upToDate(workload(index, 'first')), true);
  assert.equal(listed.upToDate(workload(index, 'second')), false, 'over the budget');
  assert.equal(listed.upToDate(workload(index, 'third')), true);
});

test('never "up to date" when the webhook would compute another checksum (property)', async () => {
  const names = fc.constantFrom('one', 'two', 'three');
  const data = fc.dictionary(fc.constantFrom('k', 'l'), fc.constantFrom('1', '2'), { minKeys: 1 });
  const state = fc.dictionary(names, data);
  await fc.assert(
    fc.asyncProperty(state, state, fc.uniqueArray(names, { minLength: 1 }), async (before, after, consumed) => {
      const cluster: Cluster = new Map([['ns', new Map(Object.entries(before))]]);
      const object = await admitted(cluster, 'ns', 'app', consumed.map((name) => ({ name, optional: true })));
      const now: Cluster = new Map([['ns', new Map(Object.entries(after))]]);
      const index = indexOf([object]);
      const listed = new ListedChecksums(index);
      listAll(listed, now);
      const current = await admitted(now, 'ns', 'app', consumed.map((name) => ({ name, optional: true })));
      const same = current['spec']['template']['metadata']['annotations']['checksum/config'] === object['spec']['template']['metadata']['annotations']['checksum/config'];
      // Only consumers of a listed ConfigMap are found; one whose ConfigMaps are all absent is left to the pass.
      const anyListed = consumed.some((name) => now.get('ns')!.has(name));
      assert.equal(listed.upToDate(workload(index, 'app')), same && anyListed);
    }),
    { numRuns: 200 },
  );
});
