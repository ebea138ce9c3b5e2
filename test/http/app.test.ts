// The fastify app through inject(): the AdmissionReview envelope, malformed requests, the ?timeout= deadline,
// health, metrics, and the log line.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildApp, BODY_LIMIT_BYTES, deadlineFromQuery } from '../../src/server/app.ts';
import { DRAINING } from '../../src/server/readiness.ts';
import type { ConfigMapReader } from '../../src/kube/configmaps.ts';
import { admissionRequest, decodePatch, FakeReader, HangingReader, reviewBody, workload } from '../support/fakes.ts';
import { testParts } from './support.ts';

const CONFIG = { 'app-config': { data: { LOG_LEVEL: 'debug', PASSWORD_LIKE: 'value-that-must-not-be-logged' } } };
const UID = 'b9e9b9a6-2a5c-4b58-9f3a-9a0c1f2e3d4c';

function deploymentReview(options: Parameters<typeof admissionRequest>[1] = {}): Record<string, unknown> {
  return reviewBody(admissionRequest(workload(), { uid: UID, ...options }));
}

describe('POST /mutate', () => {
  test('answers an AdmissionReview v1 with the uid, the patch and its patchType', async () => {
    const parts = testParts(new FakeReader(CONFIG));
    const app = buildApp(parts);
    const reply = await app.inject({ method: 'POST', url: '/mutate', payload: deploymentReview() });
    assert.equal(reply.statusCode, 200);
    assert.match(String(reply.headers['content-type']), /^application\/json/);
    const body = reply.json();
    assert.equal(body.apiVersion, 'admission.k8s.io/v1');
    assert.equal(body.kind, 'AdmissionReview');
    assert.equal(body.response.uid, UID);
    assert.equal(body.response.allowed, true);
    assert.equal(body.response.patchType, 'JSONPatch');
    assert.deepEqual(
      decodePatch(body.response.patch).map((op) => (op as { path: string }).path),
      ['/spec/template/metadata/annotations', '/metadata/annotations'],
    );
    assert.equal('warnings' in body.response, false);
    await app.close();
  });

  test('no patch: neither patch nor patchType', async () => {
    const app = buildApp(testParts(new FakeReader(CONFIG)));
    const reply = await app.inject({ method: 'POST', url: '/mutate', payload: deploymentReview({ operation: 'DELETE' }) });
    assert.equal(reply.statusCode, 200);
    assert.deepEqual(reply.json(), { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: UID, allowed: true } });
    await app.close();
  });

  test('accepts application/json with a charset parameter', async () => {
    const app = buildApp(testParts(new FakeReader(CONFIG)));
    const reply = await app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json; charset=utf-8' }, payload: JSON.stringify(deploymentReview()) });
    assert.equal(reply.statusCode, 200);
    assert.equal(reply.json().response.uid, UID);
    await app.close();
  });

  const malformed: Array<{ label: string; contentType: string; payload: string; message: RegExp; status?: number }> = [
    { label: 'not JSON', contentType: 'application/json', payload: '{"apiVersion": ', message: /body is not valid JSON/ },
    { label: 'empty body', contentType: 'application/json', payload: '', message: /empty|not valid JSON/ },
    { label: 'text/plain', contentType: 'text/plain', payload: JSON.stringify({ apiVersion: 'admission.k8s.io/v1' }), message: /content-type must be application\/json/ },
    { label: 'JSON null', contentType: 'application/json', payload: 'null', message: /must be a JSON object/ },
    { label: 'JSON array', contentType: 'application/json', payload: '[]', message: /must be a JSON object/ },
    { label: 'missing uid', contentType: 'application/json', payload: JSON.stringify({ ...deploymentReview(), request: { ...(deploymentReview()['request'] as object), uid: undefined } }), message: /request.uid/ },
    { label: 'wrong apiVersion', contentType: 'application/json', payload: JSON.stringify({ ...deploymentReview(), apiVersion: 'admission.k8s.io/v1beta1' }), message: /admission.k8s.io\/v1/ },
    { label: 'missing request', contentType: 'application/json', payload: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), message: /no request/ },
    { label: 'nesting deeper than the limit', contentType: 'application/json', payload: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":${'['.repeat(1_000)}${']'.repeat(1_000)}}`, message: /nested deeper than 1000 levels/ },
  ];
  for (const { label, contentType, payload, message } of malformed) {
    test(`400 for ${label}, with a message`, async () => {
      const parts = testParts(new FakeReader(CONFIG));
      const app = buildApp(parts);
      const reply = await app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': contentType }, payload });
      assert.equal(reply.statusCode, 400);
      const body = reply.json();
      assert.equal(body.error, 'Bad Request');
      assert.match(body.message, message);
      assert.match(await parts.metrics.registry.metrics(), /config_checksum_bad_requests_total\{status="400"\} 1/);
      await app.close();
    });
  }

  test('413 with a message for a body over the limit', async () => {
    const app = buildApp(testParts(new FakeReader(CONFIG)));
    const payload = Buffer.alloc(BODY_LIMIT_BYTES + 1, 0x20);
    const reply = await app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload });
    assert.equal(reply.statusCode, 413);
    assert.match(reply.json().message, /body larger than 7340032 bytes/);
    await app.close();
  });

  test('a review just under the limit is still answered', async () => {
    // The API server may send two 3 MiB objects; the envelope must fit 7 MiB.
    const big = workload();
    (big['metadata'] as Record<string, unknown>)['annotations'] = { filler: 'x'.repeat(3 * 1024 * 1024) };
    const request = admissionRequest(big, { uid: UID, operation: 'UPDATE', oldObject: big });
    const payload = JSON.stringify(reviewBody(request));
    assert.ok(payload.length > 6 * 1024 * 1024 && payload.length < BODY_LIMIT_BYTES);
    const app = buildApp(testParts(new FakeReader(CONFIG)));
    const reply = await app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload });
    assert.equal(reply.statusCode, 200);
    assert.equal(reply.json().response.patchType, 'JSONPatch');
    await app.close();
  });

  test('?timeout= shortens the ConfigMap deadline: fail-open well before the configured timeout', async () => {
    const app = buildApp(testParts(new HangingReader(), { configMapReadTimeoutMs: 4000 }));
    const started = performance.now();
    const reply = await app.inject({ method: 'POST', url: '/mutate?timeout=1s', payload: deploymentReview() });
    const elapsed = performance.now() - started;
    assert.equal(reply.statusCode, 200);
    const response = reply.json().response;
    assert.equal(response.allowed, true);
    assert.equal(response.patch, undefined);
    assert.match(response.warnings[0], /timeout/);
    assert.ok(elapsed >= 400 && elapsed < 2000, `answered after ${elapsed} ms; expected about 500 ms`);
    await app.close();
  });

  test('a reader that breaks its contract (rejects) is an internal error: allowed, unchanged, logged, counted', async () => {
    const broken: ConfigMapReader = { read: () => Promise.reject(new Error('boom')) };
    const parts = testParts(broken);
    const app = buildApp(parts);
    const reply = await app.inject({ method: 'POST', url: '/mutate', payload: deploymentReview() });
    assert.equal(reply.statusCode, 200);
    assert.deepEqual(reply.json().response, { uid: UID, allowed: true, warnings: ['config-checksum: internal error; checksum left unchanged'] });
    assert.match(await parts.metrics.registry.metrics(), /config_checksum_admissions_total\{[^}]*outcome="fail-open",reason="internal-error"\} 1/);
    assert.ok(parts.logs.lines.some((line) => line['level'] === 'error' && line['uid'] === UID));
    await app.close();
  });

  test('ConfigMaps unreadable: allowed without patch, and said in a warning, a log line and a metric', async () => {
    const parts = testParts(new FakeReader({}, { 'app-config': 'HTTP 403' }));
    const app = buildApp(parts);
    const reply = await app.inject({ method: 'POST', url: '/mutate', payload: deploymentReview() });
    const response = reply.json().response;
    assert.equal(response.allowed, true);
    assert.equal(response.patch, undefined);
    assert.match(response.warnings[0], /could not read ConfigMap "app-config" \(HTTP 403\)/);
    const line = parts.logs.lines.find((entry) => entry['msg'] === 'admission');
    assert.equal(line?.['level'], 'warn');
    assert.equal(line?.['outcome'], 'fail-open');
    assert.equal(line?.['reason'], 'configmap-unreadable');
    const metrics = await parts.metrics.registry.metrics();
    assert.match(metrics, /config_checksum_admissions_total\{kind="Deployment",operation="CREATE",outcome="fail-open",reason="configmap-unreadable"\} 1/);
    assert.match(metrics, /config_checksum_admission_warnings_total 1/);
    await app.close();
  });

  test('one log line per admission with identity and outcome; no object or ConfigMap values', async () => {
    const parts = testParts(new FakeReader(CONFIG));
    const app = buildApp(parts);
    await app.inject({ method: 'POST', url: '/mutate', payload: deploymentReview() });
    const admissions = parts.logs.lines.filter((line) => line['msg'] === 'admission');
    assert.equal(admissions.length, 1);
    const line = admissions[0]!;
    for (const [key, value] of Object.entries({ uid: UID, kind: 'Deployment', namespace: 'shop', name: 'web', operation: 'CREATE', outcome: 'patched' })) {
      assert.equal(line[key], value, key);
    }
    assert.equal(typeof line['durationMs'], 'number');
    const everything = parts.logs.raw.join('\n');
    assert.doesNotMatch(everything, /value-that-must-not-be-logged|nginx:1\.27|LOG_LEVEL/);
    await app.close();
  });
});

