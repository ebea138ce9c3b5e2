// Properties of mutate() over generated pod templates, ConfigMap sets and existing annotations:
// (a) the patch applies cleanly, (b) exactly the two managed annotations change, (c) admitting the patched
// object again yields no patch, (d) mutate never throws and every answer is allowed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import jsonpatch from 'fast-json-patch';
import { mutate, type Mutation } from '../../src/admission/mutate.ts';
import { readAnnotation, TEMPLATE_METADATA, WORKLOAD_METADATA } from '../../src/workload/annotations.ts';
import { complete } from '../../src/admission/review.ts';
import { computeChecksum, planChecksum } from '../../src/checksum/compute.ts';
import { workloadParts } from '../../src/workload/kinds.ts';
import { CONTRACT } from '../../src/config.ts';
import { admissionRequest, decodePatch, FakeReader, SETTINGS, type ConfigMapData } from '../support/fakes.ts';
import { applyAnswer, assertOnlyManagedChanged } from '../support/patch-helpers.ts';

const NAMES = ['app-config', 'env', 'shared', 'x.y', 'z-9'] as const;
const KEYS = ['LOG_LEVEL', 'a', 'b', 'config.yaml', '\uFF21', '\u{1F600}'] as const;

const cmName = fc.constantFrom(...NAMES);
const key = fc.constantFrom(...KEYS);
const optional = fc.constantFrom<Record<string, boolean>>({}, { optional: false }, { optional: true });

const envVar = fc.oneof(
  fc.record({ name: fc.constant('PLAIN'), value: fc.string({ maxLength: 5 }) }),
  fc.tuple(cmName, key, optional).map(([name, k, opt]) => ({ name: 'FROM_CM', valueFrom: { configMapKeyRef: { name, key: k, ...opt } } })),
  fc.constant({ name: 'FROM_SECRET', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }),
);
const envFrom = fc.oneof(
  fc.tuple(cmName, optional).map(([name, opt]) => ({ configMapRef: { name, ...opt } })),
  fc.constant({ secretRef: { name: 's' } }),
);
const container = fc.record(
  { name: fc.constantFrom('app', 'side'), image: fc.constant('app:1'), env: fc.array(envVar, { maxLength: 3 }), envFrom: fc.array(envFrom, { maxLength: 2 }) },
  { requiredKeys: ['name', 'image'] },
);
const configMapSource = fc
  .tuple(cmName, fc.option(fc.array(key, { minLength: 1, maxLength: 3 }), { nil: undefined }), optional)
  .map(([name, items, opt]) => ({ name, ...(items ? { items: items.map((k, i) => ({ key: k, path: `p${i}` })) } : {}), ...opt }));
const volume = fc.oneof(
  configMapSource.map((configMap) => ({ name: 'cm', configMap })),
  fc
    .array(fc.oneof(configMapSource.map((configMap) => ({ configMap })), fc.constant({ secret: { name: 's' } })), { maxLength: 3 })
    .map((sources) => ({ name: 'projected', projected: { sources } })),
  fc.constant({ name: 'scratch', emptyDir: {} }),
);

const annotationKey = fc.oneof(
  fc.constantFrom('checksum/config', 'a~b', 'x/y~1z', 'example.com/a~b', 'kubectl.kubernetes.io/restartedAt', CONTRACT.sourcesAnnotation, '~', '/'),
  fc.string({ minLength: 1, maxLength: 6 }).filter((k) => k !== '__proto__'),
);
const annotations = fc.uniqueArray(fc.tuple(annotationKey, fc.string({ maxLength: 8 })), { selector: ([k]) => k, maxLength: 4 }).map((entries) => Object.fromEntries(entries));

const templateMetadata = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.constant({}),
  fc.constant({ labels: { app: 'web' } }),
  fc.record({ labels: fc.constant({ app: 'web' }), annotations }, { requiredKeys: ['annotations'] }),
  fc.constant({ annotations: null }),
);
const workloadAnnotations = fc.oneof(
  fc.constant(undefined),
  annotations,
  fc
    .tuple(annotations, fc.array(fc.oneof(cmName, fc.constant('Bad_Name')), { maxLength: 3 }), fc.constantFrom(undefined, 'true', 'false'))
    .map(([base, extra, inject]) => ({
      ...base,
      [CONTRACT.extraConfigMapsAnnotation]: extra.join(', '),
      ...(inject === undefined ? {} : { [CONTRACT.optOutAnnotation]: inject }),
    })),
);

