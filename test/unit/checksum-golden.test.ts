// Golden vectors of the v1 encoding (src/checksum/encode.ts). The literal digests and bytes below were
// computed once by the independent reference encoder in this file (written from the layout in encode.ts's
// header comment, not from its code), checked against the product, then frozen. If one of these literals
// fails, the encoding changed: that changes every checksum in every cluster and rolls every workload at
// once. Do not update a literal to make a test pass; ship a v2 with a migration instead (DESIGN section 4).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { computeChecksum, computeChecksums, planChecksum } from '../../src/checksum/compute.ts';
import { checksumV1, encodeV1, ENCODING_VERSION_TAG, hashKeyId, keyedChecksumV1, secretChecksumKeyId, secretChecksumValue, type HashedConfigMap } from '../../src/checksum/encode.ts';
import { SECRET_SOURCE } from '../../src/checksum/references.ts';

/** A vector's input in plain data: absent, or present with data (strings) and binaryData (bytes). */
interface VectorConfigMap {
  readonly name: string;
  readonly absent?: true;
  readonly data?: ReadonlyArray<readonly [string, string]>;
  readonly binaryData?: ReadonlyArray<readonly [string, readonly number[]]>;
}

interface Vector {
  readonly label: string;
  readonly input: readonly VectorConfigMap[];
  readonly sha256: string;
  /** The whole encoding, where pinned byte for byte (hex). */
  readonly encodedHex?: string;
}

// ---- Independent reference encoder -------------------------------------------------------------------
// Netstrings "<decimal byte length>:<bytes>,"; names and keys ordered by Unicode code point, which is the
// same order as by UTF-8 bytes (deliberately computed another way than the product's Buffer.compare).

function netstring(bytes: Uint8Array): number[] {
  return [...new TextEncoder().encode(`${bytes.length}:`), ...bytes, 0x2c];
}

function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function byCodePoint(a: string, b: string): number {
  const left = [...a].map((c) => c.codePointAt(0)!);
  const right = [...b].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    if (left[i] !== right[i]) return left[i]! - right[i]!;
  }
  return left.length - right.length;
}

/**
 * Order by the bytes the text is encoded as (a lone surrogate becomes U+FFFD's bytes, as TextEncoder
 * writes it): the same as byCodePoint for well-formed text, and what decides for any other.
 */
function byEncodedBytes(a: string, b: string): number {
  const left = utf8(a);
  const right = utf8(b);
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    if (left[i] !== right[i]) return left[i]! - right[i]!;
  }
  return left.length - right.length;
}

function referenceEncode(input: readonly VectorConfigMap[], order: (a: string, b: string) => number = byCodePoint): Buffer {
  const out: number[] = [];
  const text = (value: string): void => {
    out.push(...netstring(utf8(value)));
  };
  text('config-checksum.io/v1');
  text(String(input.length));
  for (const configMap of [...input].sort((a, b) => order(a.name, b.name))) {
    text(configMap.name);
    if (configMap.absent) {
      text('absent');
      continue;
    }
    text('present');
    const data = [...(configMap.data ?? [])].sort(([a], [b]) => order(a, b));
    text(String(data.length));
    for (const [key, value] of data) {
      text(key);
      text(value);
    }
    const binary = [...(configMap.binaryData ?? [])].sort(([a], [b]) => order(a, b));
    text(String(binary.length));
    for (const [key, bytes] of binary) {
      text(key);
      out.push(...netstring(Uint8Array.from(bytes)));
    }
  }
  return Buffer.from(out);
}

function referenceSha256(input: readonly VectorConfigMap[]): string {
  return createHash('sha256').update(referenceEncode(input)).digest('hex');
}

// ---- Product input --------------------------------------------------------------------------------------

function toHashed(input: readonly VectorConfigMap[]): HashedConfigMap[] {
  return input.map((configMap) =>
    configMap.absent
      ? { name: configMap.name }
      : {
          name: configMap.name,
          content: {
            data: new Map(configMap.data ?? []),
            binaryData: new Map((configMap.binaryData ?? []).map(([key, bytes]) => [key, Uint8Array.from(bytes)] as const)),
          },
        },
  );
}

// ---- The vectors (frozen) --------------------------------------------------------------------------------

