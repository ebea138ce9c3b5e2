// The index from a ConfigMap to the workloads that consume it, with the keys they consume. Built from the
// workload watch; holds names and key lists only, of workloads in scope (the watcher keeps it so).

import { planChecksum } from '../checksum/compute.ts';
import { type JsonObject } from '../util/json.ts';
import { isConfigMapName, type ConfigMapUse } from '../checksum/references.ts';
import { CONTRACT } from '../config.ts';
import { readAnnotation, TEMPLATE_METADATA } from '../workload/annotations.ts';
import { metadataString, workloadKey, workloadParts, type WorkloadKind, type WorkloadRef } from '../workload/kinds.ts';

export interface IndexedWorkload extends WorkloadRef {
  readonly uses: readonly ConfigMapUse[];
  /** The pod template's checksum: workloads without one are never rolled by the watcher. */
  readonly checksum: string | undefined;
}

export function configMapKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export class DependencyIndex {
  readonly #workloads = new Map<string, IndexedWorkload>();
  readonly #consumers = new Map<string, Set<string>>();
  readonly #checksumAnnotation: string;

  constructor(checksumAnnotation: string) {
    this.#checksumAnnotation = checksumAnnotation;
  }

  /**
   * Indexes (or re-indexes) a workload. Returns the ConfigMaps an already indexed workload newly consumes:
   * a change to one of them may have been seen before this update was (separate watch streams).
   */
  upsert(kind: WorkloadKind, object: JsonObject): { workload: IndexedWorkload; added: string[] } | undefined {
    const namespace = metadataString(object, 'namespace');
    const name = metadataString(object, 'name');
    const parts = workloadParts(object);
    if (!namespace || !name || !parts) return undefined;
    const ref = { kind, namespace, name };
    const previous = this.#workloads.get(workloadKey(ref));
    this.remove(ref);
    // A name no ConfigMap can have never changes: it is not indexed (and `a/b` in namespace `x` must not
    // meet ConfigMap `b` of namespace `x/a` under one key).
    const uses = planChecksum(parts.template, parts.annotations, CONTRACT.extraConfigMapsAnnotation).uses.filter((use) => isConfigMapName(use.name));
    if (uses.length === 0) return undefined;
    const checksum = readAnnotation(object, TEMPLATE_METADATA, this.#checksumAnnotation);
    const key = workloadKey(ref);
    const workload = { ...ref, uses, checksum };
    this.#workloads.set(key, workload);
    for (const use of uses) {
      const cmKey = configMapKey(namespace, use.name);
      let consumers = this.#consumers.get(cmKey);
      if (!consumers) this.#consumers.set(cmKey, (consumers = new Set()));
      consumers.add(key);
    }
    const before = new Set(previous?.uses.map((use) => use.name));
    return { workload, added: previous ? uses.map((use) => use.name).filter((used) => !before.has(used)) : [] };
  }

  remove(ref: WorkloadRef): void {
    const key = workloadKey(ref);
    const previous = this.#workloads.get(key);
    if (!previous) return;
    this.#workloads.delete(key);
    for (const use of previous.uses) {
      const cmKey = configMapKey(ref.namespace, use.name);
      const consumers = this.#consumers.get(cmKey);
      consumers?.delete(key);
      if (consumers?.size === 0) this.#consumers.delete(cmKey);
    }
  }

  has(ref: WorkloadRef): boolean {
    return this.#workloads.has(workloadKey(ref));
  }

  /** Drops every workload whose namespace `keep` rejects (namespaces that left the scope). */
  retain(keep: (namespace: string) => boolean): void {
    for (const workload of [...this.#workloads.values()]) if (!keep(workload.namespace)) this.remove(workload);
  }

  /** Workloads that consume the ConfigMap, each with its use of it. */
  consumersOf(namespace: string, configMap: string): Array<{ workload: IndexedWorkload; use: ConfigMapUse }> {
    const result: Array<{ workload: IndexedWorkload; use: ConfigMapUse }> = [];
    for (const key of this.#consumers.get(configMapKey(namespace, configMap)) ?? []) {
      const workload = this.#workloads.get(key);
      const use = workload?.uses.find((candidate) => candidate.name === configMap);
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

/** Whether a change to these keys reaches a workload with this use of the ConfigMap. */
export function consumesAny(use: ConfigMapUse, keys: ReadonlySet<string>): boolean {
  return use.allKeys || use.keys.some((key) => keys.has(key));
}
