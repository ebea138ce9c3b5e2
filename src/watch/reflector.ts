// LIST then WATCH one resource, forever: paginated list, watch from the list's resourceVersion with
// bookmarks, relist on 410 Gone (compaction), restart with capped exponential backoff and jitter on any
// other failure. Handlers receive raw JSON objects; nothing is cached here beyond the keys that exist,
// which a relist needs to notice objects deleted while no watch was open.
//
// The watch stream itself is client-node's Watch, whose inactivity timeout (30 s) also serves as the
// watchdog for a silently dead connection: a quiet watch is re-opened from the last resourceVersion.

import { Watch, type KubeConfig } from '@kubernetes/client-node';
import { asArray, asObject, asString, type JsonObject } from '../checksum/json.ts';
import type { KubeHttp } from '../kube/http.ts';
import { OperationalError } from '../telemetry/logger.ts';

export interface ReflectorHandlers {
  upsert(object: JsonObject): void;
  remove(object: JsonObject): void;
  /** After the first complete list (once per reflector). */
  synced?(): void;
}

export interface ReflectorOptions {
  /** Collection path, e.g. /api/v1/configmaps or /apis/apps/v1/deployments. */
  readonly path: string;
  readonly labelSelector?: string;
  /** Called for every restart of the list/watch loop, with why. */
  readonly onRestart?: (reason: string) => void;
  readonly onError?: (error: unknown) => void;
  readonly pageSize?: number;
}

const BACKOFF_INITIAL_MS = 500;
const BACKOFF_MAX_MS = 30_000;
// The API server ends a watch after this; a fresh one is opened from the last resourceVersion.
const WATCH_TIMEOUT_SECONDS = 300;
// A watch open this long without an event still counts as working (a quiet resource).
const WORKING_WATCH_MS = 5_000;

class GoneError extends OperationalError {
  override readonly name = 'GoneError';
}

export class Reflector {
  readonly #http: KubeHttp;
  readonly #watch: Watch;
  readonly #options: ReflectorOptions;
  readonly #handlers: ReflectorHandlers;
  readonly #known = new Map<string, JsonObject>();
  #resourceVersion: string | undefined;
  #stopped = false;
  #abort: AbortController | undefined;
  #synced = false;
  #wake: (() => void) | undefined;

  constructor(http: KubeHttp, kubeConfig: KubeConfig, options: ReflectorOptions, handlers: ReflectorHandlers) {
    this.#http = http;
    this.#watch = new Watch(kubeConfig);
    this.#options = options;
    this.#handlers = handlers;
  }

  get synced(): boolean {
    return this.#synced;
  }

  start(): void {
    void this.#run();
  }

  stop(): void {
    this.#stopped = true;
    this.#abort?.abort();
    this.#wake?.();
  }

  async #run(): Promise<void> {
    let backoff = BACKOFF_INITIAL_MS;
    while (!this.#stopped) {
      try {
        if (this.#resourceVersion === undefined) {
          await this.#list();
          backoff = BACKOFF_INITIAL_MS;
        }
        const { reason, worked } = await this.#watchOnce();
        if (reason !== 'ended') this.#options.onRestart?.(reason);
        // Only a watch that worked resets the backoff; one that ends at once with nothing (a proxy or
        // an API server closing it) is retried like a failure, or it would be retried in a tight loop.
        if (worked) {
          backoff = BACKOFF_INITIAL_MS;
          continue;
        }
      } catch (error) {
        if (this.#stopped) return;
        if (error instanceof GoneError) {
          this.#resourceVersion = undefined;
          this.#options.onRestart?.('expired');
          continue;
        }
        this.#options.onRestart?.('error');
        this.#options.onError?.(error);
      }
      // Full jitter: spreads the reconnects of many replicas after an API server restart.
      await this.#sleep(Math.random() * backoff);
      backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
    }
  }

