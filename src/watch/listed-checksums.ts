// The start-up pass without the reads. The watcher lists every ConfigMap once at start anyway; while that
// list streams in, the data of each namespace's consumed ConfigMaps is kept until the namespace's last one
// has passed (a LIST comes in key order: namespace, then name), and the checksum of each workload of that
// namespace is computed from it exactly as the webhook computes it (the same computeChecksum). A workload
// whose checksum equals it was up to date when listed, and the first level-based pass leaves it alone:
// no workload GET, no ConfigMap read. Everything else is checked live by the pass, as before: a checksum
// that differs, a namespace whose consumed data is over the budget, a workload or ConfigMap changed after
// the list. Only "certainly up to date" comes from here; the pass decides the rest.
//
// The workloads are listed before the ConfigMaps (watcher.ts), so the index knows the consumers while the
// ConfigMaps stream by. Data is kept for one namespace at a time, at most MAX_KEPT_BYTES of it.

import { computeChecksum, type ConfigMapLookup } from '../checksum/compute.ts';
import { stringEntries, type JsonObject } from '../util/json.ts';
import { workloadKey } from '../workload/kinds.ts';
import type { DependencyIndex, IndexedWorkload } from './dependents.ts';

// The consumed data of one namespace kept at once. A namespace with more (large ConfigMaps) is checked
// live for the workloads whose ConfigMaps did not fit: memory does not grow with the size of config.
export const MAX_KEPT_BYTES = 8 * 1024 * 1024;

export class ListedChecksums {
  readonly #index: DependencyIndex;
  /** Workload key -> the checksum it carried when it was found up to date. */
  readonly #upToDate = new Map<string, string>();
  #namespace: string | undefined;
  #kept = new Map<string, { data: unknown; binaryData: unknown }>();
  /** ConfigMaps of the current namespace that exist but were not kept (over the budget). */
  #notKept = new Set<string>();
  #keptBytes = 0;
  #finished = false;
  /** Namespaces already complete: one seen again means the list was not in key order, and nothing is known. */
  readonly #flushed = new Set<string>();
  #disordered = false;

  constructor(index: DependencyIndex) {
    this.#index = index;
  }

  /** A ConfigMap of the first list, in the order listed. */
  listed(configMap: JsonObject, namespace: string, name: string): void {
    if (this.#finished || this.#disordered) return;
    if (namespace !== this.#namespace) {
      this.#flush();
      if (this.#flushed.has(namespace)) {
        // A namespace's ConfigMaps did not come together: a ConfigMap of it may come later than the
        // checksums computed without it, so none of them is trusted.
        this.#disordered = true;
        this.clear();
        return;
      }
    }
    this.#namespace = namespace;
    if (this.#index.consumersOf(namespace, name).length === 0) return;
    const bytes = valueBytes(configMap['data']) + valueBytes(configMap['binaryData']);
    if (this.#keptBytes + bytes > MAX_KEPT_BYTES) {
      this.#notKept.add(name);
      return;
    }
    this.#keptBytes += bytes;
    this.#kept.set(name, { data: configMap['data'], binaryData: configMap['binaryData'] });
  }

  /** The first list is complete. */
  finish(): void {
    this.#flush();
    this.#finished = true;
  }

  /** Whether the workload still carries the checksum it was found up to date with. */
  upToDate(workload: IndexedWorkload): boolean {
    const checksum = this.#upToDate.get(workloadKey(workload));
    return !this.#disordered && checksum !== undefined && checksum === workload.checksum;
  }

  /** A ConfigMap changed after it was listed: its consumers are no longer known to be up to date. */
  changed(namespace: string, name: string): void {
    for (const { workload } of this.#index.consumersOf(namespace, name)) this.#upToDate.delete(workloadKey(workload));
  }

  /** Everything known here is used once; then it is dropped. */
  clear(): void {
    this.#upToDate.clear();
    this.#flushed.clear();
    this.#kept.clear();
    this.#notKept.clear();
  }

  get size(): number {
    return this.#upToDate.size;
  }

  /** The current namespace is complete: compute its workloads' checksums, then drop its data. */
  #flush(): void {
    const namespace = this.#namespace;
    if (namespace === undefined || this.#disordered) return;
    this.#flushed.add(namespace);
    const candidates = new Map<string, IndexedWorkload>();
    for (const name of [...this.#kept.keys(), ...this.#notKept]) {
      for (const { workload } of this.#index.consumersOf(namespace, name)) if (workload.checksum !== undefined) candidates.set(workloadKey(workload), workload);
    }
    for (const [key, workload] of candidates) {
      if (workload.uses.some((use) => this.#notKept.has(use.name))) continue;
      // Listed in full, so a ConfigMap not kept and not over the budget does not exist.
      const lookup = (name: string): ConfigMapLookup => {
        const kept = this.#kept.get(name);
        return kept ? { state: 'found', ...kept } : { state: 'missing' };
      };
      const computed = computeChecksum({ uses: workload.uses, problems: [] }, lookup);
      if (computed.kind === 'computed' && computed.checksum === workload.checksum) this.#upToDate.set(key, computed.checksum);
    }
    this.#kept = new Map();
    this.#notKept = new Set();
    this.#keptBytes = 0;
  }
}

function valueBytes(map: unknown): number {
  let bytes = 0;
  for (const [key, value] of stringEntries(map)) bytes += key.length + value.length;
  return bytes;
}
