// The fuzz property of the admission endpoint over real TLS, shared by the bounded CI test
// (test/http/review-fuzz.test.ts) and the longer command (test/fuzz/run.ts).
//
// Property: whatever bytes arrive at POST /mutate, the answer is either a valid AdmissionReview (uid
// echoed, allowed true, patchType exactly when a patch, the patch applies to the object sent and touches
// only the two managed annotations, warnings short printable ASCII) or an HTTP 4xx with a JSON message;
// never a 5xx, a reset or a hang; ConfigMaps are read only in the request's namespace; no ConfigMap value
// appears in any answer or log line.

import assert from 'node:assert/strict';
import https from 'node:https';
import fc from 'fast-check';
import jsonpatch from 'fast-json-patch';
import { BODY_LIMIT_BYTES } from '../../src/server/app.ts';
import { startServer, type RunningServer } from '../../src/server/https.ts';
import { CONTRACT } from '../../src/config.ts';
import { CANARY, RecordingReader, settledHeap, traceParts, type ScanningLog } from '../support/observation.ts';
import type { Metrics } from '../../src/telemetry/metrics.ts';
import { type HttpsAnswer, httpsCall } from '../support/https.ts';
import { type TlsMaterial, writeTls } from '../support/tls.ts';

export interface FuzzInput {
  readonly category: string;
  readonly body: Buffer;
  readonly contentType: string | undefined;
}

/** ConfigMaps of the fake namespace: every value carries the canary. */
export const FUZZ_CONFIGMAPS = {
  'app-config': { data: { LOG_LEVEL: `debug-${CANARY}`, 'app.yaml': `secret: ${CANARY}` }, binaryData: { blob: Buffer.from(CANARY).toString('base64') } },
  env: { data: { a: CANARY, b: `${CANARY}\n${CANARY}` } },
  'ünï-cödé': { data: { 'ключ': CANARY } },
};
const UNREADABLE = { broken: 'HTTP 500' };

const NAMES = ['app-config', 'env', 'ünï-cödé', 'broken', 'missing', 'x.y'];
const KEYS = ['LOG_LEVEL', 'app.yaml', 'a', 'b', 'ключ', 'nope', '\u{1F600}'];

// Strings of every kind: full Unicode (lone surrogates included), control characters, long ones.
// (fast-check builds an ~80 MiB code-point table for unit 'binary' once; it is part of the heap baseline.)
const anyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom('', ' ', '\u0000', '\u202e', '\ud800', '\udfff', 'a/b~c', '~1', '__proto__', 'constructor', 'x'.repeat(300)),
);
const anyJson = fc.oneof(fc.jsonValue({ maxDepth: 3 }), anyString);
const name = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...NAMES) }, { weight: 1, arbitrary: anyString });
const key = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...KEYS) }, { weight: 1, arbitrary: anyString });

const envVar = fc.oneof(
  fc.record({ name: fc.constant('PLAIN'), value: anyString }),
  fc.tuple(name, key, fc.boolean()).map(([cm, k, optional]) => ({ name: 'FROM_CM', valueFrom: { configMapKeyRef: { name: cm, key: k, optional } } })),
);
const container = fc.record({
  name: fc.constantFrom('app', 'side'),
  image: fc.constant('registry.invalid/app:1'),
  env: fc.array(envVar, { maxLength: 3 }),
  envFrom: fc.array(name.map((cm) => ({ configMapRef: { name: cm } })), { maxLength: 2 }),
});
const volume = fc.oneof(
  fc.tuple(name, fc.option(fc.array(key, { minLength: 1, maxLength: 2 }), { nil: undefined })).map(([cm, items]) => ({
    name: 'cm',
    configMap: { name: cm, ...(items ? { items: items.map((k, i) => ({ key: k, path: `p${i}` })) } : {}) },
  })),
  fc.array(name, { maxLength: 2 }).map((names) => ({ name: 'projected', projected: { sources: names.map((cm) => ({ configMap: { name: cm } })) } })),
);
const annotations = fc.dictionary(fc.oneof(fc.constantFrom('checksum/config', CONTRACT.sourcesAnnotation, CONTRACT.extraConfigMapsAnnotation, CONTRACT.optOutAnnotation), anyString), anyString, { maxKeys: 3 });

