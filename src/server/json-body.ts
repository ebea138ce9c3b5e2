// Parsing an untrusted AdmissionReview body. The fast path is V8's JSON.parse without a reviver: a reviver
// calls back into JavaScript for every value and made parsing ~3x slower (172 against 58 µs on a 9.9 KB
// review; the largest single cost of an admission, in the benchmarks' analysis.md). The nesting check is done
// around it instead.

// Real reviews are a few dozen levels deep (a pod template's affinity terms are the deepest part); a body
// nested far deeper is not a Kubernetes object, and code that walks it (or a log serializer) could run
// out of stack.
export const MAX_JSON_DEPTH = 1_000;

/**
 * Parses JSON text, refusing nesting deeper than MAX_JSON_DEPTH (SyntaxError). A "__proto__" key is data:
 * JSON.parse defines it as an own property and never calls the prototype setter, and nothing in the
 * product merges an untrusted map into another object (maps are read with Object.keys/Object.hasOwn
 * and copied into Maps or object literals with computed keys, which define properties too). The API
 * server stores such keys (say, in CSI volumeAttributes), so refusing them would leave a valid workload
 * without a checksum forever.
 */
export function parseJsonBody(text: string): unknown {
  const depth = nestingDepth(text, MAX_JSON_DEPTH);
  if (depth > MAX_JSON_DEPTH) throw new SyntaxError(`nested deeper than ${MAX_JSON_DEPTH} levels`);
  return JSON.parse(text);
}

/** Deepest nesting of [ and { outside strings, counting stops once past `limit`. Invalid JSON is JSON.parse's job. */
// eslint-disable-next-line complexity -- one pass over every character of every review body, on the hot path: kept as one loop with no calls (the benchmarks' analysis.md measured the parse cost).
export function nestingDepth(text: string, limit: number): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // Skip the string: its brackets are text. A backslash escapes the next character, whatever it is.
      for (i++; i < text.length; i++) {
        const s = text.charCodeAt(i);
        if (s === 0x5c) i++;
        else if (s === 0x22) break;
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}
