import { test } from 'node:test';
import assert from 'node:assert/strict';
import { changedKeys, digestConfigMap } from '../../../src/watch/digests.ts';

const cm = (data: Record<string, string>, binaryData: Record<string, string> = {}, labels: Record<string, string> = {}) => ({ metadata: { name: 'a', labels }, data, binaryData });

test('metadata-only changes change no key', () => {
  assert.deepEqual(changedKeys(digestConfigMap(cm({ k: 'v' })), digestConfigMap(cm({ k: 'v' }, {}, { new: 'label' }))), new Set());
});

test('changed, added and removed keys are reported, and only those', () => {
  const before = digestConfigMap(cm({ same: '1', changed: '1', removed: '1' }));
  const after = digestConfigMap(cm({ same: '1', changed: '2', added: '1' }));
  assert.deepEqual(changedKeys(before, after), new Set(['changed', 'removed', 'added']));
});

test('moving a key between data and binaryData is a change', () => {
  const asData = digestConfigMap(cm({ k: 'AQI=' }));
  const asBinary = digestConfigMap(cm({}, { k: 'AQI=' }));
  assert.deepEqual(changedKeys(asData, asBinary), new Set(['k']));
});

test('digests hold no value', () => {
  const canary = 'canary-value-7f3a91';
  const digests = digestConfigMap(cm({ k: canary }));
  assert.ok(![...digests.values()].some((digest) => digest.includes(canary)));
  assert.equal([...digests.values()][0]!.length, 22);
});
