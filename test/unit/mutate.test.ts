// Admission answers (DESIGN section 5), one test per case, with a fake ConfigMapReader.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mutate, type Mutation } from '../../src/admission/mutate.ts';
import { readAnnotation, TEMPLATE_METADATA, WORKLOAD_METADATA } from '../../src/workload/annotations.ts';
import { complete } from '../../src/admission/review.ts';
import { MAX_WARNING_LENGTH, warning, WARNING_PREFIX } from '../../src/admission/warnings.ts';
import { checksumV1 } from '../../src/checksum/encode.ts';
import { CONTRACT } from '../../src/config.ts';
import { MAX_EXTRA_NAMES } from '../../src/checksum/references.ts';
import { admissionRequest, decodePatch, FakeReader, HangingReader, SETTINGS, SlowReader, workload, type ConfigMapData } from '../support/fakes.ts';
import { applyAnswer, assertOnlyManagedChanged } from '../support/patch-helpers.ts';

const GATEWAY_TEMPLATE = {
  metadata: { labels: { app: 'gateway' } },
  spec: {
    initContainers: [{ name: 'migrate', image: 'm:1', envFrom: [{ configMapRef: { name: 'gateway-apis' } }] }],
    containers: [{ name: 'gw', image: 'gw:1', env: [{ name: 'LOG_LEVEL', valueFrom: { configMapKeyRef: { name: 'gateway-env', key: 'LOG_LEVEL' } } }] }],
  },
};
const GATEWAY_CONFIG: Record<string, ConfigMapData> = {
  'gateway-apis': { data: { 'routes.yaml': 'routes: []\n' } },
  'gateway-env': { data: { LOG_LEVEL: 'info', UNUSED: 'x' } },
};
const GATEWAY_CHECKSUM = checksumV1([
  { name: 'gateway-apis', content: { data: new Map([['routes.yaml', 'routes: []\n']]), binaryData: new Map() } },
  { name: 'gateway-env', content: { data: new Map([['LOG_LEVEL', 'info']]), binaryData: new Map() } },
]);
const GATEWAY_SOURCES = 'configmap/gateway-apis, configmap/gateway-env[LOG_LEVEL]';

function gateway(extra: { annotations?: Record<string, string>; template?: Record<string, unknown>; metadata?: Record<string, unknown> } = {}): Record<string, unknown> {
  return workload({ name: 'gateway', template: extra.template ?? structuredClone(GATEWAY_TEMPLATE), ...extra });
}

function checksumAfter(object: unknown, mutation: Mutation): string | undefined {
  return readAnnotation(applyAnswer(object, mutation), TEMPLATE_METADATA, SETTINGS.checksumAnnotation);
}

function assertWarnings(mutation: Mutation, patterns: readonly RegExp[]): void {
  const warnings = mutation.result.warnings;
  assert.equal(warnings.length, patterns.length, JSON.stringify(warnings));
  patterns.forEach((pattern, index) => {
    const text = warnings[index]!;
    assert.match(text, pattern);
    assert.ok(text.length < 120, `warning longer than 119 characters: ${text}`);
    assert.ok(text.startsWith(WARNING_PREFIX));
  });
}

