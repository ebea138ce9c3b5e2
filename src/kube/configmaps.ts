// Reading ConfigMaps for a checksum: live GETs (never a watch cache, which can lag behind an apply that
// wrote the ConfigMap a moment before the workload), all in parallel, under one deadline.

import type { ConfigMapLookup } from '../checksum/compute.ts';
import { startDeadline } from './deadline.ts';
import type { KubeHttp } from './http.ts';

export interface ConfigMapReader {
  /** Resolves, never rejects: failures come back as { state: 'unreadable' }. */
  read(namespace: string, name: string, signal: AbortSignal): Promise<ConfigMapLookup>;
}

export interface ReadObserver {
  (result: ConfigMapLookup['state'], seconds: number): void;
}

/** Reads every named ConfigMap of one namespace in parallel; the whole batch shares one deadline. */
export async function readConfigMaps(
  reader: ConfigMapReader,
  namespace: string,
  names: readonly string[],
  timeoutMs: number,
): Promise<Map<string, ConfigMapLookup>> {
  const deadline = startDeadline(timeoutMs);
  const { signal } = deadline;
  // The deadline holds even for a read that does not honour the signal (say, stuck loading credentials):
  // an answer after the webhook's own timeout would hand the decision to failurePolicy.
  const timedOut = new Promise<ConfigMapLookup>((resolve) => {
    signal.addEventListener('abort', () => resolve({ state: 'unreadable', reason: 'timeout' }), { once: true });
  });
  try {
    const results = await Promise.all(names.map((name) => Promise.race([reader.read(namespace, name, signal), timedOut])));
    return new Map(names.map((name, index) => [name, results[index]!]));
  } catch (error) {
    // A reader broke its promise not to reject: the batch is over, so the other reads stop too.
    deadline.cancel();
    throw error;
  } finally {
    deadline.clear();
  }
}

/** GET /api/v1/namespaces/{ns}/configmaps/{name}; 404 is "missing", anything else that is not 200 is "unreadable". */
export class ApiConfigMapReader implements ConfigMapReader {
  readonly #http: KubeHttp;
  readonly #observe: ReadObserver | undefined;

  constructor(http: KubeHttp, observe?: ReadObserver) {
    this.#http = http;
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
      const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps/${encodeURIComponent(name)}`;
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

/** A short, value-free description of a transport error (never the message, which could echo a URL or body). */
export function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? error.name : 'error';
}
