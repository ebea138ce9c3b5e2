// One admission, start to answer: the decision (mutate.ts), a defect turned into fail-open, the metrics and
// the log line. The HTTP route (server/app.ts) only decodes and sends; this is what it calls in between.
// Model: controller-runtime's webhook Handle, behind its ServeHTTP.

import type { ConfigMapReader } from '../kube/configmaps.ts';
import type { SecretSource } from '../workload/decision.ts';
import { loggableError, type Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { asObject, asString } from '../util/json.ts';
import { isWorkloadKind } from '../workload/kinds.ts';
import { isRolloutRequest, mutate, type MutateSettings, type Mutation } from './mutate.ts';
import { allowed, complete, type AdmissionRequest, type AdmissionReviewResponse } from './review.ts';
import { warning } from './warnings.ts';

export interface AdmissionHandlerParts {
  readonly reader: ConfigMapReader;
  /** With --secrets: how Secrets are read and hashed. Absent: no Secret is ever read. */
  readonly secrets?: SecretSource | undefined;
  readonly settings: MutateSettings;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

/** Answers a decoded review; never throws (a defect is answered allowed, unchanged, and made loud). */
export async function handleAdmission(review: AdmissionRequest, parts: AdmissionHandlerParts, deadlineMs: number | undefined): Promise<AdmissionReviewResponse> {
  const started = performance.now();
  // Every field comes from the review and is cut to a length no real object exceeds (names: 253).
  const log = parts.logger.child({ uid: review.uid, kind: bounded(review.kind.kind), namespace: bounded(review.namespace), name: bounded(workloadName(review)), operation: bounded(review.operation) });
  let mutation: Mutation;
  try {
    mutation = await mutate(review, { configMaps: parts.reader, secrets: parts.secrets }, parts.settings, deadlineMs);
  } catch (error) {
    // A defect must not cost a deploy: answer allowed, change nothing, and make it loud in logs and metrics.
    log.error({ err: loggableError(error) }, 'admission failed; allowed unchanged');
    mutation = { result: allowed([warning('internal error; checksum left unchanged')]), outcome: 'fail-open', reason: 'internal-error', checksumChanged: false, configMaps: 0 };
  }
  const seconds = (performance.now() - started) / 1000;
  record(parts.metrics, review, mutation, seconds);
  const line = {
    user: review.user,
    rolloutRequest: isRolloutRequest(review),
    outcome: mutation.outcome,
    reason: mutation.reason,
    dryRun: review.dryRun,
    checksumChanged: mutation.checksumChanged,
    patchOps: mutation.result.patch.length,
    configMaps: mutation.configMaps,
    ...(mutation.secrets ? { secrets: mutation.secrets } : {}),
    warnings: mutation.result.warnings.length,
    durationMs: Math.round(seconds * 1e6) / 1e3,
  };
  if (mutation.outcome === 'fail-open') log.warn(line, 'admission');
  else log.info(line, 'admission');
  return complete(review.uid, mutation.result);
}

/**
 * Metric labels come from fixed sets (DESIGN section 5): a forged review with a 64 KiB kind must not
 * become a new time series. Outcome and reason are the product's own words.
 */
function record(metrics: Metrics, review: AdmissionRequest, mutation: Mutation, seconds: number): void {
  const kind = isWorkloadKind(review.kind.kind) ? review.kind.kind : 'other';
  const operation = OPERATIONS.has(review.operation) ? review.operation : 'other';
  metrics.admissions.inc({ kind, operation, outcome: mutation.outcome, reason: mutation.reason });
  metrics.admissionDuration.observe({ outcome: mutation.outcome }, seconds);
  if (mutation.checksumChanged) metrics.checksumChanges.inc({ kind });
  if (mutation.result.warnings.length > 0) metrics.admissionWarnings.inc(mutation.result.warnings.length);
}

const OPERATIONS: ReadonlySet<string> = new Set(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']);
const MAX_LOGGED_FIELD = 256;

function bounded(value: string): string {
  return value.length <= MAX_LOGGED_FIELD ? value : `${value.slice(0, MAX_LOGGED_FIELD)}...`;
}

function workloadName(review: AdmissionRequest): string {
  if (review.name) return review.name;
  const metadata = asObject(asObject(review.object)?.['metadata']);
  return asString(metadata?.['name']) ?? asString(metadata?.['generateName']) ?? '';
}