const template = fc.record(
  {
    metadata: templateMetadata,
    spec: fc.record(
      { initContainers: fc.array(container, { maxLength: 2 }), containers: fc.array(container, { minLength: 1, maxLength: 2 }), volumes: fc.array(volume, { maxLength: 3 }) },
      { requiredKeys: ['containers'] },
    ),
  },
  { requiredKeys: ['spec'] },
);

const workloadObject = fc.tuple(fc.constantFrom('Deployment', 'StatefulSet', 'DaemonSet'), workloadAnnotations, template).map(([kind, ann, tpl]) => {
  const spec = tpl.metadata === undefined ? { spec: tpl.spec } : tpl;
  return {
    apiVersion: 'apps/v1',
    kind,
    metadata: { name: 'web', namespace: 'shop', uid: 'x', ...(ann === undefined ? {} : { annotations: ann }) },
    spec: { selector: { matchLabels: { app: 'web' } }, template: spec },
  };
});

const configMapContent: fc.Arbitrary<ConfigMapData> = fc.record(
  {
    data: fc.uniqueArray(fc.tuple(key, fc.string({ maxLength: 6 })), { selector: ([k]) => k, maxLength: 4 }).map((e) => Object.fromEntries(e)),
    binaryData: fc
      .uniqueArray(fc.tuple(key, fc.uint8Array({ maxLength: 6 })), { selector: ([k]) => k, maxLength: 2 })
      .map((e) => Object.fromEntries(e.map(([k, bytes]) => [k, Buffer.from(bytes).toString('base64')]))),
  },
  { requiredKeys: [] },
);
type State = { state: 'missing' } | { state: 'unreadable' } | { state: 'found'; content: ConfigMapData };
const configMapState: fc.Arbitrary<State> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({ state: 'missing' as const }) },
  { weight: 1, arbitrary: fc.constant({ state: 'unreadable' as const }) },
  { weight: 7, arbitrary: configMapContent.map((content) => ({ state: 'found' as const, content })) },
);
const namespaceConfigMaps = fc.tuple(...NAMES.map(() => configMapState)).map((states) => {
  const found: Record<string, ConfigMapData> = {};
  const unreadable: Record<string, string> = {};
  NAMES.forEach((name, index) => {
    const state = states[index]!;
    if (state.state === 'found') found[name] = state.content;
    if (state.state === 'unreadable') unreadable[name] = 'HTTP 500';
  });
  return { found, unreadable };
});

/** On UPDATE: the stored object, the new one possibly with the checksum dropped or different. */
const operation = fc.oneof(
  fc.constant({ operation: 'CREATE' as const, oldChecksum: undefined }),
  fc.record({ operation: fc.constant('UPDATE' as const), oldChecksum: fc.option(fc.constantFrom('0'.repeat(64), 'old'), { nil: undefined }) }),
);

/** The checksum annotation key is configurable; keys needing "~" and "/" escapes must work too. */
const checksumKey = fc.constantFrom('checksum/config', 'checksum/config', 'example.com/a~b', 'x~1/y~0');

function oldObjectFor(object: Record<string, unknown>, oldChecksum: string | undefined, key: string): unknown {
  const old = structuredClone(object) as { spec: { template: { metadata?: { annotations?: Record<string, string> } } } };
  if (oldChecksum === undefined) return old;
  const metadata = (old.spec.template.metadata ??= {});
  metadata.annotations = { ...(typeof metadata.annotations === 'object' && metadata.annotations !== null ? metadata.annotations : {}), [key]: oldChecksum };
  return old;
}

