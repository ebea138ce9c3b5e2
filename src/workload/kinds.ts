// The workloads this product rolls (apps/v1 Deployment, StatefulSet, DaemonSet), their REST resources,
// and how to find their parts in a raw object. Both paths and the API calls read these from here.

import { asObject, asString, type JsonObject } from '../util/json.ts';

export const WORKLOAD_RESOURCES = {
  Deployment: 'deployments',
  StatefulSet: 'statefulsets',
  DaemonSet: 'daemonsets',
} as const;

export type WorkloadKind = keyof typeof WORKLOAD_RESOURCES;
export const WORKLOAD_KINDS: readonly WorkloadKind[] = Object.keys(WORKLOAD_RESOURCES) as WorkloadKind[];

export function isWorkloadKind(kind: string): kind is WorkloadKind {
  return Object.hasOwn(WORKLOAD_RESOURCES, kind);
}

export interface WorkloadRef {
  readonly kind: WorkloadKind;
  readonly namespace: string;
  readonly name: string;
}

export function workloadKey(ref: WorkloadRef): string {
  return `${ref.kind}/${ref.namespace}/${ref.name}`;
}

/** The pod template and annotations of an apps/v1 workload object, or undefined when it has no template. */
export function workloadParts(workload: unknown): { template: JsonObject; annotations: JsonObject | undefined } | undefined {
  const object = asObject(workload);
  const template = asObject(asObject(object?.['spec'])?.['template']);
  if (!template) return undefined;
  return { template, annotations: asObject(asObject(object?.['metadata'])?.['annotations']) };
}

/** metadata.<field> of a raw object when it is a string (name, namespace, uid, resourceVersion). */
export function metadataString(object: unknown, field: 'name' | 'namespace' | 'uid' | 'resourceVersion'): string | undefined {
  return asString(asObject(asObject(object)?.['metadata'])?.[field]);
}
