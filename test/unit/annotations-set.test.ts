// Several annotations of one metadata set at once (src/workload/annotations.ts, setAnnotations and
// fitsAllAnnotations), as checksum/config and checksum/secret are: applied in order by a validating JSON
// Patch, the second must never replace a map the first created.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import jsonpatch from 'fast-json-patch';
import { fitsAllAnnotations, readAnnotation, setAnnotation, setAnnotations, TEMPLATE_METADATA, TOTAL_ANNOTATION_BYTES } from '../../src/workload/annotations.ts';

const ENTRIES: Array<[string, string]> = [['checksum/config', 'c'.repeat(64)], ['checksum/secret', 's'.repeat(64)]];

describe('setAnnotations', () => {
  const shapes: Array<[string, unknown]> = [
    ['no metadata', { spec: { template: { spec: {} } } }],
    ['metadata without annotations', { spec: { template: { metadata: { labels: { a: 'b' } } } } }],
    ['annotations null', { spec: { template: { metadata: { annotations: null } } } }],
    ['annotations with other keys', { spec: { template: { metadata: { annotations: { other: 'x', 'checksum/config': 'old' } } } } }],
  ];
  for (const [label, object] of shapes) {
    test(`${label}: both keys set, nothing else changed`, () => {
      const operations = setAnnotations(object, TEMPLATE_METADATA, ENTRIES);
      const after = jsonpatch.applyPatch(structuredClone(object), operations as jsonpatch.Operation[], true, false).newDocument;
      for (const [key, value] of ENTRIES) assert.equal(readAnnotation(after, TEMPLATE_METADATA, key), value);
      if (label === 'annotations with other keys') assert.equal(readAnnotation(after, TEMPLATE_METADATA, 'other'), 'x');
      assert.equal(operations.length, label === 'annotations with other keys' ? 2 : 1);
    });
  }

  test('one entry gives exactly what setAnnotation gives', () => {
    for (const [, object] of shapes) assert.deepEqual(setAnnotations(object, TEMPLATE_METADATA, [ENTRIES[0]!]), [setAnnotation(object, TEMPLATE_METADATA, ...ENTRIES[0]!)]);
  });

  test('a `__proto__` key is an own annotation in a created map', () => {
    const [operation] = setAnnotations({ spec: { template: {} } }, TEMPLATE_METADATA, [['__proto__', 'x'], ['b', 'y']]);
    const annotations = (operation!.value as { annotations: object }).annotations;
    assert.deepEqual(Object.keys(annotations), ['__proto__', 'b']);
    assert.equal(Object.getPrototypeOf(annotations), Object.prototype);
  });
});

describe('fitsAllAnnotations', () => {
  test('counts every new entry, replacing the old value of the same key', () => {
    const room = TOTAL_ANNOTATION_BYTES - ENTRIES.reduce((sum, [key, value]) => sum + key.length + value.length, 0);
    const nearlyFull = { spec: { template: { metadata: { annotations: { big: 'x'.repeat(room - 3), 'checksum/secret': 'old' } } } } };
    assert.equal(fitsAllAnnotations(nearlyFull, TEMPLATE_METADATA, ENTRIES), true);
    const full = { spec: { template: { metadata: { annotations: { big: 'x'.repeat(room - 2) } } } } };
    assert.equal(fitsAllAnnotations(full, TEMPLATE_METADATA, ENTRIES), false);
    assert.equal(fitsAllAnnotations(full, TEMPLATE_METADATA, [ENTRIES[0]!]), true);
  });
});
