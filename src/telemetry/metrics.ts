// Prometheus metrics on /metrics. One registry per process (passed in, never a module global), so tests
// can build as many apps as they like and read each one's counters.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  readonly admissions: Counter<'kind' | 'operation' | 'outcome' | 'reason'>;
  readonly admissionDuration: Histogram<'outcome'>;
  readonly checksumChanges: Counter<'kind'>;
  readonly configMapReads: Counter<'result'>;
  readonly configMapReadDuration: Histogram<'result'>;
  readonly admissionWarnings: Counter;
  readonly badRequests: Counter<'status'>;
  readonly certificateReloads: Counter<'result'>;
  /** notAfter of the certificate served and of the CA that issued it, as Unix seconds (set at each certificate load: tls/expiry.ts). */
  readonly certificateExpiry: Gauge<'certificate'>;
  readonly watchRollouts: Counter<'kind'>;
  readonly watchSkipped: Counter<'reason'>;
  readonly watchRetries: Counter;
  readonly watchPending: Gauge;
  /** Rollouts on their way (decided, waiting for a token, or waiting to be retried), for the age of the oldest. */
  readonly pendingRollouts: PendingRollouts;
  readonly oldestPendingRollout: Gauge;
  readonly watchRateLimitWait: Counter;
  readonly watchRateLimitWaiting: Gauge;
  readonly watchEnabled: Gauge;
  readonly watchErrors: Counter<'operation'>;
  readonly watchRestarts: Counter<'resource' | 'reason'>;
  readonly watchReaction: Histogram;
  readonly watchLeader: Gauge;
  readonly watchSynced: Gauge;
  readonly watchConfigMaps: Gauge;
  readonly watchWorkloads: Gauge;
  readonly gitopsWait: Histogram<'outcome'>;
  readonly gitopsHeld: Gauge;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const pendingRollouts = new PendingRollouts();
  return {
    registry,
    admissions: new Counter({
      name: 'config_checksum_admissions_total',
      help: 'Admission reviews answered, by workload kind, operation, outcome (patched, unchanged, skipped, fail-open) and reason.',
      labelNames: ['kind', 'operation', 'outcome', 'reason'],
      registers,
    }),
    // Buckets from 0.5 ms: the API server's own webhook histogram starts at 5 ms, and we aim well below it.
    admissionDuration: new Histogram({
      name: 'config_checksum_admission_duration_seconds',
      help: 'Time from a decoded AdmissionReview to its answer, ConfigMap reads included.',
      labelNames: ['outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    checksumChanges: new Counter({
      name: 'config_checksum_admission_checksum_changes_total',
      help: 'Admissions whose checksum differs from the running one (each is a rollout unless the write is a dry run).',
      labelNames: ['kind'],
      registers,
    }),
    configMapReads: new Counter({
      name: 'config_checksum_configmap_reads_total',
      help: 'Live ConfigMap reads during admission, by result (found, missing, unreadable).',
      labelNames: ['result'],
      registers,
    }),
    configMapReadDuration: new Histogram({
      name: 'config_checksum_configmap_read_duration_seconds',
      help: 'Duration of one live ConfigMap read.',
      labelNames: ['result'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2],
      registers,
    }),
    admissionWarnings: new Counter({
      name: 'config_checksum_admission_warnings_total',
      help: 'Warnings returned to clients in admission responses.',
      registers,
    }),
    badRequests: new Counter({
      name: 'config_checksum_bad_requests_total',
      help: 'Requests to /mutate refused with an HTTP 4xx (malformed, wrong content type, too large).',
      labelNames: ['status'],
      registers,
    }),
    certificateReloads: new Counter({
      name: 'config_checksum_certificate_reloads_total',
      help: 'Serving certificate reloads from disk, by result (loaded, rejected).',
      labelNames: ['result'],
      registers,
    }),
    certificateExpiry: new Gauge({
      name: 'config_checksum_certificate_expiration_timestamp_seconds',
      help: 'When the certificate served stops being valid (certificate=serving) and when the CA that issued it does (certificate=ca; absent when that CA is not known: a --tls-cert-file without its chain and no ca.crt beside it), as Unix seconds.',
      labelNames: ['certificate'],
      registers,
    }),
    watchRollouts: new Counter({
      name: 'config_checksum_watch_rollouts_total',
      help: 'Workloads rolled at the watcher\'s request because a consumed ConfigMap (or, with --secrets, Secret) changed (the webhook set the new checksum in the request; each is a rollout).',
      labelNames: ['kind'],
      registers,
    }),
    watchSkipped: new Counter({
      name: 'config_checksum_watch_skipped_total',
      help: 'ConfigMap changes or checks that led to no rollout, by reason (metadata-only, unconsumed-key, up-to-date, no-checksum, ...).',
      labelNames: ['reason'],
      registers,
    }),
    watchRetries: new Counter({
      name: 'config_checksum_watch_retries_total',
      help: 'Rollout requests that did not land (API server or webhook unavailable, the webhook failed open) and were scheduled again.',
      registers,
    }),
    watchPending: new Gauge({
      name: 'config_checksum_watch_pending_rollouts',
      help: 'Workloads whose rollout request did not land yet and waits for its next attempt.',
      registers,
    }),
    pendingRollouts,
    // Computed at each scrape, like client-go's workqueue_unfinished_work_seconds: a gauge set only when a
    // rollout lands or fails would hold the age of a stuck one still.
    oldestPendingRollout: new Gauge({
      name: 'config_checksum_watch_oldest_pending_rollout_seconds',
      help: 'How long the oldest rollout on its way (decided, waiting for a rate-limit token, or waiting to be retried after a request that did not land) has waited since the first change that called for it was seen; 0 when none.',
      registers,
      collect() {
        this.set(pendingRollouts.oldestAgeSeconds());
      },
    }),
    watchRateLimitWait: new Counter({
      name: 'config_checksum_watch_rate_limit_wait_seconds_total',
      help: 'Time the watcher\'s writes spent waiting for a token of the rollout rate limit (--rollout-rate, --rollout-burst); its rate is the average number of writes held back by the limit.',
      registers,
    }),
    watchRateLimitWaiting: new Gauge({
      name: 'config_checksum_watch_rate_limit_waiting',
      help: 'Writes of the watcher waiting for a token of the rollout rate limit now.',
      registers,
    }),
    watchEnabled: new Gauge({
      name: 'config_checksum_watch_enabled',
      help: '1 when this process runs the watcher (--watch), else 0; the other config_checksum_watch_* gauges mean nothing when it is 0.',
      registers,
    }),
    watchErrors: new Counter({
      name: 'config_checksum_watch_errors_total',
      help: 'Errors of the watch path, by operation.',
      labelNames: ['operation'],
      registers,
    }),
    watchRestarts: new Counter({
      name: 'config_checksum_watch_restarts_total',
      help: 'Restarts of a list/watch loop, by resource and reason (idle, expired, error, ended).',
      labelNames: ['resource', 'reason'],
      registers,
    }),
    watchReaction: new Histogram({
      name: 'config_checksum_watch_reaction_seconds',
      help: 'From the first ConfigMap (or Secret) change seen to the rollout done by the webhook in the watcher\'s request (includes the coalescing window and any retries).',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60],
      registers,
    }),
    watchLeader: new Gauge({
      name: 'config_checksum_watch_leader',
      help: '1 while this replica holds the leader Lease and may write, else 0.',
      registers,
    }),
    watchSynced: new Gauge({
      name: 'config_checksum_watch_synced',
      help: '1 once the watcher knows its scope and every list/watch has listed (until then it rolls nothing), else 0.',
      registers,
    }),
    watchConfigMaps: new Gauge({
      name: 'config_checksum_watch_configmaps',
      help: 'ConfigMaps whose per-key digests the watcher holds (digests only, never values).',
      registers,
    }),
    watchWorkloads: new Gauge({
      name: 'config_checksum_watch_workloads',
      help: 'Workloads in scope that consume ConfigMaps, indexed by the watcher (names and consumed keys only).',
      registers,
    }),
    gitopsWait: new Histogram({
      name: 'config_checksum_watch_gitops_wait_seconds',
      help: 'How long a rollout was held for the workload\'s Flux Kustomization to apply the revision that changed its config, by how the hold ended: applied (rolled once inside that apply), released (nothing left to wait for; the watcher rolled), max-wait (--gitops-max-wait-seconds passed; the watcher rolled).',
      labelNames: ['outcome'],
      buckets: [1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600],
      registers,
    }),
    gitopsHeld: new Gauge({
      name: 'config_checksum_watch_gitops_held',
      help: 'Workloads whose rollout is held now, waiting for their Flux Kustomization to apply a revision.',
      registers,
    }),
  };
}

