// The API-server client (src/kube/http.ts) against a loopback HTTPS server standing in for kube-apiserver:
// how requests leave the process. IPv6 server URLs, a path prefix in the kubeconfig's server URL, the
// field manager on writes and the User-Agent on every request (DESIGN section 7).

import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node/dist/config.js';
import { KubeHttp } from '../../src/kube/http.ts';
import { PRODUCT_VERSION } from '../../src/product.ts';
import { createCertificateAuthority, issueCertificate } from '../../src/tls/certs.ts';
import packageJson from '../../package.json' with { type: 'json' };

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly userAgent: string | undefined;
}

const authority = createCertificateAuthority('kube-http-test-ca');
const serving = issueCertificate(authority, { commonName: 'kube-apiserver', ipAddresses: ['127.0.0.1', '::1'], dnsNames: ['localhost'], usage: 'server', validityMs: 3_600_000 });
const servers: https.Server[] = [];
after(() => servers.forEach((server) => server.close()));

/** An HTTPS server on `host` that answers {} and records what reached it. */
async function apiServer(host: string): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = https.createServer({ cert: serving.certificate, key: serving.privateKey }, (request, response) => {
    seen.push({ method: request.method ?? '', url: request.url ?? '', userAgent: request.headers['user-agent'] });
    request.resume();
    request.on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { port: (server.address() as AddressInfo).port, seen };
}

function clientFor(server: string): KubeHttp {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server, caData: Buffer.from(authority.certificate).toString('base64') }],
    users: [{ name: 'u', token: 'test-token' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return new KubeHttp(kubeConfig);
}

test('an IPv6 server URL with a path prefix: requests reach [::1] under the prefix', async () => {
  const { port, seen } = await apiServer('::1');
  const http = clientFor(`https://[::1]:${port}/k8s/clusters/c-x/`);
  try {
    assert.equal((await http.request('GET', '/api/v1/namespaces/a/configmaps/b')).status, 200);
    assert.deepEqual(seen.map((s) => s.url), ['/k8s/clusters/c-x/api/v1/namespaces/a/configmaps/b']);
  } finally {
    http.close();
  }
});

test('writes name the field manager (added to any query they have); reads do not; every request carries the User-Agent', async () => {
  const { port, seen } = await apiServer('127.0.0.1');
  const http = clientFor(`https://127.0.0.1:${port}`);
  try {
    await http.request('GET', '/apis/apps/v1/namespaces/a/deployments/d');
    await http.request('PATCH', '/apis/apps/v1/namespaces/a/deployments/d', { body: [], contentType: 'application/json-patch+json' });
    await http.request('POST', '/api/v1/namespaces/a/events?dryRun=All', { body: {} });
    await http.request('PUT', '/apis/coordination.k8s.io/v1/namespaces/a/leases/l', { body: {} });
  } finally {
    http.close();
  }
  assert.deepEqual(seen.map((s) => `${s.method} ${s.url}`), [
    'GET /apis/apps/v1/namespaces/a/deployments/d',
    'PATCH /apis/apps/v1/namespaces/a/deployments/d?fieldManager=config-checksum-webhook',
    'POST /api/v1/namespaces/a/events?dryRun=All&fieldManager=config-checksum-webhook',
    'PUT /apis/coordination.k8s.io/v1/namespaces/a/leases/l?fieldManager=config-checksum-webhook',
  ]);
  assert.equal(PRODUCT_VERSION, packageJson.version, 'the version comes from package.json');
  for (const request of seen) assert.equal(request.userAgent, `config-checksum-webhook/${packageJson.version}`);
});