  async #list(): Promise<void> {
    const seen = new Set<string>();
    let continueToken: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const query = new URLSearchParams({ limit: String(this.#options.pageSize ?? 500) });
      if (this.#options.labelSelector) query.set('labelSelector', this.#options.labelSelector);
      if (continueToken) query.set('continue', continueToken);
      const response = await this.#http.request('GET', `${this.#options.path}?${query}`);
      if (response.status === 410) throw new GoneError('list continuation expired');
      if (response.status !== 200) throw new OperationalError(`LIST ${this.#options.path}: HTTP ${response.status}`);
      const body = asObject(response.json());
      for (const item of asArray(body?.['items'])) {
        const object = asObject(item);
        const key = object && objectKey(object);
        if (!object || !key) continue;
        seen.add(key);
        this.#known.set(key, keyOnly(object));
        this.#handlers.upsert(object);
      }
      const metadata = asObject(body?.['metadata']);
      continueToken = asString(metadata?.['continue']) || undefined;
      resourceVersion = asString(metadata?.['resourceVersion']);
    } while (continueToken && !this.#stopped);
    // Objects deleted while no watch was open: known before, absent from the fresh list.
    for (const [key, object] of this.#known) {
      if (!seen.has(key)) {
        this.#known.delete(key);
        this.#handlers.remove(object);
      }
    }
    this.#resourceVersion = resourceVersion;
    if (!this.#synced) {
      this.#synced = true;
      this.#handlers.synced?.();
    }
  }

  /**
   * Resolves with why the watch ended ('ended' for a server-side close, 'idle' for the inactivity timeout)
   * and whether it worked (delivered an event or stayed open a while); rejects on errors and 410.
   */
  async #watchOnce(): Promise<{ reason: string; worked: boolean }> {
    const opened = performance.now();
    let events = 0;
    return new Promise<{ reason: string; worked: boolean }>((resolve, reject) => {
      let settled = false;
      const finish = (error: unknown, reason = 'ended'): void => {
        if (settled) return;
        settled = true;
        this.#abort?.abort();
        const worked = events > 0 || performance.now() - opened >= WORKING_WATCH_MS;
        if (error instanceof GoneError) reject(error);
        else if (error && (error as Error).name === 'TimeoutError') resolve({ reason: 'idle', worked });
        else if (error && !this.#stopped) reject(error);
        else resolve({ reason, worked });
      };
      const query: Record<string, string | number | boolean> = {
        resourceVersion: this.#resourceVersion ?? '',
        allowWatchBookmarks: true,
        timeoutSeconds: WATCH_TIMEOUT_SECONDS,
      };
      if (this.#options.labelSelector) query['labelSelector'] = this.#options.labelSelector;
      this.#watch
        .watch(this.#options.path, query, (phase: string, object: unknown) => {
          const item = asObject(object);
          if (!item) return;
          events++;
          if (phase === 'ERROR') {
            const code = item['code'];
            finish(code === 410 ? new GoneError('watch expired') : new OperationalError(`watch error: HTTP ${String(code)}`));
            return;
          }
          const version = asString(asObject(item['metadata'])?.['resourceVersion']);
          if (version) this.#resourceVersion = version;
          if (phase === 'BOOKMARK') return;
          const key = objectKey(item);
          if (!key) return;
          if (phase === 'DELETED') {
            this.#known.delete(key);
            this.#handlers.remove(item);
          } else {
            this.#known.set(key, keyOnly(item));
            this.#handlers.upsert(item);
          }
        }, (error: unknown) => finish(error))
        .then((controller) => {
          this.#abort = controller;
          if (this.#stopped) controller.abort();
        }, (error: unknown) => finish(error ?? new OperationalError('watch failed to start')));
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

function objectKey(object: JsonObject): string | undefined {
  const metadata = asObject(object['metadata']);
  const name = asString(metadata?.['name']);
  if (!name) return undefined;
  return `${asString(metadata?.['namespace']) ?? ''}/${name}`;
}

/** What a remove handler needs to identify an object deleted during a gap: its name and namespace. */
function keyOnly(object: JsonObject): JsonObject {
  const metadata = asObject(object['metadata']);
  return { metadata: { name: metadata?.['name'], namespace: metadata?.['namespace'] } };
}