describe('computed', () => {
  test('CREATE: checksum of consumed keys, sources named, no warnings', async () => {
    const object = gateway();
    const reader = new FakeReader(GATEWAY_CONFIG);
    const mutation = await mutate(admissionRequest(object), reader, SETTINGS);
    assert.equal(mutation.outcome, 'patched');
    assert.equal(mutation.reason, 'computed');
    assert.equal(mutation.checksumChanged, true);
    assert.equal(mutation.configMaps, 2);
    assert.deepEqual(mutation.result.warnings, []);
    const after = applyAnswer(object, mutation);
    assert.deepEqual(assertOnlyManagedChanged(object, after, SETTINGS.checksumAnnotation), { checksum: GATEWAY_CHECKSUM, sources: GATEWAY_SOURCES });
    assert.deepEqual(reader.calls.map((call) => call.name).sort(), ['gateway-apis', 'gateway-env']);
  });

  test('reads only in the request namespace, never the one the object claims', async () => {
    const object = gateway({ metadata: { namespace: 'other' } });
    const reader = new FakeReader(GATEWAY_CONFIG);
    await mutate(admissionRequest(object, { namespace: 'shop' }), reader, SETTINGS);
    assert.ok(reader.calls.length > 0);
    for (const call of reader.calls) assert.equal(call.namespace, 'shop');
  });

  test('ConfigMaps are read in parallel', async () => {
    const reader = new SlowReader(30, GATEWAY_CONFIG);
    const mutation = await mutate(admissionRequest(gateway()), reader, SETTINGS);
    assert.equal(mutation.outcome, 'patched');
    assert.equal(reader.maxInFlight, 2);
  });

  test('UPDATE with unchanged config and the right annotations: no patch, checksum unchanged', async () => {
    const first = gateway();
    const admitted = applyAnswer(first, await mutate(admissionRequest(first), new FakeReader(GATEWAY_CONFIG), SETTINGS));
    const mutation = await mutate(admissionRequest(admitted, { operation: 'UPDATE', oldObject: admitted }), new FakeReader(GATEWAY_CONFIG), SETTINGS);
    assert.equal(mutation.outcome, 'unchanged');
    assert.equal(mutation.checksumChanged, false);
    assert.deepEqual(complete('u', mutation.result).response, { uid: 'u', allowed: true });
  });

  test('UPDATE after a consumed value changed: new checksum, counted as a change', async () => {
    const first = gateway();
    const admitted = applyAnswer(first, await mutate(admissionRequest(first), new FakeReader(GATEWAY_CONFIG), SETTINGS));
    const changed = { ...GATEWAY_CONFIG, 'gateway-env': { data: { LOG_LEVEL: 'debug', UNUSED: 'x' } } };
    const mutation = await mutate(admissionRequest(admitted, { operation: 'UPDATE', oldObject: admitted }), new FakeReader(changed), SETTINGS);
    assert.equal(mutation.outcome, 'patched');
    assert.equal(mutation.checksumChanged, true);
    const checksum = checksumAfter(admitted, mutation);
    assert.notEqual(checksum, GATEWAY_CHECKSUM);
    assert.match(checksum ?? '', /^[0-9a-f]{64}$/);
  });

  test('UPDATE after an unconsumed key changed: no patch', async () => {
    const first = gateway();
    const admitted = applyAnswer(first, await mutate(admissionRequest(first), new FakeReader(GATEWAY_CONFIG), SETTINGS));
    const changed = { ...GATEWAY_CONFIG, 'gateway-env': { data: { LOG_LEVEL: 'info', UNUSED: 'changed', NEW: 'y' } } };
    const mutation = await mutate(admissionRequest(admitted, { operation: 'UPDATE', oldObject: admitted }), new FakeReader(changed), SETTINGS);
    assert.deepEqual(mutation.result.patch, []);
    assert.equal(mutation.checksumChanged, false);
  });

  test('UPDATE that dropped the annotation while config is readable: recomputed, same value, no rollout counted', async () => {
    const first = gateway();
    const admitted = applyAnswer(first, await mutate(admissionRequest(first), new FakeReader(GATEWAY_CONFIG), SETTINGS));
    const replaced = gateway({ annotations: { [CONTRACT.sourcesAnnotation]: GATEWAY_SOURCES } });
    const mutation = await mutate(admissionRequest(replaced, { operation: 'UPDATE', oldObject: admitted }), new FakeReader(GATEWAY_CONFIG), SETTINGS);
    assert.equal(checksumAfter(replaced, mutation), GATEWAY_CHECKSUM);
    assert.equal(mutation.checksumChanged, false);
  });

  test('dryRun gives the same patch as a real write', async () => {
    const object = gateway();
    const real = await mutate(admissionRequest(object), new FakeReader(GATEWAY_CONFIG), SETTINGS);
    const dry = await mutate(admissionRequest(object, { dryRun: true }), new FakeReader(GATEWAY_CONFIG), SETTINGS);
    assert.ok(real.result.patch.length > 0);
    assert.deepEqual(dry.result, real.result);
    assert.equal(dry.outcome, real.outcome);
  });

  test('the checksum annotation key comes from the settings', async () => {
    const settings = { ...SETTINGS, checksumAnnotation: 'example.com/config-hash' };
    const object = gateway();
    const after = applyAnswer(object, await mutate(admissionRequest(object), new FakeReader(GATEWAY_CONFIG), settings));
    assert.equal(readAnnotation(after, TEMPLATE_METADATA, 'example.com/config-hash'), GATEWAY_CHECKSUM);
    assert.equal(readAnnotation(after, TEMPLATE_METADATA, 'checksum/config'), undefined);
  });

  test('extra-configmaps annotation is read and hashed', async () => {
    const object = workload({ annotations: { [CONTRACT.extraConfigMapsAnnotation]: 'shared-settings' }, template: { spec: { containers: [{ name: 'c', image: 'i' }] } } });
    const base = await mutate(admissionRequest(object), new FakeReader({ 'shared-settings': { data: { a: '1' } } }), SETTINGS);
    const changed = await mutate(admissionRequest(object), new FakeReader({ 'shared-settings': { data: { a: '2' } } }), SETTINGS);
    assert.equal(readAnnotation(applyAnswer(object, base), WORKLOAD_METADATA, CONTRACT.sourcesAnnotation), 'configmap/shared-settings');
    assert.notEqual(checksumAfter(object, base), checksumAfter(object, changed));
  });

  test('extra-configmaps: duplicates count once; a 49,665-name annotation is read only up to the cap and fails open as too many', async () => {
    const template = { spec: { containers: [{ name: 'c', image: 'i' }] } };
    const twice = workload({ annotations: { [CONTRACT.extraConfigMapsAnnotation]: 'a, b,a ,,b' }, template });
    const deduplicated = await mutate(admissionRequest(twice), new FakeReader({ a: { data: {} }, b: { data: {} } }), SETTINGS);
    assert.equal(readAnnotation(applyAnswer(twice, deduplicated), WORKLOAD_METADATA, CONTRACT.sourcesAnnotation), 'configmap/a, configmap/b');

    const huge = workload({ annotations: { [CONTRACT.extraConfigMapsAnnotation]: Array.from({ length: 49_665 }, (_, i) => `cm-${i}`).join(',') }, template });
    const reader = new FakeReader({});
    const mutation = await mutate(admissionRequest(huge), reader, { ...SETTINGS, maxConfigMaps: 1000 });
    assert.equal(mutation.outcome, 'fail-open');
    assert.equal(mutation.reason, 'too-many-configmaps');
    assert.equal(mutation.configMaps, MAX_EXTRA_NAMES, 'parsing stopped one past the highest cap');
    assert.deepEqual(reader.calls, [], 'nothing read');
  });

  test('StatefulSet and DaemonSet are handled like Deployment', async () => {
    for (const kind of ['StatefulSet', 'DaemonSet']) {
      const object = workload({ kind, template: structuredClone(GATEWAY_TEMPLATE) });
      const mutation = await mutate(admissionRequest(object), new FakeReader(GATEWAY_CONFIG), SETTINGS);
      assert.equal(checksumAfter(object, mutation), GATEWAY_CHECKSUM, kind);
    }
  });
});

