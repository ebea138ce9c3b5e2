// Applying what mutate() answers, and checking that the answer changed nothing but the two managed annotations.

import assert from 'node:assert/strict';
import jsonpatch from 'fast-json-patch';
import { complete } from '../../src/admission/review.ts';
import { readAnnotation, TEMPLATE_METADATA, WORKLOAD_METADATA } from '../../src/workload/annotations.ts';
import type { Mutation } from '../../src/admission/mutate.ts';
import { CONTRACT } from '../../src/config.ts';
import { decodePatch } from './fakes.ts';

const { applyPatch } = jsonpatch;

/** The object as the API server would persist it: the encoded patch of the complete() answer, applied (validated). */
export function applyAnswer(original: unknown, mutation: Mutation, uid = 'uid-1'): unknown {
  const response = complete(uid, mutation.result).response;
  assert.equal(response.uid, uid);
  assert.equal(response.allowed, true);
  assert.equal('patchType' in response, 'patch' in response, 'patchType only together with patch');
  if (response.patch === undefined) return original;
  assert.equal(response.patchType, 'JSONPatch');
  const operations = decodePatch(response.patch) as jsonpatch.Operation[];
  assert.ok(operations.length > 0, 'an empty patch must be omitted');
  return applyPatch(original, operations, true, false).newDocument;
}

/** A copy of `object` with annotations[key] = value below `metadataPath`, creating maps where absent. */
export function withAnnotation(object: unknown, metadataPath: readonly string[], key: string, value: string): unknown {
  const copy = structuredClone(object) as Record<string, unknown>;
  let node: Record<string, unknown> = copy;
  for (const segment of [...metadataPath, 'annotations']) {
    const child = node[segment];
    if (typeof child !== 'object' || child === null || Array.isArray(child)) {
      Object.defineProperty(node, segment, { value: {}, enumerable: true, writable: true, configurable: true });
    }
    node = node[segment] as Record<string, unknown>;
  }
  Object.defineProperty(node, key, { value, enumerable: true, writable: true, configurable: true });
  return copy;
}

export function managedAnnotations(checksumAnnotation: string): ReadonlyArray<readonly [readonly string[], string]> {
  return [
    [TEMPLATE_METADATA, checksumAnnotation],
    [WORKLOAD_METADATA, CONTRACT.sourcesAnnotation],
  ];
}

/**
 * Asserts `after` equals `before` except for the checksum annotation of the pod template and the sources
 * annotation of the workload, and that neither was removed. Returns the managed values after the patch.
 */
export function assertOnlyManagedChanged(before: unknown, after: unknown, checksumAnnotation: string): { checksum: string | undefined; sources: string | undefined } {
  let expected = before;
  const values: Array<string | undefined> = [];
  for (const [path, key] of managedAnnotations(checksumAnnotation)) {
    const was = readAnnotation(before, path, key);
    const now = readAnnotation(after, path, key);
    if (was !== undefined) assert.notEqual(now, undefined, `${[...path, key].join('.')} must never be removed`);
    if (now !== undefined && now !== was) expected = withAnnotation(expected, path, key, now);
    values.push(now);
  }
  assert.deepEqual(after, expected);
  return { checksum: values[0], sources: values[1] };
}
