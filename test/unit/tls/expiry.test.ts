// certificateExpiry (src/tls/expiry.ts): the notAfter of the served certificate and of the CA that issued
// it, found among the chain after it and the candidates given (a caBundle, a ca.crt), whatever else those hold.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { X509Certificate } from 'node:crypto';
import { createCertificateAuthority, DAY_MS, issueCertificate, type KeyPairPem } from '../../../src/tls/certs.ts';
import { certificateExpiry } from '../../../src/tls/expiry.ts';

const NOW = Date.UTC(2030, 0, 1);

function notAfter(pem: string): number {
  return Math.floor(new Date(new X509Certificate(pem).validTo).getTime() / 1000);
}

function leafOf(ca: KeyPairPem, validityMs: number): KeyPairPem {
  return issueCertificate(ca, { now: NOW, commonName: 'config-checksum-webhook', dnsNames: ['config-checksum-webhook.config-checksum.svc'], usage: 'server', validityMs });
}

const ca = createCertificateAuthority('expiry test CA', 365 * DAY_MS, NOW);
const other = createCertificateAuthority('another CA', 100 * DAY_MS, NOW);
const leaf = leafOf(ca, 30 * DAY_MS);

test('the served certificate alone: its notAfter, and no CA', () => {
  assert.deepEqual(certificateExpiry(leaf.certificate), { serving: notAfter(leaf.certificate), ca: undefined });
  assert.equal(certificateExpiry(leaf.certificate).serving, Math.floor((NOW + 30 * DAY_MS) / 1000));
});

test('the issuer found in a bundle of several CAs (a self-managed bundle mid-rotation), in either order', () => {
  for (const bundle of [`${other.certificate}${ca.certificate}`, `${ca.certificate}\n${other.certificate}`]) {
    assert.deepEqual(certificateExpiry(leaf.certificate, bundle), { serving: notAfter(leaf.certificate), ca: notAfter(ca.certificate) });
  }
});

test('the issuer found in the chain that follows the certificate in the same file', () => {
  assert.equal(certificateExpiry(`${leaf.certificate}${ca.certificate}`).ca, notAfter(ca.certificate));
});

test('a CA with the same name but another key is not the issuer', () => {
  const impostor = createCertificateAuthority('expiry test CA', 365 * DAY_MS, NOW);
  assert.equal(certificateExpiry(leaf.certificate, impostor.certificate).ca, undefined);
  assert.equal(certificateExpiry(leaf.certificate, other.certificate).ca, undefined);
});

test('a self-signed certificate (cert-manager selfSigned issuer: ca.crt is the certificate) is its own CA', () => {
  assert.deepEqual(certificateExpiry(ca.certificate, ca.certificate), { serving: notAfter(ca.certificate), ca: notAfter(ca.certificate) });
});

test('candidates that do not parse are passed over; a served file without a certificate is an error', () => {
  const broken = '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n';
  assert.equal(certificateExpiry(leaf.certificate, `${broken}garbage\n${ca.certificate}`).ca, notAfter(ca.certificate));
  assert.throws(() => certificateExpiry('no certificate here'), /no PEM certificate/);
});