describe('missing config', () => {
  test('required ConfigMap missing: allowed, hashed as absent, one short warning naming it', async () => {
    const object = gateway();
    const mutation = await mutate(admissionRequest(object), new FakeReader({ 'gateway-env': GATEWAY_CONFIG['gateway-env']! }), SETTINGS);
    assert.equal(mutation.outcome, 'patched');
    assert.equal(mutation.reason, 'computed-with-problems');
    assertWarnings(mutation, [/ConfigMap "gateway-apis" not found/]);
    assert.equal(complete('u', mutation.result).response.allowed, true);
    const after = applyAnswer(object, mutation);
    assert.equal(readAnnotation(after, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation), 'configmap/gateway-apis(missing), configmap/gateway-env[LOG_LEVEL]');
    // When the ConfigMap appears, the checksum changes (the workload rolls).
    assert.notEqual(readAnnotation(after, TEMPLATE_METADATA, SETTINGS.checksumAnnotation), GATEWAY_CHECKSUM);
  });

  test('required key missing: allowed, warning naming key and ConfigMap', async () => {
    const mutation = await mutate(admissionRequest(gateway()), new FakeReader({ ...GATEWAY_CONFIG, 'gateway-env': { data: { OTHER: '1' } } }), SETTINGS);
    assertWarnings(mutation, [/key "LOG_LEVEL" not found in ConfigMap "gateway-env"/]);
    assert.equal(mutation.outcome, 'patched');
  });

  test('optional ConfigMap and optional key missing: no warning', async () => {
    const template = {
      spec: {
        containers: [
          {
            name: 'c',
            image: 'i',
            envFrom: [{ configMapRef: { name: 'maybe', optional: true } }],
            env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'present', key: 'absent-key', optional: true } } }],
          },
        ],
        volumes: [{ name: 'v', configMap: { name: 'maybe-volume', optional: true } }],
      },
    };
    const object = workload({ template });
    const mutation = await mutate(admissionRequest(object), new FakeReader({ present: { data: { other: '1' } } }), SETTINGS);
    assert.deepEqual(mutation.result.warnings, []);
    assert.equal(mutation.outcome, 'patched');
    assert.equal(mutation.reason, 'computed');
  });

  test('warnings stay under 120 characters even for 253-character names', async () => {
    const long = `${'a'.repeat(250)}.bc`;
    const template = { spec: { containers: [{ name: 'c', image: 'i', env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: long, key: `${'k'.repeat(200)}` } } }] }] } };
    const mutation = await mutate(admissionRequest(workload({ template })), new FakeReader({ [long]: { data: {} } }), SETTINGS);
    assertWarnings(mutation, [/\.\.\.$/]);
  });

  test('invalid names in extra-configmaps: allowed with a warning, valid ones still hashed', async () => {
    const object = workload({ annotations: { [CONTRACT.extraConfigMapsAnnotation]: 'Bad_Name, good' } });
    const mutation = await mutate(admissionRequest(object), new FakeReader({ 'app-config': { data: {} }, good: { data: { a: '1' } } }), SETTINGS);
    assertWarnings(mutation, [/"Bad_Name" is not a ConfigMap name/]);
    assert.equal(readAnnotation(applyAnswer(object, mutation), WORKLOAD_METADATA, CONTRACT.sourcesAnnotation), 'configmap/app-config, configmap/good');
  });
});

