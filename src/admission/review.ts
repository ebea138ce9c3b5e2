// AdmissionReview v1: decoding what the API server sends, and the only constructors of what we answer.
// Every answer goes through allowed()/patched() and then complete(), which copies the uid and encodes the
// patch, so no code path can forget the uid or send a patch without its patchType.

import { asObject, asString, type JsonObject } from '../util/json.ts';
import type { PatchOperation } from '../workload/annotations.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

export interface GroupVersionKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
}

export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: GroupVersionKind;
  readonly subResource: string;
  readonly name: string;
  readonly namespace: string;
  readonly operation: string;
  readonly object: unknown;
  readonly oldObject: unknown;
  readonly dryRun: boolean;
  /** Who sent the write (userInfo.username), for the log line only; cut to MAX_USERNAME_LENGTH. */
  readonly user: string;
}

export type DecodedReview = { readonly ok: true; readonly request: AdmissionRequest } | { readonly ok: false; readonly message: string };

// The API server generates uids (a UUID); anything far longer is not from it.
const MAX_UID_LENGTH = 128;
// Kubernetes user names are short (system:serviceaccount:<ns>:<name> is under 330); the log keeps this much.
const MAX_USERNAME_LENGTH = 330;

/** Checks the envelope and the request fields we rely on; a failure is an HTTP 400 with this message. */
export function decodeReview(body: unknown): DecodedReview {
  const request = requestOf(body);
  if (typeof request === 'string') return { ok: false, message: request };
  const uid = asString(request['uid']);
  if (!uid) return { ok: false, message: 'request.uid must be a non-empty string' };
  if (uid.length > MAX_UID_LENGTH) return { ok: false, message: `request.uid must be at most ${MAX_UID_LENGTH} characters` };
  const kind = kindOf(request['kind']);
  if (!kind) return { ok: false, message: 'request.kind must have string group, version and kind' };
  const operation = asString(request['operation']);
  if (operation === undefined) return { ok: false, message: 'request.operation must be a string' };
  return {
    ok: true,
    request: {
      uid,
      kind,
      subResource: asString(request['subResource']) ?? '',
      name: asString(request['name']) ?? '',
      namespace: asString(request['namespace']) ?? '',
      operation,
      object: request['object'],
      oldObject: request['oldObject'],
      dryRun: request['dryRun'] === true,
      user: userOf(request['userInfo']),
    },
  };
}

function userOf(userInfo: unknown): string {
  return (asString(asObject(userInfo)?.['username']) ?? '').slice(0, MAX_USERNAME_LENGTH);
}

/** The request of an AdmissionReview v1 envelope, or what is wrong with the envelope. */
function requestOf(body: unknown): JsonObject | string {
  const review = asObject(body);
  if (!review) return 'body must be a JSON object (an AdmissionReview)';
  if (review['apiVersion'] !== ADMISSION_API_VERSION || review['kind'] !== 'AdmissionReview') {
    return `expected apiVersion ${ADMISSION_API_VERSION} and kind AdmissionReview`;
  }
  return asObject(review['request']) ?? 'AdmissionReview has no request';
}

function kindOf(value: unknown): GroupVersionKind | undefined {
  const kind = asObject(value);
  const group = asString(kind?.['group']);
  const version = asString(kind?.['version']);
  const kindName = asString(kind?.['kind']);
  if (group === undefined || version === undefined || kindName === undefined) return undefined;
  return { group, version, kind: kindName };
}

/** What the admission logic decided, before it is bound to a uid. This webhook never denies. */
export interface AdmissionResult {
  readonly patch: readonly PatchOperation[];
  readonly warnings: readonly string[];
}

export function allowed(warnings: readonly string[] = []): AdmissionResult {
  return { patch: [], warnings };
}

export function patched(patch: readonly PatchOperation[], warnings: readonly string[] = []): AdmissionResult {
  return { patch, warnings };
}

export interface AdmissionReviewResponse {
  readonly apiVersion: typeof ADMISSION_API_VERSION;
  readonly kind: 'AdmissionReview';
  readonly response: {
    readonly uid: string;
    readonly allowed: true;
    readonly patchType?: 'JSONPatch';
    readonly patch?: string;
    readonly warnings?: readonly string[];
  };
}

/** The minimal response: uid and allowed; patchType with patch only when there is one; warnings only when any. */
export function complete(uid: string, result: AdmissionResult): AdmissionReviewResponse {
  return {
    apiVersion: ADMISSION_API_VERSION,
    kind: 'AdmissionReview',
    response: {
      uid,
      allowed: true,
      ...(result.patch.length > 0
        ? { patchType: 'JSONPatch' as const, patch: Buffer.from(JSON.stringify(result.patch)).toString('base64') }
        : {}),
      ...(result.warnings.length > 0 ? { warnings: result.warnings } : {}),
    },
  };
}
