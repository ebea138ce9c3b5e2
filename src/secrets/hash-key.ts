// The HMAC key of checksum/secret (DESIGN section 4): 32 random bytes, created once per install in a Secret
// of the webhook's own namespace, and never changed by the product. It lives apart from the TLS Secret:
// that one is rewritten at every rotation and deleted to force a new certificate, and a new hash key
// changes the checksum/secret of every workload that consumes a Secret (each then rolls at its next write).
//
// Replicas starting together agree through the API server: each GETs the Secret; the one that finds none
// creates it, and a replica that loses the create race (409) reads the winner's key and adopts it. After
// that every replica re-reads the Secret now and then: a key stored there that differs from the one in
// use (another replica recreated it while this one could not see it) is adopted, so replicas never answer
// with two keys for long; and a Secret deleted while replicas run is created again with the key in use,
// so deleting it does not change the key while any replica is up. The key is never logged.

import { randomBytes } from 'node:crypto';
import type { HashKeyApi } from '../kube/hash-key-api.ts';
import type { SecretName } from '../kube/secrets.ts';
import { loggableError, type Logger } from '../telemetry/logger.ts';
import { OperationalError } from '../util/errors.ts';
import { asObject, asString, type JsonObject } from '../util/json.ts';

export const HASH_KEY_SECRET_NAME = 'config-checksum-webhook-hash-key';
export const HASH_KEY_FIELD = 'hmac-key';
/** As long as SHA-256's output: a longer HMAC key adds nothing, a shorter one weakens it. */
export const HASH_KEY_BYTES = 32;

export interface HashKeyOptions {
  readonly namespace: string;
  /** Backoff of a load that failed: the first wait, doubling up to the last (each with +-50% jitter). */
  readonly retryFirstMs?: number;
  readonly retryMaxMs?: number;
  /** How often a replica with a key re-reads the Secret. */
  readonly pollMs?: number;
  /** Where a new key comes from: crypto.randomBytes unless a test says otherwise. */
  readonly random?: (size: number) => Uint8Array;
}

// 0.5 s doubling to 30 s: an API server that comes back is noticed within half a minute, and a
// misconfigured one (RBAC refusing the Secret) costs one warning line per half minute.
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 30_000;
// As often as the certificate Secret is re-read by default: two replicas holding different keys (only
// possible after the Secret was deleted and recreated) answer alike again within this time.
const POLL_MS = 30_000;
// A Secret created and deleted again between our GET and our POST this many times in a row is a fight
// with something else, not a race between replicas.
const CREATE_RACES = 3;

/** Loads the key at start (creating it when the install has none) and keeps it in line with the Secret. */
export class HashKeyLoader {
  readonly #api: HashKeyApi;
  readonly #name: SecretName;
  readonly #options: Required<Omit<HashKeyOptions, 'namespace'>>;
  readonly #log: Logger;
  #key: Uint8Array | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #markLoaded: () => void = () => {};
  /** Resolves once a key is in use. */
  readonly loaded: Promise<void>;

