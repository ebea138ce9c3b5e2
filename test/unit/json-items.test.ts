// The LIST body scanner (src/kube/json-items.ts): for list bodies of every shape (items anywhere in the
// object, any JSON in them, strings full of quotes, backslashes, \u escapes and non-ASCII text, any
// whitespace) cut into chunks at any byte, even inside a UTF-8 character or an escape, it hands out exactly
// JSON.parse(body).items and returns the same metadata. A malformed body fails with an OperationalError
// (truncated: after handing out only real items); an item over the cap fails as soon as it is over.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ResponseTooLargeError } from '../../src/kube/http.ts';
import { JsonItemsScanner } from '../../src/kube/json-items.ts';
import { OperationalError } from '../../src/util/errors.ts';

const UNLIMITED = { maxBytes: Number.MAX_SAFE_INTEGER };

interface Scanned {
  readonly items: unknown[];
  readonly rest?: Record<string, unknown>;
  readonly error?: unknown;
}

/** Feeds `body` to a scanner in the pieces that `cuts` (byte offsets, any order) make. */
function scan(body: Buffer, cuts: readonly number[], limits = UNLIMITED): Scanned {
  const items: unknown[] = [];
  const scanner = new JsonItemsScanner((item) => items.push(item), limits);
  const offsets = [...new Set([0, ...cuts.map((cut) => cut % (body.length + 1)), body.length])].sort((a, b) => a - b);
  try {
    for (let index = 1; index < offsets.length; index++) scanner.write(body.subarray(offsets[index - 1], offsets[index]));
    const rest = scanner.end() as Record<string, unknown>;
    assert.equal(scanner.count, items.length, 'count is the number of items handed out');
    return { items, rest };
  } catch (error) {
    return { items, error };
  }
}

/** Every byte offset: the body written one byte at a time. */
const everyByte = (body: Buffer): number[] => Array.from({ length: body.length }, (_, index) => index);

// --- a JSON writer with a random style: whitespace between tokens, each character plain or escaped ---

type Choices = () => number;

function chooser(seed: readonly number[]): Choices {
  let next = 0;
  return () => (seed.length === 0 ? 0 : (seed[next++ % seed.length] ?? 0));
}

const WHITESPACE = ['', '', '', ' ', '\n', '\t', '\r\n  '];

function space(choose: Choices): string {
  return WHITESPACE[choose() % WHITESPACE.length] ?? '';
}

/** A JSON string for `text`, each character as JSON.stringify writes it or as a \u escape (surrogate pairs as two). */
function writeString(text: string, choose: Choices): string {
  let out = '"';
  for (const char of text) {
    if (choose() % 3 === 0) {
      for (let unit = 0; unit < char.length; unit++) out += `\\u${char.charCodeAt(unit).toString(16).padStart(4, '0')}`;
    } else if (char === '/' && choose() % 2 === 0) {
      out += '\\/';
    } else {
      out += JSON.stringify(char).slice(1, -1);
    }
  }
  return `${out}"`;
}

function writeJson(value: unknown, choose: Choices): string {
  if (typeof value === 'string') return writeString(value, choose);
  if (Array.isArray(value)) return `[${space(choose)}${value.map((element) => `${writeJson(element, choose)}${space(choose)}`).join(`,${space(choose)}`)}]`;
  if (typeof value === 'object' && value !== null) {
    const members = Object.entries(value).map(([key, member]) => `${writeString(key, choose)}${space(choose)}:${space(choose)}${writeJson(member, choose)}${space(choose)}`);
    return `{${space(choose)}${members.join(`,${space(choose)}`)}}`;
  }
  return JSON.stringify(value);
}

// --- list bodies ---

const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({ unit: fc.constantFrom('"', '\\', '/', '[', ']', '{', '}', ',', ':', 'é', '😀', '\n', '\u0000', 'a', ' '), maxLength: 16 }),
);

const json = fc.jsonValue({ maxDepth: 4, stringUnit: 'binary' });

/** Shaped like a Kubernetes object (names, data maps, nested spec), or any JSON value at all. */
const item = fc.oneof(
  fc.record({
    metadata: fc.record({ name: text, namespace: text, resourceVersion: fc.nat().map(String), labels: fc.dictionary(text, text, { maxKeys: 3 }) }),
    data: fc.dictionary(text, text, { maxKeys: 4 }),
    spec: json,
  }),
  json,
);

const listMeta = fc.record({ resourceVersion: fc.nat().map(String), continue: text, remainingItemCount: fc.nat() }, { requiredKeys: ['resourceVersion'] });

