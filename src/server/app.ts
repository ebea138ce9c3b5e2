// The fastify app: routes, parsing and error mapping, no listen (tests drive it with inject() or put it
// behind the TLS server in ./https.ts). Transport only: the route decodes and sends; one admission's work
// (decision, fail-open on a defect, metrics, log line) is admission/handler.ts.

import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify';
import type https from 'node:https';
import { handleAdmission } from '../admission/handler.ts';
import type { MutateSettings } from '../admission/mutate.ts';
import { decodeReview } from '../admission/review.ts';
import { asObject, asString } from '../util/json.ts';
import type { ConfigMapReader } from '../kube/configmaps.ts';
import type { SecretSource } from '../workload/decision.ts';
import { loggableError, type Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { parseJsonBody } from './json-body.ts';
import type { Readiness } from './readiness.ts';

export interface AppParts {
  readonly reader: ConfigMapReader;
  /** With --secrets: how Secrets are read and hashed. Absent: no Secret is ever read. */
  readonly secrets?: SecretSource | undefined;
  readonly settings: MutateSettings;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly readiness: Readiness;
}

// An AdmissionReview holds the object and the old object, each up to the API server's 3 MiB request
// limit, plus the envelope: 7 MiB admits every review the API server can send.
export const BODY_LIMIT_BYTES = 7 * 1024 * 1024;
// Above the API server's 90 s idle timeout for webhook connections: the server must never be the side
// that closes an idle keep-alive connection, or a request racing the close fails as EOF at the API server.
export const KEEP_ALIVE_TIMEOUT_MS = 95_000;
// Whole-request ceiling: far above the 30 s maximum webhook timeout, far below "forever" (slowloris).
export const REQUEST_TIMEOUT_MS = 35_000;
// Headers must arrive within this (controller-runtime and Pepr use 32 s).
export const HEADERS_TIMEOUT_MS = 32_000;
// Margin kept from the API server's own deadline so the answer still arrives in time.
const DEADLINE_MARGIN_MS = 500;

export function serverOptions(httpsOptions?: https.ServerOptions) {
  return {
    bodyLimit: BODY_LIMIT_BYTES,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    // One line per admission is written by the route itself; fastify's per-request lines would double it.
    logController: new LogController({ disableRequestLogging: true }),
    onProtoPoisoning: 'error' as const,
    onConstructorPoisoning: 'error' as const,
    ...(httpsOptions ? { https: httpsOptions } : {}),
  };
}

export function buildApp(parts: AppParts, httpsOptions?: https.ServerOptions): FastifyInstance {
  // One cast: fastify's overloads cannot type an options object whose https member is optional.
  const createFastify = Fastify as unknown as (options: object) => FastifyInstance;
  const app = createFastify({ ...serverOptions(httpsOptions), loggerInstance: parts.logger });
  app.server.headersTimeout = HEADERS_TIMEOUT_MS;

  // JSON only: any other media type is a malformed review, answered 400 by the error handler below.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: BODY_LIMIT_BYTES }, (_request, body, done) => {
    try {
      done(null, parseJsonBody(body.toString('utf8')));
    } catch (error) {
      done(Object.assign(new Error(`body is not valid JSON: ${(error as Error).message.slice(0, 80)}`), { statusCode: 400 }), undefined);
    }
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = clientErrorStatus(error);
    if (request.url.startsWith('/mutate')) parts.metrics.badRequests.inc({ status: String(status) });
    if (status >= 500) request.log.error({ err: loggableError(error) }, 'request failed');
    return reply.code(status).send({ error: status === 413 ? 'Payload Too Large' : status >= 500 ? 'Internal Server Error' : 'Bad Request', message: clientErrorMessage(error, status) });
  });

  // While draining, ask every client to open its next connection elsewhere (another replica).
  app.addHook('onSend', async (_request, reply) => {
    if (parts.readiness.draining) reply.header('connection', 'close');
  });

  app.post('/mutate', async (request, reply) => {
    const decoded = decodeReview(request.body);
    if (!decoded.ok) {
      parts.metrics.badRequests.inc({ status: '400' });
      return reply.code(400).send({ error: 'Bad Request', message: decoded.message });
    }
    return handleAdmission(decoded.request, parts, deadlineFromQuery(request.query));
  });

  registerHealthRoutes(app, parts);
  return app;
}

/**
 * /healthz, /readyz and /metrics alone: the port kubelet probes and Prometheus scrape when the admission
 * port requires client certificates (--client-ca-file), which they do not present.
 */
export function buildHealthApp(parts: Pick<AppParts, 'logger' | 'metrics' | 'readiness'>, httpsOptions: https.ServerOptions): FastifyInstance {
  const createFastify = Fastify as unknown as (options: object) => FastifyInstance;
  const app = createFastify({ ...serverOptions(httpsOptions), loggerInstance: parts.logger });
  registerHealthRoutes(app, parts);
  return app;
}

function registerHealthRoutes(app: FastifyInstance, parts: Pick<AppParts, 'metrics' | 'readiness'>): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) =>
    parts.readiness.ready ? { status: 'ready' } : reply.code(503).send({ status: 'not ready', reasons: parts.readiness.reasons }),
  );
  app.get('/metrics', async (_request, reply) => reply.type(parts.metrics.registry.contentType).send(await parts.metrics.registry.metrics()));
}

/** The API server appends ?timeout=<Go duration> (whole seconds in practice) with its remaining deadline. */
export function deadlineFromQuery(query: unknown): number | undefined {
  const timeout = asString(asObject(query)?.['timeout']);
  const match = timeout ? /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(timeout) : null;
  if (!match) return undefined;
  const milliseconds = Number(match[1]) * (match[2] === 'ms' ? 1 : match[2] === 's' ? 1000 : 60_000);
  return Math.max(50, milliseconds - DEADLINE_MARGIN_MS);
}

function clientErrorStatus(error: FastifyError): number {
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return 413;
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return 400;
  const status = error.statusCode ?? 500;
  return status >= 400 && status < 500 ? status : 500;
}

function clientErrorMessage(error: FastifyError, status: number): string {
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return `body larger than ${BODY_LIMIT_BYTES} bytes`;
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'content-type must be application/json';
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'body is empty; expected an AdmissionReview';
    default:
      return status >= 500 ? 'internal error' : error.message;
  }
}
