// AdmissionRequest -> AdmissionResult for apps/v1 Deployment, StatefulSet and DaemonSet (DESIGN section 5).
// Transport-free: the HTTP layer decodes and encodes; the decision is the one both paths make
// (workload/decision.ts). What is admission's own: which requests are ours at all, the warnings users see,
// and on fail-open keeping what an UPDATE dropped. The rule that shapes every branch: allow always, and
// never let a failure change the checksum (a changed checksum is a rollout).

import type { ChecksumProblem } from '../checksum/compute.ts';
import { CONTRACT } from '../config.ts';
import type { ConfigMapReader } from '../kube/configmaps.ts';
import { readAnnotation, setAnnotations, TEMPLATE_METADATA, WORKLOAD_METADATA, type PatchOperation } from '../workload/annotations.ts';
import { decideWorkload, decisionSources, type DecisionSettings, type DecisionSources, type WorkloadDecision } from '../workload/decision.ts';
import { isWorkloadKind } from '../workload/kinds.ts';
import { allowed, patched, type AdmissionRequest, type AdmissionResult } from './review.ts';
import { warning } from './warnings.ts';

export type MutateSettings = DecisionSettings;

/** Why the answer is what it is; one value per admission, used for the log line and metrics. */
export type Outcome =
  | 'patched' // the checksum or the sources annotation was set
  | 'unchanged' // computed, and the object already carries the right values
  | 'skipped' // not ours to touch (see reason)
  | 'fail-open'; // ConfigMaps (or Secrets) could not be read or were too many: nothing may change

export interface Mutation {
  readonly result: AdmissionResult;
  readonly outcome: Outcome;
  readonly reason: string;
  readonly checksumChanged: boolean;
  readonly configMaps: number;
  /** Distinct Secrets consumed (with --secrets); absent, or 0, when none. */
  readonly secrets?: number;
}

/**
 * `sources`: the ConfigMap reader alone (no Secret is read or hashed), or with --secrets the readers of
 * both kinds and the HMAC key.
 */
export async function mutate(request: AdmissionRequest, sources: DecisionSources | ConfigMapReader, settings: MutateSettings, timeoutMs = settings.configMapReadTimeoutMs): Promise<Mutation> {
  const notOurs = requestNotOurs(request);
  if (notOurs) return skipped(notOurs);
  // The API server's own deadline for this call, when shorter, bounds the reads too.
  const readSettings = { ...settings, configMapReadTimeoutMs: Math.min(timeoutMs, settings.configMapReadTimeoutMs) };
  const readers = decisionSources(sources);
  const decision = await decideWorkload(request.object, request.namespace, readers, readSettings);
  const keys = { config: settings.checksumAnnotation, secret: readers.secrets?.annotation };
  switch (decision.kind) {
    case 'skip':
      return skipped(decision.reason, allowed(warningsFor(decision.problems)));
    case 'fail-open':
      return failOpen(request, { ...settings, keys }, decision);
    case 'computed':
      return computed(request, decision, keys);
  }
}

function computed(request: AdmissionRequest, decision: Extract<WorkloadDecision, { kind: 'computed' }>, keys: FailOpenSettings['keys']): Mutation {
  const warnings = warningsFor(decision.problems);
  return {
    result: decision.operations.length > 0 ? patched(decision.operations, warnings) : allowed(warnings),
    outcome: decision.operations.length > 0 ? 'patched' : 'unchanged',
    reason: decision.problems.length > 0 ? 'computed-with-problems' : 'computed',
    checksumChanged: changedFromRunning(request, keys.config, decision.checksum) || changedFromRunning(request, keys.secret, decision.secretChecksum),
    configMaps: decision.configMaps,
    ...(decision.secrets > 0 ? { secrets: decision.secrets } : {}),
  };
}

/**
 * Whether a computed checksum differs from what runs now: the old object's value on UPDATE, nothing on
 * CREATE. A checksum not computed (no ConfigMap, or no Secret, consumed) changes nothing.
 */