// Extra members are never named like "items": a second "items" is refused, where JSON.parse keeps the last.
const extraKey = text.map((key) => `x-${key}-extra`);

/** The members of a list object in any order, as [key, value] pairs. */
const listMembers = fc
  .tuple(fc.array(item, { maxLength: 6 }), listMeta, fc.dictionary(extraKey, json, { maxKeys: 2 }), fc.boolean())
  .chain(([items, metadata, extra, withKind]) => {
    const members: Array<[string, unknown]> = [['items', items], ['metadata', metadata], ...Object.entries(extra)];
    if (withKind) members.push(['kind', 'ConfigMapList'], ['apiVersion', 'v1']);
    return fc.shuffledSubarray(members, { minLength: members.length, maxLength: members.length });
  });

const style = fc.array(fc.nat({ max: 1000 }), { maxLength: 64 });
const cuts = fc.array(fc.nat(), { maxLength: 40 });

/** A list body: its members in order, written in a random style (keys, the key "items" too, may be escaped). */
function listBody(members: ReadonlyArray<[string, unknown]>, seed: readonly number[]): Buffer {
  const choose = chooser(seed);
  const written = members.map(([key, value]) => `${space(choose)}${writeString(key, choose)}${space(choose)}:${space(choose)}${writeJson(value, choose)}${space(choose)}`);
  return Buffer.from(`${space(choose)}{${written.join(',')}}${space(choose)}`);
}

function assertSameAsParse(body: Buffer, scanned: Scanned): void {
  const parsed = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  assert.equal(scanned.error, undefined, `no error for a valid body: ${String(scanned.error)}`);
  assert.deepEqual(scanned.items, Array.isArray(parsed['items']) ? parsed['items'] : []);
  assert.deepEqual(scanned.rest?.['metadata'], parsed['metadata']);
}