const VECTORS: readonly Vector[] = [
  {
    label: 'empty set',
    input: [],
    sha256: '8a5fe9d63a3a381a7294a77d971ad0366fb4dbd83c6b04126a99e5cd61b78ac9',
    encodedHex: '32313a636f6e6669672d636865636b73756d2e696f2f76312c313a302c',
  },
  {
    label: 'one absent ConfigMap',
    input: [{ name: 'app-config', absent: true }],
    sha256: '1707ccfb931485066f53e3db0c936c01d8aaef583e7a3559254851e93ce3d0ec',
    encodedHex: '32313a636f6e6669672d636865636b73756d2e696f2f76312c313a312c31303a6170702d636f6e6669672c363a616273656e742c',
  },
  {
    label: 'present with nothing consumed',
    input: [{ name: 'app-config' }],
    sha256: '6eb3404e7a5b7cabddbe3b8c3dd957c1606b9c769d8ea0a7e805cc636030c1a6',
  },
  {
    label: 'binaryData with non-UTF-8 bytes',
    input: [{ name: 'assets', binaryData: [['logo.png', [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff, 0xfe]]] }],
    sha256: '916abf4662996ec0c2df7c47be3dcfb0b3ddf48c42a32875a38c16a43a218583',
    encodedHex: '32313a636f6e6669672d636865636b73756d2e696f2f76312c313a312c363a6173736574732c373a70726573656e742c313a302c313a312c383a6c6f676f2e706e672c31313a89504e470d0a1a0a00fffe2c',
  },
  {
    label: 'empty string values and an empty binary value',
    input: [{ name: 'env', data: [['EMPTY', ''], ['ALSO_EMPTY', '']], binaryData: [['nothing', []]] }],
    sha256: '37c7ff0c123d9973ee912314132153db629f7d62d19c2dd11c88bdfeebdfa8e5',
  },
  {
    label: 'keys ordered by UTF-8 bytes, not UTF-16 code units',
    input: [{ name: 'i18n', data: [['\u{1F600}', 'grinning'], ['\uFF21', 'fullwidth A'], ['a', 'ascii']] }],
    sha256: '2665f9dde7fe299c74e5fe8b5c011c4bfff62936d97d121eacc81724127b6292',
  },
  {
    label: 'ConfigMap names ordered by UTF-8 bytes, input order irrelevant',
    input: [
      { name: 'zeta', data: [['k', 'v']] },
      { name: 'alpha', absent: true },
      { name: 'mid.x', data: [['k', 'v']], binaryData: [['k', [0x76]]] },
    ],
    sha256: 'cdfe71ff3dbb5677b620c259a8642aadcef1b2da3adb24d8cee3cddead19b5ca',
  },
  {
    label: 'separators, newlines and unicode inside values',
    input: [
      {
        name: 'gateway',
        data: [
          ['app.conf', 'a=1;b=2,c:3\nd=\u00e9\u4e2d\u{1F600}\r\n\ttab'],
          ['netstring-lookalike', '3:abc,'],
          ['k=v;k2', 'v2'],
        ],
      },
    ],
    sha256: 'c840ace9746ab515d9003142d17d2b8e744e3ef13a38b7a8c145668c70981140',
  },
  {
    label: 'Reloader collision, one key',
    input: [{ name: 'cm', data: [['a', '1;b=2']] }],
    sha256: '0ea60e1917051a17514d31d115809b39eecf78630828dab9a7208fd336e1b3ff',
  },
  {
    label: 'Reloader collision, two keys',
    input: [{ name: 'cm', data: [['a', '1'], ['b', '2']] }],
    sha256: '5b3ed924a0442355f7ef9744fc0b93aed5fb658017769cb7bd05dcba3063ede9',
  },
  {
    label: 'same key and bytes in data',
    input: [{ name: 'cm', data: [['k', 'v']] }],
    sha256: 'cd446458440fcd8dfa3bb291fceb444951982737e4c6ecdc836ee5ca09736145',
  },
  {
    label: 'same key and bytes in binaryData',
    input: [{ name: 'cm', binaryData: [['k', [0x76]]] }],
    sha256: 'ba5e45324e973b9b2daf220dcdb9a091a84912cd8b5141d1e6cfa4d8964361a6',
  },
];