const workloadObject = fc
  .record({
    kind: fc.constantFrom('Deployment', 'StatefulSet', 'DaemonSet'),
    name: fc.oneof(fc.constant('web'), anyString),
    annotations: fc.option(annotations, { nil: undefined }),
    templateAnnotations: fc.option(annotations, { nil: undefined }),
    initContainers: fc.array(container, { maxLength: 1 }),
    containers: fc.array(container, { minLength: 1, maxLength: 2 }),
    volumes: fc.array(volume, { maxLength: 2 }),
  })
  .map((w) => ({
    apiVersion: 'apps/v1',
    kind: w.kind,
    metadata: { name: w.name, namespace: 'shop', ...(w.annotations ? { annotations: w.annotations } : {}) },
    spec: {
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' }, ...(w.templateAnnotations ? { annotations: w.templateAnnotations } : {}) },
        spec: { initContainers: w.initContainers, containers: w.containers, volumes: w.volumes },
      },
    },
  }));

type Json = unknown;

/** Every path (as keys) of a JSON value, for replacing one node by something of the wrong type. */
function paths(value: Json, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(prefix);
  if (Array.isArray(value)) value.forEach((item, index) => paths(item, [...prefix, index], out));
  else if (typeof value === 'object' && value !== null) for (const k of Object.keys(value)) paths((value as Record<string, Json>)[k], [...prefix, k], out);
  return out;
}

function replaceAt(root: Json, path: Array<string | number>, replacement: Json): Json {
  if (path.length === 0) return replacement;
  const copy = structuredClone(root) as Record<string | number, Json>;
  let node = copy;
  for (const segment of path.slice(0, -1)) node = node[segment] as Record<string | number, Json>;
  Object.defineProperty(node, path.at(-1)!, { value: replacement, enumerable: true, writable: true, configurable: true });
  return copy;
}

/** Replaces `count` random nodes of `value` (chosen by index into its path list) with other JSON. */
const corrupted = (value: fc.Arbitrary<Json>): fc.Arbitrary<Json> =>
  fc.tuple(value, fc.array(fc.tuple(fc.nat(), anyJson), { minLength: 1, maxLength: 4 })).map(([original, edits]) => {
    let current = original;
    for (const [index, replacement] of edits) {
      const all = paths(current);
      current = replaceAt(current, all[index % all.length]!, replacement);
    }
    return current;
  });

const operation = fc.oneof({ weight: 8, arbitrary: fc.constantFrom('CREATE', 'UPDATE') }, { weight: 1, arbitrary: fc.constantFrom('DELETE', 'CONNECT', '') });
const gvk = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('Deployment', 'StatefulSet', 'DaemonSet').map((kind) => ({ group: 'apps', version: 'v1', kind })) },
  { weight: 1, arbitrary: fc.record({ group: anyString, version: anyString, kind: anyString }) },
);

const review = fc
  .record({
    uid: fc.oneof({ weight: 4, arbitrary: fc.uuid() }, { weight: 1, arbitrary: anyString }),
    kind: gvk,
    namespace: fc.oneof({ weight: 4, arbitrary: fc.constant('shop') }, { weight: 1, arbitrary: anyString }),
    operation,
    subResource: fc.option(fc.constantFrom('scale', 'status', ''), { nil: undefined }),
    dryRun: fc.boolean(),
    object: workloadObject,
    oldObject: fc.option(workloadObject, { nil: null }),
  })
  .map((r) => ({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: r.uid,
      kind: r.kind,
      resource: { group: 'apps', version: 'v1', resource: 'deployments' },
      ...(r.subResource === undefined ? {} : { subResource: r.subResource }),
      name: (r.object.metadata as { name: string }).name,
      namespace: r.namespace,
      operation: r.operation,
      userInfo: { username: 'alice' },
      object: r.object,
      oldObject: r.oldObject,
      dryRun: r.dryRun,
    },
  }));

const json = (value: Json): Buffer => Buffer.from(JSON.stringify(value) ?? 'null');
const JSON_TYPE = 'application/json';

