// The watch path (DESIGN sections 2 and 6): when only a ConfigMap changes, nobody writes the workload, so
// this asks for a recomputation of each workload that consumes a changed key: it writes
// `config-checksum.io/requested: <checksum>` on the workload's own metadata, and the webhook, admitting
// that UPDATE, sets the checksum in the pod template from its own live reads. The webhook is the only
// writer of the pod template, so a server-side applier that owns `checksum/config` (Helm 4, a chart with
// Helm's checksum pattern) keeps owning it and its next apply never conflicts. The response says whether
// the webhook did it; if not (webhook down, timed out, failed open) the change stays pending and is
// retried with capped backoff until it lands: no change is ever dropped while this replica leads.
//
// Rules kept here: a metadata-only change or a change to keys nobody consumes does nothing; a ConfigMap
// that appears rolls its consumers; a deleted one (or a required key gone) rolls nothing and leaves a
// Warning Event; workloads without a checksum are never rolled (installing rolls nothing); nothing is
// decided before the scope is known and every list/watch has listed; every annotated workload is checked
// after a start, a leader change, a new namespaceSelector and every --resync-minutes (config may have
// changed while nobody watched, or an event was missed); only the leader writes.

import { randomBytes } from 'node:crypto';
import { fitsAnnotations, readAnnotation, setAnnotation, TEMPLATE_METADATA, WORKLOAD_METADATA } from '../workload/annotations.ts';
import { decideWorkload, type SecretSource, type WorkloadDecision } from '../workload/decision.ts';
import { metadataString, WORKLOAD_KINDS, WORKLOAD_RESOURCES, workloadKey, type WorkloadKind, type WorkloadRef } from '../workload/kinds.ts';
import { asArray, asObject, asString, type JsonObject } from '../util/json.ts';
import { CONTRACT, type Config } from '../config.ts';
import { hashKeyId, secretChecksumKeyId } from '../checksum/encode.ts';
import type { ConfigMapReader } from '../kube/configmaps.ts';
import type { WatcherApi } from '../kube/watcher-api.ts';
import { loggableError, type Logger } from '../telemetry/logger.ts';
import { OperationalError } from '../util/errors.ts';
import { rateLimited, type Metrics } from '../telemetry/metrics.ts';
import type { ConfigMapUse } from '../checksum/references.ts';
import { configMapKey, consumesAny, DependencyIndex, type IndexedWorkload, type SourceType } from './dependents.ts';
import { changedKeys, digestConfigMap, KeySets, type KeyDigests } from './digests.ts';
import { fluxOwner, GitOpsHolds, type EndedHold } from './gitops.ts';
import { ListedChecksums } from './listed-checksums.ts';
import type { LeaderOptions } from './leader.ts';
import { CoalescingQueue, TokenBucket } from './queue.ts';
import type { ReflectorHandlers, ReflectorOptions } from './reflector.ts';
import { labelSelectorString } from './selector.ts';

/** The settings the watcher reads; documented once, in src/config.ts. */
export type WatcherOptions = Pick<
  Config,
  | 'checksumAnnotation'
  | 'webhookConfigurationName'
  | 'namespace'
  | 'identity'
  | 'coalesceWindowMs'
  | 'coalesceMaxMs'
  | 'rolloutRatePerSecond'
  | 'rolloutBurst'
  | 'leaseDurationSeconds'
  | 'resyncMinutes'
  | 'configMapReadTimeoutMs'
  | 'maxConfigMaps'
  | 'gitopsMaxWaitSeconds'
>;

/** A list/watch loop of one resource (watch/reflector.ts), as the watcher uses it. */
export interface ListWatch {
  readonly synced: boolean;
  start(): void;
  stop(): void;
}

/** Leadership on the Lease (watch/leader.ts), as the watcher uses it. */
export interface Leadership {
  readonly leading: boolean;
  start(): void;
  stop(): Promise<void>;
}

/**
 * What the watcher is built from. main.ts gives it the real ones (API calls over HTTP, reflectors on
 * list/watch, a Lease elector); tests give it fakes, so every rule below runs without a cluster.
 */
export interface WatcherParts {
  readonly api: WatcherApi;
  /** The watcher's own timers (scope refresh and retry, backoff of pending changes, the periodic pass); the real clock unless given. */
  readonly clock?: Clock;
  readonly reader: ConfigMapReader;
  /** With --secrets: the webhook's own view of Secrets, so both decide alike (caps, missing Secrets, the request value). */
  readonly secrets?: SecretSource | undefined;
  readonly listWatch: (options: ReflectorOptions, handlers: ReflectorHandlers) => ListWatch;
  readonly leadership: (options: LeaderOptions) => Leadership;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/** Timers, so a test can run the watcher's minutes in milliseconds. */
export interface Clock {
  setTimeout(callback: () => void, ms: number): NodeJS.Timeout;
  setInterval(callback: () => void, ms: number): NodeJS.Timeout;
}

const REAL_CLOCK: Clock = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  setInterval: (callback, ms) => setInterval(callback, ms),
};

interface Trigger {
  readonly ref: WorkloadRef;
  /** ConfigMaps whose change led here; empty for the start-up check. */
  readonly configMaps: ReadonlySet<string>;
  /** Secrets whose change led here (with --secrets). */
  readonly secrets: ReadonlySet<string>;
  /** Failed attempts so far (for the backoff); 0 for a fresh change. */
  readonly failures: number;
  /** When the oldest change merged into this one was first seen (performance.now()), for the reaction metric. */
  readonly since: number;
  /** Set when a level-based pass asked, not a ConfigMap event. */
  readonly pass?: Pass | undefined;
}

