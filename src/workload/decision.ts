// The one workload decision both paths make (DESIGN section 2): from a workload object and live ConfigMap
// (and, with --secrets, Secret) reads to "leave it alone", "change nothing, config could not be hashed" or
// "these are its checksums, and these operations set them". The admission path (admission/mutate.ts)
// turns the result into an answer; the watch path (watch/watcher.ts) into a rollout request. Neither
// decides anything of its own about eligibility, reading or hashing.

import { hash } from 'node:crypto';
import { computeChecksums, planChecksum, type ChecksumPlan, type ChecksumProblem, type ChecksumsOutcome, type SourceLookup } from '../checksum/compute.ts';
import { isConfigMapName, SECRET_SOURCE } from '../checksum/references.ts';
import { CONTRACT } from '../config.ts';
import { readBatches, type ConfigMapReader, type ReadBatch, type SecretReader } from '../kube/configmaps.ts';
import { asObject } from '../util/json.ts';
import { fitsAllAnnotations, fitsAnnotations, readAnnotation, setAnnotation, setAnnotations, TEMPLATE_METADATA, WORKLOAD_METADATA, type PatchOperation } from './annotations.ts';
import { workloadParts } from './kinds.ts';

export interface DecisionSettings {
  readonly checksumAnnotation: string;
  /** The most ConfigMaps and Secrets, together, one workload may consume before nothing is changed. */
  readonly maxConfigMaps: number;
  readonly configMapReadTimeoutMs: number;
}

/** How Secrets are read and hashed, and where their checksum goes; given only with --secrets. */
export interface SecretSource {
  readonly reader: SecretReader;
  /** The install's HMAC key; undefined until it is loaded (Secret-consuming workloads fail open meanwhile). */
  key(): Uint8Array | undefined;
  /** The pod-template annotation of the Secrets' checksum (checksum/secret unless configured). */
  readonly annotation: string;
}

/** Where the decision reads from. Without `secrets`, no Secret reference is even collected. */
export interface DecisionSources {
  readonly configMaps: ConfigMapReader;
  readonly secrets?: SecretSource | undefined;
}

/** Why a workload is left alone; the same words in admission logs and watcher metrics. */
export type SkipReason = 'no-pod-template' | 'deleting' | 'opted-out' | 'no-configmaps';

/** How many distinct ConfigMaps and Secrets the pod template consumes (Secrets: 0 without --secrets). */
interface Consumed {
  readonly configMaps: number;
  readonly secrets: number;
}

export type WorkloadDecision =
  | { readonly kind: 'skip'; readonly reason: SkipReason; readonly problems: readonly ChecksumProblem[] }
  /**
   * Nothing may change: a checksum derived now would roll for nothing, the pod template's annotations
   * leave no room for it under the API server's limit (annotations-full), or the HMAC key of Secrets is not
   * loaded yet (hash-key-unavailable).
   */
  | ({ readonly kind: 'fail-open'; readonly reason: 'too-many-configmaps' | 'annotations-full' | 'hash-key-unavailable' } & Consumed)
  | ({
      readonly kind: 'fail-open';
      readonly reason: 'configmap-unreadable' | 'secret-unreadable';
      /** ConfigMaps (configmap-unreadable) or Secrets (secret-unreadable) that could not be read. */
      readonly unreadable: ReadonlyArray<{ readonly name: string; readonly reason: string }>;
    } & Consumed)
  | ({
      readonly kind: 'computed';
      /** checksum/config; undefined when the template consumes only Secrets. */
      readonly checksum: string | undefined;
      /** checksum/secret; undefined when the template consumes no Secret, or without --secrets. */
      readonly secretChecksum: string | undefined;
      /** The value that asks for this state (the watcher's request annotation): the checksum when no Secret is consumed. */
      readonly requested: string;
      readonly sources: string;
      readonly problems: readonly ChecksumProblem[];
      /** What sets the checksums and the sources annotation on this object; empty when all are current. */
      readonly operations: readonly PatchOperation[];
    } & Consumed);

/** A bare ConfigMapReader (what a caller without --secrets may hand to mutate()) is ConfigMaps only. */
export function decisionSources(sources: DecisionSources | ConfigMapReader): DecisionSources {
  return 'configMaps' in sources ? sources : { configMaps: sources };
}

/** The rules before any read: a workload without a template, being deleted, or opted out is left alone. */
function ineligibility(object: unknown): Exclude<SkipReason, 'no-configmaps'> | undefined {
  if (!workloadParts(object)) return 'no-pod-template';
  // A workload being deleted (finalizers pending) must not roll.
  const deletionTimestamp = asObject(asObject(object)?.['metadata'])?.['deletionTimestamp'];
  if (deletionTimestamp !== undefined && deletionTimestamp !== null) return 'deleting';
  if (readAnnotation(object, WORKLOAD_METADATA, CONTRACT.optOutAnnotation) === 'false') return 'opted-out';
  return undefined;
}

const NO_SECRETS: ChecksumPlan = Object.freeze({ uses: [], problems: [] });

interface Plans {
  readonly configMaps: ChecksumPlan;
  readonly secrets: ChecksumPlan;
}

/**
 * Decides for `object` in `namespace`, reading the ConfigMaps (and Secrets) it consumes live (never a
 * cache), all of them within settings.configMapReadTimeoutMs.
 */