describe('"__proto__" keys in a review', () => {
  test('are data (the API server stores them, e.g. in CSI volumeAttributes): the workload gets its checksum, and no prototype changes', async () => {
    const parts = testParts(new FakeReader(CONFIG));
    const app = buildApp(parts);
    const object = workload({ annotations: { note: 'x' } }) as Record<string, any>;
    object['spec']['template']['spec']['volumes'] = [{ name: 'csi', csi: { driver: 'secrets-store.csi.k8s.io', volumeAttributes: { placeholder: '1' } } }];
    const text = JSON.stringify(reviewBody(admissionRequest(object, { uid: UID })))
      .replace('"placeholder":"1"', '"__proto__":{"polluted":"yes"},"placeholder":"1"')
      .replace('"note":"x"', '"note":"x","__proto__":{"polluted":"yes"}')
      .replace('"request":{', '"request":{"__proto__":{"polluted":"yes"},');
    assert.equal((text.match(/__proto__/g) ?? []).length, 3);
    const reply = await app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: text });
    assert.equal(reply.statusCode, 200, reply.body);
    const patch = decodePatch(reply.json().response.patch) as Array<{ path: string }>;
    assert.ok(patch.some((op) => op.path.startsWith('/spec/template/metadata/annotations')), 'the checksum is set');
    assert.equal(({} as { polluted?: unknown }).polluted, undefined, 'Object.prototype is untouched');
    assert.equal((Object.prototype as { polluted?: unknown }).polluted, undefined);
    await app.close();
  });
});

