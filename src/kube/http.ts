// Raw JSON over HTTPS to the API server, on a keep-alive pool, with the credentials of a KubeConfig.
// Why not the generated client for these calls: the admission path needs a hard per-call deadline and
// connection reuse, and wants the raw JSON (data/binaryData maps) rather than typed models.

import https from 'node:https';
import http from 'node:http';
// Only client-node's kubeconfig loading (in-cluster, exec plugins, OIDC, client certificates) is used: the
// deep import keeps its generated API and its fetch stack out of the bundle (src/build.ts).
import { KubeConfig } from '@kubernetes/client-node/dist/config.js';
import { FIELD_MANAGER, USER_AGENT } from '../product.ts';
import { OperationalError } from '../util/errors.ts';
import { startDeadline, type Deadline } from './deadline.ts';

export interface KubeResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly text: string;
  json(): unknown;
}

export interface RequestOptions {
  readonly signal?: AbortSignal;
  /** Deadline of this call; every call has one (DEFAULT_TIMEOUT_MS unless given). */
  readonly timeoutMs?: number;
  readonly body?: unknown;
  readonly contentType?: string;
}

export interface StreamOptions {
  /** Closes the stream; reading it then fails with the signal's reason. */
  readonly signal?: AbortSignal;
  /** The stream fails with a TimeoutError once no byte has arrived for this long. */
  readonly idleTimeoutMs: number;
}

/** A response whose body has not been read yet: read it piece by piece, or discard it. */
export interface KubeStream {
  readonly status: number;
  /**
   * Hands each piece of the body to `onChunk` as it arrives. Resolves at the end of the body; rejects with
   * the first failure: the connection's error, a TimeoutError after the inactivity timeout, the signal's
   * reason after an abort, or what `onChunk` threw (the connection is closed then).
   */
  read(onChunk: (chunk: Buffer) => void): Promise<void>;
  /** Closes the connection without reading the body (an answer the caller turns into an error). */
  discard(): void;
}

// Credentials can rotate (projected service-account tokens are re-read from file); refresh them this often.
const CREDENTIAL_REFRESH_MS = 60_000;
// No call may hang forever on a black-holed connection (TCP would give up only after ~15 minutes).
export const DEFAULT_TIMEOUT_MS = 10_000;
// Connections to the API server at once: 10 reviews in flight with 3 reads each, plus the watcher's calls.
const MAX_SOCKETS = 32;
// Responses larger than this are not ConfigMaps we hash (1 MiB each) nor workloads; refuse to buffer them,
// and, in a stream, any one object (a LIST item, a watch event) that large.
export const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;

// Verbs that write: the API server records their field manager in managedFields.
const WRITE_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH']);

export class KubeHttp {
  readonly server: URL;
  /** The server URL's host as `https.request` takes it: an IPv6 address without its brackets. */
  readonly #host: string;
  /** A path prefix of the server URL (a proxy such as Rancher's `/k8s/clusters/<id>`), without a trailing slash. */
  readonly #pathPrefix: string;
  readonly #kubeConfig: KubeConfig;
  readonly #agent: https.Agent;
  /** Streams hold their connection (a watch up to 5 minutes): apart, they never take the pool's sockets. */
  readonly #streamAgent: https.Agent;
  #options: Promise<https.RequestOptions> | undefined;
  #optionsAt = 0;

  constructor(kubeConfig: KubeConfig) {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new OperationalError('the kubeconfig has no current cluster');
    this.server = new URL(cluster.server);
    this.#host = this.server.hostname.replace(/^\[(.*)\]$/, '$1');
    this.#pathPrefix = this.server.pathname.replace(/\/+$/, '');
    this.#kubeConfig = kubeConfig;
    // Idle sockets are kept up to the pool's size: a burst of reviews (3 reads each) needs many at once,
    // and closing the extras after each burst made the next burst pay new TLS handshakes (about 20% of
    // the webhook's CPU at 500 reviews/s with live reads; live saturation went from 230 to 637 reviews/s,
    // in the benchmarks' analysis.md).
    this.#agent = new https.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS, maxFreeSockets: MAX_SOCKETS });
    this.#streamAgent = new https.Agent({ keepAlive: true });
  }