export async function decideWorkload(object: unknown, namespace: string, sources: DecisionSources, settings: DecisionSettings): Promise<WorkloadDecision> {
  const skipped = ineligibility(object);
  if (skipped) return { kind: 'skip', reason: skipped, problems: [] };
  const { configMaps, secrets } = sources;
  const plans = planSources(workloadParts(object)!, secrets !== undefined);
  const consumed: Consumed = { configMaps: plans.configMaps.uses.length, secrets: plans.secrets.uses.length };
  const before = beforeReading(plans, consumed, settings);
  if (before) return before;
  const secretReads = secretReading(secrets, consumed);
  if (secretReads === 'no-key') return { kind: 'fail-open', reason: 'hash-key-unavailable', ...consumed };

  const computed = await readAndCompute(namespace, { configMaps, secrets: secretReads }, plans, settings.configMapReadTimeoutMs);
  if (computed.kind === 'unreadable') return { kind: 'fail-open', reason: `${computed.source}-unreadable`, unreadable: computed.unreadable, ...consumed };
  return withOperations(object, computed, consumed, { config: settings.checksumAnnotation, secret: secrets?.annotation });
}

function planSources(parts: NonNullable<ReturnType<typeof workloadParts>>, withSecrets: boolean): Plans {
  return {
    configMaps: planChecksum(parts.template, parts.annotations, CONTRACT.extraConfigMapsAnnotation),
    secrets: withSecrets ? planChecksum(parts.template, parts.annotations, CONTRACT.extraSecretsAnnotation, SECRET_SOURCE) : NO_SECRETS,
  };
}

/** The rules on what the template consumes, before anything is read: nothing, or too much. */
function beforeReading(plans: Plans, consumed: Consumed, settings: DecisionSettings): WorkloadDecision | undefined {
  const total = consumed.configMaps + consumed.secrets;
  if (total === 0) return { kind: 'skip', reason: 'no-configmaps', problems: [...plans.configMaps.problems, ...plans.secrets.problems] };
  // One cap for both kinds: it bounds the reads of one admission, which share one deadline.
  if (total > settings.maxConfigMaps) return { kind: 'fail-open', reason: 'too-many-configmaps', ...consumed };
  return undefined;
}

/**
 * The reader and key of Secrets when the template consumes any; 'no-key' before the key is loaded: Secrets
 * are read only with the key to hash them, since nothing they gave could be used without it.
 */
function secretReading(secrets: SecretSource | undefined, consumed: Consumed): { reader: SecretReader; key: Uint8Array } | 'no-key' | undefined {
  if (!secrets || consumed.secrets === 0) return undefined;
  const key = secrets.key();
  return key ? { reader: secrets.reader, key } : 'no-key';
}

const NOT_READ: SourceLookup = Object.freeze({ state: 'unreadable', reason: 'not read' });

/** Reads what the plans name (Secrets only with their key), all in one batch, and computes the checksums. */
async function readAndCompute(
  namespace: string,
  readers: { configMaps: ConfigMapReader; secrets: { reader: SecretReader; key: Uint8Array } | undefined },
  plans: Plans,
  timeoutMs: number,
): Promise<ChecksumsOutcome> {
  // Only names an object can have are put into a URL; computeChecksums hashes the others as absent.
  const readable = (plan: ChecksumPlan): string[] => plan.uses.map((use) => use.name).filter(isConfigMapName);
  const batches: ReadBatch[] = [{ reader: readers.configMaps, names: readable(plans.configMaps) }];
  if (readers.secrets) batches.push({ reader: readers.secrets.reader, names: readable(plans.secrets) });
  const [configMaps, secrets] = await readBatches(namespace, batches, timeoutMs);
  const lookupIn = (lookups: ReadonlyMap<string, SourceLookup> | undefined) => (name: string): SourceLookup => lookups?.get(name) ?? NOT_READ;
  return computeChecksums(
    { plan: plans.configMaps, lookup: lookupIn(configMaps) },
    readers.secrets ? { plan: plans.secrets, lookup: lookupIn(secrets), key: readers.secrets.key } : undefined,
  );
}

/** The operations that make `object` carry the computed values; fail-open when the checksums do not fit. */
function withOperations(object: unknown, computed: Extract<ChecksumsOutcome, { kind: 'computed' }>, consumed: Consumed, keys: { config: string; secret: string | undefined }): WorkloadDecision {
  const template = [
    ...changedAnnotation(object, keys.config, computed.checksum),
    ...(keys.secret === undefined ? [] : changedAnnotation(object, keys.secret, computed.secretChecksum)),
  ];
  if (template.length > 0 && !fitsAllAnnotations(object, TEMPLATE_METADATA, template)) return { kind: 'fail-open', reason: 'annotations-full', ...consumed };
  const operations: PatchOperation[] = template.length > 0 ? setAnnotations(object, TEMPLATE_METADATA, template) : [];
  const problems = [...computed.problems];
  if (readAnnotation(object, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation) !== computed.sources) {
    // The sources annotation only explains: left out (with a warning) rather than make the write fail.
    if (fitsAnnotations(object, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation, computed.sources)) operations.push(setAnnotation(object, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation, computed.sources));
    else problems.push({ kind: 'sources-not-written' });
  }
  const { checksum, secretChecksum, sources } = computed;
  return { kind: 'computed', checksum, secretChecksum, requested: requestValue(checksum, secretChecksum), sources, problems, operations, ...consumed };
}

/** [key, value] when the pod template does not carry `value` under `key` yet; nothing for a value not computed. */
function changedAnnotation(object: unknown, key: string, value: string | undefined): Array<[string, string]> {
  return value !== undefined && readAnnotation(object, TEMPLATE_METADATA, key) !== value ? [[key, value]] : [];
}

/**
 * What the watcher writes to ask for a recomputation: the checksum itself for a workload that consumes no
 * Secret (as before Secrets existed), else a SHA-256 of both, so a change of either is a new request.
 */
function requestValue(checksum: string | undefined, secretChecksum: string | undefined): string {
  if (secretChecksum === undefined) return checksum ?? '';
  return hash('sha256', `${checksum ?? ''},${secretChecksum}`, 'hex');
}