describe('names no ConfigMap can have', () => {
  const HOSTILE = ['/', 'app/', '..', 'APP', 'a%2Fb', 'a/b'];
  const volumes = (names: readonly string[], optional: boolean) => names.map((name, index) => ({ name: `v${index}`, configMap: { name, ...(optional ? { optional } : {}) } }));

  test('are never read (no URL is built from them), are hashed as absent, and a required one is a warning', async () => {
    const template = { spec: { containers: [{ name: 'c', image: 'i' }], volumes: [...volumes(HOSTILE, false), { name: 'ok', configMap: { name: 'app' } }] } };
    const reader = new FakeReader({ app: { data: { a: '1' } } });
    const mutation = await mutate(admissionRequest(workload({ template })), reader, SETTINGS);
    assert.deepEqual(reader.calls.map((call) => call.name), ['app'], 'only the valid name is read');
    assert.equal(mutation.outcome, 'patched');
    assert.equal(mutation.result.warnings.length, HOSTILE.length);
    for (const text of mutation.result.warnings) assert.match(text, /is not a valid ConfigMap name; not read, hashed as absent/);
    const absent = HOSTILE.map((name) => ({ name }));
    const expected = checksumV1([...absent, { name: 'app', content: { data: new Map([['a', '1']]), binaryData: new Map() } }]);
    assert.equal(checksumAfter(workload({ template }), mutation), expected, 'the same checksum as for absent ConfigMaps of those names');
  });

  test('optional ones: hashed as absent without a warning', async () => {
    const template = { spec: { containers: [{ name: 'c', image: 'i' }], volumes: volumes(HOSTILE, true) } };
    const reader = new FakeReader({});
    const mutation = await mutate(admissionRequest(workload({ template })), reader, SETTINGS);
    assert.deepEqual(reader.calls, []);
    assert.deepEqual(mutation.result.warnings, []);
  });

  test('thousands of them: at most ten warnings, the last one counting the rest', async () => {
    const names = Array.from({ length: 2_000 }, (_, index) => `Bad_${index}`);
    const template = { spec: { containers: [{ name: 'c', image: 'i', envFrom: names.map((name) => ({ configMapRef: { name } })) }] } };
    const mutation = await mutate(admissionRequest(workload({ template })), new FakeReader({}), { ...SETTINGS, maxConfigMaps: 5_000 });
    assert.equal(mutation.result.warnings.length, 10);
    assert.match(mutation.result.warnings[9]!, /1991 more problems/);
  });
});

