// The webhook's own Secrets (the self-managed certificate, tls/self-managed.ts; the hash key of Secrets,
// secrets/hash-key.ts): read, and written under optimistic concurrency so replicas starting together
// agree on one.

import { asObject, type JsonObject } from '../util/json.ts';
import { ApiError, type KubeHttp } from './http.ts';

function secretsPath(namespace: string, name = ''): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets${name ? `/${encodeURIComponent(name)}` : ''}`;
}

export interface SecretName {
  readonly namespace: string;
  readonly name: string;
}

export async function getSecret(http: KubeHttp, { namespace, name }: SecretName): Promise<JsonObject | undefined> {
  const response = await http.request('GET', secretsPath(namespace, name));
  if (response.status === 404) return undefined;
  if (response.status !== 200) throw new ApiError(`GET Secret ${namespace}/${name}`, response.status);
  return asObject(response.json());
}

/**
 * Creates the Secret, or replaces it when `replace` (the body then carries the resourceVersion read);
 * false when another writer won the race.
 */
export async function writeSecret(http: KubeHttp, { namespace, name }: SecretName, body: JsonObject, replace: boolean): Promise<boolean> {
  const response = replace
    ? await http.request('PUT', secretsPath(namespace, name), { body })
    : await http.request('POST', secretsPath(namespace), { body });
  if (response.status === 200 || response.status === 201) return true;
  if (response.status === 409) return false;
  throw new ApiError(`${replace ? 'update' : 'create'} Secret ${namespace}/${name}`, response.status);
}
