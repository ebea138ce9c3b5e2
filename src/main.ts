// Entry point of the webhook process (the command the container image runs): parse the config once,
// build the parts, listen, and stop gracefully on SIGTERM/SIGINT.

import { isIP } from 'node:net';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { ApiConfigMapReader, ApiSecretReader, type ConfigMapReader } from './kube/configmaps.ts';
import { hashKeyApi } from './kube/hash-key-api.ts';
import { KubeHttp, loadKubeConfig } from './kube/http.ts';
import { certificatesApi } from './kube/certificates-api.ts';
import { watcherApi } from './kube/watcher-api.ts';
import { watchSource } from './kube/watch.ts';
import { LeaderElector } from './watch/leader.ts';
import { Reflector } from './watch/reflector.ts';
import { Watcher } from './watch/watcher.ts';
import { serviceDnsNames, type KeyPairPem } from './tls/certs.ts';
import { SelfManagedCertificates, type SelfManagedOptions } from './tls/self-managed.ts';
import { Readiness } from './server/readiness.ts';
import { CLOSE_GRACE_MS, startServer, type RunningServer, type TlsFiles, type TlsInMemory } from './server/https.ts';
import { createLogger, loggableError, type Logger } from './telemetry/logger.ts';
import { createMetrics, registerSecretMetrics, type Metrics } from './telemetry/metrics.ts';
import { HashKeyLoader } from './secrets/hash-key.ts';
import type { SecretSource } from './workload/decision.ts';

export interface Webhook {
  readonly server: RunningServer;
  readonly watcher: Watcher | undefined;
  readonly logger: Logger;
  stop(): Promise<void>;
}