type Pass = 'start' | 'leader' | 'periodic' | 'scope';

const PASS_CAUSE: Readonly<Record<Pass, string>> = {
  start: 'config changed while no watcher was running',
  leader: 'config changed while no watcher was running',
  periodic: 'config changed and no change event reached the watcher',
  scope: 'config changed while the scope was being read again',
};

function mergeTriggers(previous: Trigger, next: Trigger): Trigger {
  return {
    ref: next.ref,
    configMaps: new Set([...previous.configMaps, ...next.configMaps]),
    secrets: new Set([...previous.secrets, ...next.secrets]),
    failures: Math.max(previous.failures, next.failures),
    since: Math.min(previous.since, next.since),
    pass: previous.pass ?? next.pass,
  };
}

// Workloads handled at once: each is a handful of reads; the writes are rate-limited separately.
const CONCURRENCY = 4;
// A write that raced ours (409/422 on the resourceVersion test) is read and decided again at once, this
// many times in a row, before it waits like any other failure.
const IMMEDIATE_CONFLICT_RETRIES = 5;
// Backoff of a pending change: 0.5 s doubling to at most 60 s (each with +-50% jitter), forever.
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 60_000;
// How often the scope (the webhook configuration's namespaceSelector) is re-read.
const SCOPE_REFRESH_MS = 30_000;
// While the scope has never been read, it is retried this often (nothing is synced, so nothing rolls).
const SCOPE_RETRY_MS = 2_000;
const NOT_SYNCED_WARNING_MS = 60_000;
// A rollout held for a Flux Kustomization's apply is looked at again this often (gitops.ts).
const HOLD_POLL_MS = 2_000;
export const LEASE_NAME = 'config-checksum-webhook-leader';

