// Targeted RFC 6902 operations built against the raw object, never by diffing a re-serialised model
// (that drops unknown fields and emits removals nobody asked for). An `add` on a missing parent fails in
// the API server with a 500 that failurePolicy cannot soften, so every missing or non-object ancestor is
// created here as a whole map.

import { asObject, stringEntries, type JsonObject } from '../util/json.ts';

export interface PatchOperation {
  readonly op: 'add';
  readonly path: string;
  readonly value: unknown;
}

/** RFC 6901: '~' becomes '~0' first, then '/' becomes '~1'. */
export function escapePointerSegment(segment: string): string {
  return segment.replaceAll('~', '~0').replaceAll('/', '~1');
}

/**
 * Sets `annotations[key] = value` below the metadata found at `metadataPath` (an array of field names
 * from the object root, e.g. ['spec', 'template', 'metadata']). Only the deepest missing ancestor is added.
 */
export function setAnnotation(object: unknown, metadataPath: readonly string[], key: string, value: string): PatchOperation {
  return setAnnotations(object, metadataPath, [[key, value]])[0]!;
}

/**
 * Sets several annotations of one metadata: one `add` per key when the annotations map exists; otherwise
 * one `add` that creates the deepest missing ancestor with every key in it (a second such `add` would
 * replace the map the first one created).
 */
export function setAnnotations(object: unknown, metadataPath: readonly string[], entries: ReadonlyArray<readonly [string, string]>): PatchOperation[] {
  const path = [...metadataPath, 'annotations'];
  let node: JsonObject | undefined = asObject(object);
  for (let depth = 0; depth < path.length; depth++) {
    const segment = path[depth]!;
    const child: JsonObject | undefined = asObject(node?.[segment]);
    if (!child) {
      // Build { path[depth+1]: { ... { key: value } } } and add it at path[0..depth]. fromEntries defines
      // own properties, so even `__proto__` is an annotation like any other.
      let missing: unknown = Object.fromEntries(entries);
      for (let inner = path.length - 1; inner > depth; inner--) missing = { [path[inner]!]: missing };
      return [{ op: 'add', path: pointer(path.slice(0, depth + 1)), value: missing }];
    }
    node = child;
  }
  // `add` on an existing member replaces it, so this is idempotent.
  return entries.map(([key, value]) => ({ op: 'add', path: pointer([...path, key]), value }));
}

function pointer(segments: readonly string[]): string {
  return segments.map((segment) => `/${escapePointerSegment(segment)}`).join('');
}

export const TEMPLATE_METADATA = ['spec', 'template', 'metadata'] as const;
export const WORKLOAD_METADATA = ['metadata'] as const;

/** The current value of an annotation at `metadataPath`, if it is a string. */
export function readAnnotation(object: unknown, metadataPath: readonly string[], key: string): string | undefined {
  let node: JsonObject | undefined = asObject(object);
  for (const segment of [...metadataPath, 'annotations']) node = asObject(node?.[segment]);
  if (!node || !Object.hasOwn(node, key)) return undefined;
  const value = node[key];
  return typeof value === 'string' ? value : undefined;
}

// The API server refuses an object whose annotations (keys and values, in bytes) exceed this in total, at
// validation, after the webhook: failurePolicy cannot soften that, so the webhook must never cross it.
export const TOTAL_ANNOTATION_BYTES = 256 * 1024;

/** Whether setting `annotations[key] = value` at `metadataPath` keeps that map within TOTAL_ANNOTATION_BYTES. */
export function fitsAnnotations(object: unknown, metadataPath: readonly string[], key: string, value: string): boolean {
  return fitsAllAnnotations(object, metadataPath, [[key, value]]);
}

/** Whether setting every one of `entries` at `metadataPath` keeps that map within TOTAL_ANNOTATION_BYTES. */
export function fitsAllAnnotations(object: unknown, metadataPath: readonly string[], entries: ReadonlyArray<readonly [string, string]>): boolean {
  let node: JsonObject | undefined = asObject(object);
  for (const segment of [...metadataPath, 'annotations']) node = asObject(node?.[segment]);
  const setting = new Set(entries.map(([key]) => key));
  let total = 0;
  for (const [key, value] of entries) total += Buffer.byteLength(key) + Buffer.byteLength(value);
  for (const [name, existing] of stringEntries(node)) if (!setting.has(name)) total += Buffer.byteLength(name) + Buffer.byteLength(existing);
  return total <= TOTAL_ANNOTATION_BYTES;
}
