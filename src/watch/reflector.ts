// LIST then WATCH one resource, forever: paginated list, watch from the list's resourceVersion with
// bookmarks, relist on 410 Gone (compaction), restart with capped exponential backoff and jitter on any
// other failure. Handlers receive raw JSON objects, each as soon as it has arrived (a LIST page is never
// held whole); nothing is kept here beyond the keys of the objects that exist, which a relist needs to
// notice objects deleted while no watch was open.
//
// Pages come from kube/list.ts and the stream from kube/watch.ts (whose inactivity timeout is the watchdog
// for a silently dead connection: a quiet watch is re-opened from the last resourceVersion).

import { ResponseTooLargeError, type KubeHttp } from '../kube/http.ts';
import { GoneError, listPage, nextPageLimit, PAGE_ITEMS, type ListPage } from '../kube/list.ts';
import type { WatchSource } from '../kube/watch.ts';
import { OperationalError } from '../util/errors.ts';
import { asObject, asString, type JsonObject } from '../util/json.ts';

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
  /** A field selector for the list and the watch alike (Secrets: leave out Helm's release Secrets by type). */
  readonly fieldSelector?: string;
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

export class Reflector {
  readonly #http: KubeHttp;
  readonly #watch: WatchSource;
  readonly #options: ReflectorOptions;
  readonly #handlers: ReflectorHandlers;
  /** "namespace/name" of every object that exists, as far as the list and the watch have told. */
  readonly #known = new Set<string>();
  #resourceVersion: string | undefined;
  #stopped = false;
  #abort: AbortController | undefined;
  #synced = false;
  #wake: (() => void) | undefined;

  constructor(http: KubeHttp, watch: WatchSource, options: ReflectorOptions, handlers: ReflectorHandlers) {
    this.#http = http;
    this.#watch = watch;
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
      const attempt = await this.#attempt();
      if (attempt === 'stopped') return;
      if (attempt === 'relist') continue;
      if (attempt === 'worked') {
        backoff = BACKOFF_INITIAL_MS;
        continue;
      }
      // Full jitter: spreads the reconnects of many replicas after an API server restart.
      await this.#sleep(Math.random() * backoff);
      backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
    }
  }

  /**
   * A list when needed, then one watch. 'worked': the watch delivered or stayed open a while; 'failed':
   * it ended at once or erred, so the next one waits (a watch that a proxy or an API server closes at once
   * is retried like a failure, not in a tight loop); 'relist': the resourceVersion expired.
   */
  async #attempt(): Promise<'worked' | 'failed' | 'relist' | 'stopped'> {
    try {
      if (this.#resourceVersion === undefined) await this.#list();
      const { reason, worked } = await this.#watchOnce();
      if (reason !== 'ended') this.#restarted(reason);
      return worked ? 'worked' : 'failed';
    } catch (error) {
      if (this.#stopped) return 'stopped';
      if (error instanceof GoneError) {
        this.#resourceVersion = undefined;
        this.#restarted('expired');
        return 'relist';
      }
      this.#restarted('error');
      this.#options.onError?.(error);
      return 'failed';
    }
  }

  #restarted(reason: string): void {
    this.#options.onRestart?.(reason);
  }

  async #list(): Promise<void> {
    const { seen, resourceVersion } = await this.#listPages();
    // Objects deleted while no watch was open: known before, absent from the fresh list.
    for (const key of this.#known) {
      if (seen.has(key)) continue;
      this.#known.delete(key);
      this.#handlers.remove(keyObject(key));
    }
    this.#resourceVersion = resourceVersion;
    if (!this.#synced) {
      this.#synced = true;
      this.#handlers.synced?.();
    }
  }

  /** Every page of the list, each object handed to the handlers as it arrives. */
  async #listPages(): Promise<{ seen: Set<string>; resourceVersion: string | undefined }> {
    const seen = new Set<string>();
    const maxItems = this.#options.pageSize ?? PAGE_ITEMS;
    let limit = maxItems;
    let continueToken: string | undefined;
    let resourceVersion: string | undefined;
    while (!this.#stopped) {
      const page = await this.#page(limit, continueToken, seen);
      if (!page) {
        // An object over the response cap: the same page again with half as many objects, so that the
        // pages before it complete, and the page of that object alone fails (and the list with it).
        limit = Math.max(1, Math.floor(limit / 2));
        continue;
      }
      limit = nextPageLimit(page, maxItems);
      continueToken = page.continueToken;
      resourceVersion = page.resourceVersion;
      if (!continueToken) break;
    }
    return { seen, resourceVersion };
  }

  /** One page; undefined when an object was over the response cap and fewer objects can still be asked for. */
  async #page(limit: number, continueToken: string | undefined, seen: Set<string>): Promise<ListPage | undefined> {
    try {
      return await listPage(this.#http, this.#options.path, { limit, labelSelector: this.#options.labelSelector, fieldSelector: this.#options.fieldSelector, continueToken }, (item) => this.#listed(item, seen));
    } catch (error) {
      if (error instanceof ResponseTooLargeError && limit > 1) return undefined;
      throw error;
    }
  }

  #listed(item: unknown, seen: Set<string>): void {
    const object = asObject(item);
    const key = object && objectKey(object);
    if (!object || !key) return;
    seen.add(key);
    this.#known.add(key);
    this.#handlers.upsert(object);
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
      if (this.#options.fieldSelector) query['fieldSelector'] = this.#options.fieldSelector;
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
            this.#known.add(key);
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

/** What a remove handler needs to identify an object deleted during a gap, from its key: name and namespace. */
function keyObject(key: string): JsonObject {
  // Namespaces never contain a slash: the first one separates the namespace ('' when cluster-scoped).
  const slash = key.indexOf('/');
  const namespace = key.slice(0, slash);
  return { metadata: { name: key.slice(slash + 1), ...(namespace ? { namespace } : {}) } };
}