export class Watcher {
  readonly #api: WatcherApi;
  readonly #listWatch: WatcherParts['listWatch'];
  readonly #clock: Clock;
  readonly #reader: ConfigMapReader;
  readonly #secrets: SecretSource | undefined;
  readonly #options: WatcherOptions;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #index: DependencyIndex;
  readonly #digests: Record<SourceType, Map<string, KeyDigests>> = { configmap: new Map(), secret: new Map() };
  readonly #keySets = new KeySets();
  /** The Flux Kustomization ("namespace/name") that applied a ConfigMap or Secret, for those that carry its labels. */
  readonly #fluxOwners: Record<SourceType, Map<string, string>> = { configmap: new Map(), secret: new Map() };
  readonly #ownerNames = new Map<string, string>();
  /** The next look at each held rollout. */
  readonly #heldPolls = new Map<string, { timer: NodeJS.Timeout; trigger: Trigger }>();
  /** With --gitops-max-wait-seconds above 0: rollouts held for a Flux Kustomization's apply. */
  readonly #holds: GitOpsHolds | undefined;
  // Secrets' digests are keyed with this process's own random key: nothing of a Secret's value, not even a
  // plain hash, is kept (the checksum's key is the webhook's; this one never leaves memory).
  readonly #secretDigestKey = randomBytes(32);
  readonly #scope = new Set<string>();
  readonly #queue: CoalescingQueue<Trigger>;
  readonly #bucket: TokenBucket;
  readonly #leader: Leadership;
  readonly #reflectors: ListWatch[] = [];
  #namespaceReflector: ListWatch | undefined;
  /** One-off lists of the workloads of a namespace that joined the scope (stopped once listed). */
  readonly #namespaceLists = new Set<ListWatch>();
  #scopeSelector: string | undefined;
  /**
   * True once the namespaces of the current selector are listed: from then on only workloads in scope are
   * indexed (DESIGN section 6), and a namespace that joins the scope has its workloads listed. Before
   * that (at start, and while a new selector's namespaces are listed) every workload is indexed, so that
   * none is lost to a scope not yet known.
   */
  #scopeListed = false;
  /** The scope before the selector last changed: its namespaces' workloads are already indexed. */
  #previousScope: ReadonlySet<string> = new Set();
  #scopeTimer: NodeJS.Timeout | undefined;
  #scopeRetry: NodeJS.Timeout | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  #notSyncedWarning: NodeJS.Timeout | undefined;
  readonly #retryTimers = new Set<NodeJS.Timeout>();
  #synced = false;
  /** Checksums found up to date while the ConfigMaps were first listed; dropped after the first pass. */
  #listedChecksums: ListedChecksums | undefined;
  #configMapReflector: ListWatch | undefined;
  /** Set once every list/watch is created (ConfigMaps after workloads); before that, "all of them synced" means nothing. */
  #watching = false;
  #stopped = false;
  #running = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(parts: WatcherParts, options: WatcherOptions) {
    this.#api = parts.api;
    this.#listWatch = parts.listWatch;
    this.#clock = parts.clock ?? REAL_CLOCK;
    this.#reader = parts.reader;
    this.#secrets = parts.secrets;
    this.#options = options;
    this.#log = parts.logger.child({ component: 'watcher' });
    this.#metrics = parts.metrics;
    this.#index = new DependencyIndex(options.checksumAnnotation, parts.secrets?.annotation);
    this.#listedChecksums = new ListedChecksums(this.#index);
    this.#holds = options.gitopsMaxWaitSeconds > 0
      ? new GitOpsHolds({
        getKustomization: (namespace, name) => this.#api.getKustomization(namespace, name),
        maxWaitMs: options.gitopsMaxWaitSeconds * 1000,
        metrics: parts.metrics,
        onError: (error) => this.#error('read-kustomization', error),
      })
      : undefined;
    this.#bucket = new TokenBucket(options.rolloutRatePerSecond, options.rolloutBurst);
    this.#queue = new CoalescingQueue<Trigger>(
      options.coalesceWindowMs,
      options.coalesceMaxMs,
      mergeTriggers,
      (change) => void this.#withSlot(() => this.#reconcile(change.value)),
    );
    this.#leader = parts.leadership({
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
        if (leading && this.#synced) this.#checkAll('leader');
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
    this.#metrics.watchSynced.set(0);
    // Not synced, nothing is rolled: say so loudly if it lasts (a scope that cannot be read, a list that fails).
    this.#notSyncedWarning = this.#clock.setTimeout(() => this.#log.warn({ scopeKnown: this.#scopeSelector !== undefined, listed: this.#reflectors.filter((reflector) => reflector.synced).length, lists: this.#reflectors.length }, 'watches not synced after 60 s; no ConfigMap change is rolled until they are'), NOT_SYNCED_WARNING_MS);
    await this.#refreshScope();
    this.#scopeTimer = this.#clock.setInterval(() => void this.#refreshScope(), SCOPE_REFRESH_MS);
    // Workloads first, then ConfigMaps: while the ConfigMaps are listed, the index knows who consumes them,
    // and the start-up pass learns which workloads are up to date without reading anything (listed-checksums.ts).
    let workloadsListed = 0;
    for (const kind of WORKLOAD_KINDS) {
      this.#watch(WORKLOAD_RESOURCES[kind], `/apis/apps/v1/${WORKLOAD_RESOURCES[kind]}`, {
        upsert: (object) => this.#onWorkload(kind, object),
        remove: (object) => {
          this.#index.remove({ kind, ...objectName(object) });
          this.#indexChanged();
        },
      }, {
        listed: () => {
          if (++workloadsListed === WORKLOAD_KINDS.length) this.#watchConfigMaps();
        },
      });
    }
    if (this.#secrets) {
      // Helm's release Secrets (large, one per revision) and service-account tokens are never config a
      // workload consumes this way: the API server leaves them out of the list and the watch.
      this.#watch('secrets', '/api/v1/secrets', {
        upsert: (object) => this.#onSource('secret', object),
        remove: (object) => this.#onSourceDeleted('secret', object),
      }, { fieldSelector: SECRETS_FIELD_SELECTOR });
    }
    this.#maybeSynced();
    this.#leader.start();
    if (this.#options.resyncMinutes > 0) {
      this.#resyncTimer = this.#clock.setInterval(() => {
        if (this.#synced && this.#leader.leading) this.#checkAll('periodic');
      }, this.#options.resyncMinutes * 60_000);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#scopeTimer);
    clearTimeout(this.#scopeRetry);
    clearInterval(this.#resyncTimer);
    clearTimeout(this.#notSyncedWarning);
    for (const timer of this.#retryTimers) clearTimeout(timer);
    this.#retryTimers.clear();
    for (const { timer } of this.#heldPolls.values()) clearTimeout(timer);
    this.#heldPolls.clear();
    this.#metrics.watchPending.set(0);
    this.#metrics.pendingRollouts.clear();
    this.#queue.clear();
    this.#holds?.clear();
    for (const reflector of this.#reflectors) reflector.stop();
    this.#namespaceReflector?.stop();
    for (const list of this.#namespaceLists) list.stop();
    await this.#leader.stop();
  }

  #watchConfigMaps(): void {
    if (this.#stopped) return;
    this.#configMapReflector = this.#watch('configmaps', '/api/v1/configmaps', {
      upsert: (object) => this.#onSource('configmap', object),
      remove: (object) => this.#onSourceDeleted('configmap', object),
    }, { listed: () => this.#listedChecksums?.finish() });
    this.#watching = true;
  }

  /** A list/watch of `path`; `listed` runs once its first list is complete, before the sync is checked. */
  #watch(resource: string, path: string, handlers: { upsert(object: JsonObject): void; remove(object: JsonObject): void }, extra: { listed?: () => void; fieldSelector?: string } = {}): ListWatch {
    const { listed, fieldSelector } = extra;
    const reflector = this.#listWatch({
      path,
      ...(fieldSelector ? { fieldSelector } : {}),
      onRestart: (reason) => this.#metrics.watchRestarts.inc({ resource, reason }),
      onError: (error) => this.#error(`watch-${resource}`, error),
    }, {
      ...handlers,
      synced: () => {
        listed?.();
        this.#maybeSynced();
      },
    });
    this.#reflectors.push(reflector);
    reflector.start();
    return reflector;
  }

  /** Scope = namespaces matching the webhook configuration's namespaceSelector (one source of truth). */
  async #refreshScope(): Promise<void> {
    let selector: string;
    try {
      const configuration = await this.#api.getWebhookConfiguration(this.#options.webhookConfigurationName);
      if (!configuration) throw new OperationalError(`MutatingWebhookConfiguration ${this.#options.webhookConfigurationName} not found; no namespace is in scope`);
      const webhook = asObject(asArray(configuration['webhooks'])[0]);
      selector = labelSelectorString(webhook?.['namespaceSelector']);
    } catch (error) {
      // Without a scope nothing is rolled, and the watcher is not synced: the start-up pass must wait for a
      // scope and a full index, or it would check nothing and stale checksums would stay stale.
      this.#error('scope', error);
      if (this.#scopeSelector === undefined && !this.#stopped) this.#scopeRetry = this.#clock.setTimeout(() => void this.#refreshScope(), SCOPE_RETRY_MS);
      return;
    }
    if (selector === this.#scopeSelector) return;
    this.#log.info({ labelSelector: selector }, 'scope');
    this.#scopeSelector = selector;
    this.#namespaceReflector?.stop();
    // Out-of-scope workloads were not indexed: the new scope's namespaces are compared with this one
    // once listed, and the ones that joined are listed.
    this.#previousScope = this.#scopeListed ? new Set(this.#scope) : new Set();
    this.#scopeListed = false;
    this.#scope.clear();
    this.#namespaceReflector = this.#listWatch({
      path: '/api/v1/namespaces',
      labelSelector: selector,
      onRestart: (reason) => this.#metrics.watchRestarts.inc({ resource: 'namespaces', reason }),
      onError: (error) => this.#error('watch-namespaces', error),
    }, {
      upsert: (object) => {
        const name = asString(asObject(object['metadata'])?.['name']);
        if (!name || this.#scope.has(name)) return;
        this.#scope.add(name);
        if (this.#scopeListed) this.#listWorkloadsOf(name);
      },
      remove: (object) => {
        const name = asString(asObject(object['metadata'])?.['name']);
        if (!name) return;
        this.#scope.delete(name);
        if (this.#scopeListed) this.#index.retain((namespace) => namespace !== name);
        this.#indexChanged();
      },
      synced: () => this.#namespacesListed(),
    });
    this.#namespaceReflector.start();
  }

  /**
   * The namespaces of the current selector are listed. At start that may complete the sync; after a new
   * selector, changes made while its namespaces were being listed were dropped as out of scope, so every
   * workload is checked again.
   */
  #namespacesListed(): void {
    this.#scopeListed = true;
    this.#index.retain((namespace) => this.#scope.has(namespace));
    this.#indexChanged();
    if (this.#previousScope.size > 0) {
      for (const namespace of this.#scope) if (!this.#previousScope.has(namespace)) this.#listWorkloadsOf(namespace);
    }
    if (!this.#synced) this.#maybeSynced();
    else if (this.#leader.leading) this.#checkAll('scope');
  }

  /** Synced: the scope is known and every list/watch (namespaces, ConfigMaps, each workload kind) has listed. */
  #maybeSynced(): void {
    if (this.#synced || !this.#watching || !this.#namespaceReflector?.synced) return;
    if (!this.#reflectors.every((reflector) => reflector.synced)) return;
    this.#synced = true;
    clearTimeout(this.#notSyncedWarning);
    this.#metrics.watchSynced.set(1);
    this.#metrics.watchConfigMaps.set(this.#digests.configmap.size);
    const secrets = this.#secrets ? { secrets: this.#digests.secret.size } : {};
    this.#log.info({ configMaps: this.#digests.configmap.size, ...secrets, workloads: this.#index.size, namespacesInScope: this.#scope.size }, 'watches synced');
    if (this.#leader.leading) this.#checkAll('start');
  }

  /**
   * The level-based pass: every annotated workload in scope is decided again from live reads, and what is
   * stale is rolled. After start-up and a leader change (config may have changed while nobody watched),
   * and every --resync-minutes (catches what an event missed; costs what the start-up pass costs).
   */
  #checkAll(pass: Pass): void {
    // The first pass after start skips what the ConfigMap list already showed up to date, then forgets it.
    const listed = this.#listedChecksums;
    this.#listedChecksums = undefined;
    let queued = 0;
    let upToDateWhenListed = 0;
    for (const workload of this.#index.workloads()) {
      if ((workload.checksum === undefined && workload.secretChecksum === undefined) || !this.#scope.has(workload.namespace)) continue;
      // The listed checksums cover ConfigMaps only: a workload that consumes Secrets is checked live.
      if (workload.secretUses.length === 0 && listed?.upToDate(workload)) {
        upToDateWhenListed++;
        continue;
      }
      this.#queue.add(workloadKey(workload), { ref: workload, configMaps: new Set(), secrets: new Set(), failures: 0, since: performance.now(), pass }, 0);
      queued++;
    }
    listed?.clear();
    this.#log.info({ workloads: queued, upToDateWhenListed, pass }, 'checking annotated workloads');
  }

  /** A ConfigMap (or Secret) listed, added or changed: its consumers of a changed key are queued. */
  #onSource(type: SourceType, object: JsonObject): void {
    const { namespace, name } = objectName(object);
    const { before, after } = this.#remember(type, object, namespace, name);
    if (!this.#synced || !this.#scope.has(namespace)) return;
    // A ConfigMap that appears changes every consumer's checksum (absent -> present).
    const changed = before ? changedKeys(before, after) : undefined;
    for (const { workload, use } of this.#index.consumersOf(namespace, name, type)) {
      const unaffected = unaffectedBy(changed, use);
      if (unaffected) this.#skip(unaffected);
      else this.#queue.add(workloadKey(workload), changeTrigger(workload, type === 'configmap' ? [name] : [], type === 'secret' ? [name] : []));
    }
  }

  /** Stores the new digests of a ConfigMap (or Secret); returns them with the ones they replace. */
  #remember(type: SourceType, object: JsonObject, namespace: string, name: string): { before: KeyDigests | undefined; after: KeyDigests } {
    const digests = this.#digests[type];
    const key = configMapKey(namespace, name);
    const after = digestConfigMap(object, this.#keySets, type === 'secret' ? this.#secretDigestKey : undefined);
    const before = digests.get(key);
    digests.set(key, after);
    this.#rememberFluxOwner(type, key, object);
    if (type === 'configmap') {
      this.#configMapSeen(object, namespace, name);
      if (!before && this.#synced) this.#metrics.watchConfigMaps.set(digests.size);
    }
    return { before, after };
  }

  /**
   * An update that starts consuming ConfigMaps: if one of them changed just before and its event came
   * first (separate watch streams), nobody consumed it then, so the workload is checked once more.
   */
  #onWorkload(kind: WorkloadKind, object: JsonObject): void {
    if (this.#scopeListed && !this.#scope.has(objectName(object).namespace)) {
      // Out of scope: costs nothing (it may have just left the scope, or been listed before).
      this.#index.remove({ kind, ...objectName(object) });
      this.#indexChanged();
      return;
    }
    const indexed = this.#index.upsert(kind, object);
    this.#indexChanged();
    if (!indexed || indexed.added.length + indexed.addedSecrets.length === 0 || !this.#synced || !this.#scope.has(indexed.workload.namespace)) return;
    if (indexed.workload.checksum === undefined && indexed.workload.secretChecksum === undefined) return;
    this.#queue.add(workloadKey(indexed.workload), changeTrigger(indexed.workload, indexed.added, indexed.addedSecrets));
  }

  /**
   * A namespace joined the scope: its workloads were not indexed (out of scope until now), so they are
   * listed once, with the reflector's paging and retries, and each list stops once it has listed. The
   * cluster-wide watch meanwhile indexes their changes: a listed object already indexed is older or the
   * same, and is left alone.
   */
  #listWorkloadsOf(namespace: string): void {
    for (const kind of WORKLOAD_KINDS) {
      const list: ListWatch = this.#listWatch({
        path: `/apis/apps/v1/namespaces/${namespace}/${WORKLOAD_RESOURCES[kind]}`,
        onError: (error) => this.#error(`list-${WORKLOAD_RESOURCES[kind]}`, error),
      }, {
        upsert: (object) => {
          if (this.#scope.has(namespace) && !this.#index.has({ kind, ...objectName(object) })) this.#onWorkload(kind, object);
        },
        remove: () => undefined,
        synced: () => {
          list.stop();
          this.#namespaceLists.delete(list);
        },
      });
      this.#namespaceLists.add(list);
      list.start();
    }
  }

  #indexChanged(): void {
    this.#metrics.watchWorkloads.set(this.#index.size);
  }

  /** While the ConfigMaps are first listed, each feeds the listed checksums; later, a change spoils its consumers'. */
  #configMapSeen(object: JsonObject | undefined, namespace: string, name: string): void {
    if (object && this.#configMapReflector?.synced === false) this.#listedChecksums?.listed(object, namespace, name);
    else this.#listedChecksums?.changed(namespace, name);
  }

  /** Only with GitOps holds on, and only for objects with kustomize-controller's labels. */
  #rememberFluxOwner(type: SourceType, key: string, object: JsonObject | undefined): void {
    if (!this.#holds) return;
    const owner = object && fluxOwner(object);
    if (!owner) {
      this.#fluxOwners[type].delete(key);
      return;
    }
    // One string per Kustomization, however many ConfigMaps it applied.
    let shared = this.#ownerNames.get(owner);
    if (shared === undefined) this.#ownerNames.set(owner, (shared = owner));
    this.#fluxOwners[type].set(key, shared);
  }

  #onSourceDeleted(type: SourceType, object: JsonObject): void {
    const { namespace, name } = objectName(object);
    if (type === 'configmap') this.#configMapSeen(undefined, namespace, name);
    this.#digests[type].delete(configMapKey(namespace, name));
    this.#rememberFluxOwner(type, configMapKey(namespace, name), undefined);
    if (type === 'configmap') this.#metrics.watchConfigMaps.set(this.#digests[type].size);
    if (!this.#synced || !this.#scope.has(namespace)) return;
    for (const { workload, use } of this.#index.consumersOf(namespace, name, type)) {
      this.#skip(`${type}-deleted`);
      // New pods of a workload whose required ConfigMap (or Secret) is gone could not start: warn, never roll.
      if (use.required && checksumOf(workload, type) !== undefined && this.#leader.leading) this.#warnDeleted(workload, type, name);
    }
  }

  #warnDeleted(workload: WorkloadRef, type: SourceType, name: string): void {
    const noun = type === 'configmap' ? 'ConfigMap' : 'Secret';
    void this.#event(workload, 'Warning', `${noun}Deleted`, `${noun} ${name} was deleted; not rolling out (new pods could not start until it exists again)`);
  }

  /** One attempt; a failure leaves the change pending (#retryLater), never dropped. */
  async #reconcile(trigger: Trigger): Promise<void> {
    if (this.#stopped) return;
    const key = workloadKey(trigger.ref);
    this.#metrics.pendingRollouts.begin(key, trigger.since);
    // A new leader checks every annotated workload when it takes over, this one included.
    if (!this.#leader.leading) return this.#ended(key, 'not-leader');
    if (!this.#scope.has(trigger.ref.namespace)) return this.#ended(key, 'out-of-scope');
    try {
      for (let conflicts = 0; conflicts <= IMMEDIATE_CONFLICT_RETRIES; conflicts++) {
        if (this.#stopped) return;
        const result = await this.#requestIfStale(trigger);
        if (result === 'done') return this.#finished(key);
        if (result === 'held') return;
      }
      throw new OperationalError(`the workload was written by someone else ${IMMEDIATE_CONFLICT_RETRIES + 1} times in a row`);
    } catch (error) {
      this.#error('reconcile', error);
      this.#retryLater(trigger);
    }
  }

  /**
   * Reads the workload, decides, and when its checksum is stale asks the webhook to recompute it. Resolves
   * 'conflict' when the workload changed under the request; throws when the change is still pending.
   */
  async #requestIfStale(trigger: Trigger): Promise<'done' | 'conflict' | 'held'> {
    const object = await this.#api.getWorkload(trigger.ref);
    if (!object) return this.#done('workload-gone');
    const stale = await this.#staleChecksum(object, trigger);
    if (typeof stale === 'string') {
      if (stale === 'up-to-date') await this.#settleHold(trigger, object);
      return this.#done(stale);
    }
    const hold = await this.#gitOpsHold(trigger, object);
    if (hold === 'held') return hold;

    await rateLimited(this.#metrics, () => this.#bucket.take());
    // Stopped (or stepped down) while deciding or waiting for a token: the next leader decides again.
    const lost = this.#mayNotWrite();
    if (lost) return this.#done(lost);
    const request = setAnnotation(object, WORKLOAD_METADATA, CONTRACT.requestedAnnotation, stale.checksum);
    const answer = await this.#api.requestRollout(trigger.ref, metadataString(object, 'resourceVersion') ?? '', request);
    if (answer.state === 'conflict') return 'conflict';
    // Rolled when the webhook changed the checksum in our request: to the value we computed, or to a newer
    // one if config changed again meanwhile (its reads are as live as ours). Unchanged: it did not run.
    const rolledTo = this.#rolledTo(object, answer.object);
    if (rolledTo === undefined) {
      throw new OperationalError(`rollout requested (${CONTRACT.requestedAnnotation}=${stale.checksum.slice(0, 12)}) but the webhook did not set the checksum (down, timed out or failed open); still pending`);
    }
    await this.#rolledOut(trigger, metadataString(object, 'uid') ?? '', rolledTo, hold);
    return 'done';
  }

  /**
   * Holds the rollout while the workload's Flux Kustomization has yet to apply the revision that changed
   * its config (gitops.ts): 'held', and the workload comes back here every HOLD_POLL_MS, merged with any
   * newer change. Otherwise how a hold it was under ended, if it was.
   */
  async #gitOpsHold(trigger: Trigger, object: JsonObject): Promise<'held' | EndedHold | undefined> {
    if (!this.#holds) return undefined;
    const key = workloadKey(trigger.ref);
    const wasHeld = this.#holds.isHeld(key);
    const kustomization = fluxOwner(object);
    const result = await this.#holds.check(key, kustomization, this.#sourceOwners(trigger), this.#templateChecksums(object));
    if (result.state === 'go') return result.ended;
    if (!wasHeld) this.#log.info({ kind: trigger.ref.kind, namespace: trigger.ref.namespace, name: trigger.ref.name, kustomization }, 'rollout held until the workload\'s Flux Kustomization applies the revision that changed its config');
    this.#skip('held-for-gitops');
    this.#pollHeld(key, trigger);
    return 'held';
  }

  /** The held workload comes back through the queue after HOLD_POLL_MS, with whatever changed meanwhile merged in. */
  #pollHeld(key: string, trigger: Trigger): void {
    if (this.#stopped) return;
    const scheduled = this.#heldPolls.get(key);
    clearTimeout(scheduled?.timer);
    const merged = scheduled ? mergeTriggers(scheduled.trigger, trigger) : trigger;
    const timer = this.#clock.setTimeout(() => {
      this.#heldPolls.delete(key);
      this.#queue.add(key, merged, 0);
    }, HOLD_POLL_MS);
    this.#heldPolls.set(key, { timer, trigger: merged });
  }

  /** The Kustomizations that applied the changed ConfigMaps and Secrets (every consumed one, in a level-based pass). */
  #sourceOwners(trigger: Trigger): string[] {
    const { namespace } = trigger.ref;
    let names: Record<SourceType, Iterable<string>> = { configmap: trigger.configMaps, secret: trigger.secrets };
    if (trigger.configMaps.size + trigger.secrets.size === 0) {
      const indexed = this.#index.get(trigger.ref);
      names = { configmap: (indexed?.uses ?? []).map((use) => use.name), secret: (indexed?.secretUses ?? []).map((use) => use.name) };
    }
    const owners: string[] = [];
    for (const type of ['configmap', 'secret'] as const) {
      for (const name of names[type]) {
        const owner = this.#fluxOwners[type].get(configMapKey(namespace, name));
        if (owner) owners.push(owner);
      }
    }
    return owners;
  }

  /** A held workload found up to date: when someone's write (its Kustomization's apply) rolled it meanwhile, that is reported as the rollout. */
  async #settleHold(trigger: Trigger, object: JsonObject): Promise<void> {
    const key = workloadKey(trigger.ref);
    if (!this.#holds?.isHeld(key)) return;
    const ended = this.#holds.settle(key, this.#templateChecksums(object));
    if (!ended) return;
    const { ref } = trigger;
    const checksum = readAnnotation(object, TEMPLATE_METADATA, this.#options.checksumAnnotation) ?? '';
    this.#log.info({ kind: ref.kind, namespace: ref.namespace, name: ref.name, configMaps: [...trigger.configMaps], kustomization: ended.kustomization, revision: ended.revision, waitedMs: Math.round(ended.waitedMs) }, 'rolled out by the Flux Kustomization\'s apply');
    const message = `${changeCause(trigger)}; rolled out by the apply of Kustomization ${ended.kustomization} (${ended.revision}) after waiting ${Math.round(ended.waitedMs / 1000)} s for it (${this.#options.checksumAnnotation}=${checksum.slice(0, 12)})`;
    await this.#event({ ...ref, uid: metadataString(object, 'uid') ?? '' }, 'Normal', 'ConfigChanged', message);
  }

  /** The pod template's checksums, as one string that changes when either does. */
  #templateChecksums(object: JsonObject): string {
    const secret = this.#secrets === undefined ? '' : readAnnotation(object, TEMPLATE_METADATA, this.#secrets.annotation) ?? '';
    return `${readAnnotation(object, TEMPLATE_METADATA, this.#options.checksumAnnotation) ?? ''}\n${secret}`;
  }

  /** The checksum annotation the webhook changed in our request, and its new value; undefined when it did not run. */
  #rolledTo(before: JsonObject, answer: JsonObject): { annotation: string; checksum: string } | undefined {
    for (const annotation of [this.#options.checksumAnnotation, this.#secrets?.annotation]) {
      if (annotation === undefined) continue;
      const after = readAnnotation(answer, TEMPLATE_METADATA, annotation);
      if (after !== undefined && after !== readAnnotation(before, TEMPLATE_METADATA, annotation)) return { annotation, checksum: after };
    }
    return undefined;
  }

  /**
   * The checksum this workload should carry and the one it carries, when they differ; otherwise why
   * nothing is to be done. Throws when its ConfigMaps cannot be read (the change stays pending).
   */
  async #staleChecksum(object: JsonObject, trigger: Trigger): Promise<{ checksum: string } | string> {
    // Workloads without a checksum get one at their next write, never from the watcher (installing rolls
    // nothing). Checked before the decision, which would read their ConfigMaps; it checks eligibility itself.
    const current = readAnnotation(object, TEMPLATE_METADATA, this.#options.checksumAnnotation);
    const currentSecret = this.#secretChecksumFor(object, trigger);
    if (current === undefined && currentSecret === undefined) return 'no-checksum';
    const decision = computedOrWhyNot(await decideWorkload(object, trigger.ref.namespace, { configMaps: this.#reader, secrets: this.#secrets }, this.#options));
    if (typeof decision === 'string') return decision;
    // The request carries both checksums; the webhook sets both.
    if (!differs(current, decision.checksum) && !differs(currentSecret, decision.secretChecksum)) return 'up-to-date';
    // Config that went missing never rolls from here (DESIGN section 6: new pods could not start); the
    // workload's next write still hashes it as absent, with a warning to whoever writes.
    if (decision.problems.some((problem) => MISSING.has(problem.kind))) return 'required-config-missing';
    // The request annotation itself must not take the workload over the API server's annotation limit.
    if (!fitsAnnotations(object, WORKLOAD_METADATA, CONTRACT.requestedAnnotation, decision.requested)) return 'annotations-full';
    return { checksum: decision.requested };
  }

  /**
   * The workload's checksum/secret when it can make the workload stale: after a Secret's change event; in a
   * level-based pass only when it was made with the hash key loaded now (its key id, encode.ts). One made
   * with another key (the key Secret lost, a reinstall) says nothing about the Secrets: rolling on it would
   * roll every Secret-consuming workload at once, where a new key must only show at each one's next write.
   */
  #secretChecksumFor(object: JsonObject, trigger: Trigger): string | undefined {
    if (!this.#secrets) return undefined;
    const current = readAnnotation(object, TEMPLATE_METADATA, this.#secrets.annotation);
    if (current === undefined || trigger.secrets.size > 0) return current;
    const key = this.#secrets.key();
    return key && secretChecksumKeyId(current) === hashKeyId(key) ? current : undefined;
  }

  /** A rollout the webhook performed in our request: counted, logged and left as an Event, once. */
  async #rolledOut(trigger: Trigger, uid: string, rolled: { annotation: string; checksum: string }, held: EndedHold | undefined): Promise<void> {
    const { ref, configMaps, secrets } = trigger;
    const seconds = (performance.now() - trigger.since) / 1000;
    this.#metrics.watchRollouts.inc({ kind: ref.kind });
    this.#metrics.watchReaction.observe(seconds);
    const logged = { kind: ref.kind, namespace: ref.namespace, name: ref.name, configMaps: [...configMaps], ...(secrets.size > 0 ? { secrets: [...secrets] } : {}) };
    const heldLog = held ? { kustomization: held.kustomization, waitedMs: Math.round(held.waitedMs), holdEnded: held.outcome } : {};
    this.#log.info({ ...logged, ...heldLog, checksum: rolled.checksum, attempts: trigger.failures + 1, reactionMs: Math.round(seconds * 1000) }, 'rolled out');
    const waited = held ? `; ${heldFor(held)}` : '';
    await this.#event({ ...ref, uid }, 'Normal', 'ConfigChanged', `${changeCause(trigger)}${waited}; rolling out (${rolled.annotation}=${shortChecksum(rolled.checksum)})`);
  }

  #mayNotWrite(): 'stopped' | 'not-leader' | undefined {
    if (this.#stopped) return 'stopped';
    return this.#leader.leading ? undefined : 'not-leader';
  }

  #done(reason: string): 'done' {
    this.#skip(reason);
    return 'done';
  }

  /** The change of this workload is done: nothing held or pending for it any more. */
  #finished(key: string): void {
    this.#holds?.forget(key);
    this.#metrics.pendingRollouts.end(key);
  }

  /** The change of this workload ends here without a decision (and any hold with it). */
  #ended(key: string, reason: string): void {
    this.#finished(key);
    this.#skip(reason);
  }

  /** Capped exponential backoff with jitter; the change goes back through the queue, merged with any newer one. */
  #retryLater(trigger: Trigger): void {
    if (this.#stopped) return;
    const failures = trigger.failures + 1;
    const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(failures - 1, 20)) * (0.5 + Math.random());
    this.#metrics.watchRetries.inc();
    const timer = this.#clock.setTimeout(() => {
      this.#retryTimers.delete(timer);
      this.#metrics.watchPending.set(this.#retryTimers.size);
      this.#queue.add(workloadKey(trigger.ref), { ...trigger, failures }, 0);
    }, delay);
    this.#retryTimers.add(timer);
    this.#metrics.watchPending.set(this.#retryTimers.size);
  }

  async #event(workload: WorkloadRef & { uid?: string }, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    try {
      let uid = workload.uid;
      if (uid === undefined) uid = metadataString(await this.#api.getWorkload(workload), 'uid') ?? '';
      await this.#api.recordEvent(workload, uid, { type, reason, message });
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

/** The computed decision; or why nothing is to be done; throws when the change must stay pending. */
function computedOrWhyNot(decision: WorkloadDecision): Extract<WorkloadDecision, { kind: 'computed' }> | string {
  if (decision.kind === 'skip') return decision.reason;
  if (decision.kind === 'fail-open' && !PENDING.has(decision.reason)) return decision.reason;
  if (decision.kind === 'fail-open') throw pendingError(decision);
  return decision;
}

/** Whether a checksum the workload carries differs from the one computed now (either may be absent). */
function differs(current: string | undefined, computed: string | undefined): boolean {
  return current !== undefined && computed !== undefined && current !== computed;
}

/** The first 12 hex characters of a checksum, after checksum/secret's key id. */
function shortChecksum(value: string): string {
  return value.slice(value.indexOf('.') + 1, value.indexOf('.') + 13);
}

/** What changed, for the ConfigChanged Event: the ConfigMaps and Secrets named, or the pass that found it. */
function changeCause({ configMaps, secrets, pass }: Trigger): string {
  const changed = [['ConfigMap', configMaps], ['Secret', secrets]] as const;
  const named = changed.filter(([, names]) => names.size > 0).map(([noun, names]) => `${noun} ${[...names].sort().join(', ')}`);
  return named.length > 0 ? `${named.join(' and ')} changed` : PASS_CAUSE[pass ?? 'start'];
}

/** The Event's account of a hold that ended with the watcher rolling. */
function heldFor({ kustomization, revision, outcome, waitedMs }: EndedHold): string {
  const waited = `waited ${Math.round(waitedMs / 1000)} s for Kustomization ${kustomization} to apply ${revision}`;
  return outcome === 'max-wait' ? `${waited}, the longest --gitops-max-wait-seconds allows` : `${waited}; it finished without rolling the workload`;
}

function checksumOf(workload: IndexedWorkload, type: SourceType): string | undefined {
  return type === 'configmap' ? workload.checksum : workload.secretChecksum;
}

/** A fresh change to these ConfigMaps and Secrets of `workload`. */
function changeTrigger(workload: WorkloadRef, configMaps: readonly string[], secrets: readonly string[]): Trigger {
  return { ref: workload, configMaps: new Set(configMaps), secrets: new Set(secrets), failures: 0, since: performance.now() };
}

// Secrets that are never config a workload consumes by reference: Helm's release records and
// service-account tokens.
const SECRETS_FIELD_SELECTOR = 'type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token';

/** Problems that mean a required ConfigMap or key is not there: new pods could not start. */
const MISSING: ReadonlySet<string> = new Set(['missing-configmap', 'missing-key', 'invalid-configmap-name', 'missing-secret', 'missing-secret-key', 'invalid-secret-name']);
/** Fail-open reasons that pass (config or the hash key readable again): the change stays pending. */
const PENDING: ReadonlySet<string> = new Set(['configmap-unreadable', 'secret-unreadable', 'hash-key-unavailable']);

/** Why a change stays pending: the ConfigMaps or Secrets that could not be read (names only), or the missing hash key. */
function pendingError(decision: Extract<WorkloadDecision, { kind: 'fail-open' }>): OperationalError {
  if (!('unreadable' in decision)) return new OperationalError(`${decision.reason}: the hash key of Secrets is not loaded`);
  return new OperationalError(`${decision.reason === 'configmap-unreadable' ? 'ConfigMaps' : 'Secrets'} unreadable: ${decision.unreadable.map((u) => `${u.name} (${u.reason})`).join(', ')}`);
}

function objectName(object: JsonObject): { namespace: string; name: string } {
  const metadata = asObject(object['metadata']);
  return { namespace: asString(metadata?.['namespace']) ?? '', name: asString(metadata?.['name']) ?? '' };
}

/** Why a change to the `changed` keys (undefined: the ConfigMap appeared) does not reach a consumer with `use`. */
function unaffectedBy(changed: ReadonlySet<string> | undefined, use: ConfigMapUse): 'metadata-only' | 'unconsumed-key' | undefined {
  if (changed === undefined) return undefined;
  if (changed.size === 0) return 'metadata-only';
  return consumesAny(use, changed) ? undefined : 'unconsumed-key';
}