describe('the API server\'s 256 KiB limit on annotations', () => {
  // Keys and values in bytes: the API server refuses an object above this at validation, after the webhook.
  const LIMIT = 256 * 1024;
  const filler = (bytes: number): Record<string, string> => ({ filler: 'x'.repeat(bytes - 'filler'.length) });

  test('workload annotations near the limit: the checksum is set, the sources annotation left out, with a warning', async () => {
    const object = gateway({ annotations: filler(LIMIT - 20) });
    const mutation = await mutate(admissionRequest(object), new FakeReader(GATEWAY_CONFIG), SETTINGS);
    assert.equal(mutation.outcome, 'patched');
    assertWarnings(mutation, [/workload annotations near the 256 KiB limit; config-checksum.io\/sources not written/]);
    const after = applyAnswer(object, mutation) as { metadata: { annotations: Record<string, string> } };
    assert.equal(readAnnotation(after, TEMPLATE_METADATA, SETTINGS.checksumAnnotation), GATEWAY_CHECKSUM);
    const total = Object.entries(after.metadata.annotations).reduce((sum, [key, value]) => sum + Buffer.byteLength(key) + Buffer.byteLength(value), 0);
    assert.ok(total <= LIMIT, `stays within the limit: ${total} bytes`);
  });

  test('pod template annotations near the limit: nothing changes (fail-open), with a warning', async () => {
    const template = structuredClone(GATEWAY_TEMPLATE) as Record<string, any>;
    template['metadata']['annotations'] = filler(LIMIT - 20);
    const object = gateway({ template });
    const mutation = await mutate(admissionRequest(object), new FakeReader(GATEWAY_CONFIG), SETTINGS);
    assert.equal(mutation.outcome, 'fail-open');
    assert.equal(mutation.reason, 'annotations-full');
    assert.deepEqual(mutation.result.patch, []);
    assertWarnings(mutation, [/pod template annotations near the 256 KiB limit/]);
  });
});

