// The API calls of the self-managed certificates (tls/self-managed.ts), as one interface: their Secret and
// the caBundle of the webhook's own configuration. Tests drive the bootstrap race on a fake of it.

import type { JsonObject } from '../util/json.ts';
import type { KubeHttp } from './http.ts';
import { getSecret, writeSecret, type SecretName } from './secrets.ts';
import { getWebhookConfiguration, patchCaBundles } from './webhook-configuration.ts';

export interface CertificatesApi {
  getSecret(name: SecretName): Promise<JsonObject | undefined>;
  /** Creates, or replaces under the body's resourceVersion when `replace`; false when another writer won. */
  writeSecret(name: SecretName, body: JsonObject, replace: boolean): Promise<boolean>;
  getWebhookConfiguration(name: string): Promise<JsonObject | undefined>;
  patchCaBundles(read: { readonly name: string; readonly resourceVersion: string | undefined }, indexes: readonly number[], encodedBundle: string): Promise<void>;
}

export function certificatesApi(http: KubeHttp): CertificatesApi {
  return {
    getSecret: (name) => getSecret(http, name),
    writeSecret: (name, body, replace) => writeSecret(http, name, body, replace),
    getWebhookConfiguration: (name) => getWebhookConfiguration(http, name),
    patchCaBundles: (read, indexes, encodedBundle) => patchCaBundles(http, read, indexes, encodedBundle),
  };
}