function changedFromRunning(request: AdmissionRequest, key: string | undefined, checksum: string | undefined): boolean {
  if (key === undefined || checksum === undefined) return false;
  const previous = request.operation === 'UPDATE' ? readAnnotation(request.oldObject, TEMPLATE_METADATA, key) : undefined;
  return previous !== checksum;
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

type FailOpenSettings = MutateSettings & { readonly keys: { readonly config: string; readonly secret: string | undefined } };

/**
 * Nothing may change. One thing is still done: when an UPDATE dropped a checksum annotation (a full
 * replace by a tool that does not know it), the previous value is put back, or the drop itself would roll.
 */
function failOpen(request: AdmissionRequest, settings: FailOpenSettings, decision: Extract<WorkloadDecision, { kind: 'fail-open' }>): Mutation {
  const patch: PatchOperation[] = [];
  if (request.operation === 'UPDATE') {
    const checksums = [settings.keys.config, settings.keys.secret].filter((key): key is string => key !== undefined);
    patch.push(...restoreDropped(request, TEMPLATE_METADATA, checksums), ...restoreDropped(request, WORKLOAD_METADATA, [CONTRACT.sourcesAnnotation]));
  }
  const secrets = decision.secrets > 0 ? { secrets: decision.secrets } : {};
  return { result: patched(patch, [failOpenWarning(decision, settings)]), outcome: 'fail-open', reason: decision.reason, checksumChanged: false, configMaps: decision.configMaps, ...secrets };
}

/** The annotations of `keys` at `path` that the old object had and this UPDATE dropped, set back in one go. */
function restoreDropped(request: AdmissionRequest, path: readonly string[], keys: readonly string[]): PatchOperation[] {
  const dropped: Array<[string, string]> = [];
  for (const key of keys) {
    const previous = readAnnotation(request.oldObject, path, key);
    if (previous !== undefined && readAnnotation(request.object, path, key) === undefined) dropped.push([key, previous]);
  }
  return dropped.length > 0 ? setAnnotations(request.object, path, dropped) : [];
}

function failOpenWarning(decision: Extract<WorkloadDecision, { kind: 'fail-open' }>, settings: MutateSettings): string {
  switch (decision.reason) {
    case 'too-many-configmaps':
      if (decision.secrets > 0) return warning(`pod template consumes ${decision.configMaps} ConfigMaps and ${decision.secrets} Secrets, over the limit of ${settings.maxConfigMaps}; checksums left unchanged`);
      return warning(`pod template consumes ${decision.configMaps} ConfigMaps, over the limit of ${settings.maxConfigMaps}; checksum left unchanged`);
    case 'annotations-full':
      return warning('pod template annotations near the 256 KiB limit; checksum left unchanged');
    case 'hash-key-unavailable':
      return warning('the hash key for Secrets is not loaded yet; checksums left unchanged, nothing rolls');
    case 'configmap-unreadable':
      return unreadableWarning('ConfigMap', decision.unreadable, decision.secrets > 0 ? 'checksums' : 'checksum');
    case 'secret-unreadable':
      return unreadableWarning('Secret', decision.unreadable, 'checksums');
  }
}

function unreadableWarning(kind: 'ConfigMap' | 'Secret', unreadable: ReadonlyArray<{ readonly name: string; readonly reason: string }>, what: 'checksum' | 'checksums'): string {
  const first = unreadable[0]!;
  const more = unreadable.length > 1 ? ` and ${unreadable.length - 1} more` : '';
  return warning(`could not read ${kind} "${first.name}"${more} (${first.reason}); ${what} left unchanged, nothing rolls`);
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
    case 'missing-secret':
      return warning(`Secret "${problem.name}" not found; hashed as absent, pods roll when it is created`);
    case 'invalid-secret-name':
      return warning(`"${problem.name}" is not a valid Secret name; not read, hashed as absent`);
    case 'missing-secret-key':
      return warning(`key "${problem.key}" not found in Secret "${problem.name}"; hashed as absent`);
    case 'invalid-extra-secret':
      return warning(`${CONTRACT.extraSecretsAnnotation}: "${problem.value}" is not a Secret name in this namespace; ignored`);
  }
}
