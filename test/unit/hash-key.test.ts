// The hash key of checksum/secret (src/secrets/hash-key.ts) on a fake of its API: created once, adopted by
// every replica, never overwritten, never logged; replicas starting together agree on one key; the API
// server being away only delays it; a deleted Secret comes back with the key in use.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { HashKeyApi } from '../../src/kube/hash-key-api.ts';
import { ApiError } from '../../src/kube/http.ts';
import type { SecretName } from '../../src/kube/secrets.ts';
import { HASH_KEY_BYTES, HASH_KEY_FIELD, HASH_KEY_SECRET_NAME, HashKeyLoader, loadOrCreateHashKey } from '../../src/secrets/hash-key.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import type { JsonObject } from '../../src/util/json.ts';

const NAMESPACE = 'config-checksum';
const NAME: SecretName = { namespace: NAMESPACE, name: HASH_KEY_SECRET_NAME };
const FAST = { retryFirstMs: 5, retryMaxMs: 20, pollMs: 10 };

/**
 * Secrets of the webhook's namespace, with the API server's create semantics (409 when the name exists).
 * `gate` holds every GET until released, so several replicas can be made to read before any writes.
 */
class FakeApi implements HashKeyApi {
  readonly secrets = new Map<string, JsonObject>();
  readonly creates: Array<{ created: boolean }> = [];
  gets = 0;
  failuresToAnswer = 0;
  gate: Promise<void> | undefined;

  async getSecret(name: SecretName): Promise<JsonObject | undefined> {
    this.gets++;
    await this.gate;
    if (this.failuresToAnswer > 0) {
      this.failuresToAnswer--;
      throw new ApiError(`GET Secret ${name.namespace}/${name.name}`, 503);
    }
    const stored = this.secrets.get(name.name);
    return stored && structuredClone(stored);
  }

  async createSecret(name: SecretName, body: JsonObject): Promise<boolean> {
    await Promise.resolve();
    const created = !this.secrets.has(name.name);
    if (created) this.secrets.set(name.name, structuredClone(body));
    this.creates.push({ created });
    return created;
  }

  storedKey(): Buffer | undefined {
    const data = this.secrets.get(HASH_KEY_SECRET_NAME)?.['data'] as Record<string, string> | undefined;
    return data && Buffer.from(data[HASH_KEY_FIELD]!, 'base64');
  }

  store(key: Uint8Array | string): void {
    this.secrets.set(HASH_KEY_SECRET_NAME, { metadata: { name: HASH_KEY_SECRET_NAME }, data: { [HASH_KEY_FIELD]: typeof key === 'string' ? key : Buffer.from(key).toString('base64') } });
  }
}

/** Every log line, kept, so a test can check that no key ever reached one. */
class Lines extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
    callback();
  }
  assertNoKey(key: Uint8Array | undefined): void {
    assert.ok(key);
    for (const needle of [Buffer.from(key).toString('base64'), Buffer.from(key).toString('hex'), Buffer.from(key).toString('base64url')]) {
      assert.deepEqual(this.lines.filter((line) => line.includes(needle)), [], 'a log line holds the key');
    }
  }
}

function replica(api: HashKeyApi, fill: number, log = new Lines()): { loader: HashKeyLoader; log: Lines } {
  return { loader: new HashKeyLoader(api, { namespace: NAMESPACE, ...FAST, random: (size) => Buffer.alloc(size, fill) }, createLogger('trace', log)), log };
}