  constructor(api: HashKeyApi, options: HashKeyOptions, logger: Logger) {
    this.#api = api;
    this.#name = { namespace: options.namespace, name: HASH_KEY_SECRET_NAME };
    this.#options = {
      retryFirstMs: options.retryFirstMs ?? RETRY_FIRST_MS,
      retryMaxMs: options.retryMaxMs ?? RETRY_MAX_MS,
      pollMs: options.pollMs ?? POLL_MS,
      random: options.random ?? randomBytes,
    };
    this.#log = logger.child({ component: 'hash-key' });
    this.loaded = new Promise((resolve) => (this.#markLoaded = resolve));
  }

  /** The key in use; undefined until it is loaded. */
  current(): Uint8Array | undefined {
    return this.#key;
  }

  /** Starts loading in the background; a failure is logged and retried with backoff until it loads or stop(). */
  start(): void {
    this.#attempt(1);
  }

  /** True once the key is loaded, false when `ms` pass first (loading goes on). */
  async waitLoaded(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([this.loaded.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #attempt(attempt: number): void {
    loadOrCreateHashKey(this.#api, this.#name, this.#options.random).then(
      ({ key, created }) => {
        if (this.#stopped) return;
        this.#key = key;
        this.#log.info({ secret: this.#name.name, created, attempts: attempt }, created ? 'hash key created' : 'hash key loaded');
        this.#markLoaded();
        this.#schedule(() => this.#check());
      },
      (error: unknown) => {
        this.#log.warn({ secret: this.#name.name, attempt, err: loggableError(error) }, 'hash key not loaded; workloads that consume Secrets are left unchanged until it is; retrying');
        const delay = Math.min(this.#options.retryMaxMs, this.#options.retryFirstMs * 2 ** Math.min(attempt - 1, 20)) * (0.5 + Math.random());
        this.#schedule(() => this.#attempt(attempt + 1), delay);
      },
    );
  }

  #schedule(task: () => void, ms = this.#options.pollMs): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(task, ms);
    // The key's upkeep alone must not keep a process alive that is otherwise done.
    this.#timer.unref();
  }

  /** One re-read of the Secret: adopt the key stored there when it differs; recreate a deleted Secret. */
  #check(): void {
    this.#recheck()
      .catch((error: unknown) => this.#log.warn({ secret: this.#name.name, err: loggableError(error) }, 'hash key Secret not re-read; keeping the key in use'))
      .finally(() => this.#schedule(() => this.#check()));
  }

  async #recheck(): Promise<void> {
    const inUse = this.#key!;
    const stored = await this.#api.getSecret(this.#name);
    if (this.#stopped) return;
    if (!stored) {
      const created = await this.#api.createSecret(this.#name, keySecret(this.#name, inUse));
      // Lost to another replica: its key is read, and adopted, at the next re-read.
      if (created) this.#log.warn({ secret: this.#name.name }, 'hash key Secret was deleted; created it again with the key in use');
      return;
    }
    const key = storedKey(stored, this.#name);
    if (Buffer.compare(key, inUse) === 0) return;
    this.#key = key;
    this.#log.warn({ secret: this.#name.name }, 'hash key Secret holds another key than the one in use; adopting it (workloads that consume Secrets roll once at their next write)');
  }
}

/**
 * One load: the key stored in the Secret, or a new one stored there by creating the Secret; when another
 * replica creates it between our GET and our POST (409), theirs. Throws on an API error and on a Secret
 * without a usable key, which is never overwritten (a new key changes every checksum/secret).
 */
export async function loadOrCreateHashKey(api: HashKeyApi, name: SecretName, random: (size: number) => Uint8Array = randomBytes): Promise<{ key: Uint8Array; created: boolean }> {
  for (let race = 0; race < CREATE_RACES; race++) {
    const stored = await api.getSecret(name);
    if (stored) return { key: storedKey(stored, name), created: false };
    const key = Uint8Array.from(random(HASH_KEY_BYTES));
    if (await api.createSecret(name, keySecret(name, key))) return { key, created: true };
  }
  throw new OperationalError(`Secret ${name.namespace}/${name.name} was missing and then already created ${CREATE_RACES} times in a row`);
}

/** The key in a Secret's data, checked to be long enough; the message names the Secret, never its content. */
function storedKey(secret: JsonObject, name: SecretName): Uint8Array {
  const encoded = asString(asObject(secret['data'])?.[HASH_KEY_FIELD]);
  const key = encoded === undefined ? undefined : Buffer.from(encoded, 'base64');
  if (!key || key.length < HASH_KEY_BYTES) {
    throw new OperationalError(`Secret ${name.namespace}/${name.name} has no "${HASH_KEY_FIELD}" of at least ${HASH_KEY_BYTES} bytes (base64); left as it is: delete it to have a new key created`);
  }
  return key;
}

/**
 * The Secret that stores `key`. Immutable: a key edited in place would change every checksum/secret, so
 * the API server refuses edits; deleting it is the one way to a new key, and says what it does.
 */
function keySecret(name: SecretName, key: Uint8Array): JsonObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    immutable: true,
    metadata: {
      name: name.name,
      namespace: name.namespace,
      labels: { 'app.kubernetes.io/name': 'config-checksum-webhook', 'app.kubernetes.io/component': 'hash-key' },
    },
    data: { [HASH_KEY_FIELD]: Buffer.from(key).toString('base64') },
  };
}
