// The watch path (DESIGN section 6): when only a ConfigMap changes, nobody writes the workload, so this
// patches the checksum of each workload that consumes a changed key. The webhook sees that UPDATE and
// computes the same value: both paths call the same core, with the same live reads.
//
// Rules kept here: a metadata-only change or a change to keys nobody consumes does nothing; a ConfigMap
// that appears rolls its consumers; a deleted one rolls nothing and leaves a Warning Event; workloads
// without a checksum are never rolled (installing rolls nothing); after a start or a leader change every
// annotated workload is checked once (config may have changed while nobody watched); only the leader writes.

import type { KubeConfig } from '@kubernetes/client-node';
import { readAnnotation, setAnnotation, TEMPLATE_METADATA, WORKLOAD_METADATA, type PatchOperation } from '../admission/patch.ts';
import { computeChecksum, planChecksum, workloadParts } from '../checksum/compute.ts';
import { asArray, asObject, asString, type JsonObject } from '../checksum/json.ts';
import { CONTRACT, type Config } from '../config.ts';
import { readConfigMaps, type ConfigMapReader } from '../kube/configmaps.ts';
import type { KubeHttp } from '../kube/http.ts';
import { getWebhookConfiguration, getWorkload, patchWorkload, recordEvent, WORKLOAD_RESOURCES } from '../kube/workloads.ts';
import { loggableError, OperationalError, type Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { configMapKey, consumesAny, DependencyIndex, workloadKey, type WorkloadKind, type WorkloadRef } from './dependents.ts';
import { changedKeys, digestConfigMap, type KeyDigests } from './digests.ts';
import { LeaderElector } from './leader.ts';
import { CoalescingQueue, TokenBucket, type PendingChange } from './queue.ts';
import { Reflector } from './reflector.ts';
import { labelSelectorString } from './selector.ts';

/** The settings the watcher reads; documented once, in src/config.ts. */
export type WatcherOptions = Pick<
  Config,
  | 'checksumAnnotation'
  | 'webhookConfigurationName'
  | 'namespace'
  | 'identity'
  | 'coalesceWindowMs'
  | 'rolloutRatePerSecond'
  | 'rolloutBurst'
  | 'leaseDurationSeconds'
  | 'configMapReadTimeoutMs'
  | 'maxConfigMaps'
>;

interface Trigger {
  readonly ref: WorkloadRef;
  /** ConfigMaps whose change led here; empty for the start-up check. */
  readonly configMaps: ReadonlySet<string>;
}

// Workloads handled at once: each is a handful of reads; the writes are rate-limited separately.
const CONCURRENCY = 4;
const MAX_ATTEMPTS = 5;
const RETRY_BASE_MS = 500;
// How often the scope (the webhook configuration's namespaceSelector) is re-read.
const SCOPE_REFRESH_MS = 30_000;
const LEASE_NAME = 'config-checksum-webhook-leader';
export const COMPONENT = 'config-checksum-webhook';

export class Watcher {
  readonly #http: KubeHttp;
  readonly #kubeConfig: KubeConfig;
  readonly #reader: ConfigMapReader;
  readonly #options: WatcherOptions;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #index: DependencyIndex;
  readonly #digests = new Map<string, KeyDigests>();
  readonly #scope = new Set<string>();
  readonly #queue: CoalescingQueue<Trigger>;
  readonly #bucket: TokenBucket;
  readonly #leader: LeaderElector;
  readonly #reflectors: Reflector[] = [];
  #namespaceReflector: Reflector | undefined;
  #scopeSelector: string | undefined;
  #scopeTimer: NodeJS.Timeout | undefined;
  #synced = false;
  #stopped = false;
  #running = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(http: KubeHttp, kubeConfig: KubeConfig, reader: ConfigMapReader, options: WatcherOptions, logger: Logger, metrics: Metrics) {
    this.#http = http;
    this.#kubeConfig = kubeConfig;
    this.#reader = reader;
    this.#options = options;
    this.#log = logger.child({ component: 'watcher' });
    this.#metrics = metrics;
    this.#index = new DependencyIndex(options.checksumAnnotation);
    this.#bucket = new TokenBucket(options.rolloutRatePerSecond, options.rolloutBurst);
    this.#queue = new CoalescingQueue<Trigger>(
      options.coalesceWindowMs,
      (previous, next) => ({ ref: next.ref, configMaps: new Set([...previous.configMaps, ...next.configMaps]) }),
      (change) => void this.#withSlot(() => this.#reconcile(change)),
    );
    this.#leader = new LeaderElector(http, {
      namespace: options.namespace,
      name: LEASE_NAME,
      identity: options.identity,
      leaseDurationSeconds: options.leaseDurationSeconds,
      // client-go's proportions: 2 s retries for a 15 s lease. A dead leader is replaced between one
      // lease duration and one lease duration plus one retry after its last renewal.
      retryPeriodMs: Math.max(200, Math.floor((options.leaseDurationSeconds * 1000 * 2) / 15)),
      onChange: (leading) => {
        this.#metrics.watchLeader.set(leading ? 1 : 0);
        this.#log.info({ identity: options.identity, leading }, leading ? 'became leader' : 'not leader');
        if (leading && this.#synced) this.#checkAll();
      },
      onError: (error) => this.#error('lease', error),
    });
  }

  /** True once every watch has listed once: the index is complete. */
  get synced(): boolean {
    return this.#synced;
  }

  get leading(): boolean {
    return this.#leader.leading;
  }

  async start(): Promise<void> {
    await this.#refreshScope();
    this.#scopeTimer = setInterval(() => void this.#refreshScope(), SCOPE_REFRESH_MS);
    this.#watch('configmaps', '/api/v1/configmaps', {
      upsert: (object) => this.#onConfigMap(object),
      remove: (object) => this.#onConfigMapDeleted(object),
    });
    for (const kind of Object.keys(WORKLOAD_RESOURCES) as WorkloadKind[]) {
      this.#watch(WORKLOAD_RESOURCES[kind], `/apis/apps/v1/${WORKLOAD_RESOURCES[kind]}`, {
        upsert: (object) => this.#index.upsert(kind, object),
        remove: (object) => {
          const metadata = asObject(object['metadata']);
          this.#index.remove({ kind, namespace: asString(metadata?.['namespace']) ?? '', name: asString(metadata?.['name']) ?? '' });
        },
      });
    }
    this.#leader.start();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#scopeTimer);
    this.#queue.clear();
    for (const reflector of this.#reflectors) reflector.stop();
    this.#namespaceReflector?.stop();
    await this.#leader.stop();
  }

  #watch(resource: string, path: string, handlers: { upsert(object: JsonObject): void; remove(object: JsonObject): void }): Reflector {
    const reflector = new Reflector(this.#http, this.#kubeConfig, {
      path,
      onRestart: (reason) => this.#metrics.watchRestarts.inc({ resource, reason }),
      onError: (error) => this.#error(`watch-${resource}`, error),
    }, { ...handlers, synced: () => this.#maybeSynced() });
    this.#reflectors.push(reflector);
    reflector.start();
    return reflector;
  }

  /** Scope = namespaces matching the webhook configuration's namespaceSelector (one source of truth). */
  async #refreshScope(): Promise<void> {
    let selector: string;
    try {
      const configuration = await getWebhookConfiguration(this.#http, this.#options.webhookConfigurationName);
      if (!configuration) throw new OperationalError(`MutatingWebhookConfiguration ${this.#options.webhookConfigurationName} not found; no namespace is in scope`);
      const webhook = asObject(asArray(configuration['webhooks'])[0]);
      selector = labelSelectorString(webhook?.['namespaceSelector']);
    } catch (error) {
      // Without a scope nothing is rolled: an empty scope is the safe reading of an unknown one.
      this.#error('scope', error);
      if (this.#scopeSelector === undefined) this.#maybeSynced();
      return;
    }
    if (selector === this.#scopeSelector) return;
    this.#log.info({ labelSelector: selector }, 'scope');
    this.#scopeSelector = selector;
    this.#namespaceReflector?.stop();
    this.#scope.clear();
    this.#namespaceReflector = new Reflector(this.#http, this.#kubeConfig, {
      path: '/api/v1/namespaces',
      labelSelector: selector,
      onRestart: (reason) => this.#metrics.watchRestarts.inc({ resource: 'namespaces', reason }),
      onError: (error) => this.#error('watch-namespaces', error),
    }, {
      upsert: (object) => {
        const name = asString(asObject(object['metadata'])?.['name']);
        if (name) this.#scope.add(name);
      },
      remove: (object) => {
        const name = asString(asObject(object['metadata'])?.['name']);
        if (name) this.#scope.delete(name);
      },
      synced: () => this.#maybeSynced(),
    });
    this.#namespaceReflector.start();
  }

  #maybeSynced(): void {
    if (this.#synced || !this.#reflectors.every((reflector) => reflector.synced)) return;
    if (this.#namespaceReflector && !this.#namespaceReflector.synced) return;
    this.#synced = true;
    this.#metrics.watchConfigMaps.set(this.#digests.size);
    this.#log.info({ configMaps: this.#digests.size, workloads: this.#index.size, namespacesInScope: this.#scope.size }, 'watches synced');
    if (this.#leader.leading) this.#checkAll();
  }

  /** Once after start-up or a leader change: bring stale annotated workloads up to date. */
  #checkAll(): void {
    let queued = 0;
    for (const workload of this.#index.workloads()) {
      if (!workload.hasChecksum || !this.#scope.has(workload.namespace)) continue;
      this.#queue.add(workloadKey(workload), { ref: workload, configMaps: new Set() }, 0);
      queued++;
    }
    this.#log.info({ workloads: queued }, 'checking annotated workloads');
  }

  #onConfigMap(object: JsonObject): void {
    const metadata = asObject(object['metadata']);
    const namespace = asString(metadata?.['namespace']) ?? '';
    const name = asString(metadata?.['name']) ?? '';
    const key = configMapKey(namespace, name);
    const after = digestConfigMap(object);
    const before = this.#digests.get(key);
    this.#digests.set(key, after);
    if (!this.#synced) return;
    if (!before) this.#metrics.watchConfigMaps.set(this.#digests.size);
    if (!this.#scope.has(namespace)) return;
    // A ConfigMap that appears changes every consumer's checksum (absent -> present).
    const changed = before ? changedKeys(before, after) : undefined;
    for (const { workload, use } of this.#index.consumersOf(namespace, name)) {
      if (changed && changed.size === 0) this.#skip('metadata-only');
      else if (changed && !consumesAny(use, changed)) this.#skip('unconsumed-key');
      else this.#queue.add(workloadKey(workload), { ref: workload, configMaps: new Set([name]) });
    }
  }

  #onConfigMapDeleted(object: JsonObject): void {
    const metadata = asObject(object['metadata']);
    const namespace = asString(metadata?.['namespace']) ?? '';
    const name = asString(metadata?.['name']) ?? '';
    this.#digests.delete(configMapKey(namespace, name));
    this.#metrics.watchConfigMaps.set(this.#digests.size);
    if (!this.#synced || !this.#scope.has(namespace)) return;
    for (const { workload, use } of this.#index.consumersOf(namespace, name)) {
      this.#skip('configmap-deleted');
      // New pods of a workload whose required ConfigMap is gone could not start: warn, never roll.
      if (!use.required || !workload.hasChecksum || !this.#leader.leading) continue;
      void this.#event(workload, 'Warning', 'ConfigMapDeleted', `ConfigMap ${name} was deleted; not rolling out (new pods could not start until it exists again)`);
    }
  }

  async #reconcile(change: PendingChange<Trigger>, attempt = 1): Promise<void> {
    const { ref, configMaps } = change.value;
    if (this.#stopped) return;
    if (!this.#leader.leading) return this.#skip('not-leader');
    if (!this.#scope.has(ref.namespace)) return this.#skip('out-of-scope');
    try {
      const object = await getWorkload(this.#http, ref);
      const parts = object && workloadParts(object);
      if (!object || !parts) return this.#skip('workload-gone');
      const metadata = asObject(object['metadata']);
      if (metadata?.['deletionTimestamp']) return this.#skip('deleting');
      if (readAnnotation(object, WORKLOAD_METADATA, CONTRACT.optOutAnnotation) === 'false') return this.#skip('opted-out');
      const current = readAnnotation(object, TEMPLATE_METADATA, this.#options.checksumAnnotation);
      if (current === undefined) return this.#skip('no-checksum');
      const plan = planChecksum(parts.template, parts.annotations, CONTRACT.extraConfigMapsAnnotation);
      if (plan.uses.length === 0 || plan.uses.length > this.#options.maxConfigMaps) return this.#skip('no-usable-references');
      const lookups = await readConfigMaps(this.#reader, ref.namespace, plan.uses.map((use) => use.name), this.#options.configMapReadTimeoutMs);
      const computed = computeChecksum(plan, (name) => lookups.get(name) ?? { state: 'unreadable', reason: 'not read' });
      if (computed.kind === 'unreadable') throw new OperationalError(`ConfigMaps unreadable: ${computed.unreadable.map((u) => `${u.name} (${u.reason})`).join(', ')}`);
      if (computed.checksum === current) return this.#skip('up-to-date');

      await this.#bucket.take();
      const operations: PatchOperation[] = [setAnnotation(object, TEMPLATE_METADATA, this.#options.checksumAnnotation, computed.checksum)];
      if (readAnnotation(object, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation) !== computed.sources) {
        operations.push(setAnnotation(object, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation, computed.sources));
      }
      const resourceVersion = asString(metadata?.['resourceVersion']) ?? '';
      if (!(await patchWorkload(this.#http, ref, resourceVersion, operations))) {
        // Someone wrote the workload meanwhile (its admission already hashed the current config, most
        // likely): read again and decide again, at once.
        if (attempt < MAX_ATTEMPTS) return this.#reconcile(change, attempt + 1);
        throw new OperationalError('conflict on every attempt');
      }
      const seconds = (performance.now() - change.firstSeenAt) / 1000;
      this.#metrics.watchRollouts.inc({ kind: ref.kind });
      this.#metrics.watchReaction.observe(seconds);
      const cause = configMaps.size > 0 ? `ConfigMap ${[...configMaps].sort().join(', ')} changed` : 'config changed while no watcher was running';
      this.#log.info({ kind: ref.kind, namespace: ref.namespace, name: ref.name, configMaps: [...configMaps], checksum: computed.checksum, reactionMs: Math.round(seconds * 1000) }, 'rolled out');
      await this.#event({ ...ref, uid: asString(metadata?.['uid']) ?? '' }, 'Normal', 'ConfigChanged', `${cause}; rolling out (${this.#options.checksumAnnotation}=${computed.checksum.slice(0, 12)})`);
    } catch (error) {
      this.#error('reconcile', error);
      if (attempt < MAX_ATTEMPTS && !this.#stopped) {
        const delay = RETRY_BASE_MS * 2 ** (attempt - 1) * (0.5 + Math.random());
        setTimeout(() => void this.#withSlot(() => this.#reconcile(change, attempt + 1)), delay);
      }
    }
  }

  async #event(workload: WorkloadRef & { uid?: string }, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    try {
      let uid = workload.uid;
      if (uid === undefined) uid = asString(asObject((await getWorkload(this.#http, workload))?.['metadata'])?.['uid']) ?? '';
      await recordEvent(this.#http, workload, uid, { type, reason, message }, COMPONENT);
    } catch (error) {
      this.#error('event', error);
    }
  }

  async #withSlot(task: () => Promise<void>): Promise<void> {
    while (this.#running >= CONCURRENCY) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#running++;
    try {
      await task();
    } finally {
      this.#running--;
      this.#waiting.shift()?.();
    }
  }

  #skip(reason: string): void {
    this.#metrics.watchSkipped.inc({ reason });
  }

  #error(operation: string, error: unknown): void {
    this.#metrics.watchErrors.inc({ operation });
    this.#log.warn({ operation, err: loggableError(error) }, 'watcher error');
  }
}
