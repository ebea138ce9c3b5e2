// One server under load, in its own process (the load generator runs in another), started by
// scenarios/webhook.ts with fork(): it answers { port } over IPC once listening, and exits on SIGTERM.
//
//   floor       a minimal fastify HTTPS server: same certificate, keep-alive timeout and body limit, parses
//               the same body with fastify's JSON parser and answers allowed: true. Nothing can be faster
//               while doing the same transport work, so it is what the product is compared with.
//   in-process  the product's server (src/server/https.ts startServer) built as src/main.ts builds it,
//               with ConfigMaps answered from memory.
//   live        the same, with src/main.ts's own reader: live GETs to kube-apiserver (ApiConfigMapReader).
//
// The product logs one JSON line per admission to stdout, as in production; the parent points stdout at
// a file.

import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
import { loadConfig } from '../../../src/config.ts';
import { ApiConfigMapReader, type ConfigMapReader } from '../../../src/kube/configmaps.ts';
import { KubeHttp, loadKubeConfig } from '../../../src/kube/http.ts';
import type { ConfigMapLookup } from '../../../src/checksum/compute.ts';
import { BODY_LIMIT_BYTES, KEEP_ALIVE_TIMEOUT_MS, REQUEST_TIMEOUT_MS, HEADERS_TIMEOUT_MS } from '../../../src/server/app.ts';
import { startServer } from '../../../src/server/https.ts';
import { Readiness } from '../../../src/server/readiness.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { createMetrics } from '../../../src/telemetry/metrics.ts';
import { benchConfigMaps } from '../support/review.ts';

export type ServerVariant = 'floor' | 'in-process' | 'live';

export interface ServerArgs {
  readonly variant: ServerVariant;
  readonly certFile: string;
  readonly keyFile: string;
  readonly namespace: string;
  /** For live: the webhook's kubeconfig (its ServiceAccount token), as src/main.ts would use it. */
  readonly kubeconfig?: string;
}

/** ConfigMaps from memory, answered as ApiConfigMapReader answers (data and binaryData only). */
class MemoryReader implements ConfigMapReader {
  readonly #configMaps: Map<string, ConfigMapLookup>;
  constructor(namespace: string) {
    this.#configMaps = new Map(benchConfigMaps(namespace).map((cm) => [`${namespace}/${cm['metadata']['name']}`, { state: 'found' as const, data: structuredClone(cm['data']), binaryData: undefined }]));
  }
  async read(namespace: string, name: string): Promise<ConfigMapLookup> {
    return this.#configMaps.get(`${namespace}/${name}`) ?? { state: 'missing' };
  }
}

async function startFloor(args: ServerArgs): Promise<number> {
  const app = Fastify({
    https: { cert: readFileSync(args.certFile), key: readFileSync(args.keyFile), minVersion: 'TLSv1.2' },
    bodyLimit: BODY_LIMIT_BYTES,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    logger: false,
  });
  app.server.headersTimeout = HEADERS_TIMEOUT_MS;
  app.post('/mutate', async (request) => {
    const uid = (request.body as { request?: { uid?: unknown } } | null)?.request?.uid;
    return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, allowed: true } };
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  return typeof address === 'object' && address ? address.port : 0;
}

async function startProduct(args: ServerArgs): Promise<number> {
  // The shipped defaults, as the container runs them.
  const config = loadConfig(['--host', '127.0.0.1', '--port', '0', '--tls-cert-file', args.certFile, '--tls-key-file', args.keyFile, '--drain-seconds', '0', '--watch', 'false'], {});
  const logger = createLogger(config.logLevel);
  const metrics = createMetrics();
  let reader: ConfigMapReader;
  if (args.variant === 'live') {
    if (!args.kubeconfig) throw new Error('live needs a kubeconfig');
    const http = new KubeHttp(loadKubeConfig(args.kubeconfig));
    reader = new ApiConfigMapReader(http, (result, seconds) => {
      metrics.configMapReads.inc({ result });
      metrics.configMapReadDuration.observe({ result }, seconds);
    });
  } else {
    reader = new MemoryReader(args.namespace);
  }
  const server = await startServer(
    { reader, settings: config, logger, metrics, readiness: new Readiness() },
    { host: config.host, port: config.port, tls: { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile }, drainSeconds: 0 },
  );
  return server.port;
}

if (import.meta.main) {
  const args = JSON.parse(process.argv[2] ?? '{}') as ServerArgs;
  const port = args.variant === 'floor' ? await startFloor(args) : await startProduct(args);
  process.send?.({ port, pid: process.pid });
  process.once('SIGTERM', () => process.exit(0));
  process.once('disconnect', () => process.exit(0));
}
