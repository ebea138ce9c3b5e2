// GitOps-aware coalescing (DESIGN section 6): never two rollouts for one Flux revision.
//
// In the usual Flux layout one source feeds two Kustomizations, `config` (the ConfigMaps) and `app` (the
// workload), with `app` depending on `config`. A revision that changes both is applied in two steps:
// `config` first, then `app` once its dependency is Ready, by default 30 s later (kustomize-controller's
// --requeue-dependency). Rolling when the ConfigMap changes would roll the old image with the new config,
// and `app`'s apply would roll again. So when a changed ConfigMap (or Secret) and its workload were applied
// by different Kustomizations of one source, and the workload's Kustomization has not yet applied the
// revision the ConfigMap's Kustomization is applying, the watcher holds that workload's rollout until it
// has (the webhook then rolls it once, inside Flux's own apply, with both changes) or until a maximum wait
// passes (then the watcher rolls it, config without the rest).
//
// What is read: the labels kustomize-controller puts on everything it applies, and, only for objects that
// carry them, the two Kustomizations named there (`get`, one rule of RBAC). The revision a Kustomization
// is applying is in its status before it applies anything (`lastAttemptedRevision` is written with the
// "Building manifests for revision" progress, before the server-side apply), so it is there when the
// ConfigMap's change event arrives. Without the labels, or without the Flux API (404), nothing is held.

import { asArray, asObject, asString, type JsonObject } from '../util/json.ts';
import type { Histogram, Gauge } from 'prom-client';

export const FLUX_NAME_LABEL = 'kustomize.toolkit.fluxcd.io/name';
export const FLUX_NAMESPACE_LABEL = 'kustomize.toolkit.fluxcd.io/namespace';

/** "namespace/name" of the Kustomization that applied an object (from its labels), or undefined. */
export function fluxOwner(object: JsonObject): string | undefined {
  const labels = asObject(asObject(object['metadata'])?.['labels']);
  const name = asString(labels?.[FLUX_NAME_LABEL]);
  const namespace = asString(labels?.[FLUX_NAMESPACE_LABEL]);
  return name && namespace ? `${namespace}/${name}` : undefined;
}

/**
 * The revision the workload's Kustomization `app` has yet to apply, given the Kustomization `config` that
 * applied a changed ConfigMap; undefined when there is nothing to wait for: the two do not share a source,
 * `config` is not applying a revision, `app` has applied it already, tried it and failed (it will not apply
 * it until something changes), or is suspended (it will not apply anything).
 */
export function awaitedRevision(app: JsonObject, config: JsonObject): string | undefined {
  if (asObject(app['spec'])?.['suspend'] === true) return undefined;
  if (!sameSource(app, config)) return undefined;
  const revision = asString(statusOf(config)['lastAttemptedRevision']);
  if (!revision) return undefined;
  const appStatus = statusOf(app);
  if (asString(appStatus['lastAppliedRevision']) === revision) return undefined;
  if (asString(appStatus['lastAttemptedRevision']) === revision && readyStatus(app) === 'False') return undefined;
  return revision;
}

function statusOf(kustomization: JsonObject): JsonObject {
  return asObject(kustomization['status']) ?? {};
}

/** Kind, name and namespace of spec.sourceRef (the namespace defaults to the Kustomization's own). */
function sourceOf(kustomization: JsonObject): string | undefined {
  const ref = asObject(asObject(kustomization['spec'])?.['sourceRef']);
  const kind = asString(ref?.['kind']);
  const name = asString(ref?.['name']);
  if (!kind || !name) return undefined;
  const namespace = asString(ref?.['namespace']) ?? asString(asObject(kustomization['metadata'])?.['namespace']) ?? '';
  return `${kind}/${namespace}/${name}`;
}

function sameSource(a: JsonObject, b: JsonObject): boolean {
  const source = sourceOf(a);
  return source !== undefined && source === sourceOf(b);
}

function readyStatus(kustomization: JsonObject): string | undefined {
  const ready = asArray(statusOf(kustomization)['conditions'])?.map(asObject).find((condition) => condition?.['type'] === 'Ready');
  return asString(ready?.['status']);
}

/** A workload's rollout held for a Kustomization's apply. */
export interface AwaitedApply {
  /** "namespace/name" of the workload's Kustomization. */
  readonly kustomization: string;
  readonly revision: string;
}

/** How a hold ended: rolled inside the Kustomization's apply, released with nothing to wait for, or timed out. */
export type HoldOutcome = 'applied' | 'released' | 'max-wait';

export interface EndedHold extends AwaitedApply {
  readonly outcome: HoldOutcome;
  readonly waitedMs: number;
}

interface Hold extends AwaitedApply {
  readonly since: number;
  /** The workload's pod-template checksums when the hold began: a change since then is a rollout someone else's write made. */
  readonly checksums: string;
}

export interface GitOpsHoldOptions {
  readonly getKustomization: (namespace: string, name: string) => Promise<JsonObject | undefined>;
  readonly maxWaitMs: number;
  readonly metrics: { readonly gitopsWait: Histogram<'outcome'>; readonly gitopsHeld: Gauge };
  /** A Kustomization could not be read: nothing is held for it (the rollout goes on as without Flux). */
  readonly onError: (error: unknown) => void;
  readonly now?: () => number;
}

