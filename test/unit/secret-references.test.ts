// Secrets as a second source kind of the same core (DESIGN section 4, "Secrets"): one table row per way a
// pod template consumes a Secret, crossed with where it sits and optional, and the state of the Secret
// (present, missing, key missing); then what is not a Secret reference, the extra-secrets annotation, and
// the sources annotation with both kinds.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { computeChecksums, planChecksum, type ChecksumPlan, type ChecksumsOutcome, type SourceLookup } from '../../src/checksum/compute.ts';
import { secretChecksumValue } from '../../src/checksum/encode.ts';
import { collectReferences, MAX_EXTRA_NAMES, SECRET_SOURCE } from '../../src/checksum/references.ts';
import { CONTRACT } from '../../src/config.ts';
import { lookupIn, secretData, TEST_HASH_KEY, type ConfigMapData } from '../support/fakes.ts';
import { optionalField, podTemplate, type Placement, type Shape } from '../support/reference-shapes.ts';

const EXTRA = CONTRACT.extraSecretsAnnotation;
const SECRET = 'db-credentials';
const KEY = 'password';

const SHAPES: readonly Shape[] = [
  {
    name: 'env[].valueFrom.secretKeyRef',
    keyed: true,
    placements: ['containers', 'initContainers'],
    canBeOptional: true,
    build: (optional, placement) => ({ template: podTemplate(placement, { env: [{ name: 'PASSWORD', valueFrom: { secretKeyRef: { name: SECRET, key: KEY, ...optionalField(optional) } } }] }) }),
  },
  {
    name: 'envFrom[].secretRef',
    keyed: false,
    placements: ['containers', 'initContainers'],
    canBeOptional: true,
    build: (optional, placement) => ({ template: podTemplate(placement, { envFrom: [{ prefix: 'DB_', secretRef: { name: SECRET, ...optionalField(optional) } }] }) }),
  },
  {
    name: 'volumes[].secret (secretName) without items',
    keyed: false,
    placements: ['template'],
    canBeOptional: true,
    build: (optional) => ({ template: podTemplate('template', {}, [{ name: 'creds', secret: { secretName: SECRET, defaultMode: 0o400, ...optionalField(optional) } }]) }),
  },
  {
    name: 'volumes[].secret (secretName) with items',
    keyed: true,
    placements: ['template'],
    canBeOptional: true,
    build: (optional) => ({ template: podTemplate('template', {}, [{ name: 'creds', secret: { secretName: SECRET, items: [{ key: KEY, path: 'pw' }], ...optionalField(optional) } }]) }),
  },
  {
    name: 'volumes[].projected.sources[].secret without items',
    keyed: false,
    placements: ['template'],
    canBeOptional: true,
    build: (optional) => ({ template: podTemplate('template', {}, [{ name: 'all', projected: { sources: [{ configMap: { name: 'not-a-secret' } }, { secret: { name: SECRET, ...optionalField(optional) } }] } }]) }),
  },
  {
    name: 'volumes[].projected.sources[].secret with items',
    keyed: true,
    placements: ['template'],
    canBeOptional: true,
    build: (optional) => ({ template: podTemplate('template', {}, [{ name: 'all', projected: { sources: [{ secret: { name: SECRET, items: [{ key: KEY, path: 'pw' }], ...optionalField(optional) } }] } }]) }),
  },
  {
    name: `annotation ${EXTRA}`,
    keyed: false,
    placements: ['template'],
    canBeOptional: false,
    build: () => ({ template: podTemplate('template', {}), annotations: { [EXTRA]: SECRET } }),
  },
];

const NO_CONFIGMAPS = { plan: { uses: [], problems: [] }, lookup: (): SourceLookup => ({ state: 'missing' }) };

function plan(shape: Shape, optional: boolean, placement: Placement): ChecksumPlan {
  const { template, annotations } = shape.build(optional, placement);
  return planChecksum(template, annotations, EXTRA, SECRET_SOURCE);
}

function outcome(secretPlan: ChecksumPlan, secret: ConfigMapData | undefined, key = TEST_HASH_KEY): ChecksumsOutcome {
  const secrets = new Map(secret ? [[SECRET, secret] as const] : []);
  return computeChecksums(NO_CONFIGMAPS, { plan: secretPlan, key, lookup: (name) => lookupIn(secrets, new Map(), name) });
}