describe('labels and log fields from untrusted reviews', () => {
  test('forged kinds and operations become "other": one time series, however many different values arrive', async () => {
    const parts = testParts(new FakeReader(CONFIG));
    const app = buildApp(parts);
    for (let index = 0; index < 50; index++) {
      const forged = `${'K'.repeat(64 * 1024)}${index}`;
      const request = admissionRequest(workload(), { uid: `forged-${index}`, kind: { group: 'apps', version: 'v1', kind: forged }, operation: `OP${index}${'x'.repeat(1000)}` });
      const reply = await app.inject({ method: 'POST', url: '/mutate', payload: reviewBody(request) });
      assert.equal(reply.statusCode, 200);
    }
    const metrics = await parts.metrics.registry.metrics();
    const series = metrics.split('\n').filter((line) => line.startsWith('config_checksum_admissions_total{'));
    assert.deepEqual(series, ['config_checksum_admissions_total{kind="other",operation="other",outcome="skipped",reason="not-a-workload"} 50']);
    assert.ok(metrics.length < 64 * 1024, `/metrics stays small: ${metrics.length} bytes`);
    const logged = parts.logs.lines.filter((line) => line['msg'] === 'admission');
    assert.equal(logged.length, 50);
    for (const line of logged) assert.ok(String(line['kind']).length <= 259 && String(line['operation']).length <= 259, 'log fields are cut');
    await app.close();
  });
});

