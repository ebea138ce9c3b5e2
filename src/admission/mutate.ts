// AdmissionRequest -> AdmissionResult for apps/v1 Deployment, StatefulSet and DaemonSet (DESIGN section 5).
// Transport-free: the HTTP layer decodes and encodes; ConfigMaps come through a ConfigMapReader.
// The rule that shapes every branch: allow always, and never let a failure change the checksum
// (a changed checksum is a rollout).

import { computeChecksum, planChecksum, workloadParts, type ChecksumProblem } from '../checksum/compute.ts';
import { asObject } from '../checksum/json.ts';
import { CONTRACT } from '../config.ts';
import { readConfigMaps, type ConfigMapReader } from '../kube/configmaps.ts';
import { readAnnotation, setAnnotation, TEMPLATE_METADATA, WORKLOAD_METADATA, type PatchOperation } from './patch.ts';
import { allowed, patched, type AdmissionRequest, type AdmissionResult } from './review.ts';
import { warning } from './warnings.ts';

export const WORKLOAD_KINDS: ReadonlySet<string> = new Set(['Deployment', 'StatefulSet', 'DaemonSet']);

export interface MutateSettings {
  readonly checksumAnnotation: string;
  readonly maxConfigMaps: number;
  readonly configMapReadTimeoutMs: number;
}

/** Why the answer is what it is; one value per admission, used for the log line and metrics. */
export type Outcome =
  | 'patched' // the checksum or the sources annotation was set
  | 'unchanged' // computed, and the object already carries the right values
  | 'skipped' // not ours to touch (see reason)
  | 'fail-open'; // ConfigMaps could not be read or were too many: nothing may change

export interface Mutation {
  readonly result: AdmissionResult;
  readonly outcome: Outcome;
  readonly reason: string;
  readonly checksumChanged: boolean;
  readonly configMaps: number;
}

export async function mutate(request: AdmissionRequest, reader: ConfigMapReader, settings: MutateSettings, timeoutMs = settings.configMapReadTimeoutMs): Promise<Mutation> {
  const skip = (reason: string, result: AdmissionResult = allowed()): Mutation => ({ result, outcome: 'skipped', reason, checksumChanged: false, configMaps: 0 });

  if (request.kind.group !== 'apps' || request.kind.version !== 'v1' || !WORKLOAD_KINDS.has(request.kind.kind)) return skip('not-a-workload');
  if (request.subResource !== '') return skip('subresource');
  if (request.operation !== 'CREATE' && request.operation !== 'UPDATE') return skip('operation');
  if (request.namespace === '') return skip('no-namespace');
  const parts = workloadParts(request.object);
  if (!parts) return skip('no-pod-template');
  const metadata = asObject(asObject(request.object)?.['metadata']);
  // A workload being deleted (finalizers pending) must not roll.
  if (metadata?.['deletionTimestamp'] !== undefined && metadata['deletionTimestamp'] !== null) return skip('deleting');
  if (readAnnotation(request.object, WORKLOAD_METADATA, CONTRACT.optOutAnnotation) === 'false') return skip('opted-out');

  const plan = planChecksum(parts.template, parts.annotations, CONTRACT.extraConfigMapsAnnotation);
  if (plan.uses.length === 0) return skip('no-configmaps', allowed(plan.problems.map(warningFor)));

  if (plan.uses.length > settings.maxConfigMaps) {
    return failOpen(request, settings, 'too-many-configmaps', [
      warning(`pod template consumes ${plan.uses.length} ConfigMaps, over the limit of ${settings.maxConfigMaps}; checksum left unchanged`),
    ], plan.uses.length);
  }

  const names = plan.uses.map((use) => use.name);
  const lookups = await readConfigMaps(reader, request.namespace, names, Math.min(timeoutMs, settings.configMapReadTimeoutMs));
  const computed = computeChecksum(plan, (name) => lookups.get(name) ?? { state: 'unreadable', reason: 'not read' });

  if (computed.kind === 'unreadable') {
    const first = computed.unreadable[0]!;
    const more = computed.unreadable.length > 1 ? ` and ${computed.unreadable.length - 1} more` : '';
    return failOpen(request, settings, 'configmap-unreadable', [
      warning(`could not read ConfigMap "${first.name}"${more} (${first.reason}); checksum left unchanged, nothing rolls`),
    ], names.length);
  }

  const warnings = computed.problems.map(warningFor);
  const patch: PatchOperation[] = [];
  const currentChecksum = readAnnotation(request.object, TEMPLATE_METADATA, settings.checksumAnnotation);
  if (currentChecksum !== computed.checksum) patch.push(setAnnotation(request.object, TEMPLATE_METADATA, settings.checksumAnnotation, computed.checksum));
  if (readAnnotation(request.object, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation) !== computed.sources) {
    patch.push(setAnnotation(request.object, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation, computed.sources));
  }
  // "Changed" compares with what runs now: the old object's value on UPDATE, nothing on CREATE.
  const previous = request.operation === 'UPDATE' ? readAnnotation(request.oldObject, TEMPLATE_METADATA, settings.checksumAnnotation) : undefined;
  return {
    result: patch.length > 0 ? patched(patch, warnings) : allowed(warnings),
    outcome: patch.length > 0 ? 'patched' : 'unchanged',
    reason: computed.problems.length > 0 ? 'computed-with-problems' : 'computed',
    checksumChanged: previous !== computed.checksum,
    configMaps: names.length,
  };
}

/**
 * Nothing may change. One thing is still done: when an UPDATE dropped the checksum annotation (a full
 * replace by a tool that does not know it), the previous value is put back, or the drop itself would roll.
 */
function failOpen(request: AdmissionRequest, settings: MutateSettings, reason: string, warnings: string[], configMaps: number): Mutation {
  const patch: PatchOperation[] = [];
  if (request.operation === 'UPDATE') {
    const keep = (path: readonly string[], key: string): void => {
      const previous = readAnnotation(request.oldObject, path, key);
      if (previous !== undefined && readAnnotation(request.object, path, key) === undefined) patch.push(setAnnotation(request.object, path, key, previous));
    };
    keep(TEMPLATE_METADATA, settings.checksumAnnotation);
    keep(WORKLOAD_METADATA, CONTRACT.sourcesAnnotation);
  }
  return { result: patched(patch, warnings), outcome: 'fail-open', reason, checksumChanged: false, configMaps };
}

function warningFor(problem: ChecksumProblem): string {
  switch (problem.kind) {
    case 'missing-configmap':
      return warning(`ConfigMap "${problem.name}" not found; hashed as absent, pods roll when it is created`);
    case 'missing-key':
      return warning(`key "${problem.key}" not found in ConfigMap "${problem.name}"; hashed as absent`);
    case 'invalid-extra-configmap':
      return warning(`${CONTRACT.extraConfigMapsAnnotation}: "${problem.value}" is not a ConfigMap name in this namespace; ignored`);
  }
}