describe('checksum v1 golden vectors', () => {
  test('the version tag is part of the frozen contract', () => {
    assert.equal(ENCODING_VERSION_TAG, 'config-checksum.io/v1');
  });

  for (const vector of VECTORS) {
    test(vector.label, () => {
      const hashed = toHashed(vector.input);
      // The reference encoder agrees with the frozen literal (the literal was not copied from the product).
      assert.equal(referenceSha256(vector.input), vector.sha256, 'reference encoder');
      assert.equal(checksumV1(hashed), vector.sha256, 'checksumV1');
      assert.match(vector.sha256, /^[0-9a-f]{64}$/);
      const encoded = encodeV1(hashed);
      assert.deepEqual(encoded, referenceEncode(vector.input), 'encodeV1 against the reference encoder');
      assert.equal(createHash('sha256').update(encoded).digest('hex'), vector.sha256, 'encodeV1 and checksumV1 agree');
      if (vector.encodedHex !== undefined) assert.equal(encoded.toString('hex'), vector.encodedHex, 'encodeV1 bytes');
    });
  }

  test('the product encodes every generated input as the reference encoder does (any Unicode text, any bytes)', () => {
    // Well-formed strings here (all that Kubernetes stores); the next test covers lone surrogates.
    const unicode = fc.string({ unit: 'binary', maxLength: 12 }).filter((text) => text.isWellFormed());
    const present = fc.record({
      data: fc.uniqueArray(fc.tuple(unicode, unicode), { selector: ([key]) => key, maxLength: 6 }),
      binaryData: fc.uniqueArray(fc.tuple(unicode, fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 8 })), { selector: ([key]) => key, maxLength: 4 }),
    });
    const configMaps = fc.uniqueArray(
      fc.tuple(unicode, fc.option(present, { nil: undefined })).map(([name, content]): VectorConfigMap => (content ? { name, ...content } : { name, absent: true })),
      { selector: (configMap) => configMap.name, maxLength: 5 },
    );
    fc.assert(
      fc.property(configMaps, (input) => {
        const hashed = toHashed(input);
        assert.deepEqual(encodeV1(hashed), referenceEncode(input));
        assert.equal(checksumV1(hashed), referenceSha256(input));
      }),
      { numRuns: 1_000 },
    );
  });

  test('text that is not well-formed UTF-16 (lone surrogates, possible in an untrusted review) encodes as its UTF-8 bytes, ordered by them', () => {
    // Names come from the review's pod template, which the API server validates only after mutation.
    const tricky = fc.string({ unit: fc.constantFrom('\ud800', '\udbff', '\udc00', '\udfff', '\ud83d\ude00', '\ue000', '\ufffd', '\uffff', 'a', 'é'), maxLength: 4 });
    const configMaps = fc.uniqueArray(
      fc.tuple(tricky, fc.uniqueArray(fc.tuple(tricky, tricky), { selector: ([key]) => key, maxLength: 4 })).map(([name, data]): VectorConfigMap => ({ name, data })),
      { selector: (configMap) => configMap.name, maxLength: 4 },
    );
    fc.assert(
      fc.property(configMaps, (input) => {
        assert.deepEqual(encodeV1(toHashed(input)), referenceEncode(input, byEncodedBytes));
      }),
      { numRuns: 2_000 },
    );
  });

  test('the pinned encodings read as the documented netstrings', () => {
    // The same bytes as the hex literals above, spelled out, so a reader can check the layout by eye.
    const byLabel = (label: string): Vector => VECTORS.find((vector) => vector.label === label)!;
    assert.equal(Buffer.from(byLabel('empty set').encodedHex!, 'hex').toString('latin1'), '21:config-checksum.io/v1,1:0,');
    assert.equal(
      Buffer.from(byLabel('one absent ConfigMap').encodedHex!, 'hex').toString('latin1'),
      '21:config-checksum.io/v1,1:1,10:app-config,6:absent,',
    );
    assert.equal(
      Buffer.from(byLabel('binaryData with non-UTF-8 bytes').encodedHex!, 'hex').toString('latin1'),
      '21:config-checksum.io/v1,1:1,6:assets,7:present,1:0,1:1,8:logo.png,11:\x89PNG\r\n\x1a\n\x00\xff\xfe,',
    );
  });

  test('no two vectors share a digest (in particular the Reloader pair and data vs binaryData)', () => {
    const digests = VECTORS.map((vector) => vector.sha256);
    assert.equal(new Set(digests).size, digests.length);
    const digestOf = (label: string): string => VECTORS.find((vector) => vector.label === label)!.sha256;
    assert.notEqual(digestOf('Reloader collision, one key'), digestOf('Reloader collision, two keys'));
    assert.notEqual(digestOf('same key and bytes in data'), digestOf('same key and bytes in binaryData'));
  });

  test('input order of ConfigMaps and of map entries does not matter', () => {
    const vector = VECTORS.find((v) => v.label === 'ConfigMap names ordered by UTF-8 bytes, input order irrelevant')!;
    const reversed = toHashed([...vector.input].reverse().map((cm) => ({ ...cm, ...(cm.data ? { data: [...cm.data].reverse() } : {}) })));
    assert.equal(checksumV1(reversed), vector.sha256);
    const keys = VECTORS.find((v) => v.label === 'keys ordered by UTF-8 bytes, not UTF-16 code units')!;
    const shuffled = toHashed(keys.input.map((cm) => ({ ...cm, data: [...(cm.data ?? [])].reverse() })));
    assert.equal(checksumV1(shuffled), keys.sha256);
  });

  test('the Uint8Array view of binaryData is hashed, not its whole backing buffer', () => {
    const backing = Buffer.from('xxvyy', 'latin1');
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 2, 1);
    const vector = VECTORS.find((v) => v.label === 'same key and bytes in binaryData')!;
    assert.equal(checksumV1([{ name: 'cm', content: { data: new Map(), binaryData: new Map([['k', view]]) } }]), vector.sha256);
  });

  test('computeChecksum feeds the v1 encoding: base64 binaryData decoded, absent ConfigMaps pinned', () => {
    const digestOf = (label: string): string => VECTORS.find((vector) => vector.label === label)!.sha256;
    const template = { spec: { containers: [{ name: 'c', envFrom: [{ configMapRef: { name: 'cm' } }] }] } };
    const plan = planChecksum(template, undefined, 'config-checksum.io/extra-configmaps');
    const through = (data: unknown, binaryData: unknown): string => {
      const outcome = computeChecksum(plan, () => ({ state: 'found', data, binaryData }));
      assert.equal(outcome.kind, 'computed');
      return outcome.kind === 'computed' ? outcome.checksum : '';
    };
    assert.equal(through({ k: 'v' }, undefined), digestOf('same key and bytes in data'));
    assert.equal(through(undefined, { k: Buffer.from('v').toString('base64') }), digestOf('same key and bytes in binaryData'));
    const absentPlan = planChecksum({ spec: { volumes: [{ name: 'v', configMap: { name: 'app-config', optional: true } }] } }, undefined, 'x');
    const absent = computeChecksum(absentPlan, () => ({ state: 'missing' }));
    assert.equal(absent.kind === 'computed' && absent.checksum, digestOf('one absent ConfigMap'));
  });
});