// Kustomizations read for one workload are reused for the others held on the same ones for this long.
const READ_REUSE_MS = 1_000;

/**
 * The held rollouts, by workload key. The watcher asks `check` before each rollout it is about to request
 * (a held one comes back to it every few seconds) and `settle` when it finds a held workload up to date.
 */
export class GitOpsHolds {
  readonly #options: GitOpsHoldOptions;
  readonly #now: () => number;
  readonly #held = new Map<string, Hold>();
  /** Workloads whose hold reached the maximum wait: not held again until their change is done. */
  readonly #expired = new Set<string>();
  readonly #reads = new Map<string, { at: number; read: Promise<JsonObject | undefined> }>();

  constructor(options: GitOpsHoldOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * Whether the rollout of this workload (applied by Kustomization `workloadOwner`; its changed sources
   * applied by `sourceOwners`) waits: 'hold', or 'go' with how a hold it was under ended.
   */
  async check(key: string, workloadOwner: string | undefined, sourceOwners: Iterable<string>, checksums: string): Promise<{ state: 'hold' } | { state: 'go'; ended?: EndedHold }> {
    if (this.#expired.has(key)) return { state: 'go' };
    const awaited = await this.#awaitedApply(workloadOwner, sourceOwners);
    const held = this.#held.get(key);
    if (awaited && (!held || this.#now() - held.since < this.#options.maxWaitMs)) {
      this.#hold(key, held ?? { ...awaited, since: this.#now(), checksums }, awaited);
      return { state: 'hold' };
    }
    if (!held) return { state: 'go' };
    return { state: 'go', ended: this.#end(key, held, awaited ? 'max-wait' : 'released') };
  }

  /** A held workload found up to date: rolled inside someone's write (the Kustomization's apply) if its checksums moved. */
  settle(key: string, checksums: string): EndedHold | undefined {
    const held = this.#held.get(key);
    if (!held) return undefined;
    if (held.checksums === checksums) {
      // Config went back to what the workload had: nothing rolled, nothing to report.
      this.forget(key);
      return undefined;
    }
    return this.#end(key, held, 'applied');
  }

  isHeld(key: string): boolean {
    return this.#held.has(key);
  }

  /** The workload's change ended otherwise (gone, out of scope, another replica leads). */
  forget(key: string): void {
    this.#expired.delete(key);
    if (this.#held.delete(key)) this.#options.metrics.gitopsHeld.set(this.#held.size);
  }

  clear(): void {
    this.#held.clear();
    this.#expired.clear();
    this.#reads.clear();
    this.#options.metrics.gitopsHeld.set(0);
  }

  /** Held since `held.since`, now for `awaited` (a newer revision may have come meanwhile). */
  #hold(key: string, held: Hold, awaited: AwaitedApply): void {
    this.#held.set(key, { ...held, ...awaited });
    this.#options.metrics.gitopsHeld.set(this.#held.size);
  }

  #end(key: string, held: Hold, outcome: HoldOutcome): EndedHold {
    this.forget(key);
    if (outcome === 'max-wait') this.#expired.add(key);
    const waitedMs = this.#now() - held.since;
    this.#options.metrics.gitopsWait.observe({ outcome }, waitedMs / 1000);
    return { kustomization: held.kustomization, revision: held.revision, outcome, waitedMs };
  }

  /** The first source Kustomization whose revision the workload's has yet to apply; undefined when it cannot be read. */
  async #awaitedApply(workloadOwner: string | undefined, sourceOwners: Iterable<string>): Promise<AwaitedApply | undefined> {
    if (workloadOwner === undefined) return undefined;
    try {
      return await this.#firstAwaited(workloadOwner, sourceOwners);
    } catch (error) {
      this.#options.onError(error);
      return undefined;
    }
  }

  async #firstAwaited(workloadOwner: string, sourceOwners: Iterable<string>): Promise<AwaitedApply | undefined> {
    const others = [...new Set(sourceOwners)].filter((owner) => owner !== workloadOwner);
    if (others.length === 0) return undefined;
    const app = await this.#read(workloadOwner);
    if (!app) return undefined;
    for (const owner of others) {
      const config = await this.#read(owner);
      const revision = config ? awaitedRevision(app, config) : undefined;
      if (revision) return { kustomization: workloadOwner, revision };
    }
    return undefined;
  }

  #read(owner: string): Promise<JsonObject | undefined> {
    const now = this.#now();
    const recent = this.#reads.get(owner);
    if (recent && now - recent.at < READ_REUSE_MS) return recent.read;
    for (const [stale, { at }] of this.#reads) if (now - at >= READ_REUSE_MS) this.#reads.delete(stale);
    const slash = owner.indexOf('/');
    const read = this.#options.getKustomization(owner.slice(0, slash), owner.slice(slash + 1));
    // A failed read is not reused: the next check asks again.
    read.catch(() => this.#reads.delete(owner));
    this.#reads.set(owner, { at: now, read });
    return read;
  }
}