describe('hash key', () => {
  test('no Secret yet: 32 random bytes are created in it (immutable, labelled) and used', async () => {
    const api = new FakeApi();
    const { loader, log } = replica(api, 7);
    assert.equal(loader.current(), undefined);
    loader.start();
    assert.equal(await loader.waitLoaded(1000), true);
    loader.stop();
    assert.deepEqual(Buffer.from(loader.current()!), Buffer.alloc(HASH_KEY_BYTES, 7));
    assert.deepEqual(api.storedKey(), Buffer.alloc(HASH_KEY_BYTES, 7));
    const stored = api.secrets.get(HASH_KEY_SECRET_NAME)!;
    assert.equal(stored['immutable'], true);
    assert.equal(stored['type'], 'Opaque');
    assert.deepEqual((stored['metadata'] as JsonObject)['namespace'], NAMESPACE);
    assert.ok(log.lines.some((line) => line.includes('"msg":"hash key created"')));
    log.assertNoKey(loader.current());
  });

  test('a Secret that holds a key: adopted, nothing written', async () => {
    const api = new FakeApi();
    const existing = Buffer.alloc(HASH_KEY_BYTES, 42);
    api.store(existing);
    const { loader, log } = replica(api, 1);
    loader.start();
    await loader.loaded;
    loader.stop();
    assert.deepEqual(Buffer.from(loader.current()!), existing);
    assert.equal(api.creates.length, 0);
    log.assertNoKey(existing);
  });

  test('replicas starting together (all read "absent" before any writes) agree on one key: one create wins, the others adopt it', async () => {
    const api = new FakeApi();
    let release: () => void = () => {};
    api.gate = new Promise((resolve) => (release = resolve));
    const replicas = [1, 2, 3, 4].map((fill) => replica(api, fill));
    for (const { loader } of replicas) loader.start();
    while (api.gets < replicas.length) await sleep(1);
    api.gate = undefined;
    release();
    await Promise.all(replicas.map(({ loader }) => loader.loaded));
    for (const { loader } of replicas) loader.stop();
    const keys = replicas.map(({ loader }) => Buffer.from(loader.current()!).toString('hex'));
    assert.equal(new Set(keys).size, 1, `replicas hold different keys: ${keys.map((key) => key.slice(0, 4)).join(', ')}`);
    assert.equal(keys[0], api.storedKey()!.toString('hex'));
    assert.equal(api.creates.filter((create) => create.created).length, 1);
    assert.equal(api.creates.filter((create) => !create.created).length, replicas.length - 1, 'every other replica lost the create race (409) and read the winner\'s');
    for (const { log, loader } of replicas) log.assertNoKey(loader.current());
  });

  test('the API server away: retried with backoff, nothing is used meanwhile, loaded once it answers', async () => {
    const api = new FakeApi();
    api.failuresToAnswer = 4;
    const { loader, log } = replica(api, 9);
    loader.start();
    assert.equal(await loader.waitLoaded(1), false);
    assert.equal(loader.current(), undefined);
    assert.equal(await loader.waitLoaded(2000), true);
    loader.stop();
    assert.equal(api.gets, 5);
    assert.equal(log.lines.filter((line) => line.includes('hash key not loaded')).length, 4);
    assert.ok(log.lines.some((line) => line.includes('GET Secret config-checksum/config-checksum-webhook-hash-key: HTTP 503')));
    log.assertNoKey(loader.current());
  });

  for (const [label, stored] of [['too short', Buffer.alloc(16, 3).toString('base64')], ['empty', '']] as const) {
    test(`a Secret whose key is ${label}: never overwritten (a new key rolls every Secret consumer); retried until someone fixes it`, async () => {
      const api = new FakeApi();
      api.store(stored);
      const { loader, log } = replica(api, 5);
      loader.start();
      await sleep(60);
      assert.equal(loader.current(), undefined);
      assert.equal(api.creates.length, 0);
      assert.ok(log.lines.some((line) => line.includes(`has no \\"${HASH_KEY_FIELD}\\" of at least 32 bytes`)), log.lines.join('\n'));
      api.secrets.delete(HASH_KEY_SECRET_NAME);
      assert.equal(await loader.waitLoaded(1000), true);
      loader.stop();
      assert.deepEqual(Buffer.from(loader.current()!), Buffer.alloc(HASH_KEY_BYTES, 5));
    });
  }

  test('a longer key stored by an operator (a restored backup) is used as it is', async () => {
    const api = new FakeApi();
    const restored = Buffer.alloc(64, 8);
    api.store(restored);
    assert.deepEqual(Buffer.from((await loadOrCreateHashKey(api, NAME)).key), restored);
  });

  test('the Secret deleted while the replica runs: created again with the key in use, which stays', async () => {
    const api = new FakeApi();
    const { loader, log } = replica(api, 11);
    loader.start();
    await loader.loaded;
    const inUse = Buffer.from(loader.current()!);
    api.secrets.delete(HASH_KEY_SECRET_NAME);
    while (!api.secrets.has(HASH_KEY_SECRET_NAME)) await sleep(2);
    loader.stop();
    assert.deepEqual(api.storedKey(), inUse);
    assert.deepEqual(Buffer.from(loader.current()!), inUse);
    assert.ok(log.lines.some((line) => line.includes('created it again with the key in use')));
    log.assertNoKey(inUse);
  });

  test('another key in the Secret (recreated by another replica meanwhile): adopted, so replicas converge', async () => {
    const api = new FakeApi();
    const { loader, log } = replica(api, 12);
    loader.start();
    await loader.loaded;
    const other = Buffer.alloc(HASH_KEY_BYTES, 99);
    api.store(other);
    while (Buffer.compare(Buffer.from(loader.current()!), other) !== 0) await sleep(2);
    loader.stop();
    assert.ok(log.lines.some((line) => line.includes('adopting it')));
    log.assertNoKey(other);
    log.assertNoKey(Buffer.alloc(HASH_KEY_BYTES, 12));
  });

  test('stop() ends the retries', async () => {
    const api = new FakeApi();
    api.failuresToAnswer = 1_000;
    const { loader } = replica(api, 1);
    loader.start();
    await sleep(30);
    loader.stop();
    const gets = api.gets;
    await sleep(60);
    assert.ok(api.gets <= gets + 1, `${api.gets - gets} reads after stop()`);
  });

  test('a Secret that keeps disappearing between read and create is an error, not a loop', async () => {
    const api: HashKeyApi = { getSecret: async () => undefined, createSecret: async () => false };
    await assert.rejects(loadOrCreateHashKey(api, NAME), /was missing and then already created 3 times/);
  });
});
