// The canonical v1 encoding and its SHA-256. FROZEN: changing a single byte of what this produces changes
// every checksum in every cluster, which rolls every workload at once. The golden vectors of the unit
// suite (checksum-golden.test.ts) pin it. A v2 must ship beside v1 with a migration that does not roll
// (for example: accept a v1 value as current until the workload's template changes for another reason).
//
// Layout (each field is a netstring, "<decimal byte length>:<bytes>,", so no two inputs encode the same):
//   field("config-checksum.io/v1") field(<number of ConfigMaps>)
//   per ConfigMap, sorted by name (UTF-8 byte order):
//     field(name) field("present" | "absent")
//     if present: field(<n data>) n × (field(key) field(value as UTF-8))
//                 field(<n binaryData>) n × (field(key) field(decoded bytes))
//   keys sorted by UTF-8 byte order within each map.
//
// Secrets (--secrets) go through the same encoding, byte for byte, with "ConfigMap" read as "Secret": the
// count is the number of Secrets, each is named, present or absent, and its consumed keys are listed. A
// Secret's `data` values are base64 like a ConfigMap's binaryData: they are decoded and go into the
// binaryData section, and the data section is empty (0 entries). Secrets are never mixed with ConfigMaps in
// one encoding. Their digest is keyed (keyedChecksumV1, HMAC-SHA256 with the install's own random key),
// because a plain hash of a low-entropy secret, in an annotation anyone who can read the workload can
// read, lets them test guesses offline. The golden vectors pin the keyed output with a fixed test key.

import { createHmac, hash } from 'node:crypto';

export const ENCODING_VERSION_TAG = 'config-checksum.io/v1';

/** The consumed part of one ConfigMap (or Secret), as it goes into the checksum. */
export interface HashedConfigMap {
  readonly name: string;
  /** Undefined when the ConfigMap does not exist (hashed as absent). */
  readonly content?: {
    /** Consumed `data` entries: key to UTF-8 string value. */
    readonly data: ReadonlyMap<string, string>;
    /** Consumed `binaryData` entries: key to decoded bytes. */
    readonly binaryData: ReadonlyMap<string, Uint8Array>;
  };
}

/** SHA-256 over the v1 encoding, as 64 lowercase hex characters (the form Helm's sha256sum gives). */
export function checksumV1(configMaps: readonly HashedConfigMap[]): string {
  return hash('sha256', encodeV1(configMaps), 'hex');
}

/**
 * HMAC-SHA256 keyed with `key` over the same v1 encoding, as 64 lowercase hex characters: the checksum of
 * the Secrets a workload consumes. Without the key, the value says nothing about the Secrets' content.
 */
export function keyedChecksumV1(key: Uint8Array, secrets: readonly HashedConfigMap[]): string {
  return createHmac('sha256', key).update(encodeV1(secrets)).digest('hex');
}

/**
 * The id of a hash key: 8 hex characters of HMAC-SHA256(key, a fixed label). Names the key, tells nothing
 * about it (nor about any Secret), and differs between two random keys but for a 1 in 4 billion chance.
 */
export function hashKeyId(key: Uint8Array): string {
  return createHmac('sha256', key).update('config-checksum-webhook hash key id').digest('hex').slice(0, 8);
}

/**
 * The value of checksum/secret: the id of the key, a dot, then keyedChecksumV1. The id lets the watcher
 * tell a Secret changed while nobody watched (same key: roll) from a new key (not a change of config:
 * each workload takes the new value at its next write).
 */
export function secretChecksumValue(key: Uint8Array, secrets: readonly HashedConfigMap[]): string {
  return `${hashKeyId(key)}.${keyedChecksumV1(key, secrets)}`;
}

/** The key id a checksum/secret value was made with; undefined when the value is not of that form. */
export function secretChecksumKeyId(value: string): string | undefined {
  return /^[0-9a-f]{8}\.[0-9a-f]{64}$/.test(value) ? value.slice(0, 8) : undefined;
}

/** The v1 encoding itself: hashed by checksumV1, and pinned byte for byte by the golden vectors. */
// eslint-disable-next-line max-statements -- the frozen layout (header comment) reads top to bottom here, field by field; split up, the order of fields would no longer be visible in one place.
export function encodeV1(configMaps: readonly HashedConfigMap[]): Buffer {
  // Text fields are appended to one string and converted to UTF-8 once; only binaryData values are
  // copied as bytes. One hash update over one buffer costs a fraction of three updates per field.
  const chunks: Buffer[] = [];
  let pending = '';
  const text = (value: string): void => {
    pending += `${Buffer.byteLength(value, 'utf8')}:${value},`;
  };
  const bytes = (value: Uint8Array): void => {
    chunks.push(Buffer.from(`${pending}${value.byteLength}:`, 'utf8'), Buffer.from(value.buffer, value.byteOffset, value.byteLength), COMMA);
    pending = '';
  };

  text(ENCODING_VERSION_TAG);
  text(String(configMaps.length));
  for (const { name, content } of sortedByUtf8(configMaps.map((cm) => [cm.name, cm.content] as const))) {
    text(name);
    if (!content) {
      text('absent');
      continue;
    }
    text('present');
    const data = sortedByUtf8([...content.data]);
    text(String(data.length));
    for (const { name: key, content: value } of data) {
      text(key);
      text(value);
    }
    const binary = sortedByUtf8([...content.binaryData]);
    text(String(binary.length));
    for (const { name: key, content: value } of binary) {
      text(key);
      bytes(value);
    }
  }
  chunks.push(Buffer.from(pending, 'utf8'));
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

const COMMA = Buffer.from(',', 'latin1');

/** Sorts [name, content] pairs by compareUtf8 of the name, checking well-formedness once for all of them. */
function sortedByUtf8<T>(pairs: ReadonlyArray<readonly [string, T]>): Array<{ name: string; content: T }> {
  const entries = pairs.map(([name, content]) => ({ name, content }));
  if (entries.every(({ name }) => name.isWellFormed())) return entries.sort((a, b) => compareCodePoints(a.name, b.name));
  // A lone surrogate is encoded as U+FFFD's bytes; order by those bytes, as the encoding will hold them.
  // (Only names from an untrusted review can be so: the API server refuses them after mutation.)
  return entries
    .map((entry) => ({ ...entry, bytes: Buffer.from(entry.name, 'utf8') }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map(({ name, content }) => ({ name, content }));
}

/**
 * The one ordering of names and keys in the frozen core: by UTF-8 bytes (not by UTF-16 code units, as
 * Array.prototype.sort does), so the encoding does not depend on the language that computes it. A string
 * with a lone surrogate is ordered by the bytes it is encoded as (U+FFFD's).
 */
export function compareUtf8(a: string, b: string): number {
  if (a.isWellFormed() && b.isWellFormed()) return compareCodePoints(a, b);
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Code-point order of two well-formed strings, which is the order of their UTF-8 bytes. UTF-16 code units
 * give the same order except that surrogates (D800-DFFF, the astral planes) sort below E000-FFFF, where
 * code points sort them above; the two ranges are swapped before comparing.
 */
function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}
