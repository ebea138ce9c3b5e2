// The reference collector and the checksum built on it (DESIGN section 4), one table row per reference shape,
// crossed with where it sits (containers, initContainers, template level), optional, and the state of the
// ConfigMap (present, missing, key missing).

import { describe, test } from 'node:test';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { computeChecksum, planChecksum, type ChecksumOutcome, type ChecksumPlan } from '../../src/checksum/compute.ts';
import { workloadParts } from '../../src/workload/kinds.ts';
import { compareUtf8 } from '../../src/checksum/encode.ts';
import { collectReferences, mergeReferences } from '../../src/checksum/references.ts';
import { CONTRACT } from '../../src/config.ts';
import { lookupIn, utf8Base64, type ConfigMapData } from '../support/fakes.ts';
import { optionalField, podTemplate, type Placement, type Shape } from '../support/reference-shapes.ts';

const EXTRA = CONTRACT.extraConfigMapsAnnotation;
const CM = 'app-config';
const KEY = 'LOG_LEVEL';

const SHAPES: readonly Shape[] = [
  {
    name: 'env[].valueFrom.configMapKeyRef',
    keyed: true,
    placements: ['containers', 'initContainers'],
    canBeOptional: true,
    build: (optional, placement) => ({
      template: podTemplate(placement, {
        env: [
          { name: 'PLAIN', value: 'x' },
          { name: 'LOG', valueFrom: { configMapKeyRef: { name: CM, key: KEY, ...optionalField(optional) } } },
        ],
      }),
    }),
  },
  {
    name: 'envFrom[].configMapRef',
    keyed: false,
    placements: ['containers', 'initContainers'],
    canBeOptional: true,
    build: (optional, placement) => ({
      template: podTemplate(placement, { envFrom: [{ prefix: 'APP_', configMapRef: { name: CM, ...optionalField(optional) } }] }),
    }),
  },
  {
    name: 'volumes[].configMap without items',
    keyed: false,
    placements: ['template'],
    canBeOptional: true,
    build: (optional) => ({ template: podTemplate('template', {}, [{ name: 'config', configMap: { name: CM, ...optionalField(optional) } }]) }),
  },
  {
    name: 'volumes[].configMap with items',
    keyed: true,
    placements: ['template'],
    canBeOptional: true,
    build: (optional) => ({
      template: podTemplate('template', {}, [{ name: 'config', configMap: { name: CM, items: [{ key: KEY, path: 'level.txt' }], ...optionalField(optional) } }]),
    }),
  },
  {
    name: 'volumes[].projected.sources[].configMap without items',
    keyed: false,
    placements: ['template'],
    canBeOptional: true,
    build: (optional) => ({
      template: podTemplate('template', {}, [
        { name: 'all', projected: { sources: [{ secret: { name: 'creds' } }, { configMap: { name: CM, ...optionalField(optional) } }] } },
      ]),
    }),
  },
  {
    name: 'volumes[].projected.sources[].configMap with items',
    keyed: true,
    placements: ['template'],
    canBeOptional: true,
    build: (optional) => ({
      template: podTemplate('template', {}, [
        {
          name: 'all',
          projected: { sources: [{ downwardAPI: { items: [] } }, { configMap: { name: CM, items: [{ key: KEY, path: 'level' }], ...optionalField(optional) } }] },
        },
      ]),
    }),
  },
  {
    name: `annotation ${EXTRA}`,
    keyed: false,
    placements: ['template'],
    canBeOptional: false,
    build: () => ({ template: podTemplate('template', {}), annotations: { [EXTRA]: CM } }),
  },
];

function plan(shape: Shape, optional: boolean, placement: Placement): ChecksumPlan {
  const { template, annotations } = shape.build(optional, placement);
  return planChecksum(template, annotations, EXTRA);
}

function outcome(checksumPlan: ChecksumPlan, configMap: ConfigMapData | undefined): ChecksumOutcome {
  const configMaps = new Map(configMap ? [[CM, configMap] as const] : []);
  return computeChecksum(checksumPlan, (name) => lookupIn(configMaps, new Map(), name));
}

