// Client certificates: nobody else gets in. With a client CA (TlsFiles.clientCaFile, --client-ca-file), a caller
// without a certificate or with one from another CA is refused during the TLS handshake, before any HTTP;
// one from the right CA is served. Without it, a forged AdmissionReview naming namespace A makes the
// webhook read ConfigMaps of namespace A only (whatever the object claims), and the answer holds nothing
// but the checksum and sources patch and warnings: no ConfigMap data.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import jsonpatch from 'fast-json-patch';
import { startServer, type RunningServer } from '../../src/server/https.ts';
import { CONTRACT } from '../../src/config.ts';
import { createCertificateAuthority, issueCertificate, type KeyPairPem } from '../../src/tls/certs.ts';
import { admissionRequest, reviewBody } from '../support/fakes.ts';
import { CANARY, RecordingReader, traceParts } from '../support/observation.ts';
import { httpsCall } from '../support/https.ts';
import { type TlsMaterial, writeTls } from '../support/tls.ts';

function clientCertificate(ca: KeyPairPem, commonName: string): KeyPairPem {
  return issueCertificate(ca, { commonName, usage: 'client', validityMs: 3_600_000 });
}

const review = (uid: string, namespace = 'shop'): string =>
  JSON.stringify(reviewBody(admissionRequest({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace },
    spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'app', image: 'x', envFrom: [{ configMapRef: { name: 'app' } }] }] } } },
  }, { uid, namespace })));