export async function startWebhook(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<Webhook> {
  const metrics = createMetrics();
  metrics.watchEnabled.set(config.watch ? 1 : 0);
  const kubeConfig = loadKubeConfig(config.kubeconfig);
  const http = new KubeHttp(kubeConfig);
  const reader = new ApiConfigMapReader(http, (result, seconds) => {
    metrics.configMapReads.inc({ result });
    metrics.configMapReadDuration.observe({ result }, seconds);
  });
  const secrets = config.secrets ? await startSecrets(config, { http, logger, metrics }) : undefined;
  const readiness = new Readiness();
  const certificates = await startCertificates(config, http, logger);
  const server = await startServer({ reader, secrets: secrets?.source, settings: config, logger, metrics, readiness }, { host: config.host, port: config.port, healthPort: config.healthPort, tls: certificates.tls, drainSeconds: config.drainSeconds });
  certificates.serveTo(server);
  const watcher = config.watch ? createWatcher(config, { http, reader, secrets: secrets?.source, logger, metrics }) : undefined;
  await watcher?.start();
  const secretsLine = config.secrets ? { secrets: true, secretChecksumAnnotation: config.secretChecksumAnnotation } : {};
  logger.info({ apiServer: http.server.origin, checksumAnnotation: config.checksumAnnotation, ...secretsLine, watch: config.watch }, 'webhook started');
  return {
    server,
    watcher,
    logger,
    stop: async () => {
      // The watcher first: it releases the leader Lease so another replica takes over at once.
      await watcher?.stop();
      secrets?.hashKey.stop();
      certificates.stop();
      await server.stop();
      http.close();
    },
  };
}

/** Where the serving certificate comes from: files (reloaded when they change), or the self-managed loop. */
interface Certificates {
  readonly tls: TlsFiles | TlsInMemory;
  /** From now on, every leaf the self-managed loop issues is served by `server`. */
  serveTo(server: RunningServer): void;
  stop(): void;
}

/**
 * Self-managed: returns only once the Secret holds a certificate and caBundle trusts its CA, so the server
 * listens (and the readiness probe passes) only when an admission call could succeed.
 */
async function startCertificates(config: Config, http: KubeHttp, logger: Logger): Promise<Certificates> {
  if (config.tlsMode !== 'self-managed') {
    return { tls: { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile, clientCaFile: config.clientCaFile }, serveTo: () => {}, stop: () => {} };
  }
  let latest: { pair: KeyPairPem; bundle: string } | undefined;
  let serve: (pair: KeyPairPem, bundle: string) => void = () => {};
  const certificates = new SelfManagedCertificates(certificatesApi(http), selfManagedOptions(config), logger, (pair, bundle) => {
    latest = { pair, bundle };
    serve(pair, bundle);
  });
  const pair = await certificates.start();
  return {
    tls: { pair, issuers: latest?.bundle, clientCaFile: config.clientCaFile },
    serveTo: (server) => {
      serve = (next, bundle) => void server.setCertificate(next, bundle);
      // A leaf issued between the start and now (a rotation step) is served at once.
      if (latest && latest.pair !== pair) serve(latest.pair, latest.bundle);
    },
    stop: () => certificates.stop(),
  };
}

function selfManagedOptions(config: Config): SelfManagedOptions {
  return {
    namespace: config.namespace,
    secretName: config.tlsSecretName,
    webhookConfigurationName: config.webhookConfigurationName,
    pollMs: config.certPollSeconds * 1000,
    authority: {
      caValidityMs: config.caValiditySeconds * 1000,
      leafValidityMs: config.certValiditySeconds * 1000,
      propagationMs: config.certPropagationSeconds * 1000,
      dnsNames: [...serviceDnsNames(config.serviceName, config.namespace), ...config.certExtraSans.filter((name) => isIP(name) === 0)],
      ipAddresses: config.certExtraSans.filter((name) => isIP(name) !== 0),
    },
  };
}

// How long the start waits for the hash key before serving anyway. With the API server reachable it loads in
// milliseconds, and waiting spares the first admissions after an install a fail-open; past this (API
// server unreachable, RBAC refusing the Secret) ConfigMap checksums must not wait for it: the webhook
// serves, workloads that consume Secrets are left unchanged with a warning, and loading goes on.
const HASH_KEY_START_WAIT_MS = 10_000;

/** --secrets: the hash key (loaded, or loading in the background) and the live Secret reader. */
async function startSecrets(config: Config, parts: { http: KubeHttp; logger: Logger; metrics: Metrics }): Promise<{ source: SecretSource; hashKey: HashKeyLoader }> {
  const secretMetrics = registerSecretMetrics(parts.metrics.registry);
  const hashKey = new HashKeyLoader(hashKeyApi(parts.http), { namespace: config.namespace }, parts.logger);
  void hashKey.loaded.then(() => secretMetrics.hashKeyLoaded.set(1));
  hashKey.start();
  if (!(await hashKey.waitLoaded(HASH_KEY_START_WAIT_MS))) parts.logger.warn({ waitedMs: HASH_KEY_START_WAIT_MS }, 'serving without the hash key; workloads that consume Secrets are left unchanged until it loads');
  const reader = new ApiSecretReader(parts.http, (result, seconds) => {
    secretMetrics.secretReads.inc({ result });
    secretMetrics.secretReadDuration.observe({ result }, seconds);
  });
  return { source: { reader, key: () => hashKey.current(), annotation: config.secretChecksumAnnotation }, hashKey };
}

/** The watcher on the real parts: API calls over `http`, list/watch reflectors, a Lease elector. */
function createWatcher(config: Config, parts: { http: KubeHttp; reader: ConfigMapReader; secrets: SecretSource | undefined; logger: Logger; metrics: Metrics }): Watcher {
  const { http, reader, secrets, logger, metrics } = parts;
  const watches = watchSource(http);
  return new Watcher({
    api: watcherApi(http),
    reader,
    secrets,
    listWatch: (options, handlers) => new Reflector(http, watches, options, handlers),
    leadership: (options) => new LeaderElector(http, options),
    logger,
    metrics,
  }, config);
}

/** The process entry: flags and environment in, a running webhook until SIGTERM/SIGINT. */
export async function runFromCommandLine(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(argv, env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`config-checksum-webhook: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  let webhook: Webhook;
  try {
    webhook = await startWebhook(config, logger);
  } catch (error) {
    logger.fatal({ err: loggableError(error) }, 'could not start');
    process.exit(1);
  }
  const shutdown = (signal: string): void => {
    logger.info({ signal }, 'shutdown requested');
    // Every step of stop() is bounded (drain window, grace for requests in flight, a deadline on each API
    // call); this is the last line if one is not: the process ends rather than hang in terminating.
    const limitMs = (config.drainSeconds + 30) * 1000 + CLOSE_GRACE_MS;
    setTimeout(() => {
      logger.error({ limitMs }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, limitMs).unref();
    webhook.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: loggableError(error) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

if (import.meta.main) await runFromCommandLine(process.argv.slice(2), process.env);
