// The API calls the watcher makes, as one interface: the watcher depends on this, not on HTTP, so its
// tests drive it with a fake (the unit suite's watch/watcher.test.ts) the way controller-runtime's fake client
// drives a Reconciler.

import type { PatchOperation } from '../workload/annotations.ts';
import type { WorkloadRef } from '../workload/kinds.ts';
import type { JsonObject } from '../util/json.ts';
import type { KubeHttp } from './http.ts';
import { getWebhookConfiguration } from './webhook-configuration.ts';
import { getKustomization } from './kustomizations.ts';
import { getWorkload, recordEvent, requestRollout, type EventSpec, type RolloutRequest } from './workloads.ts';

export interface WatcherApi {
  getWorkload(ref: WorkloadRef): Promise<JsonObject | undefined>;
  requestRollout(ref: WorkloadRef, resourceVersion: string, request: PatchOperation): Promise<RolloutRequest>;
  recordEvent(ref: WorkloadRef, uid: string, event: EventSpec): Promise<void>;
  getWebhookConfiguration(name: string): Promise<JsonObject | undefined>;
  /** A Flux Kustomization; undefined when not found or when the Flux API is absent. */
  getKustomization(namespace: string, name: string): Promise<JsonObject | undefined>;
}

export function watcherApi(http: KubeHttp): WatcherApi {
  return {
    getWorkload: (ref) => getWorkload(http, ref),
    requestRollout: (ref, resourceVersion, request) => requestRollout(http, ref, resourceVersion, request),
    recordEvent: (ref, uid, event) => recordEvent(http, ref, uid, event),
    getWebhookConfiguration: (name) => getWebhookConfiguration(http, name),
    getKustomization: (namespace, name) => getKustomization(http, namespace, name),
  };
}
