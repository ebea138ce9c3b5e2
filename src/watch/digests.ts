// What the watcher remembers of a ConfigMap: one SHA-256 per key, never a value. Enough to tell a data
// change from a metadata-only one, and which keys changed, so that a workload consuming other keys of the
// same ConfigMap is left alone.

import { createHash } from 'node:crypto';
import { stringEntries, type JsonObject } from '../util/json.ts';

/** 'd:<key>' for data, 'b:<key>' for binaryData (the two maps stay distinct), to a digest of the value. */
export type KeyDigests = ReadonlyMap<string, string>;

export function digestConfigMap(configMap: JsonObject): KeyDigests {
  const digests = new Map<string, string>();
  for (const [key, value] of stringEntries(configMap['data'])) digests.set(`d:${key}`, digest(value));
  for (const [key, value] of stringEntries(configMap['binaryData'])) digests.set(`b:${key}`, digest(value));
  return digests;
}

/** Keys (without the d:/b: prefix) whose value was added, removed or changed. */
export function changedKeys(before: KeyDigests, after: KeyDigests): Set<string> {
  const changed = new Set<string>();
  for (const [key, value] of after) if (before.get(key) !== value) changed.add(key.slice(2));
  for (const key of before.keys()) if (!after.has(key)) changed.add(key.slice(2));
  return changed;
}

function digest(value: string): string {
  // 16 bytes of SHA-256 are plenty to detect change and keep 10k ConfigMaps' digests small.
  return createHash('sha256').update(value).digest('base64').slice(0, 22);
}