function checksumOf(secretPlan: ChecksumPlan, secret: ConfigMapData | undefined, key = TEST_HASH_KEY): string {
  const result = outcome(secretPlan, secret, key);
  assert.ok(result.kind === 'computed' && result.secretChecksum !== undefined);
  return result.secretChecksum;
}

const BASE = secretData({ [KEY]: 'hunter2', username: 'app' });

describe('Secret reference shapes', () => {
  for (const shape of SHAPES) {
    for (const placement of shape.placements) {
      for (const optional of shape.canBeOptional ? [false, true] : [false]) {
        const row = `${shape.name} in ${placement}${optional ? ', optional' : ''}`;

        test(`${row}: consumes ${shape.keyed ? `only ${KEY}` : 'every key'}, hashed keyed from the decoded values`, () => {
          const secretPlan = plan(shape, optional, placement);
          assert.deepEqual(secretPlan.uses, [{ name: SECRET, allKeys: !shape.keyed, keys: shape.keyed ? [KEY] : [], required: !optional, requiredKeys: shape.keyed && !optional ? [KEY] : [] }]);
          const present = outcome(secretPlan, BASE);
          assert.ok(present.kind === 'computed');
          assert.deepEqual(present.problems, []);
          assert.equal(present.sources, shape.keyed ? `secret/${SECRET}[${KEY}]` : `secret/${SECRET}`);
          assert.equal(present.checksum, undefined, 'no ConfigMap: no checksum/config');
          const consumed = shape.keyed ? [[KEY, 'hunter2']] : [[KEY, 'hunter2'], ['username', 'app']];
          const expected = secretChecksumValue(TEST_HASH_KEY, [{ name: SECRET, content: { data: new Map(), binaryData: new Map(consumed.map(([key, value]) => [key!, Buffer.from(value!)])) } }]);
          assert.equal(present.secretChecksum, expected);
        });

        test(`${row}: the checksum follows consumed values only`, () => {
          const secretPlan = plan(shape, optional, placement);
          const base = checksumOf(secretPlan, BASE);
          assert.notEqual(checksumOf(secretPlan, secretData({ [KEY]: 'hunter3', username: 'app' })), base);
          const other = checksumOf(secretPlan, secretData({ [KEY]: 'hunter2', username: 'admin' }));
          if (shape.keyed) assert.equal(other, base, 'an unconsumed key must not change the checksum');
          else assert.notEqual(other, base);
          assert.notEqual(checksumOf(secretPlan, BASE, Uint8Array.from(TEST_HASH_KEY, (byte) => byte ^ 1)), base, 'another key, another checksum');
        });

        test(`${row}: a missing Secret is hashed as absent, ${optional ? 'no problem' : 'a problem'}`, () => {
          const secretPlan = plan(shape, optional, placement);
          const missing = outcome(secretPlan, undefined);
          assert.ok(missing.kind === 'computed');
          assert.deepEqual(missing.problems, optional ? [] : [{ kind: 'missing-secret', name: SECRET }]);
          assert.equal(missing.sources, `${shape.keyed ? `secret/${SECRET}[${KEY}]` : `secret/${SECRET}`}(missing)`);
          assert.equal(missing.secretChecksum, secretChecksumValue(TEST_HASH_KEY, [{ name: SECRET }]));
          assert.notEqual(checksumOf(secretPlan, BASE), missing.secretChecksum, 'the Secret appearing rolls');
        });

        if (shape.keyed) {
          test(`${row}: a missing key is hashed as absent, ${optional ? 'no problem' : 'a problem'}`, () => {
            const result = outcome(plan(shape, optional, placement), secretData({ username: 'app' }));
            assert.deepEqual(result.problems, optional ? [] : [{ kind: 'missing-secret-key', name: SECRET, key: KEY }]);
          });
        }
      }
    }
  }
});