describe('fail-open: the API server cannot be read', () => {
  test('read failure on CREATE: allowed, no patch, a warning', async () => {
    const mutation = await mutate(admissionRequest(gateway()), new FakeReader(GATEWAY_CONFIG, { 'gateway-env': 'HTTP 403' }), SETTINGS);
    assert.equal(mutation.outcome, 'fail-open');
    assert.equal(mutation.reason, 'configmap-unreadable');
    assert.equal(mutation.checksumChanged, false);
    assert.deepEqual(mutation.result.patch, []);
    assertWarnings(mutation, [/could not read ConfigMap "gateway-env" \(HTTP 403\); checksum left unchanged/]);
    assert.deepEqual(complete('u', mutation.result).response, { uid: 'u', allowed: true, warnings: mutation.result.warnings });
  });

  test('several failures are summarised in one warning', async () => {
    const mutation = await mutate(admissionRequest(gateway()), new FakeReader({}, { 'gateway-env': 'HTTP 500', 'gateway-apis': 'ECONNRESET' }), SETTINGS);
    assertWarnings(mutation, [/could not read ConfigMap "gateway-apis" and 1 more \(ECONNRESET\)/]);
  });

  test('read failure on UPDATE that kept the annotations: no patch, stale value kept', async () => {
    const object = gateway({ annotations: { [CONTRACT.sourcesAnnotation]: 'configmap/old' } });
    (object['spec'] as { template: { metadata: Record<string, unknown> } }).template.metadata['annotations'] = { 'checksum/config': 'stale' };
    const mutation = await mutate(admissionRequest(object, { operation: 'UPDATE', oldObject: structuredClone(object) }), new FakeReader({}, { 'gateway-env': 'timeout' }), SETTINGS);
    assert.deepEqual(mutation.result.patch, []);
    assert.equal(mutation.outcome, 'fail-open');
  });

  test('read failure on UPDATE that dropped the annotations: the old values are restored', async () => {
    const first = gateway();
    const running = applyAnswer(first, await mutate(admissionRequest(first), new FakeReader(GATEWAY_CONFIG), SETTINGS));
    const replaced = gateway(); // a full replace by a tool that does not know the annotations
    const mutation = await mutate(admissionRequest(replaced, { operation: 'UPDATE', oldObject: running }), new FakeReader({}, { 'gateway-apis': 'HTTP 500' }), SETTINGS);
    assert.equal(mutation.outcome, 'fail-open');
    assert.equal(mutation.checksumChanged, false);
    assertWarnings(mutation, [/could not read ConfigMap "gateway-apis"/]);
    const after = applyAnswer(replaced, mutation);
    assert.deepEqual(assertOnlyManagedChanged(replaced, after, SETTINGS.checksumAnnotation), { checksum: GATEWAY_CHECKSUM, sources: GATEWAY_SOURCES });
    // The template is the one that runs now: no rollout.
    assert.deepEqual((after as { spec: { template: unknown } }).spec.template, (running as { spec: { template: unknown } }).spec.template);
  });

  test('timeout: a reader that answers only when the deadline aborts gives fail-open within the deadline', async () => {
    const settings = { ...SETTINGS, configMapReadTimeoutMs: 100 };
    const reader = new HangingReader();
    const started = performance.now();
    const mutation = await mutate(admissionRequest(gateway()), reader, settings);
    const elapsed = performance.now() - started;
    assert.equal(reader.calls, 2);
    assert.equal(mutation.outcome, 'fail-open');
    assert.deepEqual(mutation.result.patch, []);
    assertWarnings(mutation, [/\(timeout\); checksum left unchanged/]);
    assert.ok(elapsed >= 90 && elapsed < 1000, `answered after ${elapsed} ms`);
  });

  test('timeout: the shorter of the request deadline and the configured read timeout applies', async () => {
    const started = performance.now();
    const mutation = await mutate(admissionRequest(gateway()), new HangingReader(), { ...SETTINGS, configMapReadTimeoutMs: 4000 }, 60);
    const elapsed = performance.now() - started;
    assert.equal(mutation.outcome, 'fail-open');
    assert.ok(elapsed < 1000, `answered after ${elapsed} ms`);
  });

  test('too many ConfigMaps: allowed, nothing read, nothing changed, a warning', async () => {
    const template = { spec: { containers: [{ name: 'c', image: 'i', envFrom: ['a', 'b', 'c'].map((name) => ({ configMapRef: { name } })) }] } };
    const reader = new FakeReader({ a: {}, b: {}, c: {} });
    const mutation = await mutate(admissionRequest(workload({ template })), reader, { ...SETTINGS, maxConfigMaps: 2 });
    assert.equal(mutation.outcome, 'fail-open');
    assert.equal(mutation.reason, 'too-many-configmaps');
    assert.equal(reader.calls.length, 0);
    assert.deepEqual(mutation.result.patch, []);
    assertWarnings(mutation, [/consumes 3 ConfigMaps, over the limit of 2/]);
    // At the limit it is computed.
    const atLimit = await mutate(admissionRequest(workload({ template })), new FakeReader({ a: {}, b: {}, c: {} }), { ...SETTINGS, maxConfigMaps: 3 });
    assert.equal(atLimit.outcome, 'patched');
  });

  test('too many ConfigMaps on UPDATE that dropped the checksum: the old value is restored', async () => {
    const template = { spec: { containers: [{ name: 'c', image: 'i', envFrom: ['a', 'b', 'c'].map((name) => ({ configMapRef: { name } })) }] } };
    const old = workload({ template: { metadata: { annotations: { 'checksum/config': 'running' } }, ...structuredClone(template) } });
    const object = workload({ template });
    const mutation = await mutate(admissionRequest(object, { operation: 'UPDATE', oldObject: old }), new FakeReader(), { ...SETTINGS, maxConfigMaps: 2 });
    assert.equal(checksumAfter(object, mutation), 'running');
  });
});

