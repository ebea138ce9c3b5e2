// The webhook over real TLS (src/server/https.ts): certificates from src/tls/certs.ts on disk, startServer on
// 127.0.0.1:0, node:https as the client. Envelope, malformed requests, the body limit, certificate hot reload,
// health, drain, metrics.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../../src/server/https.ts';
import { BODY_LIMIT_BYTES } from '../../src/server/app.ts';
import { issueCertificate } from '../../src/tls/certs.ts';
import type { ConfigMapLookup } from '../../src/checksum/compute.ts';
import type { ConfigMapReader } from '../../src/kube/configmaps.ts';
import { admissionRequest, decodePatch, FakeReader, reviewBody, workload } from '../support/fakes.ts';
import { testParts } from './support.ts';
import { httpsCall, postJson } from '../support/https.ts';
import { type TlsMaterial, servingPair, writeTls } from '../support/tls.ts';

const CONFIG = { 'app-config': { data: { LOG_LEVEL: 'debug' } } };
const review = (uid: string, options: Parameters<typeof admissionRequest>[1] = {}): Record<string, unknown> =>
  reviewBody(admissionRequest(workload(), { uid, ...options }));

function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

async function until<T>(what: string, attempt: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await attempt().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('webhook over TLS', () => {
  let tls: TlsMaterial;
  let server: RunningServer;
  let parts: ReturnType<typeof testParts>;

  before(async () => {
    tls = writeTls();
    parts = testParts(new FakeReader(CONFIG));
    server = await startServer(parts, { host: '127.0.0.1', port: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, drainSeconds: 0, certPollMs: 100 });
  });

  after(async () => {
    await server.stop();
    tls.cleanup();
  });

  test('serves the certificate from disk, signed by the CA, for 127.0.0.1', async () => {
    const answer = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz' });
    assert.equal(answer.status, 200);
    assert.equal(answer.fingerprint256, fingerprintOf(tls.serving.certificate));
  });

  test('a client that does not trust the CA is refused', async () => {
    const other = servingPair('someone-else');
    await assert.rejects(httpsCall({ port: server.port, ca: other.ca.certificate, path: '/healthz' }), /self-signed|unable to verify|certificate/i);
  });

  test('admission: uid echoed, apiVersion and kind, patchType only with patch', async () => {
    const patched = await postJson(server.port, tls.ca.certificate, review('uid-patched'));
    assert.equal(patched.status, 200);
    const body = patched.json as { apiVersion: string; kind: string; response: Record<string, unknown> };
    assert.equal(body.apiVersion, 'admission.k8s.io/v1');
    assert.equal(body.kind, 'AdmissionReview');
    assert.equal(body.response['uid'], 'uid-patched');
    assert.equal(body.response['allowed'], true);
    assert.equal(body.response['patchType'], 'JSONPatch');
    assert.ok(decodePatch(body.response['patch'] as string).length > 0);

    const skipped = await postJson(server.port, tls.ca.certificate, review('uid-skipped', { subResource: 'scale', kind: { group: 'autoscaling', version: 'v1', kind: 'Scale' } }));
    assert.deepEqual(skipped.json, { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'uid-skipped', allowed: true } });
  });

  const malformed: Array<[string, Record<string, string>, string, RegExp]> = [
    ['non-JSON', { 'content-type': 'application/json' }, 'not json at all', /not valid JSON/],
    ['text/plain', { 'content-type': 'text/plain' }, '{}', /content-type must be application\/json/],
    ['missing uid', { 'content-type': 'application/json' }, JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, operation: 'CREATE' } }), /request.uid/],
    ['wrong apiVersion', { 'content-type': 'application/json' }, JSON.stringify({ ...review('u'), apiVersion: 'admission.k8s.io/v1beta1' }), /expected apiVersion admission.k8s.io\/v1/],
    ['missing request', { 'content-type': 'application/json' }, JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), /no request/],
  ];
  for (const [label, headers, body, message] of malformed) {
    test(`400 with a message: ${label}`, async () => {
      const answer = await httpsCall({ port: server.port, ca: tls.ca.certificate, method: 'POST', path: '/mutate', headers, body });
      assert.equal(answer.status, 400);
      assert.match((answer.json as { message: string }).message, message);
    });
  }

  test('oversize body: 413 with a message, and the server keeps serving', async () => {
    const answer = await httpsCall({
      port: server.port,
      ca: tls.ca.certificate,
      method: 'POST',
      path: '/mutate',
      headers: { 'content-type': 'application/json' },
      body: Buffer.alloc(BODY_LIMIT_BYTES + 1024, 0x20),
    });
    assert.equal(answer.status, 413);
    assert.match((answer.json as { message: string }).message, /body larger than/);
    const next = await postJson(server.port, tls.ca.certificate, review('after-oversize'));
    assert.equal(next.status, 200);
    assert.equal((next.json as { response: { uid: string } }).response.uid, 'after-oversize');
  });

  test('/healthz and /readyz answer 200 while serving', async () => {
    assert.equal((await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz' })).status, 200);
    const ready = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/readyz' });
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.json, { status: 'ready' });
  });

  test('/metrics exposes config_checksum_admissions_total after an admission', async () => {
    await postJson(server.port, tls.ca.certificate, review('for-metrics', { operation: 'UPDATE', oldObject: workload() }));
    const metrics = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/metrics' });
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /config_checksum_admissions_total\{kind="Deployment",operation="UPDATE",outcome="patched",reason="computed"\} 1/);
    assert.match(metrics.text, /config_checksum_bad_requests_total\{status="413"\} 1/);
  });

  // Last in this suite: it replaces the certificate the other tests trust.
  test('a certificate swapped on disk is served to the next new connection, without a restart', async () => {
    const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const oldFingerprint = fingerprintOf(tls.serving.certificate);
    const warm = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz', agent: keepAlive });
    assert.equal(warm.fingerprint256, oldFingerprint);

    const fresh = servingPair('rotated-ca');
    writeFileSync(tls.keyFile, fresh.serving.privateKey);
    writeFileSync(tls.certFile, fresh.serving.certificate);
    const newFingerprint = fingerprintOf(fresh.serving.certificate);
    assert.notEqual(newFingerprint, oldFingerprint);

    const rotated = await until('the new certificate', async () => {
      const answer = await httpsCall({ port: server.port, ca: fresh.ca.certificate, path: '/healthz' });
      return answer.status === 200 ? answer : undefined;
    });
    assert.equal(rotated.fingerprint256, newFingerprint);
    // New connections no longer get the old certificate.
    await assert.rejects(httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz' }));
    // An admission over a new connection works with the new CA.
    const admitted = await postJson(server.port, fresh.ca.certificate, review('after-rotation'));
    assert.equal((admitted.json as { response: { uid: string } }).response.uid, 'after-rotation');
    // The connection opened before the swap is not interrupted.
    const reused = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz', agent: keepAlive });
    assert.equal(reused.status, 200);
    assert.equal(reused.reusedSocket, true);
    assert.equal(reused.fingerprint256, oldFingerprint);
    keepAlive.destroy();
    assert.match(await parts.metrics.registry.metrics(), /config_checksum_certificate_reloads_total\{result="loaded"\} [1-9]/);
  });

  test('a broken certificate on disk is rejected and the previous one kept', async () => {
    const served = (): Promise<string> =>
      new Promise<string>((resolve, reject) => {
        // Only the fingerprint matters here, whichever CA signed the certificate now being served.
        const request = https.request({ host: '127.0.0.1', port: server.port, path: '/healthz', agent: false, rejectUnauthorized: false }, (response) => {
          resolve((response.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256);
          response.resume();
        });
        request.on('error', reject);
        request.end();
      });
    const before = await served();
    writeFileSync(tls.certFile, 'not a certificate');
    assert.equal(server.reloadCertificate(), false);
    assert.match(await parts.metrics.registry.metrics(), /config_checksum_certificate_reloads_total\{result="rejected"\} [1-9]/);
    await new Promise((resolve) => setTimeout(resolve, 300)); // let the file poll see the broken file too
    assert.equal(await served(), before);
  });
});

