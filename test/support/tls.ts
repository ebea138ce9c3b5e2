// Certificates for the test suites: a CA and a serving certificate for 127.0.0.1, in memory or on disk.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCertificateAuthority, issueCertificate, type KeyPairPem } from '../../src/tls/certs.ts';

export interface TlsMaterial {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly ca: KeyPairPem;
  readonly serving: KeyPairPem;
  cleanup(): void;
}

export function servingPair(commonName = 'config-checksum-test-ca'): { ca: KeyPairPem; serving: KeyPairPem } {
  const ca = createCertificateAuthority(commonName);
  const serving = issueCertificate(ca, { commonName: 'config-checksum-webhook', ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'], usage: 'server', validityMs: 3_600_000 });
  return { ca, serving };
}

export function writeTls(): TlsMaterial {
  const dir = mkdtempSync(join(tmpdir(), 'config-checksum-tls-'));
  const { ca, serving } = servingPair();
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  writeFileSync(certFile, serving.certificate);
  writeFileSync(keyFile, serving.privateKey);
  return { dir, certFile, keyFile, ca, serving, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
