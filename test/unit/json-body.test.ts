// The AdmissionReview body parser (src/server/json-body.ts): same result as JSON.parse for every JSON
// value, a "__proto__" key kept as plain data however it is spelled, nesting refused past the limit and counted
// correctly around strings that contain brackets and escaped quotes.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_JSON_DEPTH, nestingDepth, parseJsonBody } from '../../src/server/json-body.ts';

/** Depth of a parsed value: how many arrays and objects enclose its deepest part. */
function depthOf(value: unknown): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(depthOf));
  if (typeof value === 'object' && value !== null) return 1 + Math.max(0, ...Object.values(value).map(depthOf));
  return 0;
}

const nested = (depth: number): string => `${'['.repeat(depth)}${']'.repeat(depth)}`;

// Every spelling of the key "__proto__" with each character plain or as a \u escape (either hex case).
const protoSpelling = fc.array(fc.constantFrom('plain', 'lower', 'upper'), { minLength: 9, maxLength: 9 }).map((choices) =>
  [...'__proto__']
    .map((char, index) => {
      if (choices[index] === 'plain') return char;
      const hex = char.charCodeAt(0).toString(16).padStart(4, '0');
      return `\\u${choices[index] === 'upper' ? hex.toUpperCase() : hex}`;
    })
    .join(''),
);

describe('parseJsonBody', () => {
  test('equals JSON.parse for any JSON value (including strings that look like keys and brackets)', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        const text = JSON.stringify(value);
        assert.deepEqual(parseJsonBody(text), JSON.parse(text));
      }),
      { numRuns: 2_000 },
    );
  });

  test('nestingDepth equals the structural depth, whatever the strings contain', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.string(), (value, text) => {
        const withBrackets = [value, `${text}[{"\\"]}`];
        const json = JSON.stringify(withBrackets);
        assert.equal(nestingDepth(json, Infinity), depthOf(withBrackets));
      }),
      { numRuns: 2_000 },
    );
  });

  test('a "__proto__" key, in every spelling and anywhere, is an own data property: no prototype is touched', () => {
    fc.assert(
      fc.property(protoSpelling, fc.nat(3), (key, wrap) => {
        const text = `${'{"a":'.repeat(wrap)}{${JSON.stringify('ok')}:1,"${key}" : {"polluted":true}}${'}'.repeat(wrap)}`;
        let parsed = parseJsonBody(text) as Record<string, unknown>;
        for (let level = 0; level < wrap; level++) parsed = parsed['a'] as Record<string, unknown>;
        assert.ok(Object.hasOwn(parsed, '__proto__'), 'kept as data');
        assert.equal(Object.getPrototypeOf(parsed), Object.prototype, 'the object keeps its prototype');
        assert.equal((parsed as { polluted?: unknown }).polluted, undefined);
        assert.equal(({} as { polluted?: unknown }).polluted, undefined, 'Object.prototype is untouched');
      }),
      { numRuns: 500 },
    );
  });

  test('"__proto__" as a string value, not a key, is accepted', () => {
    assert.deepEqual(parseJsonBody('{"name":"__proto__","list":["__proto__"]}'), { name: '__proto__', list: ['__proto__'] });
  });

  test(`nesting up to ${MAX_JSON_DEPTH} levels parses; one more is refused before parsing`, () => {
    assert.equal(depthOf(parseJsonBody(nested(MAX_JSON_DEPTH))), MAX_JSON_DEPTH);
    assert.throws(() => parseJsonBody(nested(MAX_JSON_DEPTH + 1)), /nested deeper than 1000 levels/);
    assert.throws(() => parseJsonBody(`${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`), /nested deeper/);
  });

  test('invalid JSON is still a SyntaxError from JSON.parse', () => {
    assert.throws(() => parseJsonBody('{"apiVersion": '), SyntaxError);
    assert.throws(() => parseJsonBody(''), SyntaxError);
  });
});
