// The live ConfigMap reader (src/kube/configmaps.ts) over a fake transport: what becomes found, missing and
// unreadable, that ConfigMap metadata never reaches the checksum, and the shared deadline.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { computeChecksum, planChecksum, type ConfigMapLookup } from '../../src/checksum/compute.ts';
import { ApiConfigMapReader, errorCode, readConfigMaps } from '../../src/kube/configmaps.ts';
import type { KubeHttp, KubeResponse, RequestOptions } from '../../src/kube/http.ts';
import { HangingReader } from '../support/fakes.ts';

type Handler = (method: string, path: string, options: RequestOptions) => Promise<KubeResponse>;

function fakeHttp(handler: Handler): KubeHttp {
  return { request: handler } as unknown as KubeHttp;
}

function response(status: number, body: unknown): KubeResponse {
  const text = JSON.stringify(body);
  return { status, headers: {}, text, json: () => JSON.parse(text) };
}

function configMap(metadata: Record<string, unknown>, data: Record<string, string>): unknown {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'app', namespace: 'shop', ...metadata }, data, binaryData: { b: 'AAE=' } };
}

const signal = (): AbortSignal => new AbortController().signal;

describe('ApiConfigMapReader', () => {
  test('GETs the ConfigMap by escaped namespace and name', async () => {
    const seen: string[] = [];
    const reader = new ApiConfigMapReader(fakeHttp(async (method, path) => (seen.push(`${method} ${path}`), response(404, {}))));
    await reader.read('shop', 'a.b', signal());
    await reader.read('sh/op', 'x?y', signal());
    assert.deepEqual(seen, ['GET /api/v1/namespaces/shop/configmaps/a.b', 'GET /api/v1/namespaces/sh%2Fop/configmaps/x%3Fy']);
  });

  test('200 is found with data and binaryData only; metadata never counts', async () => {
    const first = configMap({ uid: '1', resourceVersion: '10', labels: { a: 'b' }, annotations: { x: 'y' } }, { k: 'v' });
    const second = configMap({ uid: '2', resourceVersion: '99', labels: {}, annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' } }, { k: 'v' });
    const read = (body: unknown): Promise<ConfigMapLookup> => new ApiConfigMapReader(fakeHttp(async () => response(200, body))).read('shop', 'app', signal());
    const [a, b] = await Promise.all([read(first), read(second)]);
    assert.deepEqual(a, { state: 'found', data: { k: 'v' }, binaryData: { b: 'AAE=' } });
    assert.deepEqual(b, a);
    const plan = planChecksum({ spec: { containers: [{ envFrom: [{ configMapRef: { name: 'app' } }] }] } }, undefined, 'x');
    const sumA = computeChecksum(plan, () => a);
    const sumB = computeChecksum(plan, () => b);
    assert.ok(sumA.kind === 'computed' && sumB.kind === 'computed');
    assert.equal(sumA.checksum, sumB.checksum);
  });

  test('404 is missing; other statuses and transport errors are unreadable, with a value-free reason', async () => {
    const cases: Array<[Handler, ConfigMapLookup]> = [
      [async () => response(404, { kind: 'Status' }), { state: 'missing' }],
      [async () => response(403, { message: 'forbidden: secret detail' }), { state: 'unreadable', reason: 'HTTP 403' }],
      [async () => response(500, {}), { state: 'unreadable', reason: 'HTTP 500' }],
      [async () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' })), { state: 'unreadable', reason: 'ECONNREFUSED' }],
      [async () => Promise.reject(new TypeError('bad')), { state: 'unreadable', reason: 'TypeError' }],
    ];
    for (const [handler, expected] of cases) {
      const observed: string[] = [];
      const reader = new ApiConfigMapReader(fakeHttp(handler), (result) => observed.push(result));
      assert.deepEqual(await reader.read('shop', 'app', signal()), expected);
      assert.deepEqual(observed, [expected.state]);
    }
  });

  test('an aborted read is reported as a timeout', async () => {
    const controller = new AbortController();
    const reader = new ApiConfigMapReader(
      fakeHttp((_method, _path, options) => new Promise((_resolve, reject) => options.signal?.addEventListener('abort', () => reject(new Error('aborted'))))),
    );
    const pending = reader.read('shop', 'app', controller.signal);
    controller.abort();
    assert.deepEqual(await pending, { state: 'unreadable', reason: 'timeout' });
  });

  test('a name no URL can carry (a lone surrogate from an untrusted review) is unreadable, not a rejection', async () => {
    let requests = 0;
    const reader = new ApiConfigMapReader(fakeHttp(async () => (requests++, response(200, {}))));
    assert.deepEqual(await reader.read('shop', 'app\ud800', signal()), { state: 'unreadable', reason: 'URIError' });
    assert.equal(requests, 0);
  });

  test('errorCode never returns the message', () => {
    assert.equal(errorCode(Object.assign(new Error('GET https://secret/url'), { code: 'ETIMEDOUT' })), 'ETIMEDOUT');
    assert.equal(errorCode(new RangeError('x')), 'RangeError');
    assert.equal(errorCode('a string'), 'error');
    assert.equal(errorCode(null), 'error');
  });
});

describe('readConfigMaps', () => {
  test('maps every name to its lookup, in one namespace', async () => {
    const reader = new ApiConfigMapReader(fakeHttp(async (_m, path) => (path.endsWith('/a') ? response(200, { data: { k: 'v' } }) : response(404, {}))));
    const result = await readConfigMaps(reader, 'shop', ['a', 'b'], 1000);
    assert.deepEqual([...result], [
      ['a', { state: 'found', data: { k: 'v' }, binaryData: undefined }],
      ['b', { state: 'missing' }],
    ]);
  });

  test('the batch shares one deadline', async () => {
    const reader = new HangingReader();
    const started = performance.now();
    const result = await readConfigMaps(reader, 'shop', ['a', 'b', 'c'], 80);
    assert.ok(performance.now() - started < 1000);
    assert.equal(reader.calls, 3);
    for (const lookup of result.values()) assert.deepEqual(lookup, { state: 'unreadable', reason: 'timeout' });
  });
});

test('a reader that rejects ends the batch, and its other reads are aborted at once', async () => {
  const hanging = new HangingReader();
  const breaksItsPromise = {
    read: (namespace: string, name: string, abort: AbortSignal): Promise<ConfigMapLookup> =>
      name === 'bad' ? Promise.reject(new Error('defect')) : hanging.read(namespace, name, abort),
  };
  const signals: AbortSignal[] = [];
  const recording = { read: (namespace: string, name: string, abort: AbortSignal) => (signals.push(abort), breaksItsPromise.read(namespace, name, abort)) };
  await assert.rejects(readConfigMaps(recording, 'ns', ['a', 'bad'], 10_000), /defect/);
  assert.ok(signals.length === 2 && signals.every((abort) => abort.aborted), 'the remaining read was told to stop');
});

test('the deadline holds even for a read that never looks at the abort signal', { timeout: 2000 }, async () => {
  const deaf = { read: () => new Promise<ConfigMapLookup>(() => {}) };
  const started = performance.now();
  const results = await readConfigMaps(deaf, 'ns', ['a', 'b'], 80);
  const elapsed = performance.now() - started;
  assert.deepEqual([...results.values()], [{ state: 'unreadable', reason: 'timeout' }, { state: 'unreadable', reason: 'timeout' }]);
  assert.ok(elapsed < 1000, `readConfigMaps took ${elapsed} ms with an 80 ms deadline`);
});
