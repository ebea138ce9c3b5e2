// The TLS server around the fastify app: listen, reload the certificate when its files change, drain on stop.

import { readFileSync, watchFile, unwatchFile } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type https from 'node:https';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { KeyPairPem } from '../tls/certs.ts';
import { buildApp, type AppParts } from './app.ts';
import { DRAINING } from './readiness.ts';
import { loggableError } from '../telemetry/logger.ts';

// After the drain window, how long requests still in flight may take before their connections are closed:
// above the 5 s webhook timeout the API server gives any of them.
export const CLOSE_GRACE_MS = 6_000;

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** When set, clients must present a certificate signed by this CA (only the API server should call us). */
  readonly clientCaFile?: string | undefined;
}

/** A certificate held in memory (self-managed mode): replaced with setCertificate(). */
export interface TlsInMemory {
  readonly pair: KeyPairPem;
  readonly clientCaFile?: string | undefined;
}

export interface ServerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: TlsFiles | TlsInMemory;
  readonly drainSeconds: number;
  /** How often the certificate files are checked for changes (stat polling survives symlink swaps). */
  readonly certPollMs?: number;
}

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly port: number;
  /** Reload the certificate now (also happens on its own when the files change). */
  reloadCertificate(): boolean;
  /** Serve this certificate to new connections (in-memory mode); false if the pair is unusable. */
  setCertificate(pair: KeyPairPem): boolean;
  /** Go unready, keep serving for the drain window, then close. */
  stop(): Promise<void>;
}

// Secret volumes update by an atomic symlink swap that fs.watch can miss; polling the stat cannot.
const DEFAULT_CERT_POLL_MS = 2_000;

export async function startServer(parts: AppParts, options: ServerOptions): Promise<RunningServer> {
  const tls = options.tls;
  const files = 'certFile' in tls ? tls : undefined;
  let pair = 'pair' in tls ? tls.pair : undefined;
  const tlsOptions = (): https.ServerOptions => {
    const material = {
      cert: files ? readFileSync(files.certFile) : pair!.certificate,
      key: files ? readFileSync(files.keyFile) : pair!.privateKey,
      ...(tls.clientCaFile ? { ca: readFileSync(tls.clientCaFile), requestCert: true, rejectUnauthorized: true } : {}),
    };
    createSecureContext(material); // throws on a key that does not match the certificate
    return { ...material, minVersion: 'TLSv1.2' };
  };

  const app = buildApp(parts, tlsOptions());
  const sockets = openSockets(app.server);
  const reloadCertificate = (): boolean => {
    try {
      (app.server as https.Server).setSecureContext(tlsOptions());
      parts.metrics.certificateReloads.inc({ result: 'loaded' });
      parts.logger.info({ source: files?.certFile ?? 'memory' }, 'serving certificate loaded');
      return true;
    } catch (error) {
      // Keep serving the previous certificate: a half-written pair must not take the webhook down.
      parts.metrics.certificateReloads.inc({ result: 'rejected' });
      parts.logger.warn({ err: loggableError(error) }, 'serving certificate not reloaded; keeping the previous one');
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
  const watched = files ? [files.certFile, files.keyFile] : [];
  for (const file of watched) watchFile(file, { interval: pollMs, persistent: false }, onChange);

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
      for (const file of watched) unwatchFile(file, onChange);
      // Requests in flight get CLOSE_GRACE_MS to finish (each is bounded by its own deadline); then every
      // connection left is closed, so a stop always ends.
      const force = setTimeout(() => {
        parts.logger.warn({ connections: sockets.size }, 'closing the connections left after the grace period');
        for (const socket of sockets) socket.destroy();
      }, CLOSE_GRACE_MS);
      await app.close();
      clearTimeout(force);
      parts.logger.info('stopped');
    })();
    return stopping;
  };
  const setCertificate = (next: KeyPairPem): boolean => {
    const previous = pair;
    pair = next;
    if (reloadCertificate()) return true;
    pair = previous;
    return false;
  };
  return { app, port, reloadCertificate, setCertificate, stop };
}

/**
 * Every TCP connection of `server`, from accept on: a socket still in its TLS handshake (or one that never
 * sends a byte) is not an HTTP connection yet, so neither fastify nor closeAllConnections() knows it, and
 * server.close() would wait for it until the handshake timeout (120 s).
 */
function openSockets(server: FastifyInstance['server']): ReadonlySet<Socket> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return sockets;
}