test('mutate: patch applies, changes only the two annotations, is idempotent, never denies', async () => {
  const seen = { patched: 0, unchanged: 0, skipped: 0, 'fail-open': 0, restored: 0, warned: 0 };
  await fc.assert(
    fc.asyncProperty(workloadObject, namespaceConfigMaps, operation, fc.boolean(), fc.boolean(), checksumKey, async (generated, configMaps, op, dryRun, admittedBefore, key) => {
      const settings = { ...SETTINGS, checksumAnnotation: key };
      // Half the objects were already admitted once with this config (the common no-op UPDATE).
      const object = admittedBefore
        ? (applyAnswer(generated, await mutate(admissionRequest(generated), new FakeReader(configMaps.found), settings)) as typeof generated)
        : generated;
      const oldObject = op.operation === 'UPDATE' ? oldObjectFor(object, op.oldChecksum, key) : null;
      const request = admissionRequest(object, { operation: op.operation, oldObject, dryRun });
      const reader = new FakeReader(configMaps.found, configMaps.unreadable);
      const mutation: Mutation = await mutate(request, reader, settings);
      seen[mutation.outcome]++;
      if (mutation.result.warnings.length > 0) seen.warned++;

      // (d) every answer is a well-formed allow; warnings fit a header.
      const response = complete(request.uid, mutation.result).response;
      assert.equal(response.allowed, true);
      assert.equal(response.uid, request.uid);
      for (const warning of mutation.result.warnings) assert.ok(warning.length < 120 && /^[\x20-\x7e]*$/.test(warning), warning);
      // Reads stay in the request's namespace.
      for (const call of reader.calls) assert.equal(call.namespace, 'shop');

      // (a) + (b)
      const after = applyAnswer(object, mutation, request.uid);
      const values = assertOnlyManagedChanged(object, after, key);

      const parts = workloadParts(object)!;
      const plan = planChecksum(parts.template, parts.annotations, CONTRACT.extraConfigMapsAnnotation);
      if (mutation.outcome === 'patched' || mutation.outcome === 'unchanged') {
        const expected = computeChecksum(plan, (name) =>
          configMaps.unreadable[name] ? { state: 'unreadable', reason: 'x' } : configMaps.found[name] ? { state: 'found', ...configMaps.found[name] } as never : { state: 'missing' },
        );
        assert.equal(expected.kind, 'computed');
        if (expected.kind === 'computed') {
          assert.equal(values.checksum, expected.checksum);
          assert.equal(values.sources, expected.sources);
        }
      } else if (mutation.outcome === 'skipped') {
        // Not ours (opted out, or nothing consumed): hands off entirely.
        assert.deepEqual(mutation.result.patch, []);
      } else {
        // Fail-open: nothing may move. The checksum is the one sent, or the one running before on an
        // UPDATE that dropped it (the drop alone would roll); same for the sources annotation.
        assert.ok(mutation.result.warnings.length > 0, 'fail-open must say so');
        for (const [path, annotation, value] of [
          [TEMPLATE_METADATA, key, values.checksum],
          [WORKLOAD_METADATA, CONTRACT.sourcesAnnotation, values.sources],
        ] as const) {
          const sent = readAnnotation(object, path, annotation);
          const running = readAnnotation(oldObject, path, annotation);
          assert.equal(value, sent ?? running);
          if (sent === undefined && running !== undefined) seen.restored++;
        }
      }

      // (c) idempotence: the API server reinvokes (reinvocationPolicy: IfNeeded) or the next apply resends it.
      const second = await mutate(admissionRequest(after, { operation: 'UPDATE', oldObject: after, dryRun }), new FakeReader(configMaps.found, configMaps.unreadable), settings);
      assert.deepEqual(second.result.patch, [], 'second admission must not patch');
    }),
    { numRuns: 1000 },
  );
  // The generators must reach every branch, or the property proves little.
  for (const [outcome, count] of Object.entries(seen)) assert.ok(count > 0, `no run reached ${outcome}: ${JSON.stringify(seen)}`);
});

test('mutate never throws and never denies on arbitrary JSON', async () => {
  const junkWorkload = fc.record({
    apiVersion: fc.jsonValue(),
    metadata: fc.oneof(fc.jsonValue(), fc.record({ annotations: fc.oneof(fc.jsonValue(), annotations) })),
    spec: fc.oneof(
      fc.jsonValue(),
      fc.record({ template: fc.oneof(fc.jsonValue(), fc.record({ metadata: fc.jsonValue(), spec: fc.record({ containers: fc.jsonValue(), volumes: fc.jsonValue() }) })) }),
    ),
  });
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.jsonValue(), junkWorkload), fc.oneof(fc.jsonValue(), junkWorkload), fc.constantFrom('CREATE', 'UPDATE'), async (object, oldObject, operation) => {
      const reader = new FakeReader({ 'app-config': { data: { a: '1' } } });
      const mutation = await mutate(admissionRequest(object, { operation, oldObject, kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }), reader, SETTINGS);
      const response = complete('u', mutation.result).response;
      assert.equal(response.allowed, true);
      const operations = decodePatch(response.patch);
      if (operations.length > 0) {
        assert.doesNotThrow(() => jsonpatch.applyPatch(object, operations as jsonpatch.Operation[], true, false));
      }
    }),
    { numRuns: 300 },
  );
});
