// The one workload decision both paths make (DESIGN section 2): from a workload object and live ConfigMap
// reads to "leave it alone", "change nothing, config could not be hashed" or "this is its checksum, and
// these operations set it". The admission path (admission/mutate.ts) turns the result into an answer; the
// watch path (watch/watcher.ts) into a rollout request. Neither decides anything of its own about
// eligibility, reading or hashing.

import { computeChecksum, planChecksum, type ChecksumProblem } from '../checksum/compute.ts';
import { isConfigMapName } from '../checksum/references.ts';
import { CONTRACT } from '../config.ts';
import { readConfigMaps, type ConfigMapReader } from '../kube/configmaps.ts';
import { asObject } from '../util/json.ts';
import { fitsAnnotations, readAnnotation, setAnnotation, TEMPLATE_METADATA, WORKLOAD_METADATA, type PatchOperation } from './annotations.ts';
import { workloadParts } from './kinds.ts';

export interface DecisionSettings {
  readonly checksumAnnotation: string;
  readonly maxConfigMaps: number;
  readonly configMapReadTimeoutMs: number;
}

/** Why a workload is left alone; the same words in admission logs and watcher metrics. */
export type SkipReason = 'no-pod-template' | 'deleting' | 'opted-out' | 'no-configmaps';

export type WorkloadDecision =
  | { readonly kind: 'skip'; readonly reason: SkipReason; readonly problems: readonly ChecksumProblem[] }
  /**
   * Nothing may change: a checksum derived now would roll for nothing, or (annotations-full) the pod
   * template's annotations leave no room for it under the API server's limit.
   */
  | { readonly kind: 'fail-open'; readonly reason: 'too-many-configmaps' | 'annotations-full'; readonly configMaps: number }
  | {
      readonly kind: 'fail-open';
      readonly reason: 'configmap-unreadable';
      readonly configMaps: number;
      readonly unreadable: ReadonlyArray<{ readonly name: string; readonly reason: string }>;
    }
  | {
      readonly kind: 'computed';
      readonly checksum: string;
      readonly sources: string;
      readonly problems: readonly ChecksumProblem[];
      readonly configMaps: number;
      /** What sets the checksum and the sources annotation on this object; empty when both are current. */
      readonly operations: readonly PatchOperation[];
    };

/** The rules before any read: a workload without a template, being deleted, or opted out is left alone. */
function ineligibility(object: unknown): Exclude<SkipReason, 'no-configmaps'> | undefined {
  if (!workloadParts(object)) return 'no-pod-template';
  // A workload being deleted (finalizers pending) must not roll.
  const deletionTimestamp = asObject(asObject(object)?.['metadata'])?.['deletionTimestamp'];
  if (deletionTimestamp !== undefined && deletionTimestamp !== null) return 'deleting';
  if (readAnnotation(object, WORKLOAD_METADATA, CONTRACT.optOutAnnotation) === 'false') return 'opted-out';
  return undefined;
}

/**
 * Decides for `object` in `namespace`, reading the ConfigMaps it consumes live (never a cache), all of
 * them within settings.configMapReadTimeoutMs.
 */
export async function decideWorkload(object: unknown, namespace: string, reader: ConfigMapReader, settings: DecisionSettings): Promise<WorkloadDecision> {
  const skipped = ineligibility(object);
  if (skipped) return { kind: 'skip', reason: skipped, problems: [] };
  const parts = workloadParts(object)!;
  const plan = planChecksum(parts.template, parts.annotations, CONTRACT.extraConfigMapsAnnotation);
  if (plan.uses.length === 0) return { kind: 'skip', reason: 'no-configmaps', problems: plan.problems };
  if (plan.uses.length > settings.maxConfigMaps) return { kind: 'fail-open', reason: 'too-many-configmaps', configMaps: plan.uses.length };

  // Only names a ConfigMap can have are put into a URL; computeChecksum hashes the others as absent.
  const names = plan.uses.map((use) => use.name).filter(isConfigMapName);
  const lookups = await readConfigMaps(reader, namespace, names, settings.configMapReadTimeoutMs);
  const computed = computeChecksum(plan, (name) => lookups.get(name) ?? { state: 'unreadable', reason: 'not read' });
  if (computed.kind === 'unreadable') return { kind: 'fail-open', reason: 'configmap-unreadable', configMaps: plan.uses.length, unreadable: computed.unreadable };

  const operations: PatchOperation[] = [];
  const problems = [...computed.problems];
  if (readAnnotation(object, TEMPLATE_METADATA, settings.checksumAnnotation) !== computed.checksum) {
    if (!fitsAnnotations(object, TEMPLATE_METADATA, settings.checksumAnnotation, computed.checksum)) return { kind: 'fail-open', reason: 'annotations-full', configMaps: plan.uses.length };
    operations.push(setAnnotation(object, TEMPLATE_METADATA, settings.checksumAnnotation, computed.checksum));
  }
  if (readAnnotation(object, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation) !== computed.sources) {
    // The sources annotation only explains: left out (with a warning) rather than make the write fail.
    if (fitsAnnotations(object, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation, computed.sources)) operations.push(setAnnotation(object, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation, computed.sources));
    else problems.push({ kind: 'sources-not-written' });
  }
  return { kind: 'computed', checksum: computed.checksum, sources: computed.sources, problems, configMaps: plan.uses.length, operations };
}
