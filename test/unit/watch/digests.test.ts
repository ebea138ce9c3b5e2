import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { changedKeys, digestConfigMap as digestWith, KeySets } from '../../../src/watch/digests.ts';

const keySets = new KeySets();
const digestConfigMap = (configMap: Parameters<typeof digestWith>[0]) => digestWith(configMap, keySets);

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
  assert.ok(!digests.digests.includes(canary) && !digests.keys.some((key) => key.includes(canary)));
  assert.equal(digests.digests.length, 12);
});

test('ConfigMaps with the same keys share one key array, whatever the order of their keys', () => {
  const first = digestConfigMap(cm({ b: '1', a: '2' }, { c: 'AQI=' }));
  const second = digestConfigMap(cm({ a: 'x', b: 'y' }, { c: 'AwQ=' }));
  assert.equal(first.keys, second.keys);
  assert.deepEqual(first.keys, ['b:c', 'd:a', 'd:b']);
  assert.notEqual(digestConfigMap(cm({ a: 'x' })).keys, first.keys);
});

test('changed keys are those whose value differs, whether or not the key arrays are shared (property)', () => {
  const values = fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd', 'log.level', 'ü'), fc.constantFrom('', '1', '2', 'x'.repeat(50)));
  fc.assert(
    fc.property(values, values, values, values, fc.boolean(), (data1, binary1, data2, binary2, share) => {
      const before = digestWith(cm(data1, binary1), keySets);
      // Unshared arrays take the map comparison; shared ones the piece-by-piece one.
      const after = digestWith(cm(data2, binary2), share ? keySets : new KeySets());
      const expected = new Set<string>();
      for (const [mine, theirs] of [[data1, data2], [binary1, binary2]] as const) {
        for (const key of new Set([...Object.keys(mine), ...Object.keys(theirs)])) if (mine[key] !== theirs[key]) expected.add(key);
      }
      assert.deepEqual(changedKeys(before, after), expected);
    }),
  );
});
