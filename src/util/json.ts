// Narrowing helpers for raw JSON. Mutating webhooks run before schema validation, so every field of an
// incoming object may be missing or of the wrong type; these helpers turn "wrong type" into "absent".

export type JsonObject = { readonly [key: string]: unknown };

export function asObject(value: unknown): JsonObject | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonObject) : undefined;
}

export function asArray(value: unknown): readonly unknown[] {
  return Array.isArray(value) ? value : [];
}

export function asString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** Own enumerable string-valued entries of a JSON map; ignores non-string values. */
export function stringEntries(value: unknown): Array<[string, string]> {
  const map = asObject(value);
  if (!map) return [];
  const entries: Array<[string, string]> = [];
  for (const key of Object.keys(map)) {
    const entry = map[key];
    if (typeof entry === 'string') entries.push([key, entry]);
  }
  return entries;
}

/** Own property lookup that never walks the prototype chain (keys come from untrusted input). */
export function ownString(map: JsonObject | undefined, key: string): string | undefined {
  if (!map || !Object.hasOwn(map, key)) return undefined;
  return asString(map[key]);
}
