// The one checksum function both paths call: (pod template, ConfigMap lookup) -> { checksum, sources, problems }.
// Split in two so the caller can do the I/O in between: planChecksum says which ConfigMaps to read,
// computeChecksum turns what was read into the annotation values. With --secrets, the same two steps run
// for Secrets (planChecksum with SECRET_SOURCE, then computeChecksums for both kinds at once): the same
// rules, the same encoding, a keyed digest, and one sources annotation naming both.

import { stringEntries, type JsonObject } from '../util/json.ts';
import { checksumV1, secretChecksumValue, type HashedConfigMap } from './encode.ts';
import { collectReferences, CONFIGMAP_SOURCE, isConfigMapName, mergeReferences, SECRET_SOURCE, type ReferenceProblem, type SourceKind, type SourceUse } from './references.ts';

/**
 * What reading one ConfigMap (or Secret) gave. `data`/`binaryData` are the raw maps from the API object
 * (a Secret has base64 values in `data` and no `binaryData`).
 */
export type ConfigMapLookup =
  | { readonly state: 'found'; readonly data: unknown; readonly binaryData: unknown }
  | { readonly state: 'missing' }
  | { readonly state: 'unreadable'; readonly reason: string };

export type SourceLookup = ConfigMapLookup;

export type ChecksumProblem =
  | ReferenceProblem
  | { readonly kind: 'invalid-configmap-name' | 'invalid-secret-name'; readonly name: string }
  /** The workload's annotations are too close to the API server's limit for the sources annotation. */
  | { readonly kind: 'sources-not-written' }
  | { readonly kind: 'missing-configmap' | 'missing-secret'; readonly name: string }
  | { readonly kind: 'missing-key' | 'missing-secret-key'; readonly name: string; readonly key: string };

/** The problems of each kind of source, so that a warning names the kind (and ConfigMaps keep their words). */
const PROBLEM_KINDS = {
  configmap: { missing: 'missing-configmap', invalidName: 'invalid-configmap-name', missingKey: 'missing-key' },
  secret: { missing: 'missing-secret', invalidName: 'invalid-secret-name', missingKey: 'missing-secret-key' },
} as const;