function checksumOf(checksumPlan: ChecksumPlan, configMap: ConfigMapData | undefined): string {
  const result = outcome(checksumPlan, configMap);
  assert.equal(result.kind, 'computed');
  return result.checksum;
}

const BASE: ConfigMapData = { data: { [KEY]: 'debug', other: 'unused' }, binaryData: { blob: utf8Base64('bytes') } };

describe('reference shapes', () => {
  for (const shape of SHAPES) {
    for (const placement of shape.placements) {
      for (const optional of shape.canBeOptional ? [false, true] : [false]) {
        const row = `${shape.name} in ${placement}${optional ? ', optional' : ''}`;

        test(`${row}: consumes ${shape.keyed ? `only ${KEY}` : 'every key'}`, () => {
          const checksumPlan = plan(shape, optional, placement);
          assert.deepEqual(checksumPlan.uses, [
            {
              name: CM,
              allKeys: !shape.keyed,
              keys: shape.keyed ? [KEY] : [],
              required: !optional,
              requiredKeys: shape.keyed && !optional ? [KEY] : [],
            },
          ]);
          assert.deepEqual(checksumPlan.problems, []);
          const present = outcome(checksumPlan, BASE);
          assert.equal(present.kind, 'computed');
          assert.deepEqual(present.problems, []);
          assert.equal(present.kind === 'computed' && present.sources, shape.keyed ? `configmap/${CM}[${KEY}]` : `configmap/${CM}`);
          assert.match(present.kind === 'computed' ? present.checksum : '', /^[0-9a-f]{64}$/);
        });

        test(`${row}: checksum follows consumed values only`, () => {
          const checksumPlan = plan(shape, optional, placement);
          const base = checksumOf(checksumPlan, BASE);
          // Same content, maps built in another order: same checksum.
          assert.equal(checksumOf(checksumPlan, { binaryData: { ...BASE.binaryData }, data: { other: 'unused', [KEY]: 'debug' } }), base);
          // A consumed value changes.
          assert.notEqual(checksumOf(checksumPlan, { ...BASE, data: { ...BASE.data, [KEY]: 'info' } }), base);
          // Changes outside the consumed keys count only when every key is consumed.
          const unconsumed: Array<[string, ConfigMapData]> = [
            ['another data value', { ...BASE, data: { ...BASE.data, other: 'changed' } }],
            ['another binaryData value', { ...BASE, binaryData: { blob: utf8Base64('other bytes') } }],
            ['a new key', { ...BASE, data: { ...BASE.data, added: 'x' } }],
            ['a removed key', { ...BASE, data: { [KEY]: 'debug' } }],
          ];
          for (const [label, changed] of unconsumed) {
            const after = checksumOf(checksumPlan, changed);
            if (shape.keyed) assert.equal(after, base, `${label} must not change the checksum`);
            else assert.notEqual(after, base, `${label} must change the checksum`);
          }
        });

        test(`${row}: data and binaryData stay distinct`, () => {
          const checksumPlan = plan(shape, optional, placement);
          const asData = checksumOf(checksumPlan, { data: { [KEY]: 'debug' } });
          const asBinary = checksumOf(checksumPlan, { binaryData: { [KEY]: utf8Base64('debug') } });
          assert.notEqual(asData, asBinary);
          // A key found in binaryData is not a missing key.
          assert.deepEqual(outcome(checksumPlan, { binaryData: { [KEY]: utf8Base64('debug') } }).problems, []);
        });

        test(`${row}: missing ConfigMap is hashed as absent, ${optional ? 'no problem' : 'a problem'}`, () => {
          const checksumPlan = plan(shape, optional, placement);
          const missing = outcome(checksumPlan, undefined);
          assert.equal(missing.kind, 'computed');
          assert.deepEqual(missing.problems, optional ? [] : [{ kind: 'missing-configmap', name: CM }]);
          assert.equal(missing.kind === 'computed' && missing.sources, `${shape.keyed ? `configmap/${CM}[${KEY}]` : `configmap/${CM}`}(missing)`);
          // The ConfigMap appearing (even empty) changes the checksum: the workload rolls.
          const absent = checksumOf(checksumPlan, undefined);
          assert.notEqual(checksumOf(checksumPlan, BASE), absent);
          assert.notEqual(checksumOf(checksumPlan, { data: {} }), absent);
          assert.notEqual(checksumOf(checksumPlan, {}), absent);
        });

        if (shape.keyed) {
          test(`${row}: missing key is hashed as absent, ${optional ? 'no problem' : 'a problem'}`, () => {
            const checksumPlan = plan(shape, optional, placement);
            const withoutKey: ConfigMapData = { data: { other: 'unused' } };
            const result = outcome(checksumPlan, withoutKey);
            assert.equal(result.kind, 'computed');
            assert.deepEqual(result.problems, optional ? [] : [{ kind: 'missing-key', name: CM, key: KEY }]);
            // The key appearing changes the checksum; an empty value is still a value.
            const before = checksumOf(checksumPlan, withoutKey);
            assert.notEqual(checksumOf(checksumPlan, { data: { other: 'unused', [KEY]: '' } }), before);
            // Without the consumed key, unrelated keys still do not count.
            assert.equal(checksumOf(checksumPlan, { data: { other: 'changed' } }), before);
          });
        }
      }
    }
  }
});

