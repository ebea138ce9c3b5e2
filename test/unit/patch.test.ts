// The JSON Patch mutate() answers, applied with fast-json-patch (validating) to the object as sent: it must
// apply, and change exactly the checksum annotation of the pod template and the sources annotation of the
// workload, whatever the shape of the metadata around them (DESIGN section 5).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mutate } from '../../src/admission/mutate.ts';
import { escapePointerSegment, readAnnotation, setAnnotation, TEMPLATE_METADATA, WORKLOAD_METADATA } from '../../src/workload/annotations.ts';
import { complete } from '../../src/admission/review.ts';
import { checksumV1 } from '../../src/checksum/encode.ts';
import { CONTRACT } from '../../src/config.ts';
import { admissionRequest, decodePatch, FakeReader, SETTINGS } from '../support/fakes.ts';
import { applyAnswer, assertOnlyManagedChanged } from '../support/patch-helpers.ts';

const READER_DATA = { 'app-config': { data: { LOG_LEVEL: 'debug', 'app.yaml': 'port: 8080\n' } } };
const EXPECTED_CHECKSUM = checksumV1([
  { name: 'app-config', content: { data: new Map([['LOG_LEVEL', 'debug'], ['app.yaml', 'port: 8080\n']]), binaryData: new Map() } },
]);
const EXPECTED_SOURCES = 'configmap/app-config';
const STALE = 'f'.repeat(64);

function deployment(templateMetadata: unknown, workloadAnnotations?: unknown): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'shop', labels: { app: 'web' }, ...(workloadAnnotations === undefined ? {} : { annotations: workloadAnnotations }) },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: 'web' } },
      template: {
        ...(templateMetadata === undefined ? {} : { metadata: templateMetadata }),
        spec: { containers: [{ name: 'app', image: 'app:1', envFrom: [{ configMapRef: { name: 'app-config' } }], unknownFutureField: { kept: true } }] },
      },
      unknownSpecField: [1, 2, 3],
    },
    status: { replicas: 3 },
  };
}

interface Row {
  readonly label: string;
  readonly object: Record<string, unknown>;
  readonly checksumAnnotation?: string;
  /** The exact operations expected (value of the checksum op is EXPECTED_CHECKSUM). */
  readonly operations: readonly unknown[];
}

const ROWS: readonly Row[] = [
  {
    label: 'template annotations absent (labels only)',
    object: deployment({ labels: { app: 'web' } }),
    operations: [
      { op: 'add', path: '/spec/template/metadata/annotations', value: { 'checksum/config': EXPECTED_CHECKSUM } },
      { op: 'add', path: '/metadata/annotations', value: { 'config-checksum.io/sources': EXPECTED_SOURCES } },
    ],
  },
  {
    label: 'template annotations empty {}',
    object: deployment({ labels: { app: 'web' }, annotations: {} }, {}),
    operations: [
      { op: 'add', path: '/spec/template/metadata/annotations/checksum~1config', value: EXPECTED_CHECKSUM },
      { op: 'add', path: '/metadata/annotations/config-checksum.io~1sources', value: EXPECTED_SOURCES },
    ],
  },
  {
    label: 'template annotations holding other keys',
    object: deployment(
      { labels: { app: 'web' }, annotations: { 'kubectl.kubernetes.io/restartedAt': '2024-01-01T00:00:00Z', 'a~b': 'tilde', 'prometheus.io/scrape': 'true' } },
      { 'deployment.kubernetes.io/revision': '4', 'meta.helm.sh/release-name': 'web' },
    ),
    operations: [
      { op: 'add', path: '/spec/template/metadata/annotations/checksum~1config', value: EXPECTED_CHECKSUM },
      { op: 'add', path: '/metadata/annotations/config-checksum.io~1sources', value: EXPECTED_SOURCES },
    ],
  },
  {
    label: 'template annotations holding a stale checksum, workload a stale sources value',
    object: deployment({ annotations: { 'checksum/config': STALE, other: 'x' } }, { 'config-checksum.io/sources': 'configmap/old' }),
    operations: [
      { op: 'add', path: '/spec/template/metadata/annotations/checksum~1config', value: EXPECTED_CHECKSUM },
      { op: 'add', path: '/metadata/annotations/config-checksum.io~1sources', value: EXPECTED_SOURCES },
    ],
  },
  {
    label: 'template metadata absent',
    object: deployment(undefined, { keep: 'me' }),
    operations: [
      { op: 'add', path: '/spec/template/metadata', value: { annotations: { 'checksum/config': EXPECTED_CHECKSUM } } },
      { op: 'add', path: '/metadata/annotations/config-checksum.io~1sources', value: EXPECTED_SOURCES },
    ],
  },
  {
    label: 'template metadata null and workload annotations null',
    object: deployment(null, null),
    operations: [
      { op: 'add', path: '/spec/template/metadata', value: { annotations: { 'checksum/config': EXPECTED_CHECKSUM } } },
      { op: 'add', path: '/metadata/annotations', value: { 'config-checksum.io/sources': EXPECTED_SOURCES } },
    ],
  },
  {
    label: 'template annotations null',
    object: deployment({ labels: { app: 'web' }, annotations: null }),
    operations: [
      { op: 'add', path: '/spec/template/metadata/annotations', value: { 'checksum/config': EXPECTED_CHECKSUM } },
      { op: 'add', path: '/metadata/annotations', value: { 'config-checksum.io/sources': EXPECTED_SOURCES } },
    ],
  },
  {
    label: 'custom checksum annotation key needing "~" and "/" escapes',
    checksumAnnotation: 'example.com/x~1y',
    object: deployment({ annotations: { 'example.com/x/y': 'decoy', 'example.com~1x~01y': 'decoy' } }),
    operations: [
      { op: 'add', path: '/spec/template/metadata/annotations/example.com~1x~01y', value: EXPECTED_CHECKSUM },
      { op: 'add', path: '/metadata/annotations', value: { 'config-checksum.io/sources': EXPECTED_SOURCES } },
    ],
  },
  {
    label: 'correct checksum already present, only sources missing',
    object: deployment({ annotations: { 'checksum/config': EXPECTED_CHECKSUM } }),
    operations: [{ op: 'add', path: '/metadata/annotations', value: { 'config-checksum.io/sources': EXPECTED_SOURCES } }],
  },
];