// ---- Keyed vectors: Secrets (checksum/secret) ---------------------------------------------------------------
// HMAC-SHA256 over the same v1 bytes, with a fixed test key (bytes 0x00..0x1f). A Secret's values are
// base64 in the API; decoded, they are the binaryData section of the encoding, and its data section is
// empty. The literals were computed once by an encoder written apart from both the product and the
// reference encoder above (another language, from encode.ts's header comment), then frozen: changing one
// would change checksum/secret in every cluster that hashes Secrets.

const TEST_KEY = Uint8Array.from({ length: 32 }, (_, index) => index);
// hashKeyId(TEST_KEY): HMAC-SHA256(TEST_KEY, "config-checksum-webhook hash key id"), first 8 hex characters.
const TEST_KEY_ID = 'b78244a8';

interface KeyedVector {
  readonly label: string;
  /** Secrets as the encoding holds them: binaryData only. */
  readonly input: readonly VectorConfigMap[];
  readonly hmacSha256: string;
}

const KEYED_VECTORS: readonly KeyedVector[] = [
  { label: 'empty set', input: [], hmacSha256: 'a215b5c22e843ce139d59e42ac3cec8226fa9c01548c1921719793742815e23e' },
  { label: 'one absent Secret', input: [{ name: 'db', absent: true }], hmacSha256: '2d5fde840980bebd2b9e05f4cc5d54bd8f164dbb8ecce1cb42f7d2ae2bed1195' },
  { label: 'one key', input: [{ name: 'db', binaryData: [['password', [...Buffer.from('hunter2')]]] }], hmacSha256: 'c2c893b1f7276cc86347c04cca23de8f1918984393a7bf2667b6e790eb9883fe' },
  {
    label: 'tls pair with non-UTF-8 bytes',
    input: [{ name: 'tls', binaryData: [['tls.key', [0x30, 0x82, 0x00, 0xff, 0xfe]], ['tls.crt', [...Buffer.from('-----BEGIN CERTIFICATE-----\n')]]] }],
    hmacSha256: 'c24b89f8e3f36fd33e6f7c161dc4433a7f5d1ae6837449b9c3691e997911a66b',
  },
  {
    label: 'two Secrets, one absent, names sorted',
    input: [{ name: 'zeta', binaryData: [['k', [0x76]]] }, { name: 'alpha', absent: true }],
    hmacSha256: 'caae06a8081ba4833028b4f7743e1476a0a249515b55e5cc050efab7d75e6d19',
  },
  {
    label: 'the same bytes as the ConfigMap vector "same key and bytes in binaryData"',
    input: [{ name: 'cm', binaryData: [['k', [0x76]]] }],
    hmacSha256: 'c7243ebc64ab8a9f8b3567086d6ea5707db0ba0c791547197ba6cefb1bde6121',
  },
];

