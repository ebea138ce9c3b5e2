// The TLS server around the fastify app: listen, reload the certificate when its files change, drain on stop.

import { readFileSync, watchFile, unwatchFile } from 'node:fs';
import path from 'node:path';
import { createSecureContext } from 'node:tls';
import type https from 'node:https';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { KeyPairPem } from '../tls/certs.ts';
import { observeCertificateExpiry } from '../tls/expiry.ts';
import { buildApp, buildHealthApp, type AppParts } from './app.ts';
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
  /** PEM CAs one of which issued the certificate (the caBundle), for the CA's expiry metric. */
  readonly issuers?: string | undefined;
  readonly clientCaFile?: string | undefined;
}

export interface ServerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: TlsFiles | TlsInMemory;
  readonly drainSeconds: number;
  /**
   * With a client CA: the port of a second TLS listener that serves /healthz, /readyz and /metrics to
   * callers without a client certificate (kubelet probes, Prometheus). Unused without a client CA.
   */
  readonly healthPort?: number;
  /** How often the certificate files are checked for changes (stat polling survives symlink swaps). */
  readonly certPollMs?: number;
}

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly port: number;
  /** The health listener's port, when there is one (a client CA is configured). */
  readonly healthPort: number | undefined;
  /** Reload the certificate now (also happens on its own when the files change). */
  reloadCertificate(): boolean;
  /** Serve this certificate to new connections (in-memory mode), `issuers` as in TlsInMemory; false if the pair is unusable. */
  setCertificate(pair: KeyPairPem, issuers?: string): boolean;
  /** Go unready, keep serving for the drain window, then close. */
  stop(): Promise<void>;
}

// Secret volumes update by an atomic symlink swap that fs.watch can miss; polling the stat cannot.
const DEFAULT_CERT_POLL_MS = 2_000;

export async function startServer(parts: AppParts, options: ServerOptions): Promise<RunningServer> {
  const tls = options.tls;
  const files = 'certFile' in tls ? tls : undefined;
  let memory = 'pair' in tls ? { pair: tls.pair, issuers: tls.issuers } : undefined;
  const tlsOptions = (): https.ServerOptions => {
    const material = {
      cert: files ? readFileSync(files.certFile) : memory!.pair.certificate,
      key: files ? readFileSync(files.keyFile) : memory!.pair.privateKey,
      ...(tls.clientCaFile ? { ca: readFileSync(tls.clientCaFile), requestCert: true, rejectUnauthorized: true } : {}),
    };
    createSecureContext(material); // throws on a key that does not match the certificate
    observeCertificateExpiry(parts.metrics.certificateExpiry, material.cert.toString(), files ? caBeside(files.certFile) : memory?.issuers);
    return { ...material, minVersion: 'TLSv1.2' };
  };

  const initial = tlsOptions();
  const app = buildApp(parts, initial);
  // Same certificate, no client certificate asked for: the probes' and scrapers' port.
  const health = tls.clientCaFile && options.healthPort !== undefined ? buildHealthApp(parts, withoutClientCa(initial)) : undefined;
  const apps = health ? [app, health] : [app];
  const sockets = openSockets(apps);
  const reloadCertificate = (): boolean => {
    try {
      const next = tlsOptions();
      (app.server as https.Server).setSecureContext(next);
      for (const other of apps.slice(1)) (other.server as https.Server).setSecureContext(withoutClientCa(next));
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
  const unwatch = files ? watchCertificateFiles(files, options.certPollMs ?? DEFAULT_CERT_POLL_MS, reloadCertificate) : () => {};

  const port = await listenOn(app, options.host, options.port);
  const healthPort = health ? await listenOn(health, options.host, options.healthPort ?? 0) : undefined;
  parts.logger.info({ host: options.host, port, healthPort }, 'listening');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // The API server keeps using open connections after an endpoint goes away, so keep answering
      // (with Connection: close, see app.ts) for the drain window before closing.
      parts.readiness.block(DRAINING);
      parts.logger.info({ drainSeconds: options.drainSeconds }, 'draining');
      await new Promise((resolve) => setTimeout(resolve, options.drainSeconds * 1000));
      unwatch();
      await closeWithinGrace(sockets, parts.logger, apps);
      parts.logger.info('stopped');
    })();
    return stopping;
  };
  const setCertificate = (next: KeyPairPem, issuers?: string): boolean => {
    const previous = memory;
    memory = { pair: next, issuers };
    if (reloadCertificate()) return true;
    memory = previous;
    return false;
  };
  return { app, port, healthPort, reloadCertificate, setCertificate, stop };
}

/**
 * Reloads when the certificate or key file changes. Both are often written one after the other: the
 * reload waits until both have settled, not in between (which would be rejected as a mismatched pair and
 * logged for nothing). Returns what stops watching.
 */
function watchCertificateFiles(files: TlsFiles, pollMs: number, reload: () => boolean): () => void {
  let settle: NodeJS.Timeout | undefined;
  const onChange = (current: { mtimeMs: number; size: number }, previous: { mtimeMs: number; size: number }): void => {
    if (current.mtimeMs === previous.mtimeMs && current.size === previous.size) return;
    clearTimeout(settle);
    settle = setTimeout(reload, Math.min(250, pollMs));
  };
  const watched = [files.certFile, files.keyFile];
  for (const file of watched) watchFile(file, { interval: pollMs, persistent: false }, onChange);
  return () => {
    clearTimeout(settle);
    for (const file of watched) unwatchFile(file, onChange);
  };
}

/**
 * Closes the apps; requests in flight get CLOSE_GRACE_MS to finish (each is bounded by its own deadline),
 * then every connection left is closed, so a stop always ends.
 */
async function closeWithinGrace(sockets: ReadonlySet<Socket>, logger: AppParts['logger'], apps: readonly FastifyInstance[]): Promise<void> {
  const force = setTimeout(() => {
    logger.warn({ connections: sockets.size }, 'closing the connections left after the grace period');
    for (const socket of sockets) socket.destroy();
  }, CLOSE_GRACE_MS);
  await Promise.all(apps.map((app) => app.close()));
  clearTimeout(force);
}

/**
 * Every TCP connection of the apps' servers, from accept on: a socket still in its TLS handshake (or one that never
 * sends a byte) is not an HTTP connection yet, so neither fastify nor closeAllConnections() knows it, and
 * server.close() would wait for it until the handshake timeout (120 s).
 */
function openSockets(apps: readonly FastifyInstance[]): ReadonlySet<Socket> {
  const sockets = new Set<Socket>();
  for (const app of apps) {
    app.server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
  }
  return sockets;
}

/**
 * The ca.crt beside a certificate file, where cert-manager (and any kubernetes.io/tls Secret that carries
 * its CA) puts the issuer; empty when there is none.
 */
function caBeside(certFile: string): string {
  try {
    return readFileSync(path.join(path.dirname(certFile), 'ca.crt'), 'utf8');
  } catch {
    return '';
  }
}

function withoutClientCa(options: https.ServerOptions): https.ServerOptions {
  const { ca: _ca, requestCert: _requestCert, rejectUnauthorized: _rejectUnauthorized, ...rest } = options;
  return rest;
}

/** Listens and returns the port bound (the one asked for, or the one the OS chose for 0). */
async function listenOn(app: FastifyInstance, host: string, port: number): Promise<number> {
  await app.listen({ host, port });
  const address = app.server.address();
  return typeof address === 'object' && address ? address.port : port;
}
