// Reading ConfigMaps (and, with --secrets, Secrets) for a checksum: live GETs (never a watch cache, which
// can lag behind an apply that wrote the object a moment before the workload), all in parallel, under one
// deadline. Secrets are read by the same code as ConfigMaps, on their own resource path: the same deadline,
// the same parallelism, the same value-free reasons when a read fails.

import type { ConfigMapLookup } from '../checksum/compute.ts';
import { startDeadline } from './deadline.ts';
import type { KubeHttp } from './http.ts';

export interface ConfigMapReader {
  /** Resolves, never rejects: failures come back as { state: 'unreadable' }. */
  read(namespace: string, name: string, signal: AbortSignal): Promise<ConfigMapLookup>;
}

/** The same contract for Secrets: `data` holds the Secret's base64 values, `binaryData` is absent. */
export type SecretReader = ConfigMapReader;

export interface ReadObserver {
  (result: ConfigMapLookup['state'], seconds: number): void;
}

/** The names to read with one reader (ConfigMaps, or Secrets). */
export interface ReadBatch {
  readonly reader: ConfigMapReader;
  readonly names: readonly string[];
}

/** Reads every named ConfigMap of one namespace in parallel; the whole batch shares one deadline. */
export async function readConfigMaps(
  reader: ConfigMapReader,
  namespace: string,
  names: readonly string[],
  timeoutMs: number,
): Promise<Map<string, ConfigMapLookup>> {
  const [lookups] = await readBatches(namespace, [{ reader, names }], timeoutMs);
  return lookups!;
}

/**
 * Reads every name of every batch in one namespace in parallel, all under one deadline (ConfigMaps and
 * Secrets of one admission share it, as reads of one kind do): one map of lookups per batch, in order.
 */
export async function readBatches(namespace: string, batches: readonly ReadBatch[], timeoutMs: number): Promise<Array<Map<string, ConfigMapLookup>>> {
  const deadline = startDeadline(timeoutMs);
  const { signal } = deadline;
  // The deadline holds even for a read that does not honour the signal (say, stuck loading credentials):
  // an answer after the webhook's own timeout would hand the decision to failurePolicy.
  const timedOut = new Promise<ConfigMapLookup>((resolve) => {
    signal.addEventListener('abort', () => resolve({ state: 'unreadable', reason: 'timeout' }), { once: true });
  });
  try {
    const reads = batches.map(({ reader, names }) => Promise.all(names.map((name) => Promise.race([reader.read(namespace, name, signal), timedOut]))));
    const results = await Promise.all(reads);
    return batches.map(({ names }, batch) => new Map(names.map((name, index) => [name, results[batch]![index]!])));
  } catch (error) {
    // A reader broke its promise not to reject: the batch is over, so the other reads stop too.
    deadline.cancel();
    throw error;
  } finally {
    deadline.clear();
  }
}

/**
 * GET /api/v1/namespaces/{ns}/{resource}/{name}; 404 is "missing", anything else that is not 200 is
 * "unreadable". Only `data` and `binaryData` are kept from the body: metadata never counts.
 */
class ApiObjectReader implements ConfigMapReader {
  readonly #http: KubeHttp;
  readonly #resource: 'configmaps' | 'secrets';
  readonly #observe: ReadObserver | undefined;

  constructor(http: KubeHttp, resource: 'configmaps' | 'secrets', observe?: ReadObserver) {
    this.#http = http;
    this.#resource = resource;
    this.#observe = observe;
  }

  async read(namespace: string, name: string, signal: AbortSignal): Promise<ConfigMapLookup> {
    const started = performance.now();
    const result = await this.#get(namespace, name, signal);
    this.#observe?.(result.state, (performance.now() - started) / 1000);
    return result;
  }

  async #get(namespace: string, name: string, signal: AbortSignal): Promise<ConfigMapLookup> {
    try {
      // Inside the try: a name from an untrusted review can hold a lone surrogate, which encodeURIComponent refuses.
      const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/${this.#resource}/${encodeURIComponent(name)}`;
      const response = await this.#http.request('GET', path, { signal });
      if (response.status === 404) return { state: 'missing' };
      if (response.status !== 200) return { state: 'unreadable', reason: `HTTP ${response.status}` };
      const body = response.json() as { data?: unknown; binaryData?: unknown } | null;
      return { state: 'found', data: body?.data, binaryData: body?.binaryData };
    } catch (error) {
      return { state: 'unreadable', reason: signal.aborted ? 'timeout' : errorCode(error) };
    }
  }
}

export class ApiConfigMapReader extends ApiObjectReader {
  constructor(http: KubeHttp, observe?: ReadObserver) {
    super(http, 'configmaps', observe);
  }
}

/** Reads the Secrets a workload consumes (--secrets only): their values stay in memory for the hash, never logged. */
export class ApiSecretReader extends ApiObjectReader {
  constructor(http: KubeHttp, observe?: ReadObserver) {
    super(http, 'secrets', observe);
  }
}

/** A short, value-free description of a transport error (never the message, which could echo a URL or body). */
export function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? error.name : 'error';
}
