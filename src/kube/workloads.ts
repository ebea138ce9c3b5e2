// API calls of the watch path: read a workload, patch its annotations under a resourceVersion
// precondition, record Events. Paths and verbs here match the shipped RBAC (manifests/base/rbac.yaml).

import type { PatchOperation } from '../admission/patch.ts';
import { asObject, type JsonObject } from '../checksum/json.ts';
import type { WorkloadKind, WorkloadRef } from '../watch/dependents.ts';
import type { KubeHttp } from './http.ts';
import { OperationalError } from '../telemetry/logger.ts';

export const WORKLOAD_RESOURCES: Readonly<Record<WorkloadKind, string>> = {
  Deployment: 'deployments',
  StatefulSet: 'statefulsets',
  DaemonSet: 'daemonsets',
};

function workloadPath(ref: WorkloadRef): string {
  return `/apis/apps/v1/namespaces/${encodeURIComponent(ref.namespace)}/${WORKLOAD_RESOURCES[ref.kind]}/${encodeURIComponent(ref.name)}`;
}

export async function getWorkload(http: KubeHttp, ref: WorkloadRef): Promise<JsonObject | undefined> {
  const response = await http.request('GET', workloadPath(ref));
  if (response.status === 404) return undefined;
  if (response.status !== 200) throw new ApiError(`GET ${ref.kind} ${ref.namespace}/${ref.name}`, response.status);
  return asObject(response.json());
}

/**
 * Applies the operations only if the object is still at `resourceVersion` (a JSON Patch `test`), so a
 * write that raced ours is never overwritten with a checksum computed for an older template.
 * Returns false on a conflict (the caller re-reads and decides again).
 */
export async function patchWorkload(http: KubeHttp, ref: WorkloadRef, resourceVersion: string, operations: readonly PatchOperation[]): Promise<boolean> {
  const body = [{ op: 'test', path: '/metadata/resourceVersion', value: resourceVersion }, ...operations];
  const response = await http.request('PATCH', workloadPath(ref), { body, contentType: 'application/json-patch+json' });
  if (response.status === 200) return true;
  if (response.status === 409 || response.status === 422) return false;
  throw new ApiError(`PATCH ${ref.kind} ${ref.namespace}/${ref.name}`, response.status);
}

export interface EventSpec {
  readonly type: 'Normal' | 'Warning';
  readonly reason: string;
  /** Names only, never ConfigMap values. */
  readonly message: string;
}

export async function recordEvent(http: KubeHttp, ref: WorkloadRef, uid: string, event: EventSpec, component: string): Promise<void> {
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

export async function getWebhookConfiguration(http: KubeHttp, name: string): Promise<JsonObject | undefined> {
  const response = await http.request('GET', `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${encodeURIComponent(name)}`);
  if (response.status === 404) return undefined;
  if (response.status !== 200) throw new ApiError(`GET MutatingWebhookConfiguration ${name}`, response.status);
  return asObject(response.json());
}

export class ApiError extends OperationalError {
  override readonly name = 'ApiError';
  readonly status: number;

  constructor(what: string, status: number) {
    super(`${what}: HTTP ${status}`);
    this.status = status;
  }
}
