// The canonical v1 encoding and its SHA-256. FROZEN: changing a single byte of what this produces changes
// every checksum in every cluster, which rolls every workload at once. The golden vectors in
// test/unit/checksum-golden.test.ts pin it. A v2 must ship beside v1 with a migration that does not roll
// (for example: accept a v1 value as current until the workload's template changes for another reason).
//
// Layout (each field is a netstring, "<decimal byte length>:<bytes>,", so no two inputs encode the same):
//   field("config-checksum.io/v1") field(<number of ConfigMaps>)
//   per ConfigMap, sorted by name (UTF-8 byte order):
//     field(name) field("present" | "absent")
//     if present: field(<n data>) n × (field(key) field(value as UTF-8))
//                 field(<n binaryData>) n × (field(key) field(decoded bytes))
//   keys sorted by UTF-8 byte order within each map.

import { createHash } from 'node:crypto';

export const ENCODING_VERSION_TAG = 'config-checksum.io/v1';

/** The consumed part of one ConfigMap, as it goes into the checksum. */
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
  const hash = createHash('sha256');
  writeV1(configMaps, (chunk) => hash.update(chunk));
  return hash.digest('hex');
}

/** The v1 encoding itself; used by the golden vectors to pin the bytes, not just the digest. */
export function encodeV1(configMaps: readonly HashedConfigMap[]): Buffer {
  const chunks: Buffer[] = [];
  writeV1(configMaps, (chunk) => chunks.push(chunk));
  return Buffer.concat(chunks);
}

function writeV1(configMaps: readonly HashedConfigMap[], write: (chunk: Buffer) => void): void {
  const field = (bytes: Buffer): void => {
    write(Buffer.from(`${bytes.length}:`, 'latin1'));
    write(bytes);
    write(COMMA);
  };
  const text = (value: string): void => field(Buffer.from(value, 'utf8'));

  text(ENCODING_VERSION_TAG);
  text(String(configMaps.length));
  for (const { name, content } of sortedByUtf8(configMaps.map((cm) => [cm.name, cm.content] as const))) {
    field(name);
    if (!content) {
      text('absent');
      continue;
    }
    text('present');
    const data = sortedByUtf8([...content.data]);
    text(String(data.length));
    for (const { name: key, content: value } of data) {
      field(key);
      text(value);
    }
    const binary = sortedByUtf8([...content.binaryData]);
    text(String(binary.length));
    for (const { name: key, content: value } of binary) {
      field(key);
      field(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
    }
  }
}

const COMMA = Buffer.from(',', 'latin1');

/** Sorts [name, content] pairs by the UTF-8 bytes of the name, encoding each name once. */
function sortedByUtf8<T>(pairs: ReadonlyArray<readonly [string, T]>): Array<{ name: Buffer; content: T }> {
  return pairs
    .map(([name, content]) => ({ name: Buffer.from(name, 'utf8'), content }))
    .sort((a, b) => Buffer.compare(a.name, b.name));
}
