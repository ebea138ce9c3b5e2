// AdmissionRequest -> AdmissionResult for apps/v1 Deployment, StatefulSet and DaemonSet (DESIGN section 5).
// Transport-free: the HTTP layer decodes and encodes; the decision is the one both paths make
// (workload/decision.ts). What is admission's own: which requests are ours at all, the warnings users see,
// and on fail-open keeping what an UPDATE dropped. The rule that shapes every branch: allow always, and
// never let a failure change the checksum (a changed checksum is a rollout).

import type { ChecksumProblem } from '../checksum/compute.ts';
import { CONTRACT } from '../config.ts';
import type { ConfigMapReader } from '../kube/configmaps.ts';
import { readAnnotation, setAnnotation, TEMPLATE_METADATA, WORKLOAD_METADATA, type PatchOperation } from '../workload/annotations.ts';
import { decideWorkload, type DecisionSettings, type WorkloadDecision } from '../workload/decision.ts';
import { isWorkloadKind } from '../workload/kinds.ts';
import { allowed, patched, type AdmissionRequest, type AdmissionResult } from './review.ts';
import { warning } from './warnings.ts';

export type MutateSettings = DecisionSettings;

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
  const notOurs = requestNotOurs(request);
  if (notOurs) return skipped(notOurs);
  // The API server's own deadline for this call, when shorter, bounds the reads too.
  const readSettings = { ...settings, configMapReadTimeoutMs: Math.min(timeoutMs, settings.configMapReadTimeoutMs) };
  const decision = await decideWorkload(request.object, request.namespace, reader, readSettings);
  switch (decision.kind) {
    case 'skip':
      return skipped(decision.reason, allowed(warningsFor(decision.problems)));
    case 'fail-open':
      return failOpen(request, settings, decision);
    case 'computed': {
      const warnings = warningsFor(decision.problems);
      // "Changed" compares with what runs now: the old object's value on UPDATE, nothing on CREATE.
      const previous = request.operation === 'UPDATE' ? readAnnotation(request.oldObject, TEMPLATE_METADATA, settings.checksumAnnotation) : undefined;
      return {
        result: decision.operations.length > 0 ? patched(decision.operations, warnings) : allowed(warnings),
        outcome: decision.operations.length > 0 ? 'patched' : 'unchanged',
        reason: decision.problems.length > 0 ? 'computed-with-problems' : 'computed',
        checksumChanged: previous !== decision.checksum,
        configMaps: decision.configMaps,
      };
    }
  }
}

/** Requests that are not a CREATE or UPDATE of a namespaced apps/v1 workload itself. */
function requestNotOurs(request: AdmissionRequest): string | undefined {
  if (request.kind.group !== 'apps' || request.kind.version !== 'v1' || !isWorkloadKind(request.kind.kind)) return 'not-a-workload';
  if (request.subResource !== '') return 'subresource';
  if (request.operation !== 'CREATE' && request.operation !== 'UPDATE') return 'operation';
  if (request.namespace === '') return 'no-namespace';
  return undefined;
}

function skipped(reason: string, result: AdmissionResult = allowed()): Mutation {
  return { result, outcome: 'skipped', reason, checksumChanged: false, configMaps: 0 };
}

/**
 * Nothing may change. One thing is still done: when an UPDATE dropped the checksum annotation (a full
 * replace by a tool that does not know it), the previous value is put back, or the drop itself would roll.
 */
function failOpen(request: AdmissionRequest, settings: MutateSettings, decision: Extract<WorkloadDecision, { kind: 'fail-open' }>): Mutation {
  const patch: PatchOperation[] = [];
  if (request.operation === 'UPDATE') {
    const keep = (path: readonly string[], key: string): void => {
      const previous = readAnnotation(request.oldObject, path, key);
      if (previous !== undefined && readAnnotation(request.object, path, key) === undefined) patch.push(setAnnotation(request.object, path, key, previous));
    };
    keep(TEMPLATE_METADATA, settings.checksumAnnotation);
    keep(WORKLOAD_METADATA, CONTRACT.sourcesAnnotation);
  }
  return { result: patched(patch, [failOpenWarning(decision, settings)]), outcome: 'fail-open', reason: decision.reason, checksumChanged: false, configMaps: decision.configMaps };
}

function failOpenWarning(decision: Extract<WorkloadDecision, { kind: 'fail-open' }>, settings: MutateSettings): string {
  switch (decision.reason) {
    case 'too-many-configmaps':
      return warning(`pod template consumes ${decision.configMaps} ConfigMaps, over the limit of ${settings.maxConfigMaps}; checksum left unchanged`);
    case 'annotations-full':
      return warning('pod template annotations near the 256 KiB limit; checksum left unchanged');
    case 'configmap-unreadable':
      return unreadableWarning(decision.unreadable);
  }
}

function unreadableWarning(unreadable: ReadonlyArray<{ readonly name: string; readonly reason: string }>): string {
  const first = unreadable[0]!;
  const more = unreadable.length > 1 ? ` and ${unreadable.length - 1} more` : '';
  return warning(`could not read ConfigMap "${first.name}"${more} (${first.reason}); checksum left unchanged, nothing rolls`);
}

/**
 * True when this UPDATE is the watcher asking for a recomputation: it changed the workload's
 * `config-checksum.io/requested` annotation (DESIGN section 2). Only for the log line; the decision is the
 * same for every UPDATE.
 */
export function isRolloutRequest(request: AdmissionRequest): boolean {
  if (request.operation !== 'UPDATE') return false;
  const requested = readAnnotation(request.object, WORKLOAD_METADATA, CONTRACT.requestedAnnotation);
  return requested !== undefined && requested !== readAnnotation(request.oldObject, WORKLOAD_METADATA, CONTRACT.requestedAnnotation);
}

// Warnings travel as HTTP headers (4 KiB in all at the API server): a template with thousands of bad
// references gets the first few and a count, not thousands of lines.
const MAX_WARNINGS = 10;

/** One warning per distinct problem, at most MAX_WARNINGS, then one that counts the rest. */
function warningsFor(problems: readonly ChecksumProblem[]): string[] {
  const distinct = [...new Set(problems.map(warningFor))];
  if (distinct.length <= MAX_WARNINGS) return distinct;
  return [...distinct.slice(0, MAX_WARNINGS - 1), warning(`${distinct.length - MAX_WARNINGS + 1} more problems with the ConfigMaps this template consumes`)];
}

function warningFor(problem: ChecksumProblem): string {
  switch (problem.kind) {
    case 'missing-configmap':
      return warning(`ConfigMap "${problem.name}" not found; hashed as absent, pods roll when it is created`);
    case 'sources-not-written':
      return warning(`workload annotations near the 256 KiB limit; ${CONTRACT.sourcesAnnotation} not written`);
    case 'invalid-configmap-name':
      return warning(`"${problem.name}" is not a valid ConfigMap name; not read, hashed as absent`);
    case 'missing-key':
      return warning(`key "${problem.key}" not found in ConfigMap "${problem.name}"; hashed as absent`);
    case 'invalid-extra-configmap':
      return warning(`${CONTRACT.extraConfigMapsAnnotation}: "${problem.value}" is not a ConfigMap name in this namespace; ignored`);
  }
}