describe('what is not a Secret reference', () => {
  test('imagePullSecrets, serviceAccount tokens and ConfigMap fields are not collected as Secrets', () => {
    const template = {
      spec: {
        imagePullSecrets: [{ name: 'registry' }],
        serviceAccountName: 'app',
        containers: [{ name: 'app', envFrom: [{ configMapRef: { name: 'cm' } }], env: [{ name: 'A', valueFrom: { configMapKeyRef: { name: 'cm', key: 'a' } } }] }],
        volumes: [{ name: 'v', configMap: { name: 'cm' } }, { name: 't', projected: { sources: [{ serviceAccountToken: { path: 'token' } }, { configMap: { name: 'cm' } }] } }],
      },
    };
    assert.deepEqual(collectReferences(template, undefined, EXTRA, SECRET_SOURCE), { references: [], problems: [] });
    assert.deepEqual(planChecksum(template, undefined, CONTRACT.extraConfigMapsAnnotation).uses.map((use) => use.name), ['cm']);
  });

  test('Secret fields are not ConfigMap references: the ConfigMap plan of a Secret-only template is empty', () => {
    const { template } = SHAPES[2]!.build(false, 'template');
    const withAll = { spec: { ...(template['spec'] as object), containers: [{ name: 'app', envFrom: [{ secretRef: { name: 'a' } }], env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'b', key: 'k' } } }] }] } };
    assert.deepEqual(planChecksum(withAll, { [EXTRA]: 'c' }, CONTRACT.extraConfigMapsAnnotation).uses, []);
    assert.deepEqual(planChecksum(withAll, { [EXTRA]: 'c' }, EXTRA, SECRET_SOURCE).uses.map((use) => use.name), ['a', 'b', 'c', SECRET]);
  });

  test('a volume names its Secret by secretName: a `name` field there is not a Secret name', () => {
    const template = { spec: { volumes: [{ name: 'creds', secret: { name: 'wrong-field' } }] } };
    assert.deepEqual(planChecksum(template, undefined, EXTRA, SECRET_SOURCE).uses, []);
  });
});

describe('names no Secret can have', () => {
  for (const name of ['/', 'a/b', 'UPPER', 'a%2Fb', '-leading', 'x'.repeat(254)]) {
    test(`"${name.slice(0, 20)}": never looked up, hashed as absent, a problem only when required`, () => {
      const required = planChecksum({ spec: { volumes: [{ name: 'v', secret: { secretName: name } }] } }, undefined, EXTRA, SECRET_SOURCE);
      const optional = planChecksum({ spec: { volumes: [{ name: 'v', secret: { secretName: name, optional: true } }] } }, undefined, EXTRA, SECRET_SOURCE);
      const lookups: string[] = [];
      const run = (secretPlan: ChecksumPlan) => computeChecksums(NO_CONFIGMAPS, { plan: secretPlan, key: TEST_HASH_KEY, lookup: (looked) => (lookups.push(looked), { state: 'found', data: {}, binaryData: undefined }) });
      const requiredOutcome = run(required);
      assert.deepEqual(requiredOutcome.problems, [{ kind: 'invalid-secret-name', name }]);
      assert.deepEqual(run(optional).problems, []);
      assert.deepEqual(lookups, []);
      assert.equal(requiredOutcome.kind === 'computed' && requiredOutcome.secretChecksum, secretChecksumValue(TEST_HASH_KEY, [{ name }]));
    });
  }
});

describe(`annotation ${EXTRA}`, () => {
  test('parsed like extra-configmaps: commas, blanks skipped, repeats once, invalid names become problems of their own kind', () => {
    const { references, problems } = collectReferences({ spec: {} }, { [EXTRA]: ' tls ,db.creds,, Not_Valid,-bad, tls', [CONTRACT.extraConfigMapsAnnotation]: 'cm' }, EXTRA, SECRET_SOURCE);
    assert.deepEqual(references.map((ref) => ref.name), ['tls', 'db.creds']);
    assert.ok(references.every((ref) => ref.keys === 'all' && !ref.optional && ref.via === 'annotation'));
    assert.deepEqual(problems, [
      { kind: 'invalid-extra-secret', value: 'Not_Valid' },
      { kind: 'invalid-extra-secret', value: '-bad' },
    ]);
  });

  test(`reads at most ${MAX_EXTRA_NAMES} distinct names, as extra-configmaps does`, () => {
    const names = Array.from({ length: MAX_EXTRA_NAMES + 500 }, (_, index) => `s-${index}`);
    const { references } = collectReferences({ spec: {} }, { [EXTRA]: names.join(',') }, EXTRA, SECRET_SOURCE);
    assert.equal(references.length, MAX_EXTRA_NAMES);
  });

  test('a name with a namespace (ns/name) is not read across namespaces: a problem, never a reference', () => {
    const { references, problems } = collectReferences({ spec: {} }, { [EXTRA]: 'other-ns/db' }, EXTRA, SECRET_SOURCE);
    assert.deepEqual(references, []);
    assert.deepEqual(problems, [{ kind: 'invalid-extra-secret', value: 'other-ns/db' }]);
  });
});