export interface ChecksumPlan {
  /** One entry per ConfigMap (or Secret), sorted by name. Empty when the template consumes none. */
  readonly uses: readonly SourceUse[];
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

/** What computeChecksums needs for one kind: the plan, and what reading each planned name gave. */
export interface SourceInput {
  readonly plan: ChecksumPlan;
  readonly lookup: (name: string) => SourceLookup;
}

/** The Secrets' part: also the install's HMAC key (encode.ts, secretChecksumValue). */
export interface SecretInput extends SourceInput {
  readonly key: Uint8Array;
}

export type ChecksumsOutcome =
  | {
      readonly kind: 'computed';
      /** checksum/config: undefined when the template consumes no ConfigMap. */
      readonly checksum: string | undefined;
      /** checksum/secret: undefined when the template consumes no Secret (or Secrets are off). */
      readonly secretChecksum: string | undefined;
      /** ConfigMap entries first, then Secret entries: `configmap/app, secret/db[password]`. */
      readonly sources: string;
      readonly problems: readonly ChecksumProblem[];
    }
  | {
      /** Some ConfigMap (reported first) or Secret could not be read: neither checksum may be derived. */
      readonly kind: 'unreadable';
      readonly source: SourceKind['kind'];
      readonly unreadable: ReadonlyArray<{ readonly name: string; readonly reason: string }>;
      readonly problems: readonly ChecksumProblem[];
    };

export function planChecksum(podTemplate: unknown, workloadAnnotations: JsonObject | undefined, extraAnnotation: string, source: SourceKind = CONFIGMAP_SOURCE): ChecksumPlan {
  const { references, problems } = collectReferences(podTemplate, workloadAnnotations, extraAnnotation, source);
  return { uses: mergeReferences(references), problems };
}

/** The ConfigMaps alone (the watch path's start-up pass, and every caller without --secrets in mind). */
export function computeChecksum(plan: ChecksumPlan, lookup: (name: string) => ConfigMapLookup): ChecksumOutcome {
  const hashed = hashUses(CONFIGMAP_SOURCE, { plan, lookup });
  if (hashed.unreadable.length > 0) return { kind: 'unreadable', unreadable: hashed.unreadable, problems: hashed.problems };
  return { kind: 'computed', checksum: checksumV1(hashed.hashed), sources: boundedSources(hashed.entries, []), problems: hashed.problems };
}

/**
 * ConfigMaps and (with --secrets) Secrets together: two checksums, one sources annotation. Without
 * `secrets`, or for a template that consumes no Secret, the ConfigMap checksum and the sources are exactly
 * what computeChecksum gives.
 */
export function computeChecksums(configMaps: SourceInput, secrets?: SecretInput): ChecksumsOutcome {
  const fromConfigMaps = hashUses(CONFIGMAP_SOURCE, configMaps);
  const fromSecrets = secrets ? hashUses(SECRET_SOURCE, secrets) : NOTHING_HASHED;
  const problems = [...fromConfigMaps.problems, ...fromSecrets.problems];
  if (fromConfigMaps.unreadable.length > 0) return { kind: 'unreadable', source: 'configmap', unreadable: fromConfigMaps.unreadable, problems };
  if (fromSecrets.unreadable.length > 0) return { kind: 'unreadable', source: 'secret', unreadable: fromSecrets.unreadable, problems };
  return {
    kind: 'computed',
    checksum: configMaps.plan.uses.length > 0 ? checksumV1(fromConfigMaps.hashed) : undefined,
    secretChecksum: secrets && secrets.plan.uses.length > 0 ? secretChecksumValue(secrets.key, fromSecrets.hashed) : undefined,
    sources: boundedSources(fromConfigMaps.entries, fromSecrets.entries),
    problems,
  };
}

interface Hashed {
  readonly hashed: readonly HashedConfigMap[];
  /** The sources annotation's entries, one per use. */
  readonly entries: readonly string[];
  readonly problems: readonly ChecksumProblem[];
  readonly unreadable: ReadonlyArray<{ name: string; reason: string }>;
}

const NOTHING_HASHED: Hashed = Object.freeze({ hashed: [], entries: [], problems: [], unreadable: [] });

/** The consumed content of every use of one kind, as the encoding takes it, with what to warn about. */
function hashUses(source: SourceKind, { plan, lookup }: SourceInput): Hashed {
  const words = PROBLEM_KINDS[source.kind];
  const problems: ChecksumProblem[] = [...plan.problems];
  const unreadable: Array<{ name: string; reason: string }> = [];
  const hashed: HashedConfigMap[] = [];
  const entries: string[] = [];

  for (const use of plan.uses) {
    // Never looked up: no object can have this name, so it is absent (and a required one is reported).
    const found = isConfigMapName(use.name) ? lookup(use.name) : INVALID_NAME;
    if (found.state === 'unreadable') {
      unreadable.push({ name: use.name, reason: found.reason });
      continue;
    }
    if (found.state === 'missing') {
      if (use.required) problems.push({ kind: found === INVALID_NAME ? words.invalidName : words.missing, name: use.name });
      hashed.push({ name: use.name });
      entries.push(`${describeUse(source, use)}(missing)`);
      continue;
    }
    const content = consumedContent(source, use, found);
    problems.push(...missingKeys(use, content, words.missingKey));
    hashed.push({ name: use.name, content });
    entries.push(describeUse(source, use));
  }
  return { hashed, entries, problems, unreadable };
}

const INVALID_NAME: SourceLookup = Object.freeze({ state: 'missing' });

/** The keys a workload requires that the object does not hold (in data or binaryData). */
function missingKeys(use: SourceUse, content: NonNullable<HashedConfigMap['content']>, kind: 'missing-key' | 'missing-secret-key'): ChecksumProblem[] {
  return use.requiredKeys.filter((key) => !content.data.has(key) && !content.binaryData.has(key)).map((key) => ({ kind, name: use.name, key }));
}

// The sources annotation explains; it must never be what makes the API server refuse a write (all
// annotations of an object together may hold 256 KiB). Past this length the list is cut at an entry
// boundary and says so. It is not hashed, so cutting it changes no checksum.
export const MAX_SOURCES_LENGTH = 2048;

function boundedSources(configMaps: readonly string[], secrets: readonly string[]): string {
  const entries = [...configMaps, ...secrets];
  const full = entries.join(', ');
  if (full.length <= MAX_SOURCES_LENGTH) return full;
  const counted = secrets.length === 0 ? `${entries.length} ConfigMaps` : `${configMaps.length} ConfigMaps and ${secrets.length} Secrets`;
  const suffix = ` ... (${counted}, list cut)`;
  let cut = full.slice(0, MAX_SOURCES_LENGTH - suffix.length);
  const boundary = Math.max(cut.lastIndexOf(', '), cut.lastIndexOf(','), cut.lastIndexOf('['));
  if (boundary > 0) cut = cut.slice(0, boundary);
  return `${cut}${suffix}`;
}

/** `configmap/app`, `secret/db[password]`: names and keys only, never a value. */
function describeUse(source: SourceKind, use: SourceUse): string {
  return use.allKeys ? `${source.kind}/${use.name}` : `${source.kind}/${use.name}[${use.keys.join(',')}]`;
}

/**
 * The entries the workload consumes, as the encoding takes them. A ConfigMap: `data` and `binaryData`
 * (base64, decoded), both counted and kept distinct. A Secret: its `data` values are base64 too, so they
 * are decoded into the binaryData section, and the data section stays empty (encode.ts).
 */
function consumedContent(source: SourceKind, use: SourceUse, found: Extract<SourceLookup, { state: 'found' }>): NonNullable<HashedConfigMap['content']> {
  const [text, base64] = source.kind === 'secret' ? [undefined, found.data] : [found.data, found.binaryData];
  const wanted = use.allKeys ? undefined : new Set(use.keys);
  const consumed = ([key]: [string, string]): boolean => wanted === undefined || wanted.has(key);
  return {
    data: new Map(stringEntries(text).filter(consumed)),
    binaryData: new Map(
      stringEntries(base64)
        .filter(consumed)
        .map(([key, value]) => [key, Buffer.from(value, 'base64')] as const),
    ),
  };
}
