// The index from a ConfigMap (and, with --secrets, a Secret) to the workloads that consume it, with the keys
// they consume. Built from the workload watch; holds names and key lists only, of workloads in scope (the
// watcher keeps it so).

import { planChecksum } from '../checksum/compute.ts';
import { type JsonObject } from '../util/json.ts';
import { isConfigMapName, SECRET_SOURCE, type ConfigMapUse } from '../checksum/references.ts';
import { CONTRACT } from '../config.ts';
import { readAnnotation, TEMPLATE_METADATA } from '../workload/annotations.ts';
import { metadataString, workloadKey, workloadParts, type WorkloadKind, type WorkloadRef } from '../workload/kinds.ts';

export interface IndexedWorkload extends WorkloadRef {
  readonly uses: readonly ConfigMapUse[];
  /** The pod template's checksum: workloads without one are never rolled by the watcher. */
  readonly checksum: string | undefined;
  /** With --secrets: the Secrets it consumes, and its checksum/secret. */
  readonly secretUses: readonly ConfigMapUse[];
  readonly secretChecksum: string | undefined;
}

/** What a workload consumes: a ConfigMap, or a Secret. */
export type SourceType = 'configmap' | 'secret';

export function configMapKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export class DependencyIndex {
  readonly #workloads = new Map<string, IndexedWorkload>();
  readonly #consumers: Record<SourceType, Map<string, Set<string>>> = { configmap: new Map(), secret: new Map() };
  readonly #checksumAnnotation: string;
  readonly #secretAnnotation: string | undefined;

  /** Secrets are indexed only with `secretAnnotation` (--secrets). */
  constructor(checksumAnnotation: string, secretAnnotation?: string) {
    this.#checksumAnnotation = checksumAnnotation;
    this.#secretAnnotation = secretAnnotation;
  }

  /**
   * Indexes (or re-indexes) a workload. Returns the ConfigMaps and Secrets an already indexed workload newly
   * consumes: a change to one of them may have been seen before this update was (separate watch streams).
   */
  upsert(kind: WorkloadKind, object: JsonObject): { workload: IndexedWorkload; added: string[]; addedSecrets: string[] } | undefined {
    const namespace = metadataString(object, 'namespace');
    const name = metadataString(object, 'name');
    const parts = workloadParts(object);
    if (!namespace || !name || !parts) return undefined;
    const ref = { kind, namespace, name };
    const previous = this.#workloads.get(workloadKey(ref));
    this.remove(ref);
    // A name no ConfigMap can have never changes: it is not indexed (and `a/b` in namespace `x` must not
    // meet ConfigMap `b` of namespace `x/a` under one key).
    // (Secret names follow the same rule.)
    const uses = planChecksum(parts.template, parts.annotations, CONTRACT.extraConfigMapsAnnotation).uses.filter((use) => isConfigMapName(use.name));
    const secretUses = this.#secretAnnotation === undefined ? [] : planChecksum(parts.template, parts.annotations, CONTRACT.extraSecretsAnnotation, SECRET_SOURCE).uses.filter((use) => isConfigMapName(use.name));
    if (uses.length === 0 && secretUses.length === 0) return undefined;
    const checksum = readAnnotation(object, TEMPLATE_METADATA, this.#checksumAnnotation);
    const secretChecksum = this.#secretAnnotation === undefined ? undefined : readAnnotation(object, TEMPLATE_METADATA, this.#secretAnnotation);
    const key = workloadKey(ref);
    const workload = { ...ref, uses, checksum, secretUses, secretChecksum };
    this.#workloads.set(key, workload);
    this.#link('configmap', namespace, uses, key);
    this.#link('secret', namespace, secretUses, key);
    return { workload, added: newlyUsed(previous?.uses, uses), addedSecrets: newlyUsed(previous?.secretUses, secretUses) };
  }

  #link(type: SourceType, namespace: string, uses: readonly ConfigMapUse[], key: string): void {
    for (const use of uses) {
      const sourceKey = configMapKey(namespace, use.name);
      let consumers = this.#consumers[type].get(sourceKey);
      if (!consumers) this.#consumers[type].set(sourceKey, (consumers = new Set()));
      consumers.add(key);
    }
  }

  #unlink(type: SourceType, namespace: string, uses: readonly ConfigMapUse[], key: string): void {
    for (const use of uses) {
      const sourceKey = configMapKey(namespace, use.name);
      const consumers = this.#consumers[type].get(sourceKey);
      consumers?.delete(key);
      if (consumers?.size === 0) this.#consumers[type].delete(sourceKey);
    }
  }

  remove(ref: WorkloadRef): void {
    const key = workloadKey(ref);
    const previous = this.#workloads.get(key);
    if (!previous) return;
    this.#workloads.delete(key);
    this.#unlink('configmap', ref.namespace, previous.uses, key);
    this.#unlink('secret', ref.namespace, previous.secretUses, key);
  }

  has(ref: WorkloadRef): boolean {
    return this.#workloads.has(workloadKey(ref));
  }

  get(ref: WorkloadRef): IndexedWorkload | undefined {
    return this.#workloads.get(workloadKey(ref));
  }

  /** Drops every workload whose namespace `keep` rejects (namespaces that left the scope). */
  retain(keep: (namespace: string) => boolean): void {
    for (const workload of [...this.#workloads.values()]) if (!keep(workload.namespace)) this.remove(workload);
  }

  /** Workloads that consume the ConfigMap (or the Secret), each with its use of it. */
  consumersOf(namespace: string, name: string, type: SourceType = 'configmap'): Array<{ workload: IndexedWorkload; use: ConfigMapUse }> {
    const result: Array<{ workload: IndexedWorkload; use: ConfigMapUse }> = [];
    for (const key of this.#consumers[type].get(configMapKey(namespace, name)) ?? []) {
      const workload = this.#workloads.get(key);
      const use = (type === 'configmap' ? workload?.uses : workload?.secretUses)?.find((candidate) => candidate.name === name);
      if (workload && use) result.push({ workload, use });
    }
    return result;
  }

  workloads(): IterableIterator<IndexedWorkload> {
    return this.#workloads.values();
  }

  get size(): number {
    return this.#workloads.size;
  }
}

/** Names in `now` that `before` did not have; none for a workload seen for the first time. */
function newlyUsed(before: readonly ConfigMapUse[] | undefined, now: readonly ConfigMapUse[]): string[] {
  if (!before) return [];
  const had = new Set(before.map((use) => use.name));
  return now.map((use) => use.name).filter((name) => !had.has(name));
}

/** Whether a change to these keys reaches a workload with this use of the ConfigMap. */
export function consumesAny(use: ConfigMapUse, keys: ReadonlySet<string>): boolean {
  return use.allKeys || use.keys.some((key) => keys.has(key));
}
