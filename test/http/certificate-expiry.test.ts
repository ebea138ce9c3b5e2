// config_checksum_certificate_expiration_timestamp_seconds from the running server (src/server/https.ts):
// set when a certificate is loaded and again at every reload, in both modes. Files: the CA is the one of the
// chain or of the ca.crt beside the certificate (cert-manager's layout). In memory (self-managed): the CA is
// the one of the bundle published with the certificate that issued it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { startServer } from '../../src/server/https.ts';
import { createCertificateAuthority, DAY_MS, issueCertificate, type KeyPairPem } from '../../src/tls/certs.ts';
import { FakeReader } from '../support/fakes.ts';
import { servingPair, writeTls } from '../support/tls.ts';
import { testParts } from './support.ts';

const NAME = 'config_checksum_certificate_expiration_timestamp_seconds';

function notAfter(pem: string): number {
  return Math.floor(new Date(new X509Certificate(pem).validTo).getTime() / 1000);
}

async function expiry(parts: ReturnType<typeof testParts>): Promise<Record<string, number>> {
  const text = await parts.metrics.registry.metrics();
  return Object.fromEntries([...text.matchAll(new RegExp(`^${NAME}\\{certificate="(\\w+)"\\} (\\S+)$`, 'gm'))].map((m) => [m[1]!, Number(m[2])]));
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function leafOf(ca: KeyPairPem, days: number): KeyPairPem {
  return issueCertificate(ca, { commonName: 'config-checksum-webhook', ipAddresses: ['127.0.0.1'], usage: 'server', validityMs: days * DAY_MS });
}

test('files: the certificate alone gives the serving sample only; a ca.crt beside it adds the CA, and a reload follows both', async () => {
  const tls = writeTls();
  const parts = testParts(new FakeReader({}));
  const server = await startServer(parts, { host: '127.0.0.1', port: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, drainSeconds: 0, certPollMs: 100 });
  try {
    assert.deepEqual(await expiry(parts), { serving: notAfter(tls.serving.certificate) });

    // cert-manager's Secret as mounted: tls.crt, tls.key and ca.crt, replaced together.
    const ca = createCertificateAuthority('renewed CA', 90 * DAY_MS);
    const renewed = leafOf(ca, 20);
    writeFileSync(join(tls.dir, 'ca.crt'), ca.certificate);
    writeFileSync(tls.keyFile, renewed.privateKey);
    writeFileSync(tls.certFile, renewed.certificate);
    const wanted = { serving: notAfter(renewed.certificate), ca: notAfter(ca.certificate) };
    await until('the reload', async () => JSON.stringify(await expiry(parts)) === JSON.stringify(wanted));
    assert.ok(wanted.serving < wanted.ca);
  } finally {
    await server.stop();
    tls.cleanup();
  }
});

test('in memory: the CA of the bundle that issued the certificate; setCertificate with a leaf of a new CA moves both', async () => {
  const first = servingPair('first CA');
  const second = createCertificateAuthority('second CA', 400 * DAY_MS);
  const parts = testParts(new FakeReader({}));
  // Mid-rotation: the new CA is in the bundle first, the served certificate is still the old CA's.
  const server = await startServer(parts, { host: '127.0.0.1', port: 0, tls: { pair: first.serving, issuers: `${second.certificate}${first.ca.certificate}` }, drainSeconds: 0 });
  try {
    assert.deepEqual(await expiry(parts), { serving: notAfter(first.serving.certificate), ca: notAfter(first.ca.certificate) });
    const next = leafOf(second, 30);
    assert.equal(server.setCertificate(next, `${second.certificate}${first.ca.certificate}`), true);
    assert.deepEqual(await expiry(parts), { serving: notAfter(next.certificate), ca: notAfter(second.certificate) });
    // No bundle given: the CA is not known, and its sample goes rather than stay stale.
    assert.equal(server.setCertificate(first.serving), true);
    assert.deepEqual(await expiry(parts), { serving: notAfter(first.serving.certificate) });
    // A pair that does not load changes nothing.
    assert.equal(server.setCertificate({ certificate: next.certificate, privateKey: first.serving.privateKey }, second.certificate), false);
    assert.deepEqual(await expiry(parts), { serving: notAfter(first.serving.certificate) });
  } finally {
    await server.stop();
  }
});