describe('drain over TLS', () => {
  test('after stop(): /readyz 503, in-flight and keep-alive requests still succeed, then the port closes', async () => {
    const tls = writeTls();
    let releaseRead: () => void = () => {};
    let readStarted: () => void = () => {};
    const started = new Promise<void>((resolve) => (readStarted = resolve));
    const gate = new Promise<void>((resolve) => (releaseRead = resolve));
    const inner = new FakeReader(CONFIG);
    // The first read waits for the test to release it, so that request is in flight across stop().
    let first = true;
    const reader: ConfigMapReader = {
      async read(namespace: string, name: string, signal: AbortSignal): Promise<ConfigMapLookup> {
        if (first) {
          first = false;
          readStarted();
          await gate;
        }
        return inner.read(namespace, name, signal);
      },
    };
    const parts = testParts(reader);
    const server = await startServer(parts, { host: '127.0.0.1', port: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, drainSeconds: 0.6, certPollMs: 100 });
    const ca = tls.ca.certificate;
    const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const warm = await httpsCall({ port: server.port, ca, path: '/readyz', agent: keepAlive });
      assert.equal(warm.status, 200);

      const inFlight = postJson(server.port, ca, review('in-flight'));
      await started;
      const stopping = server.stop();

      const readyz = await httpsCall({ port: server.port, ca, path: '/readyz', agent: keepAlive });
      assert.equal(readyz.reusedSocket, true, 'the keep-alive connection is still served');
      assert.equal(readyz.status, 503);
      assert.deepEqual(readyz.json, { status: 'not ready', reasons: ['draining'] });
      assert.equal(readyz.headers['connection'], 'close');

      assert.equal((await httpsCall({ port: server.port, ca, path: '/healthz' })).status, 200);
      const during = await postJson(server.port, ca, review('during-drain'));
      assert.equal(during.status, 200);
      assert.equal((during.json as { response: { uid: string; patchType: string } }).response.patchType, 'JSONPatch');

      releaseRead();
      const finished = await inFlight;
      assert.equal(finished.status, 200);
      assert.equal((finished.json as { response: { uid: string; patchType: string } }).response.uid, 'in-flight');
      assert.equal((finished.json as { response: { uid: string; patchType: string } }).response.patchType, 'JSONPatch');

      await stopping;
      await assert.rejects(httpsCall({ port: server.port, ca, path: '/healthz' }), /ECONNREFUSED|ECONNRESET/);
    } finally {
      releaseRead();
      keepAlive.destroy();
      await server.stop();
      tls.cleanup();
    }
  });

  test('with a client CA configured, only clients with a certificate from it are served', async () => {
    const tls = writeTls();
    const clients = servingPair('client-ca');
    const clientCaFile = join(tls.dir, 'client-ca.crt');
    writeFileSync(clientCaFile, clients.ca.certificate);
    const client = issueCertificate(clients.ca, { commonName: 'kube-apiserver', usage: 'client', validityMs: 3_600_000 });
    const server = await startServer(testParts(new FakeReader(CONFIG)), {
      host: '127.0.0.1',
      port: 0,
      tls: { certFile: tls.certFile, keyFile: tls.keyFile, clientCaFile },
      drainSeconds: 0,
    });
    try {
      const ok = await postJson(server.port, tls.ca.certificate, review('mtls'), { cert: client.certificate, key: client.privateKey });
      assert.equal(ok.status, 200);
      await assert.rejects(httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz' }));
      const stranger = issueCertificate(servingPair('stranger').ca, { commonName: 'x', usage: 'client', validityMs: 3_600_000 });
      await assert.rejects(httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/healthz', cert: stranger.certificate, key: stranger.privateKey }));
    } finally {
      await server.stop();
      tls.cleanup();
    }
  });
});