describe('JsonItemsScanner', () => {
  test('hands out JSON.parse(body).items and keeps the metadata, for any list body cut anywhere', () => {
    fc.assert(
      fc.property(listMembers, style, cuts, (members, seed, at) => {
        const body = listBody(members, seed);
        assertSameAsParse(body, scan(body, at));
      }),
      { numRuns: 3_000 },
    );
  });

  test('one byte at a time: every split inside a UTF-8 character and inside an escape', () => {
    fc.assert(
      fc.property(listMembers, style, (members, seed) => {
        const body = listBody(members, seed);
        assertSameAsParse(body, scan(body, everyByte(body)));
      }),
      { numRuns: 300 },
    );
  });

  test('strings that look like structure, escapes and multi-byte characters, split at every byte', () => {
    const body = Buffer.from('{"items":[{"a":"]\\",[{","b":"\\\\"},"\\u00e9\\ud83d\\ude00\\"","é😀",[],{},-1.5e3,true,null],"metadata":{"continue":"c\\"]","resourceVersion":"7"}}');
    for (const at of [everyByte(body), [], [1, 2, 3], [body.indexOf('\\u00e9') + 3]]) {
      const scanned = scan(body, at);
      assertSameAsParse(body, scanned);
      assert.equal(scanned.items.length, 8);
    }
  });

  test('the key "items" spelled with escapes is the items array; "items" in a nested object is not', () => {
    const escaped = Buffer.from('{"\\u0069te\\u006ds":[1,2],"metadata":{"items":[3]}}');
    assert.deepEqual(scan(escaped, []).items, [1, 2]);
    const nested = Buffer.from('{"metadata":{"items":[3]},"other":{"items":[4]}}');
    assert.deepEqual(scan(nested, []).items, []);
  });

  test('a string, object or array item is handed out with its last byte; a number, true, false or null at the separator after it', () => {
    const items: unknown[] = [];
    const scanner = new JsonItemsScanner((item) => items.push(item), UNLIMITED);
    const steps: Array<[string, number]> = [['{"items":[{"a":"}"}', 1], [' ,"s"', 2], [', [1,[2]]', 3], [' , 12', 3], [' ', 3], [',', 4], ['true', 4], [' ]', 5], [',"metadata":{}}', 5]];
    for (const [bytes, count] of steps) {
      scanner.write(Buffer.from(bytes));
      assert.equal(items.length, count, `after ${bytes}`);
    }
    assert.deepEqual(items, [{ a: '}' }, 's', [1, [2]], 12, true]);
    assert.deepEqual(scanner.end(), { items: [], metadata: {} });
  });

  test('a truncated body fails, having handed out only items it really holds', () => {
    fc.assert(
      fc.property(listMembers, style, cuts, fc.nat(), (members, seed, at, end) => {
        const whole = listBody(members, seed);
        const body = whole.subarray(0, end % whole.length);
        if (isJson(body)) return; // cut in trailing whitespace: still the whole list
        const scanned = scan(body, at);
        assert.ok(scanned.error instanceof OperationalError, `an OperationalError, not ${String(scanned.error)}`);
        const all = (JSON.parse(whole.toString('utf8')) as { items: unknown[] }).items;
        assert.deepEqual(scanned.items, all.slice(0, scanned.items.length));
      }),
      { numRuns: 2_000 },
    );
  });

  test('a body with a byte deleted, inserted or replaced: an error exactly when JSON.parse fails, else the same result', () => {
    const mutation = fc.record({ at: fc.nat(), kind: fc.constantFrom('delete', 'insert', 'replace'), byte: fc.oneof(fc.constantFrom(...Buffer.from('"\\{}[],: \nu0')), fc.nat(255)) });
    fc.assert(
      fc.property(listMembers, style, mutation, cuts, (members, seed, change, at) => {
        const body = mutate(listBody(members, seed), change);
        const scanned = scan(body, at);
        if (isJson(body) && isObject(JSON.parse(body.toString('utf8')))) assertSameAsParse(body, scanned);
        else assert.ok(scanned.error instanceof OperationalError, `an OperationalError, not ${String(scanned.error)}`);
      }),
      { numRuns: 3_000 },
    );
  });

  test('bodies that are not one JSON object fail with a clear message', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /ended before its end/],
      ['[1,2]', /'\[' where an object was expected/],
      ['{"items":[1,2]', /ended before its end/],
      ['{"items":[1,2]} {}', /where the end of the response was expected/],
      ['{"items":[1,]}', /item 1 of the list is not valid JSON/],
      ['{"items":[1 2]}', /item 0 of the list is not valid JSON/],
      ['{"items":[1}', /'}' where the end of the items array was expected/],
      ['{"items":[1],"items":[2]}', /two items arrays/],
      ['{"a" "items":[1]}', /'"' where a colon was expected/],
      ['{"a":1,}', /'}' where a key was expected/],
      ['{"metadata":{"a":[}]}', /'}' where the matching end of a container was expected/],
      ['{"metadata":{"resourceVersion":01}}', /not valid JSON/],
      [`{"m":${'['.repeat(100)}${']'.repeat(100)}}`, /nests deeper than 64 levels/],
    ];
    for (const [body, message] of cases) {
      const scanned = scan(Buffer.from(body), []);
      assert.ok(scanned.error instanceof OperationalError, `${body}: an OperationalError, not ${String(scanned.error)}`);
      assert.match((scanned.error as Error).message, message, body);
      assert.doesNotMatch((scanned.error as Error).message, /01|resourceVersion/, 'the message quotes no data');
    }
  });

  test('an item over the cap fails with ResponseTooLargeError as soon as its bytes pass the cap, after the items before it', () => {
    const items: unknown[] = [];
    const scanner = new JsonItemsScanner((item) => items.push(item), { maxBytes: 1_000 });
    scanner.write(Buffer.from(`{"items":[{"small":true},{"big":"${'x'.repeat(600)}`));
    assert.deepEqual(items, [{ small: true }]);
    assert.throws(() => scanner.write(Buffer.from('x'.repeat(600))), ResponseTooLargeError);
  });

  test('an item of exactly the cap is fine; the metadata alone over the cap is refused', () => {
    const element = `"${'x'.repeat(98)}"`;
    assert.deepEqual(scan(Buffer.from(`{"items":[${element}]}`), [], { maxBytes: 100 }).items, ['x'.repeat(98)]);
    assert.ok(scan(Buffer.from(`{"items":["${'x'.repeat(99)}"]}`), [], { maxBytes: 100 }).error instanceof ResponseTooLargeError);
    assert.ok(scan(Buffer.from(`{"metadata":{"continue":"${'c'.repeat(100)}"},"items":[]}`), [], { maxBytes: 100 }).error instanceof ResponseTooLargeError);
  });
});

function isJson(body: Buffer): boolean {
  try {
    JSON.parse(body.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

function isObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function mutate(body: Buffer, change: { at: number; kind: string; byte: number }): Buffer {
  const at = change.at % (body.length + 1);
  const byte = Buffer.of(change.byte);
  if (change.kind === 'insert') return Buffer.concat([body.subarray(0, at), byte, body.subarray(at)]);
  if (at === body.length) return body;
  return Buffer.concat([body.subarray(0, at), ...(change.kind === 'replace' ? [byte] : []), body.subarray(at + 1)]);
}
