import { test } from 'node:test';
import assert from 'node:assert/strict';
import { consumesAny, DependencyIndex } from '../../../src/watch/dependents.ts';

const deployment = (name: string, template: object, annotations: Record<string, string> = {}) => ({
  metadata: { name, namespace: 'ns', annotations },
  spec: { template },
});

test('indexes consumers with the keys they use, and forgets them', () => {
  const index = new DependencyIndex('checksum/config');
  index.upsert('Deployment', deployment('keys', {
    metadata: { annotations: { 'checksum/config': 'x' } },
    spec: { containers: [{ name: 'c', env: [{ name: 'A', valueFrom: { configMapKeyRef: { name: 'cm', key: 'a' } } }] }] },
  }));
  index.upsert('StatefulSet', deployment('all', { spec: { volumes: [{ name: 'v', configMap: { name: 'cm' } }] } }));
  const consumers = index.consumersOf('ns', 'cm');
  assert.equal(consumers.length, 2);
  const keyed = consumers.find((c) => c.workload.name === 'keys')!;
  assert.equal(keyed.workload.checksum, 'x');
  assert.equal(consumesAny(keyed.use, new Set(['b'])), false);
  assert.equal(consumesAny(keyed.use, new Set(['a'])), true);
  const all = consumers.find((c) => c.workload.name === 'all')!;
  assert.equal(all.workload.checksum, undefined);
  assert.equal(consumesAny(all.use, new Set(['anything'])), true);

  index.remove({ kind: 'Deployment', namespace: 'ns', name: 'keys' });
  assert.deepEqual(index.consumersOf('ns', 'cm').map((c) => c.workload.name), ['all']);
  assert.equal(index.consumersOf('other-ns', 'cm').length, 0);
});

test('an update that stops consuming a ConfigMap removes the edge', () => {
  const index = new DependencyIndex('checksum/config');
  index.upsert('Deployment', deployment('d', { spec: { volumes: [{ name: 'v', configMap: { name: 'old' } }] } }));
  index.upsert('Deployment', deployment('d', { spec: { volumes: [{ name: 'v', configMap: { name: 'new' } }] } }));
  assert.equal(index.consumersOf('ns', 'old').length, 0);
  assert.equal(index.consumersOf('ns', 'new').length, 1);
  assert.equal(index.size, 1);
});

test('the extra-configmaps annotation counts as consuming all keys', () => {
  const index = new DependencyIndex('checksum/config');
  index.upsert('DaemonSet', deployment('d', { spec: { containers: [{ name: 'c' }] } }, { 'config-checksum.io/extra-configmaps': 'extra' }));
  assert.equal(index.consumersOf('ns', 'extra')[0]?.use.allKeys, true);
});