  async request(method: string, path: string, options: RequestOptions = {}): Promise<KubeResponse> {
    const base = await this.#credentials();
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const deadline = startDeadline(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, options.signal);
    const headers = payload ? { 'content-type': options.contentType ?? 'application/json', 'content-length': payload.length } : {};
    const pending = new Promise<KubeResponse>((resolve, reject) => {
      const request = https.request(this.#requestOptions(base, { method, path, signal: deadline.signal, headers }, this.#agent), (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) response.destroy(new ResponseTooLargeError(`response larger than ${MAX_RESPONSE_BYTES} bytes`));
          else chunks.push(chunk);
        });
        response.on('error', reject);
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: response.statusCode ?? 0, headers: response.headers, text, json: () => JSON.parse(text) as unknown });
        });
      });
      request.on('error', reject);
      request.end(payload);
    });
    return pending.finally(() => deadline.clear());
  }

  /**
   * A GET whose body is read as it arrives (LIST pages, watches). Resolves once the status is known; the
   * inactivity timeout runs from the request on and restarts with every piece of the body, so a connection
   * that goes silent fails with a TimeoutError however long the stream has lasted.
   */
  async stream(path: string, options: StreamOptions): Promise<KubeStream> {
    const base = await this.#credentials();
    const deadline = startDeadline(options.idleTimeoutMs, options.signal);
    return new Promise<KubeStream>((resolve, reject) => {
      const request = https.request(this.#requestOptions(base, { method: 'GET', path, signal: deadline.signal, headers: {} }, this.#streamAgent), (response) => {
        deadline.restart();
        resolve(bodyStream(response, deadline));
      });
      request.on('error', (error) => {
        deadline.clear();
        reject(deadline.signal.aborted ? deadline.signal.reason : error);
      });
      request.end();
    });
  }

  #requestOptions(base: https.RequestOptions, call: { method: string; path: string; signal: AbortSignal; headers: http.OutgoingHttpHeaders }, agent: https.Agent): https.RequestOptions {
    const { method, path } = call;
    return {
      ...base,
      agent,
      method,
      host: this.#host,
      port: this.server.port || 443,
      path: this.#pathPrefix + (WRITE_METHODS.has(method) ? withFieldManager(path) : path),
      signal: call.signal,
      headers: { ...base.headers, accept: 'application/json', 'user-agent': USER_AGENT, ...call.headers },
    };
  }

  close(): void {
    this.#agent.destroy();
    this.#streamAgent.destroy();
  }

  #credentials(): Promise<https.RequestOptions> {
    const now = Date.now();
    if (!this.#options || now - this.#optionsAt > CREDENTIAL_REFRESH_MS) {
      const options: https.RequestOptions = {};
      this.#optionsAt = now;
      this.#options = this.#kubeConfig.applyToHTTPSOptions(options).then(() => options);
      this.#options.catch(() => {
        this.#options = undefined;
      });
    }
    return this.#options;
  }
}

/** The body of `response` read through `deadline`, which is cleared once the body is done with. */
function bodyStream(response: http.IncomingMessage, deadline: Deadline): KubeStream {
  const { signal } = deadline;
  let used = false;
  return {
    status: response.statusCode ?? 0,
    read: (onChunk) => new Promise<void>((resolve, reject) => {
      if (used) throw new Error('a response body can be read only once');
      used = true;
      let settled = false;
      const settle = (error?: unknown): void => {
        if (settled) return;
        settled = true;
        deadline.clear();
        signal.removeEventListener('abort', aborted);
        if (error === undefined) return resolve();
        response.destroy();
        reject(error);
      };
      const aborted = (): void => settle(signal.reason);
      if (signal.aborted) return aborted();
      signal.addEventListener('abort', aborted, { once: true });
      response.on('data', (chunk: Buffer) => {
        if (settled) return;
        deadline.restart();
        try {
          onChunk(chunk);
        } catch (error) {
          settle(error);
        }
      });
      response.on('end', () => settle());
      response.on('error', (error) => settle(signal.aborted ? signal.reason : error));
      response.on('close', () => settle(new OperationalError('the connection closed before the response ended')));
    }),
    discard: () => {
      used = true;
      deadline.clear();
      response.destroy();
    },
  };
}

/** `path` with `fieldManager=config-checksum-webhook` added to its query. */
export function withFieldManager(path: string): string {
  return `${path}${path.includes('?') ? '&' : '?'}fieldManager=${FIELD_MANAGER}`;
}

/** The given kubeconfig file, else client-node's default chain: $KUBECONFIG, ~/.kube/config, in-cluster. */
export function loadKubeConfig(kubeconfigPath: string | undefined): KubeConfig {
  const kubeConfig = new KubeConfig();
  if (kubeconfigPath) kubeConfig.loadFromFile(kubeconfigPath);
  else kubeConfig.loadFromDefault();
  return kubeConfig;
}

/** An API call answered with a status its caller does not handle; the message names the call and the status only. */
export class ApiError extends OperationalError {
  override readonly name = 'ApiError';
  readonly status: number;

  constructor(what: string, status: number) {
    super(`${what}: HTTP ${status}`);
    this.status = status;
  }
}

/** A response, or one object of a stream, over MAX_RESPONSE_BYTES, dropped unread: a LIST asks again for fewer items (watch/reflector.ts). */
export class ResponseTooLargeError extends OperationalError {
  override readonly name = 'ResponseTooLargeError';
}