/**
 * The rollouts the watcher has on its way, each keyed by its workload, with when the first change that
 * called for it was seen (performance.now(), the watcher's own clock). A key is begun when its change is
 * first handled and ended when it is decided for good (rolled, found up to date, skipped, given up by a
 * replica that stopped leading); a request that did not land leaves it begun through the retry, so the age
 * keeps growing until the rollout lands.
 */
export class PendingRollouts {
  readonly #since = new Map<string, number>();
  readonly #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** The rollout of `key` is on its way since `since`; a key already begun keeps the earlier time. */
  begin(key: string, since: number): void {
    const previous = this.#since.get(key);
    this.#since.set(key, previous === undefined ? since : Math.min(previous, since));
  }

  end(key: string): void {
    this.#since.delete(key);
  }

  /** Everything ends at once (the watcher stops). */
  clear(): void {
    this.#since.clear();
  }

  get size(): number {
    return this.#since.size;
  }

  /** Seconds since the oldest pending rollout's first change; 0 when none is pending. */
  oldestAgeSeconds(): number {
    let oldest = Infinity;
    for (const since of this.#since.values()) oldest = Math.min(oldest, since);
    return oldest === Infinity ? 0 : Math.max(0, (this.#now() - oldest) / 1000);
  }
}

/**
 * Takes a token of the rollout rate limit (`take`, the watcher's TokenBucket) and counts the wait: writes
 * waiting now, and the seconds they waited once they have their token.
 */
export async function rateLimited(metrics: Pick<Metrics, 'watchRateLimitWait' | 'watchRateLimitWaiting'>, take: () => Promise<void>): Promise<void> {
  const started = performance.now();
  metrics.watchRateLimitWaiting.inc();
  try {
    await take();
  } finally {
    metrics.watchRateLimitWaiting.dec();
    metrics.watchRateLimitWait.inc((performance.now() - started) / 1000);
  }
}

/** The metrics of Secrets (--secrets), registered only then: an install without Secrets shows none of them. */
export interface SecretMetrics {
  readonly secretReads: Counter<'result'>;
  readonly secretReadDuration: Histogram<'result'>;
  readonly hashKeyLoaded: Gauge;
}

export function registerSecretMetrics(registry: Registry): SecretMetrics {
  const registers = [registry];
  return {
    secretReads: new Counter({
      name: 'config_checksum_secret_reads_total',
      help: 'Live Secret reads during admission, by result (found, missing, unreadable).',
      labelNames: ['result'],
      registers,
    }),
    secretReadDuration: new Histogram({
      name: 'config_checksum_secret_read_duration_seconds',
      help: 'Duration of one live Secret read.',
      labelNames: ['result'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2],
      registers,
    }),
    hashKeyLoaded: new Gauge({
      name: 'config_checksum_secret_hash_key_loaded',
      help: '1 once the HMAC key of checksum/secret is loaded, else 0 (until then workloads that consume Secrets are left unchanged).',
      registers,
    }),
  };
}
