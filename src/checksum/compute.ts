// The one checksum function both paths call: (pod template, ConfigMap lookup) -> { checksum, sources, problems }.
// Split in two so the caller can do the I/O in between: planChecksum says which ConfigMaps to read,
// computeChecksum turns what was read into the annotation values.

import { stringEntries, type JsonObject } from '../util/json.ts';
import { checksumV1, type HashedConfigMap } from './encode.ts';
import { collectReferences, isConfigMapName, mergeReferences, type ConfigMapUse, type ReferenceProblem } from './references.ts';

/** What reading one ConfigMap gave. `data`/`binaryData` are the raw maps from the API object. */
export type ConfigMapLookup =
  | { readonly state: 'found'; readonly data: unknown; readonly binaryData: unknown }
  | { readonly state: 'missing' }
  | { readonly state: 'unreadable'; readonly reason: string };

export type ChecksumProblem =
  | ReferenceProblem
  | { readonly kind: 'invalid-configmap-name'; readonly name: string }
  /** The workload's annotations are too close to the API server's limit for the sources annotation. */
  | { readonly kind: 'sources-not-written' }
  | { readonly kind: 'missing-configmap'; readonly name: string }
  | { readonly kind: 'missing-key'; readonly name: string; readonly key: string };

export interface ChecksumPlan {
  /** One entry per ConfigMap, sorted by name. Empty when the template consumes no ConfigMap. */
  readonly uses: readonly ConfigMapUse[];
  readonly problems: readonly ReferenceProblem[];
}

export type ChecksumOutcome =
  | {
      readonly kind: 'computed';
      readonly checksum: string;
      /** The value of the sources annotation: what was hashed, e.g. `configmap/app, configmap/env[LOG_LEVEL]`. */
      readonly sources: string;
      readonly problems: readonly ChecksumProblem[];
    }
  | {
      /** At least one ConfigMap could not be read: no checksum may be derived (it would roll for nothing). */
      readonly kind: 'unreadable';
      readonly unreadable: ReadonlyArray<{ readonly name: string; readonly reason: string }>;
      readonly problems: readonly ChecksumProblem[];
    };

export function planChecksum(podTemplate: unknown, workloadAnnotations: JsonObject | undefined, extraConfigMapsAnnotation: string): ChecksumPlan {
  const { references, problems } = collectReferences(podTemplate, workloadAnnotations, extraConfigMapsAnnotation);
  return { uses: mergeReferences(references), problems };
}

export function computeChecksum(plan: ChecksumPlan, lookup: (name: string) => ConfigMapLookup): ChecksumOutcome {
  const problems: ChecksumProblem[] = [...plan.problems];
  const unreadable: Array<{ name: string; reason: string }> = [];
  const hashed: HashedConfigMap[] = [];
  const sources: string[] = [];

  for (const use of plan.uses) {
    // Never looked up: no ConfigMap can have this name, so it is absent (and a required one is reported).
    const found = isConfigMapName(use.name) ? lookup(use.name) : INVALID_NAME;
    if (found.state === 'unreadable') {
      unreadable.push({ name: use.name, reason: found.reason });
      continue;
    }
    if (found.state === 'missing') {
      if (use.required) problems.push({ kind: found === INVALID_NAME ? 'invalid-configmap-name' : 'missing-configmap', name: use.name });
      hashed.push({ name: use.name });
      sources.push(`${describeUse(use)}(missing)`);
      continue;
    }
    const content = consumedContent(use, found.data, found.binaryData);
    problems.push(...missingKeys(use, content));
    hashed.push({ name: use.name, content });
    sources.push(describeUse(use));
  }

  if (unreadable.length > 0) return { kind: 'unreadable', unreadable, problems };
  return { kind: 'computed', checksum: checksumV1(hashed), sources: boundedSources(sources), problems };
}

const INVALID_NAME: ConfigMapLookup = Object.freeze({ state: 'missing' });

/** The keys a workload requires that the ConfigMap does not hold (in data or binaryData). */
function missingKeys(use: ConfigMapUse, content: NonNullable<HashedConfigMap['content']>): ChecksumProblem[] {
  return use.requiredKeys.filter((key) => !content.data.has(key) && !content.binaryData.has(key)).map((key) => ({ kind: 'missing-key', name: use.name, key }));
}

// The sources annotation explains; it must never be what makes the API server refuse a write (all
// annotations of an object together may hold 256 KiB). Past this length the list is cut at an entry
// boundary and says so. It is not hashed, so cutting it changes no checksum.
export const MAX_SOURCES_LENGTH = 2048;

function boundedSources(entries: readonly string[]): string {
  const full = entries.join(', ');
  if (full.length <= MAX_SOURCES_LENGTH) return full;
  const suffix = ` ... (${entries.length} ConfigMaps, list cut)`;
  let cut = full.slice(0, MAX_SOURCES_LENGTH - suffix.length);
  const boundary = Math.max(cut.lastIndexOf(', '), cut.lastIndexOf(','), cut.lastIndexOf('['));
  if (boundary > 0) cut = cut.slice(0, boundary);
  return `${cut}${suffix}`;
}

function describeUse(use: ConfigMapUse): string {
  return use.allKeys ? `configmap/${use.name}` : `configmap/${use.name}[${use.keys.join(',')}]`;
}

/** The entries of `data` and `binaryData` the workload consumes; both maps count and stay distinct. */
function consumedContent(use: ConfigMapUse, data: unknown, binaryData: unknown): NonNullable<HashedConfigMap['content']> {
  const wanted = use.allKeys ? undefined : new Set(use.keys);
  const consumed = ([key]: [string, string]): boolean => wanted === undefined || wanted.has(key);
  return {
    data: new Map(stringEntries(data).filter(consumed)),
    binaryData: new Map(
      stringEntries(binaryData)
        .filter(consumed)
        .map(([key, base64]) => [key, Buffer.from(base64, 'base64')] as const),
    ),
  };
}