describe('health, readiness, metrics', () => {
  test('/healthz 200; /readyz 200, then 503 with reasons when blocked', async () => {
    const parts = testParts(new FakeReader());
    const app = buildApp(parts);
    assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200);
    assert.equal((await app.inject({ url: '/readyz' })).statusCode, 200);
    parts.readiness.block('certificate');
    const blocked = await app.inject({ url: '/readyz' });
    assert.equal(blocked.statusCode, 503);
    assert.deepEqual(blocked.json(), { status: 'not ready', reasons: ['certificate'] });
    parts.readiness.unblock('certificate');
    assert.equal((await app.inject({ url: '/readyz' })).statusCode, 200);
    await app.close();
  });

  test('while draining every answer asks the client to close the connection', async () => {
    const parts = testParts(new FakeReader(CONFIG));
    const app = buildApp(parts);
    assert.notEqual((await app.inject({ url: '/healthz' })).headers['connection'], 'close');
    parts.readiness.block(DRAINING);
    const reply = await app.inject({ method: 'POST', url: '/mutate', payload: deploymentReview() });
    assert.equal(reply.statusCode, 200);
    assert.equal(reply.headers['connection'], 'close');
    await app.close();
  });

  test('/metrics exposes config_checksum_admissions_total after an admission', async () => {
    const parts = testParts(new FakeReader(CONFIG));
    const app = buildApp(parts);
    const before = await app.inject({ url: '/metrics' });
    assert.doesNotMatch(before.body, /config_checksum_admissions_total\{/);
    await app.inject({ method: 'POST', url: '/mutate', payload: deploymentReview() });
    await app.inject({ method: 'POST', url: '/mutate', payload: deploymentReview({ dryRun: true }) });
    const after = await app.inject({ url: '/metrics' });
    assert.equal(after.statusCode, 200);
    assert.match(String(after.headers['content-type']), /^text\/plain/);
    assert.match(after.body, /config_checksum_admissions_total\{kind="Deployment",operation="CREATE",outcome="patched",reason="computed"\} 2/);
    assert.match(after.body, /config_checksum_admission_checksum_changes_total\{kind="Deployment"\} 2/);
    assert.match(after.body, /config_checksum_admission_duration_seconds_count\{outcome="patched"\} 2/);
    await app.close();
  });
});

describe('deadlineFromQuery', () => {
  const table: Array<[unknown, number | undefined]> = [
    [{ timeout: '10s' }, 9500],
    [{ timeout: '5s' }, 4500],
    [{ timeout: '4.999872153s' }, 4499.872153],
    [{ timeout: '2500ms' }, 2000],
    [{ timeout: '1m' }, 59_500],
    [{ timeout: '600ms' }, 100],
    // Never below 50 ms: even a nearly spent deadline gets a (failing fast) read attempt.
    [{ timeout: '1s' }, 500],
    [{ timeout: '0s' }, 50],
    [{ timeout: '100ms' }, 50],
    [{}, undefined],
    [undefined, undefined],
    [{ timeout: '' }, undefined],
    [{ timeout: '10' }, undefined],
    [{ timeout: 'soon' }, undefined],
    [{ timeout: '-1s' }, undefined],
    [{ timeout: ['1s', '2s'] }, undefined],
    [{ timeout: 10 }, undefined],
  ];
  for (const [query, expected] of table) {
    test(`${JSON.stringify(query)} -> ${expected}`, () => {
      const result = deadlineFromQuery(query);
      if (expected === undefined) assert.equal(result, undefined);
      else assert.ok(result !== undefined && Math.abs(result - expected) < 1e-6, `got ${result}`);
    });
  }
});