/** Nesting `depth` deep: arrays or objects, on their own or in place of a node of a review. */
const deep = fc.tuple(fc.constantFrom(100, 1_000, 2_000, 10_000, 100_000), fc.boolean()).map(([depth, arrays]) =>
  arrays ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`,
);
const PLACEHOLDER = '"__fuzz_placeholder__"';

export const fuzzInput: fc.Arbitrary<FuzzInput> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => ({ category: 'random-json', body: json(v), contentType: JSON_TYPE })) },
  { weight: 6, arbitrary: review.map((v) => ({ category: 'review', body: json(v), contentType: JSON_TYPE })) },
  { weight: 6, arbitrary: corrupted(review).map((v) => ({ category: 'wrong-types', body: json(v), contentType: JSON_TYPE })) },
  {
    weight: 6,
    arbitrary: fc
      .tuple(review, fc.array(fc.tuple(fc.nat(), anyJson), { minLength: 1, maxLength: 4 }))
      .map(([r, edits]) => {
        // Wrong types in the pod template specifically (the part the checksum code walks).
        let template: Json = r.request.object.spec.template;
        for (const [index, replacement] of edits) {
          const all = paths(template);
          template = replaceAt(template, all[index % all.length]!, replacement);
        }
        return { ...r, request: { ...r.request, object: { ...r.request.object, spec: { ...r.request.object.spec, template } } } };
      })
      .map((v) => ({ category: 'template-wrong-types', body: json(v), contentType: JSON_TYPE })),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(review, fc.double({ min: 0, max: 1, noNaN: true })).map(([v, cut]) => {
      const whole = json(v);
      return { category: 'truncated', body: whole.subarray(0, Math.floor(whole.length * cut)), contentType: JSON_TYPE };
    }),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(review, deep, fc.nat(), fc.boolean()).map(([v, nested, index, alone]) => {
      if (alone) return { category: 'deep-nesting', body: Buffer.from(nested), contentType: JSON_TYPE };
      const all = paths(v);
      const text = JSON.stringify(replaceAt(v, all[index % all.length]!, '__fuzz_placeholder__')).replace(PLACEHOLDER, nested);
      return { category: 'deep-nesting', body: Buffer.from(text), contentType: JSON_TYPE };
    }),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(review, fc.constantFrom(10_000, 100_000), fc.constantFrom('env-refs', 'volumes', 'containers', 'numbers', 'annotations'))
      .map(([v, length, where]) => {
        const template = v.request.object.spec.template as { metadata: Record<string, unknown>; spec: Record<string, unknown> };
        const containers = template.spec['containers'] as Array<Record<string, unknown>>;
        if (where === 'env-refs') containers[0]!['env'] = Array.from({ length }, (_, i) => ({ name: `E${i}`, valueFrom: { configMapKeyRef: { name: 'app-config', key: `k${i % 500}` } } }));
        if (where === 'volumes') template.spec['volumes'] = Array.from({ length }, (_, i) => ({ name: `v${i}`, configMap: { name: `cm-${i}` } }));
        if (where === 'containers') template.spec['containers'] = Array.from({ length }, () => ({ name: 'c', envFrom: [{ configMapRef: { name: 'env' } }] }));
        if (where === 'numbers') template.spec['volumes'] = Array.from({ length }, (_, i) => i);
        if (where === 'annotations') template.metadata['annotations'] = Object.fromEntries(Array.from({ length }, (_, i) => [`k${i}`, 'v']));
        return { category: `huge-array-${where}`, body: json(v), contentType: JSON_TYPE };
      }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((bytes) => ({ category: 'raw-bytes', body: Buffer.from(bytes), contentType: JSON_TYPE })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(review, fc.constantFrom(undefined, 'text/plain', 'application/yaml', 'application/x-www-form-urlencoded', 'application/json; charset=utf-8', 'multipart/form-data; boundary=x', 'application/jsonx'))
      .map(([v, contentType]) => ({ category: 'content-type', body: json(v), contentType })),
  },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '\n', 'null', '[]', '{}', '"x"', '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}').map((text) => ({ category: 'tiny', body: Buffer.from(text), contentType: JSON_TYPE })) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1).map(() => oversize()) },
);

/** A review padded past the 7 MiB body limit. */
export function oversize(): FuzzInput {
  const padding = 'x'.repeat(BODY_LIMIT_BYTES);
  return { category: 'oversize', body: Buffer.from(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'big', padding } })), contentType: JSON_TYPE };
}

type Expectation = 'admission' | 'client-error' | 'too-large';

/** Deepest nesting of brackets outside strings (the webhook answers 400 for a body nested past 1,000 levels). */
function nesting(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) max = Math.max(max, ++depth);
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** What the answer must be, decided independently of src/ (the contract of DESIGN section 5). */
export function expectation(input: FuzzInput): { expect: Expectation; parsed?: Record<string, unknown> } {
  if (input.body.length > BODY_LIMIT_BYTES) return { expect: 'too-large' };
  const media = input.contentType?.split(';')[0]?.trim().toLowerCase();
  if (media !== 'application/json') return { expect: 'client-error' };
  const text = input.body.toString('utf8');
  if (nesting(text) > 1_000) return { expect: 'client-error' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { expect: 'client-error' };
  }
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(parsed) || parsed['apiVersion'] !== 'admission.k8s.io/v1' || parsed['kind'] !== 'AdmissionReview') return { expect: 'client-error' };
  const request = parsed['request'];
  if (!isObject(request)) return { expect: 'client-error' };
  const uid = request['uid'];
  if (typeof uid !== 'string' || uid === '' || uid.length > 128) return { expect: 'client-error' };
  const kind = request['kind'];
  if (!isObject(kind) || typeof kind['group'] !== 'string' || typeof kind['version'] !== 'string' || typeof kind['kind'] !== 'string') return { expect: 'client-error' };
  if (typeof request['operation'] !== 'string') return { expect: 'client-error' };
  return { expect: 'admission', parsed };
}

const ALLOWED_PATCH_PATHS = new Set([
  '/metadata',
  '/metadata/annotations',
  `/metadata/annotations/${CONTRACT.sourcesAnnotation.replaceAll('~', '~0').replaceAll('/', '~1')}`,
  '/spec/template/metadata',
  '/spec/template/metadata/annotations',
  '/spec/template/metadata/annotations/checksum~1config',
]);

export interface Tally {
  inputs: number;
  readonly categories: Map<string, number>;
  readonly statuses: Map<number, number>;
  patched: number;
  warned: number;
  bytes: number;
  slowestMs: number;
  slowestCategory: string;
}

/**
 * Sends 60 fixed inputs (no oversize ones) and returns the settled heap after them: a baseline that holds
 * what a serving process holds anyway (compiled code, TLS session, pools), for a heap-growth check.
 */
export async function warmUpBaseline(target: FuzzTarget, gc: () => void): Promise<number> {
  const warm = newTally();
  for (const input of fc.sample(fuzzInput.filter((i) => i.category !== 'oversize'), { numRuns: 60, seed: 1 })) await checkOne(target, input, warm);
  return settledHeap(gc);
}

export function newTally(): Tally {
  return { inputs: 0, categories: new Map(), statuses: new Map(), patched: 0, warned: 0, bytes: 0, slowestMs: 0, slowestCategory: '' };
}

export function describeTally(tally: Tally): string {
  const sorted = (map: Map<string | number, number>): string => [...map].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}=${v}`).join(' ');
  return `${tally.inputs} inputs (${(tally.bytes / 1024 / 1024).toFixed(1)} MiB sent); categories: ${sorted(tally.categories)}; statuses: ${sorted(tally.statuses)}; patched ${tally.patched}, with warnings ${tally.warned}; slowest ${tally.slowestMs.toFixed(0)} ms (${tally.slowestCategory})`;
}

