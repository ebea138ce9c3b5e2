// What the watcher remembers of a ConfigMap: a short digest per key, never a value. Enough to tell a data
// change from a metadata-only one, and which keys changed, so that a workload consuming other keys of the
// same ConfigMap is left alone.
//
// Packed, because the watcher holds every ConfigMap of the cluster (10,000 and more): the key names are one
// array shared by every ConfigMap with the same keys (most ConfigMaps of an application have the same
// shape), and the digests of one ConfigMap are one string of fixed-width pieces. About 150 bytes per
// ConfigMap of 5 keys, against about 1 KiB as a Map of strings.

import { createHash, createHmac } from 'node:crypto';
import { stringEntries, type JsonObject } from '../util/json.ts';

/** The digests of one ConfigMap. */
export interface KeyDigests {
  /** 'd:<key>' for data, 'b:<key>' for binaryData (the two maps stay distinct), sorted; shared, never changed. */
  readonly keys: readonly string[];
  /** DIGEST_CHARS characters per key, in the order of `keys`. */
  readonly digests: string;
}

// 72 bits of SHA-256 (12 base64 characters): an unnoticed change needs a collision of those, about one in
// 4.7e21 per change; the checksum the webhook writes is computed from the values, never from these.
const DIGEST_CHARS = 12;
// Distinct key sets shared at most; past this (only a cluster of ConfigMaps that all differ in their keys
// reaches it) a ConfigMap keeps its own array, which costs what sharing would have saved, nothing more.
const MAX_SHARED_KEY_SETS = 50_000;

/** The shared key arrays of one watcher. */
export class KeySets {
  readonly #shared = new Map<string, readonly string[]>();

  share(keys: string[]): readonly string[] {
    const signature = keys.join('\u0000');
    const existing = this.#shared.get(signature);
    if (existing) return existing;
    if (this.#shared.size < MAX_SHARED_KEY_SETS) this.#shared.set(signature, keys);
    return keys;
  }

  get size(): number {
    return this.#shared.size;
  }
}

/**
 * The digests of a ConfigMap, or of a Secret (`data` only) with `hmacKey`: a Secret's digests are keyed
 * (HMAC-SHA256 with a key that never leaves the process), so even the watcher's memory holds no plain hash
 * of a low-entropy secret.
 */
export function digestConfigMap(configMap: JsonObject, keySets: KeySets, hmacKey?: Uint8Array): KeyDigests {
  const entries: Array<[string, string]> = [];
  for (const [key, value] of stringEntries(configMap['data'])) entries.push([`d:${key}`, value]);
  for (const [key, value] of stringEntries(configMap['binaryData'])) entries.push([`b:${key}`, value]);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return { keys: keySets.share(entries.map(([key]) => key)), digests: entries.map(([, value]) => digest(value, hmacKey)).join('') };
}

/** Keys (without the d:/b: prefix) whose value was added, removed or changed. */
export function changedKeys(before: KeyDigests, after: KeyDigests): Set<string> {
  const changed = new Set<string>();
  if (before.keys === after.keys) {
    // The common case, same keys: compare piece by piece, no map built.
    if (before.digests === after.digests) return changed;
    after.keys.forEach((key, index) => {
      if (pieceAt(before, index) !== pieceAt(after, index)) changed.add(key.slice(2));
    });
    return changed;
  }
  const old = new Map(before.keys.map((key, index) => [key, pieceAt(before, index)]));
  after.keys.forEach((key, index) => {
    if (old.get(key) !== pieceAt(after, index)) changed.add(key.slice(2));
    old.delete(key);
  });
  for (const key of old.keys()) changed.add(key.slice(2));
  return changed;
}

function pieceAt(digests: KeyDigests, index: number): string {
  return digests.digests.slice(index * DIGEST_CHARS, (index + 1) * DIGEST_CHARS);
}

function digest(value: string, hmacKey: Uint8Array | undefined): string {
  const hash = hmacKey ? createHmac('sha256', hmacKey) : createHash('sha256');
  return hash.update(value).digest('base64').slice(0, DIGEST_CHARS);
}
