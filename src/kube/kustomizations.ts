// Flux Kustomizations, read by the watcher's GitOps-aware coalescing (watch/gitops.ts): `get` only, on
// the objects whose names the labels of a changed ConfigMap and of its workload give. The RBAC for it is
// one rule, get/list/watch on kustomizations.kustomize.toolkit.fluxcd.io (manifests/base/rbac.yaml).

import { asObject, type JsonObject } from '../util/json.ts';
import { ApiError, type KubeHttp } from './http.ts';

const KUSTOMIZATIONS = '/apis/kustomize.toolkit.fluxcd.io/v1/namespaces';

/**
 * The Kustomization, or undefined when there is none: not found, or the Flux API not installed (the API
 * server answers 404 for an unknown group). Anything else throws, 403 included (an install without the rule).
 */
export async function getKustomization(http: KubeHttp, namespace: string, name: string): Promise<JsonObject | undefined> {
  const response = await http.request('GET', `${KUSTOMIZATIONS}/${encodeURIComponent(namespace)}/kustomizations/${encodeURIComponent(name)}`);
  if (response.status === 404) return undefined;
  if (response.status !== 200) throw new ApiError(`GET Kustomization ${namespace}/${name}`, response.status);
  return asObject(response.json());
}