export interface FuzzTarget {
  readonly server: RunningServer;
  readonly tls: TlsMaterial;
  readonly reader: RecordingReader;
  readonly log: ScanningLog;
  readonly metrics: Metrics;
  readonly agent: https.Agent;
  send(input: FuzzInput): Promise<HttpsAnswer>;
  healthy(): Promise<boolean>;
  stop(): Promise<void>;
}

/** startServer with the fake namespace, log level trace, on 127.0.0.1:0. */
export async function startFuzzTarget(): Promise<FuzzTarget> {
  const tls = writeTls();
  const reader = new RecordingReader(FUZZ_CONFIGMAPS, UNREADABLE);
  const parts = traceParts(reader);
  const server = await startServer(parts, { host: '127.0.0.1', port: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, drainSeconds: 0 });
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  return {
    server,
    tls,
    reader,
    log: parts.log,
    metrics: parts.metrics,
    agent,
    send: (input) =>
      httpsCall({
        port: server.port,
        ca: tls.ca.certificate,
        path: '/mutate?timeout=5s',
        body: input.body,
        contentType: input.contentType,
        // An oversize body is refused before it is read: give it a connection of its own.
        agent: input.body.length > BODY_LIMIT_BYTES ? false : agent,
      }),
    healthy: async () => (await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz', agent, timeoutMs: 5_000 })).status === 200,
    stop: async () => {
      agent.destroy();
      await server.stop();
      tls.cleanup();
    },
  };
}

/** Sends one input and asserts the property; throws (with the category) when it does not hold. */
export async function checkOne(target: FuzzTarget, input: FuzzInput, tally: Tally): Promise<void> {
  const { expect, parsed } = expectation(input);
  target.reader.take();
  const started = performance.now();
  let answer: HttpsAnswer;
  try {
    answer = await target.send(input);
  } catch (error) {
    throw new Error(`${input.category}: no HTTP answer (${(error as Error).message})`, { cause: error });
  }
  const ms = performance.now() - started;
  tally.inputs++;
  tally.bytes += input.body.length;
  tally.categories.set(input.category, (tally.categories.get(input.category) ?? 0) + 1);
  tally.statuses.set(answer.status, (tally.statuses.get(answer.status) ?? 0) + 1);
  if (ms > tally.slowestMs) {
    tally.slowestMs = ms;
    tally.slowestCategory = input.category;
  }
  const context = `${input.category} (${input.body.length} bytes, content-type ${String(input.contentType)}): HTTP ${answer.status} ${answer.text.slice(0, 200)}`;
  assert.ok(!answer.text.includes(CANARY), `ConfigMap data in an answer: ${context}`);
  assert.ok(answer.status < 500, `server error: ${context}`);
  assert.match(String(answer.headers['content-type']), /^application\/json/, context);

  if (expect === 'too-large') assert.equal(answer.status, 413, context);
  if (expect === 'client-error') assert.ok(answer.status >= 400 && answer.status < 500, `expected a 4xx: ${context}`);
  if (expect === 'admission') assert.equal(answer.status, 200, `expected an AdmissionReview: ${context}`);

  const body = JSON.parse(answer.text) as Record<string, unknown>;
  if (answer.status !== 200) {
    assert.equal(typeof body['message'], 'string', `a 4xx carries a message: ${context}`);
    assert.ok((body['message'] as string).length > 0, context);
    return;
  }
  const request = (parsed ?? JSON.parse(input.body.toString('utf8'))) as { request: { uid: string; namespace?: unknown; object?: unknown } };
  assert.equal(body['apiVersion'], 'admission.k8s.io/v1', context);
  assert.equal(body['kind'], 'AdmissionReview', context);
  const response = body['response'] as Record<string, unknown>;
  assert.deepEqual(Object.keys(body).sort(), ['apiVersion', 'kind', 'response'], context);
  for (const field of Object.keys(response)) assert.ok(['uid', 'allowed', 'patchType', 'patch', 'warnings'].includes(field), `unexpected response field ${field}: ${context}`);
  assert.equal(response['uid'], request.request.uid, `uid echoed: ${context}`);
  assert.equal(response['allowed'], true, context);
  assert.equal('patch' in response, 'patchType' in response, `patchType exactly with patch: ${context}`);
  const warnings = (response['warnings'] ?? []) as unknown[];
  assert.ok(Array.isArray(warnings), context);
  if ('warnings' in response) assert.ok(warnings.length > 0, `no empty warnings list: ${context}`);
  for (const warning of warnings) {
    assert.equal(typeof warning, 'string', context);
    assert.ok((warning as string).length < 120 && /^config-checksum: [\x20-\x7e]*$/.test(warning as string), `warning ${JSON.stringify(warning)}: ${context}`);
  }
  if (warnings.length > 0) tally.warned++;
  const namespace = typeof request.request.namespace === 'string' ? request.request.namespace : '';
  for (const read of target.reader.take()) assert.equal(read.namespace, namespace, `read ConfigMap ${read.name} outside the request's namespace: ${context}`);
  if (!('patch' in response)) return;
  tally.patched++;
  assert.equal(response['patchType'], 'JSONPatch', context);
  const operations = JSON.parse(Buffer.from(response['patch'] as string, 'base64').toString('utf8')) as jsonpatch.Operation[];
  assert.ok(Array.isArray(operations) && operations.length > 0, `a patch is a non-empty list: ${context}`);
  for (const operation of operations) {
    assert.equal(operation.op, 'add', context);
    assert.ok(ALLOWED_PATCH_PATHS.has(operation.path), `patch path ${operation.path}: ${context}`);
  }
  assert.doesNotThrow(() => jsonpatch.applyPatch(structuredClone(request.request.object), operations, true, false), `the patch applies to the object: ${context}`);
}
