// API calls of the watch path: read a workload, patch its annotations under a resourceVersion
// precondition, record Events. Paths and verbs here match the shipped RBAC (manifests/base/rbac.yaml).

import type { PatchOperation } from '../workload/annotations.ts';
import { asObject, type JsonObject } from '../util/json.ts';
import { WORKLOAD_RESOURCES, type WorkloadRef } from '../workload/kinds.ts';
import { ApiError, type KubeHttp } from './http.ts';
import { OperationalError } from '../util/errors.ts';

function workloadPath(ref: WorkloadRef): string {
  return `/apis/apps/v1/namespaces/${encodeURIComponent(ref.namespace)}/${WORKLOAD_RESOURCES[ref.kind]}/${encodeURIComponent(ref.name)}`;
}

export async function getWorkload(http: KubeHttp, ref: WorkloadRef): Promise<JsonObject | undefined> {
  const response = await http.request('GET', workloadPath(ref));
  if (response.status === 404) return undefined;
  if (response.status !== 200) throw new ApiError(`GET ${ref.kind} ${ref.namespace}/${ref.name}`, response.status);
  return asObject(response.json());
}

export type RolloutRequest =
  | { readonly state: 'conflict' }
  /** The workload as the API server stored it, after the webhook's admission of the request. */
  | { readonly state: 'written'; readonly object: JsonObject };

/**
 * Asks the webhook to recompute a workload's checksum: one annotation on the workload's own metadata
 * (`config-checksum.io/requested: <checksum>`), written only if the object is still at `resourceVersion`
 * (a JSON Patch `test`), so a write that raced ours makes the caller read again and decide again. The
 * pod template is never written here: the webhook sets the checksum inside this request's admission, so
 * a server-side applier that owns `checksum/config` keeps owning it (DESIGN section 2).
 */
export async function requestRollout(http: KubeHttp, ref: WorkloadRef, resourceVersion: string, request: PatchOperation): Promise<RolloutRequest> {
  const body = [{ op: 'test', path: '/metadata/resourceVersion', value: resourceVersion }, request];
  const response = await http.request('PATCH', workloadPath(ref), { body, contentType: 'application/json-patch+json' });
  if (response.status === 409 || response.status === 422) return { state: 'conflict' };
  if (response.status !== 200) throw new ApiError(`PATCH ${ref.kind} ${ref.namespace}/${ref.name}`, response.status);
  const object = asObject(response.json());
  if (!object) throw new OperationalError(`PATCH ${ref.kind} ${ref.namespace}/${ref.name}: the response is not an object`);
  return { state: 'written', object };
}

export interface EventSpec {
  readonly type: 'Normal' | 'Warning';
  readonly reason: string;
  /** Names only, never ConfigMap values. */
  readonly message: string;
}

/** The Events' source and reporting component. */
export const EVENT_COMPONENT = 'config-checksum-webhook';

export async function recordEvent(http: KubeHttp, ref: WorkloadRef, uid: string, event: EventSpec): Promise<void> {
  const component = EVENT_COMPONENT;
  const now = new Date().toISOString();
  const response = await http.request('POST', `/api/v1/namespaces/${encodeURIComponent(ref.namespace)}/events`, {
    body: {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${ref.name}.`, namespace: ref.namespace },
      involvedObject: { apiVersion: 'apps/v1', kind: ref.kind, namespace: ref.namespace, name: ref.name, uid },
      type: event.type,
      reason: event.reason,
      message: event.message,
      source: { component },
      reportingComponent: component,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    },
  });
  if (response.status !== 201) throw new ApiError(`create Event on ${ref.kind} ${ref.namespace}/${ref.name}`, response.status);
}
