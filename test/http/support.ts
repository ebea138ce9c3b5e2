// Building the app's parts for tests, certificates on disk, and a small HTTPS client that reports the peer.

import https from 'node:https';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { AppParts } from '../../src/server/app.ts';
import { Readiness } from '../../src/server/readiness.ts';
import { createCertificateAuthority, issueCertificate, type KeyPairPem } from '../../src/tls/certs.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import type { ConfigMapReader } from '../../src/kube/configmaps.ts';
import type { MutateSettings } from '../../src/admission/mutate.ts';
import { SETTINGS } from '../unit/fakes.ts';

/** Every JSON log line the app writes, parsed. */
export class LogLines extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      this.raw.push(line);
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    callback();
  }
}

export function testParts(reader: ConfigMapReader, settings: Partial<MutateSettings> = {}): AppParts & { logs: LogLines } {
  const logs = new LogLines();
  return {
    reader,
    settings: { ...SETTINGS, ...settings },
    logger: createLogger('info', logs),
    metrics: createMetrics(),
    readiness: new Readiness(),
    logs,
  };
}

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

export interface HttpsAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  readonly json: unknown;
  /** SHA-256 fingerprint of the certificate the server presented. */
  readonly fingerprint256: string;
  readonly reusedSocket: boolean;
}

export interface HttpsCall {
  readonly port: number;
  readonly ca: string;
  readonly method?: string;
  readonly path: string;
  readonly headers?: Record<string, string | number>;
  readonly body?: string | Buffer;
  /** Defaults to a fresh connection (agent: false). */
  readonly agent?: https.Agent;
  readonly cert?: string;
  readonly key?: string;
}

export function httpsCall(call: HttpsCall): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const request = https.request(
      {
        host: '127.0.0.1',
        port: call.port,
        method: call.method ?? 'GET',
        path: call.path,
        ca: call.ca,
        agent: call.agent ?? false,
        ...(call.cert ? { cert: call.cert, key: call.key } : {}),
        headers: { ...(call.body !== undefined ? { 'content-length': Buffer.byteLength(call.body) } : {}), ...call.headers },
      },
      (response) => {
        const socket = response.socket as import('node:tls').TLSSocket;
        const fingerprint256 = socket.getPeerCertificate().fingerprint256;
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: response.statusCode ?? 0, headers: response.headers, text, json, fingerprint256, reusedSocket: request.reusedSocket });
        });
      },
    );
    request.on('error', reject);
    request.end(call.body);
  });
}

export function postJson(port: number, ca: string, body: unknown, extra: Partial<HttpsCall> = {}): Promise<HttpsAnswer> {
  return httpsCall({ port, ca, method: 'POST', path: '/mutate', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...extra });
}