describe('patch against the raw object', () => {
  for (const row of ROWS) {
    test(row.label, async () => {
      const settings = { ...SETTINGS, checksumAnnotation: row.checksumAnnotation ?? SETTINGS.checksumAnnotation };
      const before = structuredClone(row.object);
      const mutation = await mutate(admissionRequest(row.object), new FakeReader(READER_DATA), settings);
      assert.deepEqual(row.object, before, 'mutate must not modify its input');
      assert.deepEqual(decodePatch(complete('u', mutation.result).response.patch), row.operations);
      const after = applyAnswer(row.object, mutation);
      assertOnlyManagedChanged(row.object, after, settings.checksumAnnotation);
      assert.equal(readAnnotation(after, TEMPLATE_METADATA, settings.checksumAnnotation), EXPECTED_CHECKSUM);
      assert.equal(readAnnotation(after, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation), EXPECTED_SOURCES);
      // Decoys and neighbours are untouched.
      for (const [key, value] of Object.entries((row.object['spec'] as { template: { metadata?: { annotations?: Record<string, string> } } }).template.metadata?.annotations ?? {})) {
        if (key !== settings.checksumAnnotation) assert.equal(readAnnotation(after, TEMPLATE_METADATA, key), value);
      }
      // Admitting the patched object again changes nothing.
      const again = await mutate(admissionRequest(after, { operation: 'UPDATE', oldObject: after }), new FakeReader(READER_DATA), settings);
      assert.deepEqual(again.result.patch, []);
      assert.equal(again.outcome, 'unchanged');
    });
  }

  test('already correct: no patch, no patchType', async () => {
    const object = deployment({ annotations: { 'checksum/config': EXPECTED_CHECKSUM } }, { 'config-checksum.io/sources': EXPECTED_SOURCES });
    const mutation = await mutate(admissionRequest(object), new FakeReader(READER_DATA), SETTINGS);
    assert.equal(mutation.outcome, 'unchanged');
    const response = complete('u', mutation.result).response;
    assert.deepEqual(response, { uid: 'u', allowed: true });
  });
});

describe('pointer escaping and annotation helpers', () => {
  test('escapePointerSegment follows RFC 6901 (~ before /)', () => {
    const table: Array<[string, string]> = [
      ['', ''],
      ['plain', 'plain'],
      ['checksum/config', 'checksum~1config'],
      ['a~b', 'a~0b'],
      ['~1', '~01'],
      ['~0', '~00'],
      ['/~', '~1~0'],
      ['~/', '~0~1'],
      ['a//b~~', 'a~1~1b~0~0'],
    ];
    for (const [segment, escaped] of table) assert.equal(escapePointerSegment(segment), escaped, segment);
  });

  test('setAnnotation adds only the deepest missing ancestor', () => {
    assert.deepEqual(setAnnotation({}, TEMPLATE_METADATA, 'k', 'v'), { op: 'add', path: '/spec', value: { template: { metadata: { annotations: { k: 'v' } } } } });
    assert.deepEqual(setAnnotation({ spec: { template: 'x' } }, TEMPLATE_METADATA, 'k', 'v'), {
      op: 'add',
      path: '/spec/template',
      value: { metadata: { annotations: { k: 'v' } } },
    });
    assert.deepEqual(setAnnotation({ metadata: { annotations: ['x'] } }, WORKLOAD_METADATA, 'a/b', 'v'), { op: 'add', path: '/metadata/annotations', value: { 'a/b': 'v' } });
  });

  test('readAnnotation sees own string values only', () => {
    const object = { metadata: { annotations: { s: 'v', n: 1, o: {} } } };
    assert.equal(readAnnotation(object, WORKLOAD_METADATA, 's'), 'v');
    assert.equal(readAnnotation(object, WORKLOAD_METADATA, 'n'), undefined);
    assert.equal(readAnnotation(object, WORKLOAD_METADATA, 'o'), undefined);
    assert.equal(readAnnotation(object, WORKLOAD_METADATA, 'toString'), undefined);
    assert.equal(readAnnotation(object, TEMPLATE_METADATA, 's'), undefined);
    assert.equal(readAnnotation(null, WORKLOAD_METADATA, 's'), undefined);
  });
});
