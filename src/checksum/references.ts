// What a pod template consumes from ConfigMaps and, with --secrets, from Secrets (DESIGN section 4). One
// collector serves both kinds: a SourceKind names the fields a kind is referenced by, and the rules
// (containers and initContainers, optional, items, the extra annotation and its caps, name validation)
// are the same for both. Pure: no I/O, raw JSON in, plain data out.

import { asArray, asObject, asString, ownString, type JsonObject } from '../util/json.ts';
import { compareUtf8 } from './encode.ts';

/**
 * Where a kind of source is referenced in a pod spec. A pod spec names the two kinds with different field
 * names (a Secret volume by `secretName`, a ConfigMap volume by `name`), and nothing else differs.
 */
export interface SourceKind {
  /** The word in the sources annotation (`configmap/app`, `secret/db[password]`). */
  readonly kind: 'configmap' | 'secret';
  /** env[].valueFrom.<keyRef>: one key. */
  readonly keyRef: 'configMapKeyRef' | 'secretKeyRef';
  /** envFrom[].<envFromRef>: every key. */
  readonly envFromRef: 'configMapRef' | 'secretRef';
  /** volumes[].<volume> and volumes[].projected.sources[].<volume>: the items keys, or every key. */
  readonly volume: 'configMap' | 'secret';
  /** The name field of volumes[].<volume> (a projected source is always named by `name`). */
  readonly volumeName: 'name' | 'secretName';
  /** The problem reported for a name in the extra annotation that cannot name an object of this kind. */
  readonly invalidExtra: 'invalid-extra-configmap' | 'invalid-extra-secret';
}

export const CONFIGMAP_SOURCE: SourceKind = Object.freeze({
  kind: 'configmap',
  keyRef: 'configMapKeyRef',
  envFromRef: 'configMapRef',
  volume: 'configMap',
  volumeName: 'name',
  invalidExtra: 'invalid-extra-configmap',
});

// imagePullSecrets are not here: registry credentials are read by the kubelet, not by the process, and a
// change to them restarts nothing that would read them again.
export const SECRET_SOURCE: SourceKind = Object.freeze({
  kind: 'secret',
  keyRef: 'secretKeyRef',
  envFromRef: 'secretRef',
  volume: 'secret',
  volumeName: 'secretName',
  invalidExtra: 'invalid-extra-secret',
});

export type ReferenceVia = 'env' | 'envFrom' | 'volume' | 'projected' | 'annotation';

/** One place in the pod template (or the extra annotation) that reads a ConfigMap or a Secret. */
export interface SourceReference {
  readonly name: string;
  readonly via: ReferenceVia;
  /** 'all' when every key is consumed; otherwise the keys read (keyRef key, or volume items). */
  readonly keys: 'all' | readonly string[];
  readonly optional: boolean;
}

