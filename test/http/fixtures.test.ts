// Recorded-shape AdmissionReview bodies (test/fixtures/admission/*.json, as kube-apiserver sends them) fed
// through app.inject(), against the ConfigMaps of test/fixtures/configmaps.json. One row per fixture.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildApp } from '../../src/server/app.ts';
import { checksumV1, type HashedConfigMap } from '../../src/checksum/encode.ts';
import type { ConfigMapLookup } from '../../src/checksum/compute.ts';
import type { ConfigMapReader } from '../../src/kube/configmaps.ts';
import { decodePatch } from '../support/fakes.ts';
import { assertOnlyManagedChanged } from '../support/patch-helpers.ts';
import { testParts } from './support.ts';
import jsonpatch from 'fast-json-patch';

const FIXTURES = new URL('../fixtures/', import.meta.url);

interface ConfigMapObject {
  readonly metadata: { readonly name: string; readonly namespace: string };
  readonly data?: Record<string, string>;
  readonly binaryData?: Record<string, string>;
}

/** Serves the ConfigMapList fixture the way the API server would: by namespace and name. */
class FixtureReader implements ConfigMapReader {
  readonly calls: string[] = [];
  readonly #items: readonly ConfigMapObject[];
  constructor(items: readonly ConfigMapObject[]) {
    this.#items = items;
  }
  async read(namespace: string, name: string): Promise<ConfigMapLookup> {
    this.calls.push(`${namespace}/${name}`);
    const found = this.#items.find((item) => item.metadata.namespace === namespace && item.metadata.name === name);
    return found ? { state: 'found', data: found.data, binaryData: found.binaryData } : { state: 'missing' };
  }
}

const configMaps = (JSON.parse(readFileSync(new URL('configmaps.json', FIXTURES), 'utf8')) as { items: ConfigMapObject[] }).items;

function data(entries: Record<string, string>, binary: Record<string, string> = {}): HashedConfigMap['content'] {
  return { data: new Map(Object.entries(entries)), binaryData: new Map(Object.entries(binary).map(([k, v]) => [k, Buffer.from(v, 'base64')])) };
}

const ROUTES = 'routes:\n  - path: /api\n    upstream: http://api:8080\n';
const GATEWAY = checksumV1([
  { name: 'gateway-apis', content: data({ 'routes.yaml': ROUTES }) },
  { name: 'gateway-env', content: data({ LOG_LEVEL: 'debug' }) },
]);

interface Row {
  readonly file: string;
  readonly reads: readonly string[];
  readonly operations: readonly unknown[];
  readonly warnings: readonly RegExp[];
}

const ROWS: readonly Row[] = [
  {
    file: 'deployment-create.json',
    reads: ['shop/gateway-apis', 'shop/gateway-env'],
    operations: [
      { op: 'add', path: '/spec/template/metadata/annotations', value: { 'checksum/config': GATEWAY } },
      { op: 'add', path: '/metadata/annotations/config-checksum.io~1sources', value: 'configmap/gateway-apis[routes.yaml], configmap/gateway-env[LOG_LEVEL]' },
    ],
    warnings: [],
  },
  {
    // kubectl apply changed the image and kept the stale checksum: the new value replaces it; sources unchanged.
    file: 'deployment-update.json',
    reads: ['shop/gateway-apis', 'shop/gateway-env'],
    operations: [{ op: 'add', path: '/spec/template/metadata/annotations/checksum~1config', value: GATEWAY }],
    warnings: [],
  },
  {
    // initContainer envFrom of an optional, missing ConfigMap; projected volume items across data and binaryData.
    file: 'statefulset-create.json',
    reads: ['shop/db-init', 'shop/db-tuning'],
    operations: [
      {
        op: 'add',
        path: '/spec/template/metadata/annotations/checksum~1config',
        value: checksumV1([{ name: 'db-init', content: data({ 'init.sql': 'CREATE TABLE IF NOT EXISTS orders (id bigint);\n' }, { 'ca.der': 'MIIBAAECAwQ=' }) }, { name: 'db-tuning' }]),
      },
      { op: 'add', path: '/metadata/annotations', value: { 'config-checksum.io/sources': 'configmap/db-init[ca.der,init.sql], configmap/db-tuning(missing)' } },
    ],
    warnings: [],
  },
  {
    // Server-side dry run; extra-configmaps names a ConfigMap that exists only in another namespace.
    file: 'daemonset-update-dryrun.json',
    reads: ['shop/node-agent', 'shop/shared-settings'],
    operations: [
      {
        op: 'add',
        path: '/spec/template/metadata/annotations',
        value: { 'checksum/config': checksumV1([{ name: 'node-agent', content: data({ 'agent.conf': 'interval=10s\nendpoint=http://collector:4318\n' }) }, { name: 'shared-settings' }]) },
      },
      { op: 'add', path: '/metadata/annotations/config-checksum.io~1sources', value: 'configmap/node-agent, configmap/shared-settings(missing)' },
    ],
    warnings: [/^config-checksum: ConfigMap "shared-settings" not found; hashed as absent/],
  },
  {
    file: 'deployment-scale.json',
    reads: [],
    operations: [],
    warnings: [],
  },
];

describe('recorded AdmissionReview fixtures', () => {
  for (const row of ROWS) {
    test(row.file, async () => {
      const raw = readFileSync(new URL(`admission/${row.file}`, FIXTURES), 'utf8');
      const review = JSON.parse(raw) as { request: { uid: string; object: unknown } };
      const reader = new FixtureReader(configMaps);
      const app = buildApp(testParts(reader));
      const reply = await app.inject({ method: 'POST', url: '/mutate?timeout=10s', headers: { 'content-type': 'application/json' }, payload: raw });
      await app.close();

      assert.equal(reply.statusCode, 200, reply.body);
      const body = reply.json() as { apiVersion: string; kind: string; response: { uid: string; allowed: boolean; patchType?: string; patch?: string; warnings?: string[] } };
      assert.equal(body.apiVersion, 'admission.k8s.io/v1');
      assert.equal(body.kind, 'AdmissionReview');
      assert.equal(body.response.uid, review.request.uid);
      assert.equal(body.response.allowed, true);
      assert.deepEqual(reader.calls.sort(), [...row.reads]);
      assert.deepEqual(decodePatch(body.response.patch), row.operations);
      assert.equal(body.response.patchType, row.operations.length > 0 ? 'JSONPatch' : undefined);
      const warnings = body.response.warnings ?? [];
      assert.equal(warnings.length, row.warnings.length, JSON.stringify(warnings));
      row.warnings.forEach((pattern, index) => assert.match(warnings[index]!, pattern));
      if (row.operations.length > 0) {
        const after = jsonpatch.applyPatch(review.request.object, decodePatch(body.response.patch) as jsonpatch.Operation[], true, false).newDocument;
        assertOnlyManagedChanged(review.request.object, after, 'checksum/config');
      }
    });
  }
});
