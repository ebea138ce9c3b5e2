// The product's own MutatingWebhookConfiguration: read for the scope (the watcher) and the published
// caBundle (self-managed certificates), patched for the caBundle. RBAC names it by name.

import { asObject, type JsonObject } from '../util/json.ts';
import { ApiError, type KubeHttp } from './http.ts';

function configurationPath(name: string): string {
  return `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${encodeURIComponent(name)}`;
}

export async function getWebhookConfiguration(http: KubeHttp, name: string): Promise<JsonObject | undefined> {
  const response = await http.request('GET', configurationPath(name));
  if (response.status === 404) return undefined;
  if (response.status !== 200) throw new ApiError(`GET MutatingWebhookConfiguration ${name}`, response.status);
  return asObject(response.json());
}

/** Sets webhooks[index].clientConfig.caBundle for each index, only if the object is still at the resourceVersion read. */
export async function patchCaBundles(http: KubeHttp, read: { readonly name: string; readonly resourceVersion: string | undefined }, indexes: readonly number[], encodedBundle: string): Promise<void> {
  const { name, resourceVersion } = read;
  const operations = indexes.map((index) => ({ op: 'add', path: `/webhooks/${index}/clientConfig/caBundle`, value: encodedBundle }));
  const response = await http.request('PATCH', configurationPath(name), {
    body: [{ op: 'test', path: '/metadata/resourceVersion', value: resourceVersion }, ...operations],
    contentType: 'application/json-patch+json',
  });
  if (response.status !== 200) throw new ApiError(`patch caBundle of MutatingWebhookConfiguration ${name}`, response.status);
}