describe('checksum v1 keyed golden vectors (Secrets)', () => {
  for (const vector of KEYED_VECTORS) {
    test(vector.label, () => {
      const hashed = toHashed(vector.input);
      assert.equal(createHmac('sha256', TEST_KEY).update(referenceEncode(vector.input)).digest('hex'), vector.hmacSha256, 'reference encoder, keyed');
      assert.equal(keyedChecksumV1(TEST_KEY, hashed), vector.hmacSha256, 'keyedChecksumV1');
      // The same bytes as the unkeyed checksum hashes: only the hash function differs.
      assert.equal(createHmac('sha256', TEST_KEY).update(encodeV1(hashed)).digest('hex'), vector.hmacSha256);
      assert.notEqual(checksumV1(hashed), vector.hmacSha256);
    });
  }

  test('the keyed digest of a set equals no unkeyed one: the plain SHA-256 of a ConfigMap vector is not reused', () => {
    const plain = VECTORS.find((v) => v.label === 'same key and bytes in binaryData')!;
    const keyed = KEYED_VECTORS.find((v) => v.label.startsWith('the same bytes as the ConfigMap vector'))!;
    assert.equal(checksumV1(toHashed(keyed.input)), plain.sha256, 'the same encoding');
    assert.notEqual(keyed.hmacSha256, plain.sha256);
  });

  test('another key gives another digest for every vector', () => {
    const other = Uint8Array.from(TEST_KEY, (byte) => byte ^ 0xff);
    for (const vector of KEYED_VECTORS) assert.notEqual(keyedChecksumV1(other, toHashed(vector.input)), vector.hmacSha256, vector.label);
  });

  test('computeChecksums feeds the keyed encoding: a Secret\'s base64 data decoded into binaryData, absent Secrets pinned', () => {
    const template = { spec: { containers: [{ name: 'c', envFrom: [{ secretRef: { name: 'db' } }] }] } };
    const plan = planChecksum(template, undefined, 'config-checksum.io/extra-secrets', SECRET_SOURCE);
    const none = { plan: { uses: [], problems: [] }, lookup: () => ({ state: 'missing' as const }) };
    const found = computeChecksums(none, { plan, key: TEST_KEY, lookup: () => ({ state: 'found', data: { password: Buffer.from('hunter2').toString('base64') }, binaryData: undefined }) });
    assert.equal(found.kind === 'computed' && found.secretChecksum, `${TEST_KEY_ID}.${KEYED_VECTORS.find((v) => v.label === 'one key')!.hmacSha256}`);
    assert.equal(found.kind === 'computed' && found.checksum, undefined, 'no ConfigMap consumed: no checksum/config');
    const absent = computeChecksums(none, { plan, key: TEST_KEY, lookup: () => ({ state: 'missing' }) });
    assert.equal(absent.kind === 'computed' && absent.secretChecksum, `${TEST_KEY_ID}.${KEYED_VECTORS.find((v) => v.label === 'one absent Secret')!.hmacSha256}`);
  });

  test('the key id in checksum/secret: pinned for the test key, computed independently, read back; another key, another id', () => {
    assert.equal(hashKeyId(TEST_KEY), TEST_KEY_ID);
    assert.equal(createHmac('sha256', TEST_KEY).update('config-checksum-webhook hash key id').digest('hex').slice(0, 8), TEST_KEY_ID);
    const value = secretChecksumValue(TEST_KEY, []);
    assert.equal(secretChecksumKeyId(value), TEST_KEY_ID);
    assert.notEqual(hashKeyId(TEST_KEY.map((byte) => byte ^ 1)), TEST_KEY_ID);
    for (const notOurs of ['', TEST_KEY_ID, `${TEST_KEY_ID}.abc`, value.slice(9), `${TEST_KEY_ID.toUpperCase()}.${value.slice(9)}`]) assert.equal(secretChecksumKeyId(notOurs), undefined, notOurs);
  });
});