describe('ConfigMaps and Secrets together', () => {
  const template = {
    spec: {
      containers: [{ name: 'app', envFrom: [{ configMapRef: { name: 'app-config' } }, { secretRef: { name: 'db' } }], env: [{ name: 'P', valueFrom: { secretKeyRef: { name: 'api', key: 'token' } } }] }],
    },
  };
  const configMaps = { plan: planChecksum(template, undefined, CONTRACT.extraConfigMapsAnnotation), lookup: (): SourceLookup => ({ state: 'found', data: { a: '1' }, binaryData: undefined }) };
  const secretPlan = planChecksum(template, undefined, EXTRA, SECRET_SOURCE);
  const secrets = new Map([['db', secretData({ password: 'x' })], ['api', secretData({ token: 'y' })]]);
  const secretInput = { plan: secretPlan, key: TEST_HASH_KEY, lookup: (name: string) => lookupIn(secrets, new Map(), name) };

  test('sources name ConfigMaps first, then Secrets; checksum/config is the ConfigMaps\' alone', () => {
    const both = computeChecksums(configMaps, secretInput);
    const alone = computeChecksums(configMaps);
    assert.ok(both.kind === 'computed' && alone.kind === 'computed');
    assert.equal(both.sources, 'configmap/app-config, secret/api[token], secret/db');
    assert.equal(both.checksum, alone.checksum);
    assert.equal(alone.secretChecksum, undefined);
    assert.equal(alone.sources, 'configmap/app-config');
  });

  test('an unreadable ConfigMap is reported before an unreadable Secret; an unreadable Secret alone names the Secret', () => {
    const unreadableSecret = { ...secretInput, lookup: (name: string): SourceLookup => (name === 'db' ? { state: 'unreadable', reason: 'HTTP 403' } : lookupIn(secrets, new Map(), name)) };
    const secretOnly = computeChecksums(configMaps, unreadableSecret);
    assert.deepEqual(secretOnly.kind === 'unreadable' && [secretOnly.source, secretOnly.unreadable], ['secret', [{ name: 'db', reason: 'HTTP 403' }]]);
    const both = computeChecksums({ ...configMaps, lookup: () => ({ state: 'unreadable', reason: 'timeout' }) }, unreadableSecret);
    assert.deepEqual(both.kind === 'unreadable' && [both.source, both.unreadable], ['configmap', [{ name: 'app-config', reason: 'timeout' }]]);
  });

  test('the sources annotation stays within its bound with both kinds, cut at an entry and counted', () => {
    const many = { spec: { containers: [{ name: 'app', envFrom: Array.from({ length: 60 }, (_, i) => ({ configMapRef: { name: `config-map-with-a-long-name-${i}` } })).concat(Array.from({ length: 40 }, (_, i) => ({ secretRef: { name: `secret-with-a-long-name-${i}` } })) as never[]) }] } };
    const result = computeChecksums(
      { plan: planChecksum(many, undefined, CONTRACT.extraConfigMapsAnnotation), lookup: () => ({ state: 'missing' }) },
      { plan: planChecksum(many, undefined, EXTRA, SECRET_SOURCE), key: TEST_HASH_KEY, lookup: () => ({ state: 'missing' }) },
    );
    assert.ok(result.kind === 'computed');
    assert.ok(result.sources.length <= 2048, String(result.sources.length));
    assert.match(result.sources, / \.\.\. \(60 ConfigMaps and 40 Secrets, list cut\)$/);
  });
});