describe('client certificates required (--client-ca-file)', () => {
  let tls: TlsMaterial;
  let server: RunningServer;
  let parts: ReturnType<typeof traceParts>;
  let reader: RecordingReader;
  const apiServerCa = createCertificateAuthority('api-server-client-ca');
  const otherCa = createCertificateAuthority('someone-else');

  before(async () => {
    tls = writeTls();
    const clientCaFile = join(tls.dir, 'client-ca.crt');
    writeFileSync(clientCaFile, apiServerCa.certificate);
    reader = new RecordingReader({ app: { data: { a: CANARY } } });
    parts = traceParts(reader);
    server = await startServer(parts, { host: '127.0.0.1', port: 0, healthPort: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile, clientCaFile }, drainSeconds: 0 });
  });

  test('the health port serves /healthz, /readyz and /metrics without a client certificate (kubelet probes, Prometheus), and nothing else', async () => {
    assert.ok(server.healthPort !== undefined && server.healthPort !== server.port, 'a second port');
    const port = server.healthPort!;
    assert.equal((await httpsCall({ port, ca: tls.ca.certificate, path: '/healthz' })).status, 200);
    assert.equal((await httpsCall({ port, ca: tls.ca.certificate, path: '/readyz' })).status, 200);
    assert.match((await httpsCall({ port, ca: tls.ca.certificate, path: '/metrics' })).text, /config_checksum_admissions_total/);
    const mutate = await httpsCall({ port, ca: tls.ca.certificate, path: '/mutate', body: review('health-port'), contentType: 'application/json' });
    assert.equal(mutate.status, 404, 'no admissions on the health port');
    await assert.rejects(httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz' }), 'the admission port still requires a client certificate');
  });
  after(async () => {
    await server.stop();
    tls.cleanup();
  });

  const admissions = async (): Promise<string> => (await parts.metrics.registry.metrics()).split('\n').filter((line) => line.startsWith('config_checksum_admissions_total{')).join('\n');

  // TLS 1.3 reports a refused client certificate after the client's side of the handshake, as an alert
  // on the first read; TLS 1.2 inside the handshake. Both are tried.
  for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
    test(`${maxVersion}: no client certificate, or one from another CA: refused at TLS, nothing served or read`, async () => {
      const before = await admissions();
      const reads = reader.total;
      const refused = /certificate required|unknown ca|alert|ECONNRESET|socket hang up|EPIPE|before secure TLS connection was established/i;
      await assert.rejects(httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/mutate', body: review('no-cert'), contentType: 'application/json', ...versionOption(maxVersion) }), refused);
      const stranger = clientCertificate(otherCa, 'kube-apiserver');
      await assert.rejects(httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/mutate', body: review('other-ca'), contentType: 'application/json', cert: stranger.certificate, key: stranger.privateKey, ...versionOption(maxVersion) }), refused);
      // A server certificate of the right CA is not a client certificate either.
      const serverOnly = issueCertificate(apiServerCa, { commonName: 'kube-apiserver', usage: 'server', validityMs: 3_600_000 });
      await assert.rejects(httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz', cert: serverOnly.certificate, key: serverOnly.privateKey, ...versionOption(maxVersion) }), refused);
      await assert.rejects(httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz', ...versionOption(maxVersion) }), refused);
      assert.equal(await admissions(), before, 'no admission was handled');
      assert.equal(reader.total, reads, 'no ConfigMap was read');
    });
  }

  test('a client certificate from the configured CA is served', async () => {
    const apiServer = clientCertificate(apiServerCa, 'kube-apiserver');
    const answer = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/mutate', body: review('right-ca'), contentType: 'application/json', cert: apiServer.certificate, key: apiServer.privateKey });
    assert.equal(answer.status, 200);
    assert.equal((JSON.parse(answer.text) as { response: { uid: string } }).response.uid, 'right-ca');
    assert.equal(reader.take().length, 1);
    const health = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz', cert: apiServer.certificate, key: apiServer.privateKey });
    assert.equal(health.status, 200);
    assert.deepEqual(parts.log.leaks, []);
  });
});

function versionOption(maxVersion: 'TLSv1.3' | 'TLSv1.2'): { maxVersion: 'TLSv1.3' | 'TLSv1.2' } {
  return { maxVersion };
}

describe('without client certificates: a forged review reads only the namespace it names', () => {
  let tls: TlsMaterial;
  let server: RunningServer;
  let parts: ReturnType<typeof traceParts>;
  let reader: RecordingReader;

  before(async () => {
    tls = writeTls();
    reader = new RecordingReader({ app: { data: { a: CANARY, b: CANARY } }, shared: { data: { token: CANARY } } });
    parts = traceParts(reader);
    server = await startServer(parts, { host: '127.0.0.1', port: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, drainSeconds: 0 });
  });
  after(async () => {
    await server.stop();
    tls.cleanup();
  });

  test('request.namespace A, object claiming namespace B and naming ConfigMaps elsewhere: reads in A only; the answer carries no data', async (t) => {
    const object = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      // The object lies about its namespace; references try every way out of the namespace.
      metadata: { name: 'web', namespace: 'kube-system', annotations: { [CONTRACT.extraConfigMapsAnnotation]: 'shared, kube-system/shared, ../kube-system/shared' } },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        template: {
          metadata: { namespace: 'kube-system', labels: { app: 'web' } },
          spec: {
            containers: [{
              name: 'app',
              image: 'x',
              env: [
                { name: 'A', valueFrom: { configMapKeyRef: { name: 'app', key: 'a' } } },
                { name: 'B', valueFrom: { configMapKeyRef: { name: 'kube-system/app', key: 'a', namespace: 'kube-system' } } },
                { name: 'C', valueFrom: { configMapKeyRef: { name: '../../namespaces/kube-system/configmaps/app', key: 'a' } } },
              ],
              envFrom: [{ configMapRef: { name: 'app', namespace: 'kube-system' } }],
            }],
            volumes: [{ name: 'v', projected: { sources: [{ configMap: { name: 'shared', namespace: 'kube-system' } }] } }],
          },
        },
      },
    };
    const body = JSON.stringify(reviewBody(admissionRequest(object, { uid: 'forged', namespace: 'team-a' })));
    reader.take();
    const answer = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/mutate', body, contentType: 'application/json' });
    assert.equal(answer.status, 200);
    const reads = reader.take();
    t.diagnostic(`reads: ${reads.map((r) => `${r.namespace}/${r.name}`).join(', ')}`);
    assert.ok(reads.length > 0);
    assert.deepEqual([...new Set(reads.map((r) => r.namespace))], ['team-a'], 'every read in the namespace the request names');

    const { response } = JSON.parse(answer.text) as { response: Record<string, unknown> };
    assert.deepEqual(Object.keys(response).sort(), ['allowed', 'patch', 'patchType', 'uid', 'warnings'].filter((k) => k in response).sort());
    assert.ok(!answer.text.includes(CANARY), 'no ConfigMap data in the answer');
    const operations = JSON.parse(Buffer.from(response['patch'] as string, 'base64').toString('utf8')) as jsonpatch.Operation[];
    const paths = operations.map((op) => op.path).sort();
    assert.deepEqual(paths, ['/metadata/annotations/config-checksum.io~1sources', '/spec/template/metadata/annotations']);
    for (const op of operations) {
      assert.equal(op.op, 'add');
      const value = (op as jsonpatch.AddOperation<unknown>).value;
      if (op.path === '/spec/template/metadata/annotations') assert.deepEqual(Object.keys(value as object), ['checksum/config']);
      const text = JSON.stringify(value);
      assert.ok(!text.includes(CANARY));
    }
    const checksum = ((operations.find((op) => op.path === '/spec/template/metadata/annotations') as jsonpatch.AddOperation<Record<string, string>>).value)['checksum/config'];
    assert.match(checksum ?? '', /^[0-9a-f]{64}$/);
    for (const warning of (response['warnings'] ?? []) as string[]) assert.match(warning, /^config-checksum: [\x20-\x7e]+$/);
    t.diagnostic(`answer: ${(response['warnings'] as string[] | undefined)?.length ?? 0} warnings; sources ${JSON.stringify((operations.find((op) => op.path.endsWith('sources')) as jsonpatch.AddOperation<string>).value)}`);
  });

  test('the same ConfigMap names in different namespaces: each review reads its own namespace', async () => {
    for (const namespace of ['team-a', 'team-b', 'kube-system', 'ünïcode', '']) {
      reader.take();
      await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/mutate', body: review(`ns-${namespace}`, namespace), contentType: 'application/json' });
      const reads = reader.take();
      if (namespace === '') assert.deepEqual(reads, [], 'no namespace: nothing read');
      else assert.deepEqual(reads, [{ namespace, name: 'app' }]);
    }
    assert.deepEqual(parts.log.leaks, []);
  });
});
