// coordination.k8s.io/v1 Lease calls of the leader election (watch/leader.ts). Writes carry the Lease's
// resourceVersion, so of two candidates only one can win (optimistic concurrency).

import { asObject, type JsonObject } from '../util/json.ts';
import { ApiError, type KubeHttp } from './http.ts';

export interface LeaseName {
  readonly namespace: string;
  readonly name: string;
}

function leasesPath(lease: LeaseName): string {
  return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(lease.namespace)}/leases`;
}

function leasePath(lease: LeaseName): string {
  return `${leasesPath(lease)}/${encodeURIComponent(lease.name)}`;
}

/** The Lease as stored, or undefined when there is none. */
export async function getLease(http: KubeHttp, lease: LeaseName, timeoutMs?: number): Promise<JsonObject | undefined> {
  const response = await http.request('GET', leasePath(lease), timeoutMs === undefined ? {} : { timeoutMs });
  if (response.status === 404) return undefined;
  if (response.status !== 200) throw new ApiError(`GET Lease ${lease.namespace}/${lease.name}`, response.status);
  return asObject(response.json()) ?? {};
}

/** Creates the Lease with `spec`; false when another candidate created it first. */
export async function createLease(http: KubeHttp, lease: LeaseName, spec: JsonObject, timeoutMs?: number): Promise<boolean> {
  const body = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: lease.name, namespace: lease.namespace }, spec };
  const response = await http.request('POST', leasesPath(lease), { body, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
  if (response.status === 201) return true;
  if (response.status === 409) return false;
  throw new ApiError(`create Lease ${lease.namespace}/${lease.name}`, response.status);
}

/** Replaces the Lease as read (its resourceVersion included); false when someone wrote it meanwhile. */
export async function updateLease(http: KubeHttp, lease: LeaseName, object: JsonObject, timeoutMs?: number): Promise<boolean> {
  const response = await http.request('PUT', leasePath(lease), { body: object, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
  if (response.status === 200) return true;
  if (response.status === 409) return false;
  throw new ApiError(`update Lease ${lease.namespace}/${lease.name}`, response.status);
}
