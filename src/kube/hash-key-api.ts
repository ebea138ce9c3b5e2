// The API calls of the Secrets hash key (secrets/hash-key.ts), as one interface: read the webhook's own
// key Secret, and create it. Tests drive the bootstrap race of several replicas on a fake of it.

import type { JsonObject } from '../util/json.ts';
import type { KubeHttp } from './http.ts';
import { getSecret, writeSecret, type SecretName } from './secrets.ts';

export interface HashKeyApi {
  /** The Secret, or undefined when it does not exist (404). Throws on any other failure. */
  getSecret(name: SecretName): Promise<JsonObject | undefined>;
  /** Creates the Secret (POST, with the product's field manager); false when it exists already (409). */
  createSecret(name: SecretName, body: JsonObject): Promise<boolean>;
}

export function hashKeyApi(http: KubeHttp): HashKeyApi {
  return {
    getSecret: (name) => getSecret(http, name),
    createSecret: (name, body) => writeSecret(http, name, body, false),
  };
}
