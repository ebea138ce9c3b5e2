// `npm run certs`: writes a CA and a serving certificate for local runs into a folder (certs/ by default).
// SANs: localhost and 127.0.0.1, plus --dns names and the names of --service/--namespace.
// Existing files are kept while they are valid for another day, unless --force.

import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { certificateValidity, createCertificateAuthority, DAY_MS, issueCertificate, serviceDnsNames } from './certs.ts';

export interface LocalCertificates {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export function writeLocalCertificates(directory: string, dnsNames: readonly string[], ipAddresses: readonly string[], force = false): LocalCertificates & { written: boolean } {
  const files = { caFile: join(directory, 'ca.crt'), certFile: join(directory, 'tls.crt'), keyFile: join(directory, 'tls.key') };
  if (!force && Object.values(files).every((file) => existsSync(file))) {
    const { notAfter } = certificateValidity(readFileSync(files.certFile, 'utf8'));
    if (notAfter.getTime() - Date.now() > DAY_MS) return { ...files, written: false };
  }
  mkdirSync(directory, { recursive: true });
  const ca = createCertificateAuthority('config-checksum-webhook local CA');
  const serving = issueCertificate(ca, {
    commonName: dnsNames[0] ?? 'localhost',
    dnsNames: ['localhost', ...dnsNames],
    ipAddresses: ['127.0.0.1', ...ipAddresses],
    usage: 'server',
    validityMs: 90 * DAY_MS,
  });
  writeFileSync(files.caFile, ca.certificate);
  writeFileSync(join(directory, 'ca.key'), ca.privateKey, { mode: 0o600 });
  writeFileSync(files.certFile, serving.certificate);
  writeFileSync(files.keyFile, serving.privateKey, { mode: 0o600 });
  chmodSync(join(directory, 'ca.key'), 0o600);
  return { ...files, written: true };
}

function main(argv: string[]): void {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string', default: 'certs' },
      dns: { type: 'string', multiple: true, default: [] },
      ip: { type: 'string', multiple: true, default: [] },
      service: { type: 'string' },
      namespace: { type: 'string', default: 'config-checksum' },
      force: { type: 'boolean', default: false },
    },
  });
  const dnsNames = [...values.dns, ...(values.service ? serviceDnsNames(values.service, values.namespace) : [])];
  const result = writeLocalCertificates(values.out, dnsNames, values.ip, values.force);
  console.log(`${result.written ? 'wrote' : 'kept (still valid)'}: ${result.caFile} ${result.certFile} ${result.keyFile}`);
}

if (import.meta.main) {
  try {
    main(process.argv.slice(2));
  } catch (error) {
    console.error(`certs: ${(error as Error).message}`);
    process.exit(2);
  }
}