describe('not ours: allowed, no patch, nothing read', () => {
  const cases: Array<{ label: string; reason: string; run: (reader: FakeReader) => Promise<Mutation> }> = [
    {
      label: 'opted out with config-checksum.io/inject: "false"',
      reason: 'opted-out',
      run: (reader) => mutate(admissionRequest(gateway({ annotations: { [CONTRACT.optOutAnnotation]: 'false' } })), reader, SETTINGS),
    },
    {
      label: 'apps/v1 ReplicaSet (has a pod template, still not ours)',
      reason: 'not-a-workload',
      run: (reader) => mutate(admissionRequest(workload({ kind: 'ReplicaSet', template: structuredClone(GATEWAY_TEMPLATE) })), reader, SETTINGS),
    },
    {
      label: 'autoscaling/v1 Scale on deployments/scale',
      reason: 'not-a-workload',
      run: (reader) =>
        mutate(
          admissionRequest(
            { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'gateway', namespace: 'shop' }, spec: { replicas: 5 } },
            { kind: { group: 'autoscaling', version: 'v1', kind: 'Scale' }, subResource: 'scale', operation: 'UPDATE' },
          ),
          reader,
          SETTINGS,
        ),
    },
    {
      label: 'Deployment kind in another version (extensions/v1beta1)',
      reason: 'not-a-workload',
      run: (reader) => mutate(admissionRequest(gateway(), { kind: { group: 'extensions', version: 'v1beta1', kind: 'Deployment' } }), reader, SETTINGS),
    },
    {
      label: 'Deployment with subResource status',
      reason: 'subresource',
      run: (reader) => mutate(admissionRequest(gateway(), { subResource: 'status', operation: 'UPDATE' }), reader, SETTINGS),
    },
    {
      label: 'DELETE',
      reason: 'operation',
      run: (reader) => mutate(admissionRequest(gateway(), { operation: 'DELETE', oldObject: gateway() }), reader, SETTINGS),
    },
    {
      label: 'CONNECT',
      reason: 'operation',
      run: (reader) => mutate(admissionRequest(gateway(), { operation: 'CONNECT' }), reader, SETTINGS),
    },
    {
      label: 'workload with metadata.deletionTimestamp',
      reason: 'deleting',
      run: (reader) =>
        mutate(
          admissionRequest(gateway({ metadata: { deletionTimestamp: '2025-01-01T00:00:00Z', finalizers: ['example.com/keep'] } }), { operation: 'UPDATE', oldObject: gateway() }),
          reader,
          SETTINGS,
        ),
    },
    {
      label: 'request without a namespace',
      reason: 'no-namespace',
      run: (reader) => mutate(admissionRequest(gateway(), { namespace: '' }), reader, SETTINGS),
    },
    {
      label: 'object without a pod template',
      reason: 'no-pod-template',
      run: (reader) => mutate(admissionRequest({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: {} }), reader, SETTINGS),
    },
    {
      label: 'pod template consuming no ConfigMap',
      reason: 'no-configmaps',
      run: (reader) => mutate(admissionRequest(workload({ template: { spec: { containers: [{ name: 'c', image: 'i', env: [{ name: 'A', value: '1' }] }] } } })), reader, SETTINGS),
    },
  ];
  for (const { label, reason, run } of cases) {
    test(label, async () => {
      const reader = new FakeReader(GATEWAY_CONFIG);
      const mutation = await run(reader);
      assert.equal(mutation.outcome, 'skipped');
      assert.equal(mutation.reason, reason);
      assert.deepEqual(mutation.result, { patch: [], warnings: [] });
      assert.equal(reader.calls.length, 0);
      assert.deepEqual(complete('u', mutation.result).response, { uid: 'u', allowed: true });
    });
  }

  test('inject: "true" (or any other value) does not opt out', async () => {
    const mutation = await mutate(admissionRequest(gateway({ annotations: { [CONTRACT.optOutAnnotation]: 'true' } })), new FakeReader(GATEWAY_CONFIG), SETTINGS);
    assert.equal(mutation.outcome, 'patched');
  });

  test('the opt-out annotation on the pod template does not opt out', async () => {
    const template = structuredClone(GATEWAY_TEMPLATE) as Record<string, unknown> & { metadata: Record<string, unknown> };
    template.metadata['annotations'] = { [CONTRACT.optOutAnnotation]: 'false' };
    const mutation = await mutate(admissionRequest(gateway({ template })), new FakeReader(GATEWAY_CONFIG), SETTINGS);
    assert.equal(mutation.outcome, 'patched');
  });
});

describe('warning()', () => {
  test('prefixes, keeps printable ASCII only, and truncates to 119 characters', () => {
    assert.equal(warning('hello'), `${WARNING_PREFIX}hello`);
    assert.equal(warning('line\nbreak \u00e9 \u{1F600}'), `${WARNING_PREFIX}line?break ? ??`);
    const long = warning('x'.repeat(500));
    assert.equal(long.length, MAX_WARNING_LENGTH);
    assert.ok(long.endsWith('...'));
    assert.equal(warning('y'.repeat(MAX_WARNING_LENGTH - WARNING_PREFIX.length)).length, MAX_WARNING_LENGTH);
  });
});

test('decodePatch helper round-trips complete() output', () => {
  const response = complete('u', { patch: [{ op: 'add', path: '/a', value: 1 }], warnings: [] }).response;
  assert.deepEqual(decodePatch(response.patch), [{ op: 'add', path: '/a', value: 1 }]);
  assert.equal(response.patchType, 'JSONPatch');
});