describe('merging references', () => {
  test('keys from several references to one ConfigMap are merged and read once', () => {
    const template = {
      spec: {
        initContainers: [{ name: 'i', env: [{ name: 'A', valueFrom: { configMapKeyRef: { name: CM, key: 'b' } } }] }],
        containers: [{ name: 'c', env: [{ name: 'B', valueFrom: { configMapKeyRef: { name: CM, key: 'a', optional: true } } }] }],
        volumes: [{ name: 'v', configMap: { name: CM, items: [{ key: 'c', path: 'c' }, { key: 'b', path: 'b2' }] } }],
      },
    };
    const { uses } = planChecksum(template, undefined, EXTRA);
    assert.deepEqual(uses, [{ name: CM, allKeys: false, keys: ['a', 'b', 'c'], required: true, requiredKeys: ['b', 'c'] }]);
    // The optional key "a" is missing: no problem; the required "c" is missing: one.
    const result = computeChecksum({ uses, problems: [] }, () => ({ state: 'found', data: { b: '1' }, binaryData: undefined }));
    assert.deepEqual(result.problems, [{ kind: 'missing-key', name: CM, key: 'c' }]);
    assert.equal(result.kind === 'computed' && result.sources, `configmap/${CM}[a,b,c]`);
  });

  test('one all-keys reference makes the whole ConfigMap consumed', () => {
    const template = {
      spec: {
        containers: [
          { name: 'c', env: [{ name: 'A', valueFrom: { configMapKeyRef: { name: CM, key: 'a' } } }], envFrom: [{ configMapRef: { name: CM, optional: true } }] },
        ],
      },
    };
    const checksumPlan = planChecksum(template, undefined, EXTRA);
    assert.equal(checksumPlan.uses[0]?.allKeys, true);
    const base = checksumOf(checksumPlan, { data: { a: '1', b: '2' } });
    assert.notEqual(checksumOf(checksumPlan, { data: { a: '1', b: '3' } }), base);
  });

  test('an optional reference does not make a required one optional', () => {
    const template = {
      spec: {
        containers: [{ name: 'c', envFrom: [{ configMapRef: { name: CM, optional: true } }] }],
        volumes: [{ name: 'v', configMap: { name: CM } }],
      },
    };
    const result = outcome(planChecksum(template, undefined, EXTRA), undefined);
    assert.deepEqual(result.problems, [{ kind: 'missing-configmap', name: CM }]);
  });

  test('ConfigMaps are planned in UTF-8 order and several ConfigMaps all count', () => {
    const template = {
      spec: {
        containers: [{ name: 'c', envFrom: [{ configMapRef: { name: 'zeta' } }, { configMapRef: { name: 'alpha' } }, { configMapRef: { name: 'mid.x' } }] }],
      },
    };
    const checksumPlan = planChecksum(template, undefined, EXTRA);
    assert.deepEqual(checksumPlan.uses.map((use) => use.name), ['alpha', 'mid.x', 'zeta']);
    const all: Record<string, ConfigMapData> = { alpha: { data: { a: '1' } }, 'mid.x': { data: { m: '1' } }, zeta: { data: { z: '1' } } };
    const sum = (configMaps: Record<string, ConfigMapData>): ChecksumOutcome =>
      computeChecksum(checksumPlan, (name) => lookupIn(new Map(Object.entries(configMaps)), new Map(), name));
    const base = sum(all);
    assert.equal(base.kind === 'computed' && base.sources, 'configmap/alpha, configmap/mid.x, configmap/zeta');
    const changed = sum({ ...all, zeta: { data: { z: '2' } } });
    assert.ok(base.kind === 'computed' && changed.kind === 'computed');
    assert.notEqual(changed.checksum, base.checksum);
  });

  test('compareUtf8 orders by UTF-8 bytes, not UTF-16 code units', () => {
    // U+FF21 is one UTF-16 unit above the surrogate of U+1F600, but below it in UTF-8 (EF.. < F0..).
    assert.ok('\u{1F600}' < '\uFF21');
    assert.ok(compareUtf8('\uFF21', '\u{1F600}') < 0);
    assert.deepEqual(mergeReferences([
      { name: CM, via: 'env', keys: ['\u{1F600}'], optional: false },
      { name: CM, via: 'env', keys: ['\uFF21'], optional: false },
    ])[0]?.keys, ['\uFF21', '\u{1F600}']);
  });

  test('compareUtf8 agrees in sign with a byte comparison of the UTF-8 encodings, lone surrogates included', () => {
    const text = fc.string({ unit: fc.oneof(fc.constantFrom('a', '\uD800', '\uDC00', '\uFFFD', '\uFF21'), fc.constantFrom('\u{1F600}', '\u00E9'), fc.string({ unit: 'binary', maxLength: 1 })), maxLength: 6 });
    fc.assert(fc.property(text, text, (a, b) => Math.sign(compareUtf8(a, b)) === Math.sign(Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')))), { numRuns: 2000 });
  });

  test('mergeReferences keeps the via-independent facts only', () => {
    assert.deepEqual(mergeReferences([]), []);
    assert.deepEqual(mergeReferences([{ name: 'b', via: 'volume', keys: [], optional: true }]), [
      { name: 'b', allKeys: false, keys: [], required: false, requiredKeys: [] },
    ]);
  });
});

describe(`annotation ${EXTRA}`, () => {
  test('lists names separated by commas; blanks skipped; a repeated name counts once; invalid names become problems', () => {
    const { references, problems } = collectReferences({ spec: {} }, { [EXTRA]: ' shared-a ,shared.b,, Not_Valid,-bad, shared-a' }, EXTRA);
    assert.deepEqual(references, [
      { name: 'shared-a', via: 'annotation', keys: 'all', optional: false },
      { name: 'shared.b', via: 'annotation', keys: 'all', optional: false },
    ]);
    assert.deepEqual(problems, [
      { kind: 'invalid-extra-configmap', value: 'Not_Valid' },
      { kind: 'invalid-extra-configmap', value: '-bad' },
    ]);
    assert.deepEqual(mergeReferences(references).map((use) => use.name), ['shared-a', 'shared.b']);
  });

  test('is read from the workload metadata, not from the pod template', () => {
    const parts = workloadParts({
      metadata: { annotations: { other: 'x' } },
      spec: { template: { metadata: { annotations: { [EXTRA]: 'from-template' } }, spec: {} } },
    });
    assert.ok(parts);
    assert.deepEqual(planChecksum(parts.template, parts.annotations, EXTRA).uses, []);
    const withWorkloadAnnotation = workloadParts({ metadata: { annotations: { [EXTRA]: 'from-workload' } }, spec: { template: { spec: {} } } });
    assert.ok(withWorkloadAnnotation);
    assert.deepEqual(
      planChecksum(withWorkloadAnnotation.template, withWorkloadAnnotation.annotations, EXTRA).uses.map((use) => use.name),
      ['from-workload'],
    );
  });

  test('a non-string annotation value is ignored', () => {
    assert.deepEqual(collectReferences({}, { [EXTRA]: 42 as unknown as string }, EXTRA), { references: [], problems: [] });
  });
});

describe('malformed templates', () => {
  test('wrong types and missing fields are skipped, never thrown on', () => {
    const junk: unknown[] = [
      undefined,
      null,
      'template',
      [],
      { spec: null },
      { spec: { containers: 'c', initContainers: {}, volumes: 7 } },
      { spec: { containers: [null, 1, { env: 'x', envFrom: {} }, { env: [null, { valueFrom: null }, { valueFrom: { configMapKeyRef: { name: 5, key: 'k' } } }] }] } },
      { spec: { containers: [{ env: [{ valueFrom: { configMapKeyRef: { name: 'no-key' } } }], envFrom: [{ configMapRef: {} }, { configMapRef: { name: '' } }] }] } },
      { spec: { volumes: [null, { configMap: null }, { configMap: { items: [] } }, { projected: { sources: 'x' } }, { projected: { sources: [null, { configMap: 3 }] } }] } },
    ];
    for (const template of junk) {
      assert.deepEqual(planChecksum(template, undefined, EXTRA), { uses: [], problems: [] }, JSON.stringify(template));
    }
  });

  test('malformed volume items are skipped, the valid ones kept', () => {
    const template = { spec: { volumes: [{ name: 'v', configMap: { name: CM, items: [null, { path: 'p' }, { key: 3 }, { key: 'good', path: 'g' }] } }] } };
    assert.deepEqual(planChecksum(template, undefined, EXTRA).uses, [{ name: CM, allKeys: false, keys: ['good'], required: true, requiredKeys: ['good'] }]);
  });

  test('non-string values inside data are ignored, string ones hashed', () => {
    const checksumPlan = planChecksum({ spec: { containers: [{ envFrom: [{ configMapRef: { name: CM } }] }] } }, undefined, EXTRA);
    const clean = computeChecksum(checksumPlan, () => ({ state: 'found', data: { a: '1' }, binaryData: undefined }));
    const noisy = computeChecksum(checksumPlan, () => ({ state: 'found', data: { a: '1', n: 5, o: { x: 1 } }, binaryData: 'not a map' }));
    assert.ok(clean.kind === 'computed' && noisy.kind === 'computed');
    assert.equal(noisy.checksum, clean.checksum);
  });

  test('workloadParts needs spec.template to be an object', () => {
    assert.equal(workloadParts(null), undefined);
    assert.equal(workloadParts({ spec: {} }), undefined);
    assert.equal(workloadParts({ spec: { template: [] } }), undefined);
    assert.deepEqual(workloadParts({ spec: { template: {} } }), { template: {}, annotations: undefined });
  });
});

describe('unreadable ConfigMaps', () => {
  test('any unreadable ConfigMap means no checksum at all', () => {
    const template = { spec: { containers: [{ envFrom: [{ configMapRef: { name: 'a' } }, { configMapRef: { name: 'b' } }] }] } };
    const result = computeChecksum(planChecksum(template, undefined, EXTRA), (name) =>
      name === 'b' ? { state: 'unreadable', reason: 'HTTP 403' } : { state: 'found', data: {}, binaryData: undefined },
    );
    assert.deepEqual(result, { kind: 'unreadable', unreadable: [{ name: 'b', reason: 'HTTP 403' }], problems: [] });
  });
});
