// The TLS server around the fastify app: listen, reload the certificate when its files change, drain on stop.

import { readFileSync, watchFile, unwatchFile } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type https from 'node:https';
import type { FastifyInstance } from 'fastify';
import { buildApp, type AppParts } from './app.ts';
import { DRAINING } from './readiness.ts';

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** When set, clients must present a certificate signed by this CA (only the API server should call us). */
  readonly clientCaFile?: string | undefined;
}

export interface ServerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: TlsFiles;
  readonly drainSeconds: number;
  /** How often the certificate files are checked for changes (stat polling survives symlink swaps). */
  readonly certPollMs?: number;
}

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly port: number;
  /** Reload the certificate now (also happens on its own when the files change). */
  reloadCertificate(): boolean;
  /** Go unready, keep serving for the drain window, then close. */
  stop(): Promise<void>;
}

// Secret volumes update by an atomic symlink swap that fs.watch can miss; polling the stat cannot.
const DEFAULT_CERT_POLL_MS = 2_000;

export async function startServer(parts: AppParts, options: ServerOptions): Promise<RunningServer> {
  const tlsOptions = (): https.ServerOptions => {
    const material = {
      cert: readFileSync(options.tls.certFile),
      key: readFileSync(options.tls.keyFile),
      ...(options.tls.clientCaFile ? { ca: readFileSync(options.tls.clientCaFile), requestCert: true, rejectUnauthorized: true } : {}),
    };
    createSecureContext(material); // throws on a key that does not match the certificate
    return { ...material, minVersion: 'TLSv1.2' };
  };

  const app = buildApp(parts, tlsOptions());
  const reloadCertificate = (): boolean => {
    try {
      (app.server as https.Server).setSecureContext(tlsOptions());
      parts.metrics.certificateReloads.inc({ result: 'loaded' });
      parts.logger.info({ certFile: options.tls.certFile }, 'serving certificate loaded');
      return true;
    } catch (error) {
      // Keep serving the previous certificate: a half-written pair must not take the webhook down.
      parts.metrics.certificateReloads.inc({ result: 'rejected' });
      parts.logger.warn({ err: { message: (error as Error).message } }, 'serving certificate not reloaded; keeping the previous one');
      return false;
    }
  };
  const pollMs = options.certPollMs ?? DEFAULT_CERT_POLL_MS;
  // Certificate and key are often written one after the other: reload once both have settled, not
  // in between (which would be rejected as a mismatched pair and logged for nothing).
  let settle: NodeJS.Timeout | undefined;
  const onChange = (current: { mtimeMs: number; size: number }, previous: { mtimeMs: number; size: number }): void => {
    if (current.mtimeMs === previous.mtimeMs && current.size === previous.size) return;
    clearTimeout(settle);
    settle = setTimeout(reloadCertificate, Math.min(250, pollMs));
  };
  for (const file of [options.tls.certFile, options.tls.keyFile]) watchFile(file, { interval: pollMs, persistent: false }, onChange);

  await app.listen({ host: options.host, port: options.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  parts.logger.info({ host: options.host, port }, 'listening');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // The API server keeps using open connections after an endpoint goes away, so keep answering
      // (with Connection: close, see app.ts) for the drain window before closing.
      parts.readiness.block(DRAINING);
      parts.logger.info({ drainSeconds: options.drainSeconds }, 'draining');
      await new Promise((resolve) => setTimeout(resolve, options.drainSeconds * 1000));
      clearTimeout(settle);
      for (const file of [options.tls.certFile, options.tls.keyFile]) unwatchFile(file, onChange);
      await app.close();
      parts.logger.info('stopped');
    })();
    return stopping;
  };
  return { app, port, reloadCertificate, stop };
}
