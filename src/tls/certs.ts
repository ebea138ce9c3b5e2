// X.509 with node-forge: a CA, and certificates it issues (serving, client). Rules the API server's Go TLS
// client enforces, all kept here: SANs (the CN is ignored), SHA-256 signatures (node-forge would default to
// SHA-1, which Go refuses), a CA with basicConstraints CA:true and keyCertSign, serverAuth on serving certs.

import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import forge from 'node-forge';

export interface KeyPairPem {
  /** PEM certificate. */
  readonly certificate: string;
  /** PEM private key (PKCS#1 RSA). */
  readonly privateKey: string;
}

export interface IssueOptions {
  readonly commonName: string;
  readonly organizations?: readonly string[];
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly usage: 'server' | 'client' | 'server-and-client';
  /** Lifetime from now. Short lifetimes (seconds) are for rotation tests. */
  readonly validityMs: number;
  /** Issue time (ms since epoch); defaults to the clock. Tests of rotation pass a simulated one. */
  readonly now?: number;
}

const DAY_MS = 86_400_000;
// Back-date notBefore so a node whose clock runs a little behind still accepts a fresh certificate.
const CLOCK_SKEW_MS = 5 * 60_000;

export function createCertificateAuthority(commonName: string, validityMs = 365 * DAY_MS, now = Date.now()): KeyPairPem {
  const { publicKey, privateKey, forgePrivateKey } = newRsaKey();
  const certificate = baseCertificate(publicKey, validityMs, now);
  const subject = [{ name: 'commonName', value: commonName }];
  certificate.setSubject(subject);
  certificate.setIssuer(subject);
  certificate.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  certificate.sign(forgePrivateKey, forge.md.sha256.create());
  return { certificate: forge.pki.certificateToPem(certificate), privateKey };
}

export function issueCertificate(ca: KeyPairPem, options: IssueOptions): KeyPairPem {
  const caCertificate = forge.pki.certificateFromPem(ca.certificate);
  const caKey = forge.pki.privateKeyFromPem(ca.privateKey);
  const { publicKey, privateKey } = newRsaKey();
  // Never outlive the CA: a chain with an expired root fails even while the leaf is valid.
  const now = options.now ?? Date.now();
  const validityMs = Math.min(options.validityMs, caCertificate.validity.notAfter.getTime() - now);
  const certificate = baseCertificate(publicKey, validityMs, now);
  certificate.setSubject([
    { name: 'commonName', value: options.commonName },
    ...(options.organizations ?? []).map((value) => ({ name: 'organizationName', value })),
  ]);
  certificate.setIssuer(caCertificate.subject.attributes);
  const altNames = [
    ...(options.dnsNames ?? []).map((value) => ({ type: 2, value })),
    ...(options.ipAddresses ?? []).map((ip) => ({ type: 7, ip })),
  ];
  certificate.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    {
      name: 'extKeyUsage',
      serverAuth: options.usage !== 'client',
      clientAuth: options.usage !== 'server',
    },
    ...(altNames.length > 0 ? [{ name: 'subjectAltName', altNames }] : []),
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCertificate.generateSubjectKeyIdentifier().getBytes() },
  ]);
  certificate.sign(caKey, forge.md.sha256.create());
  return { certificate: forge.pki.certificateToPem(certificate), privateKey };
}

/** Validity window of the first certificate in a PEM bundle (node:crypto parses, forge is not needed). */
export function certificateValidity(pem: string): { notBefore: Date; notAfter: Date } {
  const certificate = new X509Certificate(pem);
  return { notBefore: new Date(certificate.validFrom), notAfter: new Date(certificate.validTo) };
}

function newRsaKey(): { publicKey: forge.pki.rsa.PublicKey; privateKey: string; forgePrivateKey: forge.pki.rsa.PrivateKey } {
  const pair = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  });
  return {
    publicKey: forge.pki.publicKeyFromPem(pair.publicKey),
    privateKey: pair.privateKey,
    forgePrivateKey: forge.pki.privateKeyFromPem(pair.privateKey),
  };
}

function baseCertificate(publicKey: forge.pki.rsa.PublicKey, validityMs: number, now: number): forge.pki.Certificate {
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = publicKey;
  // A positive 128-bit serial: clear the top bit so the DER integer is not read as negative.
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f;
  certificate.serialNumber = serial.toString('hex');
  certificate.validity.notBefore = new Date(now - CLOCK_SKEW_MS);
  certificate.validity.notAfter = new Date(now + validityMs);
  return certificate;
}

/** The SANs a serving certificate needs for a Service: name, name.ns, name.ns.svc, name.ns.svc.cluster.local. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`];
}

export { DAY_MS };
