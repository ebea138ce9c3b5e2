// What a pod template consumes from ConfigMaps (DESIGN section 4). Pure: no I/O, raw JSON in, plain data out.

import { asArray, asObject, asString, ownString, type JsonObject } from '../util/json.ts';
import { compareUtf8 } from './encode.ts';

export type ReferenceVia = 'env' | 'envFrom' | 'volume' | 'projected' | 'annotation';

/** One place in the pod template (or the extra-configmaps annotation) that reads a ConfigMap. */
export interface ConfigMapReference {
  readonly name: string;
  readonly via: ReferenceVia;
  /** 'all' when every key is consumed; otherwise the keys read (configMapKeyRef key, or volume items). */
  readonly keys: 'all' | readonly string[];
  readonly optional: boolean;
}

/** Everything a workload consumes from one ConfigMap, merged over all its references. */
export interface ConfigMapUse {
  readonly name: string;
  /** True when at least one reference consumes every key. */
  readonly allKeys: boolean;
  /** Keys named explicitly (meaningful when allKeys is false; kept for warnings either way). */
  readonly keys: readonly string[];
  /** True when at least one reference is not optional: its absence is worth a warning. */
  readonly required: boolean;
  /** Explicit keys whose absence is worth a warning (from non-optional references). */
  readonly requiredKeys: readonly string[];
}

export interface ReferenceProblem {
  readonly kind: 'invalid-extra-configmap';
  readonly value: string;
}

export interface CollectedReferences {
  readonly references: readonly ConfigMapReference[];
  readonly problems: readonly ReferenceProblem[];
}

// A ConfigMap name is a DNS subdomain: lowercase alphanumerics, '-' and '.', at most 253 characters.
const CONFIGMAP_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * Whether `name` can name a ConfigMap. The API server stores any string in volumes[].configMap.name and
 * the other references, and decodes %2F in a URL: a name that is not a ConfigMap name is never read
 * (`/` would LIST the whole namespace); it is hashed as absent (DESIGN section 4).
 */
export function isConfigMapName(name: string): boolean {
  return CONFIGMAP_NAME.test(name);
}

/**
 * Collects the ConfigMap references of a pod template: containers and initContainers (env, envFrom),
 * volumes (plain and projected, with or without items), and the extra-configmaps annotation of the
 * workload. Malformed entries are skipped: the API server's validation rejects them after us anyway.
 */
export function collectReferences(
  podTemplate: unknown,
  workloadAnnotations: JsonObject | undefined,
  extraConfigMapsAnnotation: string,
): CollectedReferences {
  const references: ConfigMapReference[] = [];
  const podSpec = asObject(asObject(podTemplate)?.['spec']);
  for (const listName of ['initContainers', 'containers'] as const) {
    for (const container of asArray(podSpec?.[listName])) collectContainer(asObject(container), references);
  }
  for (const volume of asArray(podSpec?.['volumes'])) collectVolume(asObject(volume), references);
  const problems: ReferenceProblem[] = [];
  collectExtra(ownString(workloadAnnotations, extraConfigMapsAnnotation), references, problems);
  return { references, problems };
}

/**
 * The most distinct names read from the extra-configmaps annotation: one more than the highest
 * --max-configmaps, so a longer list is still "too many" (the admission fails open, the watcher leaves it)
 * while a 250 KB annotation costs no more than a thousand names.
 */
export const MAX_EXTRA_NAMES = 1001;

/** The extra-configmaps annotation: a comma-separated list of names in the workload's namespace. */
function collectExtra(annotation: string | undefined, out: ConfigMapReference[], problems: ReferenceProblem[]): void {
  const seen = new Set<string>();
  for (const match of annotation?.matchAll(/[^,]+/g) ?? []) {
    const name = match[0].trim();
    if (name === '' || seen.has(name)) continue;
    if (seen.size === MAX_EXTRA_NAMES) break;
    seen.add(name);
    if (CONFIGMAP_NAME.test(name)) out.push({ name, via: 'annotation', keys: 'all', optional: false });
    else problems.push({ kind: 'invalid-extra-configmap', value: name });
  }
}

function collectContainer(container: JsonObject | undefined, out: ConfigMapReference[]): void {
  for (const envVar of asArray(container?.['env'])) collectKeyRef(asObject(asObject(asObject(envVar)?.['valueFrom'])?.['configMapKeyRef']), out);
  for (const envFrom of asArray(container?.['envFrom'])) collectEnvFrom(asObject(asObject(envFrom)?.['configMapRef']), out);
}

function collectEnvFrom(ref: JsonObject | undefined, out: ConfigMapReference[]): void {
  const name = asString(ref?.['name']);
  if (name) out.push({ name, via: 'envFrom', keys: 'all', optional: ref?.['optional'] === true });
}

function collectKeyRef(keyRef: JsonObject | undefined, out: ConfigMapReference[]): void {
  const name = asString(keyRef?.['name']);
  const key = asString(keyRef?.['key']);
  if (name && key !== undefined) out.push({ name, via: 'env', keys: [key], optional: keyRef?.['optional'] === true });
}

function collectVolume(volume: JsonObject | undefined, out: ConfigMapReference[]): void {
  collectConfigMapSource(asObject(volume?.['configMap']), 'volume', out);
  for (const source of asArray(asObject(volume?.['projected'])?.['sources'])) {
    collectConfigMapSource(asObject(asObject(source)?.['configMap']), 'projected', out);
  }
}

function collectConfigMapSource(source: JsonObject | undefined, via: 'volume' | 'projected', out: ConfigMapReference[]): void {
  const name = asString(source?.['name']);
  if (!source || !name) return;
  const optional = source['optional'] === true;
  // An items list (even an empty one is invalid for the API server) selects keys; absent means all keys.
  if (!Array.isArray(source['items'])) {
    out.push({ name, via, keys: 'all', optional });
    return;
  }
  const keys: string[] = [];
  for (const item of source['items']) {
    const key = asString(asObject(item)?.['key']);
    if (key !== undefined) keys.push(key);
  }
  out.push({ name, via, keys, optional });
}

/** Merges references per ConfigMap, sorted by name, so each ConfigMap is read and hashed once. */
export function mergeReferences(references: readonly ConfigMapReference[]): ConfigMapUse[] {
  interface Builder { allKeys: boolean; keys: Set<string>; required: boolean; requiredKeys: Set<string> }
  const byName = new Map<string, Builder>();
  for (const ref of references) {
    let use = byName.get(ref.name);
    if (!use) {
      use = { allKeys: false, keys: new Set(), required: false, requiredKeys: new Set() };
      byName.set(ref.name, use);
    }
    if (!ref.optional) use.required = true;
    if (ref.keys === 'all') {
      use.allKeys = true;
      continue;
    }
    for (const key of ref.keys) {
      use.keys.add(key);
      if (!ref.optional) use.requiredKeys.add(key);
    }
  }
  return [...byName.entries()]
    .sort(([a], [b]) => compareUtf8(a, b))
    .map(([name, use]) => ({
      name,
      allKeys: use.allKeys,
      keys: [...use.keys].sort(compareUtf8),
      required: use.required,
      requiredKeys: [...use.requiredKeys].sort(compareUtf8),
    }));
}
