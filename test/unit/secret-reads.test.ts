// The live Secret reader (src/kube/configmaps.ts, ApiSecretReader) over a fake transport, and the one
// deadline that ConfigMap and Secret reads of an admission share.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfigMapLookup } from '../../src/checksum/compute.ts';
import { ApiSecretReader, readBatches } from '../../src/kube/configmaps.ts';
import type { KubeHttp, KubeResponse } from '../../src/kube/http.ts';
import { FakeReader, HangingReader } from '../support/fakes.ts';

function fakeHttp(handler: (method: string, path: string) => Promise<KubeResponse>): KubeHttp {
  return { request: handler } as unknown as KubeHttp;
}

function response(status: number, body: unknown): KubeResponse {
  const text = JSON.stringify(body);
  return { status, headers: {}, text, json: () => JSON.parse(text) };
}

const signal = (): AbortSignal => new AbortController().signal;

describe('ApiSecretReader', () => {
  test('GETs the Secret by escaped namespace and name, on the secrets resource', async () => {
    const seen: string[] = [];
    const reader = new ApiSecretReader(fakeHttp(async (method, path) => (seen.push(`${method} ${path}`), response(404, {}))));
    assert.deepEqual(await reader.read('shop', 'db.creds', signal()), { state: 'missing' });
    await reader.read('sh/op', 'x?y', signal());
    assert.deepEqual(seen, ['GET /api/v1/namespaces/shop/secrets/db.creds', 'GET /api/v1/namespaces/sh%2Fop/secrets/x%3Fy']);
  });

  test('200 keeps data only (base64, as the API server sends it): type, metadata and annotations never count', async () => {
    const body = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: { name: 'tls', namespace: 'shop', resourceVersion: '7', annotations: { 'cert-manager.io/issuer-name': 'ca' } },
      data: { 'tls.crt': 'Q0VSVA==', 'tls.key': 'S0VZ' },
    };
    const observed: string[] = [];
    const reader = new ApiSecretReader(fakeHttp(async () => response(200, body)), (result) => observed.push(result));
    assert.deepEqual(await reader.read('shop', 'tls', signal()), { state: 'found', data: body.data, binaryData: undefined });
    assert.deepEqual(observed, ['found']);
  });

  test('403 (no RBAC for Secrets) and transport errors are unreadable with a value-free reason', async () => {
    const forbidden = new ApiSecretReader(fakeHttp(async () => response(403, { message: 'secrets "db" is forbidden: User cannot get resource' })));
    assert.deepEqual(await forbidden.read('shop', 'db', signal()), { state: 'unreadable', reason: 'HTTP 403' });
    const refused = new ApiSecretReader(fakeHttp(() => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))));
    assert.deepEqual(await refused.read('shop', 'db', signal()), { state: 'unreadable', reason: 'ECONNREFUSED' });
  });
});

describe('readBatches', () => {
  test('ConfigMaps and Secrets of one admission: one map per batch, each read by its own reader', async () => {
    const configMaps = new FakeReader({ app: { data: { a: '1' } } });
    const secrets = new FakeReader({ db: { data: { p: 'eA==' } } });
    const [cm, secret] = await readBatches('shop', [{ reader: configMaps, names: ['app', 'gone'] }, { reader: secrets, names: ['db'] }], 1000);
    assert.deepEqual([...cm!], [['app', { state: 'found', data: { a: '1' }, binaryData: undefined }], ['gone', { state: 'missing' }]]);
    assert.deepEqual([...secret!], [['db', { state: 'found', data: { p: 'eA==' }, binaryData: undefined }]]);
    assert.deepEqual(configMaps.calls.map((call) => call.name), ['app', 'gone']);
    assert.deepEqual(secrets.calls.map((call) => call.name), ['db']);
  });

  test('both kinds share one deadline and are read in parallel', async () => {
    const started = performance.now();
    const hanging = new HangingReader();
    const results = await readBatches('shop', [{ reader: hanging, names: ['a'] }, { reader: hanging, names: ['s1', 's2'] }], 80);
    const elapsed = performance.now() - started;
    assert.equal(hanging.calls, 3);
    assert.ok(elapsed < 1000, `took ${elapsed} ms`);
    for (const lookups of results) for (const lookup of lookups.values()) assert.deepEqual(lookup, { state: 'unreadable', reason: 'timeout' } satisfies ConfigMapLookup);
  });
});