/** Everything a workload consumes from one ConfigMap (or Secret), merged over all its references. */
export interface SourceUse {
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

/** The name the watch path knows a use by: it indexes ConfigMaps only. */
export type ConfigMapUse = SourceUse;

export interface ReferenceProblem {
  readonly kind: SourceKind['invalidExtra'];
  readonly value: string;
}

export interface CollectedReferences {
  readonly references: readonly SourceReference[];
  readonly problems: readonly ReferenceProblem[];
}

// ConfigMap and Secret names are DNS subdomains: lowercase alphanumerics, '-' and '.', at most 253 characters.
const OBJECT_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * Whether `name` can name a ConfigMap (or a Secret: the same rule). The API server stores any string in
 * volumes[].configMap.name, volumes[].secret.secretName and the other references, and decodes %2F in a
 * URL: a name that is not an object name is never read (`/` would LIST the whole namespace); it is
 * hashed as absent (DESIGN section 4).
 */
export function isConfigMapName(name: string): boolean {
  return OBJECT_NAME.test(name);
}

/**
 * Collects the references of a pod template to one kind of source (ConfigMaps unless told): containers
 * and initContainers (env, envFrom), volumes (plain and projected, with or without items), and the extra
 * annotation of the workload (`extraAnnotation`, e.g. config-checksum.io/extra-configmaps). Malformed
 * entries are skipped: the API server's validation rejects them after us anyway.
 */
export function collectReferences(
  podTemplate: unknown,
  workloadAnnotations: JsonObject | undefined,
  extraAnnotation: string,
  source: SourceKind = CONFIGMAP_SOURCE,
): CollectedReferences {
  const references: SourceReference[] = [];
  const podSpec = asObject(asObject(podTemplate)?.['spec']);
  for (const listName of ['initContainers', 'containers'] as const) {
    for (const container of asArray(podSpec?.[listName])) collectContainer(source, asObject(container), references);
  }
  for (const volume of asArray(podSpec?.['volumes'])) collectVolume(source, asObject(volume), references);
  const problems: ReferenceProblem[] = [];
  collectExtra(source, ownString(workloadAnnotations, extraAnnotation), { references, problems });
  return { references, problems };
}

/**
 * The most distinct names read from one extra annotation (extra-configmaps, extra-secrets): one more than
 * the highest --max-configmaps, so a longer list is still "too many" (the admission fails open, the
 * watcher leaves it) while a 250 KB annotation costs no more than a thousand names.
 */
export const MAX_EXTRA_NAMES = 1001;

/** An extra annotation: a comma-separated list of names in the workload's namespace, every key of each. */
function collectExtra(source: SourceKind, annotation: string | undefined, out: { references: SourceReference[]; problems: ReferenceProblem[] }): void {
  const seen = new Set<string>();
  for (const match of annotation?.matchAll(/[^,]+/g) ?? []) {
    const name = match[0].trim();
    if (name === '' || seen.has(name)) continue;
    if (seen.size === MAX_EXTRA_NAMES) break;
    seen.add(name);
    if (OBJECT_NAME.test(name)) out.references.push({ name, via: 'annotation', keys: 'all', optional: false });
    else out.problems.push({ kind: source.invalidExtra, value: name });
  }
}

function collectContainer(source: SourceKind, container: JsonObject | undefined, out: SourceReference[]): void {
  for (const envVar of asArray(container?.['env'])) collectKeyRef(asObject(asObject(asObject(envVar)?.['valueFrom'])?.[source.keyRef]), out);
  for (const envFrom of asArray(container?.['envFrom'])) collectEnvFrom(asObject(asObject(envFrom)?.[source.envFromRef]), out);
}

function collectEnvFrom(ref: JsonObject | undefined, out: SourceReference[]): void {
  const name = asString(ref?.['name']);
  if (name) out.push({ name, via: 'envFrom', keys: 'all', optional: ref?.['optional'] === true });
}

function collectKeyRef(keyRef: JsonObject | undefined, out: SourceReference[]): void {
  const name = asString(keyRef?.['name']);
  const key = asString(keyRef?.['key']);
  if (name && key !== undefined) out.push({ name, via: 'env', keys: [key], optional: keyRef?.['optional'] === true });
}

function collectVolume(source: SourceKind, volume: JsonObject | undefined, out: SourceReference[]): void {
  const plain = asObject(volume?.[source.volume]);
  collectVolumeSource(plain, asString(plain?.[source.volumeName]), 'volume', out);
  for (const projected of asArray(asObject(volume?.['projected'])?.['sources'])) {
    const inner = asObject(asObject(projected)?.[source.volume]);
    collectVolumeSource(inner, asString(inner?.['name']), 'projected', out);
  }
}

function collectVolumeSource(volumeSource: JsonObject | undefined, name: string | undefined, via: 'volume' | 'projected', out: SourceReference[]): void {
  if (!volumeSource || !name) return;
  const optional = volumeSource['optional'] === true;
  // An items list (even an empty one is invalid for the API server) selects keys; absent means all keys.
  if (!Array.isArray(volumeSource['items'])) {
    out.push({ name, via, keys: 'all', optional });
    return;
  }
  const keys: string[] = [];
  for (const item of volumeSource['items']) {
    const key = asString(asObject(item)?.['key']);
    if (key !== undefined) keys.push(key);
  }
  out.push({ name, via, keys, optional });
}

/** Merges references per name, sorted by name, so each ConfigMap (or Secret) is read and hashed once. */
export function mergeReferences(references: readonly SourceReference[]): SourceUse[] {
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
