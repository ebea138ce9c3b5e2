// The elements of a JSON object's top-level `items` array, one at a time, while the object is still
// arriving: a LIST page is never held whole in memory, only the element being read and the rest of the
// object (kind, apiVersion, metadata), wherever in the object the array stands.
//
// A byte scanner rather than a streaming JSON parser: it only needs to know where strings, containers and
// the array's elements begin and end, and JSON.parse (fast, and strict) then reads each element and the
// rest. The structural characters are ASCII, and UTF-8 never uses ASCII bytes inside a multi-byte
// character, so the scanner works on raw bytes and a chunk may end anywhere, even inside a character.
// The object's own level is checked as it arrives and every element and the rest are parsed strictly, so
// a malformed body fails with an error (at the latest at its end) and never yields an element that is
// not in its items array.

import { OperationalError } from '../util/errors.ts';
import { asObject, type JsonObject } from '../util/json.ts';
import { ResponseTooLargeError } from './http.ts';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

// Outside the array, a list is a few levels deep (its metadata); far deeper is not a Kubernetes list.
const MAX_OUTER_DEPTH = 64;
// The longest spelling of the key "items": every character as a \u escape, with its quotes.
const MAX_KEY_BYTES = 32;

/**
 * Where the scanner stands at the object's own level (depth 1), where it must find the key "items": the
 * grammar is checked there as the bytes arrive, so an element is only ever taken from the real array.
 */
type Expect = 'key-or-end' | 'key' | 'colon' | 'value' | 'scalar' | 'comma-or-end';

export interface ItemsScannerLimits {
  /** Bytes of one element, and of the object without its elements; past either, ResponseTooLargeError. */
  readonly maxBytes: number;
}

export class JsonItemsScanner {
  readonly #onItem: (item: unknown) => void;
  readonly #maxBytes: number;
  /** The containers open outside the array's elements: the object itself first (an opening byte each). */
  readonly #outer: number[] = [];
  #expect: Expect = 'key-or-end';
  #started = false;
  #inString = false;
  #escaped = false;
  /** Bytes of the depth-1 key being read (undefined when not reading one); it stops growing past MAX_KEY_BYTES. */
  #key: number[] | undefined;
  #lastKey: number[] | undefined;
  #seenItems = false;
  #inItems = false;
  /** Nesting inside the element being read (0: at the array's own level). */
  #itemDepth = 0;
  /** A string, object or array element has been handed out; only whitespace may come before the separator. */
  #afterElement = false;
  #itemParts: Buffer[] = [];
  #itemBytes = 0;
  #itemCount = 0;
  /** In the chunk being scanned, where the next quote and backslash are (its length: none; -1: not looked for yet). */
  #quoteAt = -1;
  #backslashAt = -1;
  readonly #rest: Buffer[] = [];
  #restBytes = 0;

  constructor(onItem: (item: unknown) => void, limits: ItemsScannerLimits) {
    this.#onItem = onItem;
    this.#maxBytes = limits.maxBytes;
  }

  /** How many elements have been handed out. */
  get count(): number {
    return this.#itemCount;
  }

  /** Scans the next piece of the body, handing out every element it completes. */
  write(chunk: Buffer): void {
    let index = 0;
    while (index < chunk.length) {
      if (this.#inItems) {
        index = this.#scanItems(chunk, index);
      } else {
        const end = this.#scanOuter(chunk, index);
        this.#keep(chunk.subarray(index, end));
        index = end;
      }
    }
  }

  /** The object without its elements (its `items` is empty), once the whole body has been scanned. */
  end(): JsonObject {
    if (!this.#started || this.#outer.length > 0 || this.#inString) throw new OperationalError('the list response ended before its end');
    const text = Buffer.concat(this.#rest).toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (cause) {
      throw new OperationalError('the list response is not valid JSON', { cause });
    }
    return asObject(parsed) ?? {};
  }

  /** Scans bytes outside the elements from `start`; returns where the array's elements begin, or the chunk's end. */
  #scanOuter(chunk: Buffer, start: number): number {
    for (let index = start; index < chunk.length; index++) {
      if (this.#inString) {
        index = this.#skipString(chunk, index) - 1;
        continue;
      }
      const byte = chunk[index] ?? 0;
      if (isWhitespace(byte)) {
        if (this.#expect === 'scalar') this.#expect = 'comma-or-end';
        continue;
      }
      if (this.#outer.length === 1) {
        if (this.#ownLevel(byte)) return index + 1;
      } else if (this.#outer.length === 0) {
        this.#top(byte);
      } else {
        this.#nested(byte);
      }
    }
    return chunk.length;
  }

  /** One byte (not whitespace) at the object's own level; true when it opened the `items` array, whose elements follow. */
  // eslint-disable-next-line complexity -- the grammar of an object's members, one case per expected token: split up, it no longer reads as a grammar.
  #ownLevel(byte: number): boolean {
    switch (this.#expect) {
      case 'key-or-end':
      case 'key':
        if (byte === CLOSE_OBJECT && this.#expect === 'key-or-end') return this.#close(byte);
        if (byte !== QUOTE) throw unexpected(byte, 'a key');
        this.#startString(true);
        return false;
      case 'colon':
        if (byte !== COLON) throw unexpected(byte, 'a colon');
        this.#expect = 'value';
        return false;
      case 'value':
        return this.#value(byte);
      case 'scalar':
      case 'comma-or-end':
        if (byte === COMMA) this.#expect = 'key';
        else if (byte === CLOSE_OBJECT) this.#close(byte);
        else if (this.#expect === 'comma-or-end' || isStructural(byte)) throw unexpected(byte, 'a comma or the end of the object');
        return false;
    }
  }

  /** The first byte of a member's value at the object's own level; true when it opens the `items` array. */
  #value(byte: number): boolean {
    if (byte === QUOTE) {
      this.#startString(false);
      this.#expect = 'comma-or-end';
    } else if (byte === OPEN_ARRAY && isItemsKey(this.#lastKey)) {
      if (this.#seenItems) throw new OperationalError('the list response has two items arrays');
      this.#seenItems = true;
      this.#inItems = true;
      return true;
    } else if (byte === OPEN_OBJECT || byte === OPEN_ARRAY) {
      this.#open(byte);
    } else if (isStructural(byte)) {
      throw unexpected(byte, 'a value');
    } else {
      this.#expect = 'scalar';
    }
    return false;
  }

  /** A byte (not whitespace) outside the object: only its opening brace, once. */
  #top(byte: number): void {
    if (this.#started) throw unexpected(byte, 'the end of the response');
    if (byte !== OPEN_OBJECT) throw unexpected(byte, 'an object');
    this.#started = true;
    this.#expect = 'key-or-end';
    this.#outer.push(byte);
  }

  /** One byte inside a container nested in the object (outside the elements): only strings and nesting matter here. */
  #nested(byte: number): void {
    if (byte === QUOTE) this.#startString(false);
    else if (byte === OPEN_OBJECT || byte === OPEN_ARRAY) this.#open(byte);
    else if (byte === CLOSE_OBJECT || byte === CLOSE_ARRAY) this.#close(byte);
  }

  #open(byte: number): void {
    if (this.#outer.length >= MAX_OUTER_DEPTH) throw new OperationalError(`the list response nests deeper than ${MAX_OUTER_DEPTH} levels outside its items`);
    this.#outer.push(byte);
  }

  /** Closes the innermost container with `byte`; false (nothing opens on a close). */
  #close(byte: number): false {
    const opener = this.#outer.pop();
    if (opener === undefined || (opener === OPEN_OBJECT) !== (byte === CLOSE_OBJECT)) throw unexpected(byte, 'the matching end of a container');
    if (this.#outer.length === 1) this.#expect = 'comma-or-end';
    return false;
  }

  #startString(isKey: boolean): void {
    this.#inString = true;
    this.#key = isKey ? [QUOTE] : undefined;
    if (isKey) this.#expect = 'colon';
  }

  /** Skips string bytes from `start` (just after the opening quote, or mid-string); returns the index after the closing quote, or the chunk's end. */
  #skipString(chunk: Buffer, start: number): number {
    for (let index = start; index < chunk.length; index++) {
      const byte = chunk[index] ?? 0;
      if (this.#key && this.#key.length <= MAX_KEY_BYTES) this.#key.push(byte);
      if (this.#escaped) this.#escaped = false;
      else if (byte === BACKSLASH) this.#escaped = true;
      else if (byte === QUOTE) {
        this.#inString = false;
        this.#lastKey = this.#key ?? this.#lastKey;
        this.#key = undefined;
        return index + 1;
      }
    }
    return chunk.length;
  }

  /** Scans the array's elements from `start`; returns the index after the array's closing bracket, or the chunk's end. */
  // eslint-disable-next-line complexity -- the loop every byte of every element goes through (most of a LIST's bytes): strings and nesting inline, only the array's own level in a call.
  #scanItems(chunk: Buffer, start: number): number {
    let from = start;
    this.#quoteAt = -1;
    this.#backslashAt = -1;
    for (let index = start; index < chunk.length; index++) {
      const byte = chunk[index] ?? 0;
      if (this.#inString) {
        index = this.#stringEnd(chunk, index);
        if (index === chunk.length) break;
        this.#inString = false;
        if (this.#itemDepth === 0) from = this.#complete(chunk.subarray(from, index + 1), index + 1);
      } else if (this.#itemDepth > 0) {
        if (byte === QUOTE) this.#inString = true;
        else if (byte === OPEN_OBJECT || byte === OPEN_ARRAY) this.#itemDepth++;
        else if ((byte === CLOSE_OBJECT || byte === CLOSE_ARRAY) && --this.#itemDepth === 0) from = this.#complete(chunk.subarray(from, index + 1), index + 1);
      } else if (!isWhitespace(byte)) {
        from = this.#itemLevel(chunk, from, index);
        if (!this.#inItems) return index + 1;
      }
    }
    this.#addItemBytes(chunk.subarray(from));
    return chunk.length;
  }

  /**
   * Inside a string of an element, from `start`: the index of its closing quote, or the chunk's end when
   * the string goes on. Strings are most of a ConfigMap's bytes: the next quote and backslash are found
   * with indexOf (native, far faster than a loop over bytes) and remembered until passed.
   */
  #stringEnd(chunk: Buffer, start: number): number {
    let index = start;
    while (index < chunk.length) {
      if (this.#escaped) {
        this.#escaped = false;
        index++;
        continue;
      }
      if (this.#quoteAt < index) this.#quoteAt = indexOrEnd(chunk, QUOTE, index);
      if (this.#backslashAt < index) this.#backslashAt = indexOrEnd(chunk, BACKSLASH, index);
      // Both at the chunk's end: the string goes on in the next chunk.
      if (this.#quoteAt < this.#backslashAt || this.#backslashAt === chunk.length) return this.#quoteAt;
      this.#escaped = true;
      index = this.#backslashAt + 1;
    }
    return chunk.length;
  }

  /**
   * A byte (not whitespace) at the array's own level, at `index`: a separator, or the start of an element.
   * Returns where the bytes of the next element start.
   */
  #itemLevel(chunk: Buffer, from: number, index: number): number {
    const byte = chunk[index] ?? 0;
    if (byte === CLOSE_OBJECT) throw unexpected(byte, 'the end of the items array');
    if (byte === COMMA || byte === CLOSE_ARRAY) return this.#separator(chunk, from, index);
    if (this.#afterElement) throw unexpected(byte, 'a comma or the end of the items array');
    if (byte === QUOTE) this.#inString = true;
    else if (byte === OPEN_OBJECT || byte === OPEN_ARRAY) this.#itemDepth++;
    return from;
  }

  /** A comma or the array's closing bracket at `index`; returns where the next element's bytes start. */
  #separator(chunk: Buffer, from: number, index: number): number {
    const closes = chunk[index] === CLOSE_ARRAY;
    // A number, true, false or null ends only here; a string, object or array was handed out at its end.
    if (this.#afterElement) this.#afterElement = false;
    else this.#element(chunk.subarray(from, index), closes);
    this.#itemParts = [];
    this.#itemBytes = 0;
    if (closes) this.#endItems(chunk.subarray(index, index + 1));
    return index + 1;
  }

  /** A string, object or array element ended with `tail`: handed out at once, not at the separator after it. */
  #complete(tail: Buffer, next: number): number {
    this.#element(tail, false);
    this.#afterElement = true;
    return next;
  }

  /** The bytes read so far and `tail` are one element; `last` when the array's closing bracket follows them. */
  #element(tail: Buffer, last: boolean): void {
    this.#addItemBytes(tail);
    const bytes = this.#itemParts.length === 1 ? (this.#itemParts[0] ?? tail) : Buffer.concat(this.#itemParts);
    this.#itemParts = [];
    this.#itemBytes = 0;
    const text = bytes.toString('utf8');
    // `[]`: an array with no elements has nothing between its brackets but whitespace.
    if (last && this.#itemCount === 0 && text.trim() === '') return;
    let item: unknown;
    try {
      item = JSON.parse(text);
    } catch (cause) {
      throw new OperationalError(`item ${this.#itemCount} of the list is not valid JSON`, { cause });
    }
    this.#itemCount++;
    this.#onItem(item);
  }

  /** The array's closing bracket: the object's own level again. */
  #endItems(closer: Buffer): void {
    this.#inItems = false;
    this.#expect = 'comma-or-end';
    this.#keep(closer);
  }

  #addItemBytes(part: Buffer): void {
    if (part.length === 0) return;
    this.#itemBytes += part.length;
    if (this.#itemBytes > this.#maxBytes) throw new ResponseTooLargeError(`an item of the list is larger than ${this.#maxBytes} bytes`);
    this.#itemParts.push(part);
  }

  /** Bytes outside the elements: kept to parse the rest of the object at the end. */
  #keep(part: Buffer): void {
    if (part.length === 0) return;
    this.#restBytes += part.length;
    if (this.#restBytes > this.#maxBytes) throw new ResponseTooLargeError(`the list response without its items is larger than ${this.#maxBytes} bytes`);
    // A copy: a slice would keep its whole chunk (up to 64 KiB of elements) alive until the page ends.
    this.#rest.push(Buffer.from(part));
  }
}

function indexOrEnd(chunk: Buffer, byte: number, from: number): number {
  const found = chunk.indexOf(byte, from);
  return found === -1 ? chunk.length : found;
}

function isWhitespace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

function isStructural(byte: number): boolean {
  return byte === QUOTE || byte === COMMA || byte === COLON || byte === OPEN_OBJECT || byte === CLOSE_OBJECT || byte === OPEN_ARRAY || byte === CLOSE_ARRAY;
}

/** Whether the raw bytes of a key (with its quotes) spell "items", escapes included. */
function isItemsKey(raw: number[] | undefined): boolean {
  if (!raw || raw.length > MAX_KEY_BYTES) return false;
  try {
    return JSON.parse(Buffer.from(raw).toString('latin1')) === 'items';
  } catch {
    return false;
  }
}

/** The error for a byte the grammar does not allow where it stands; names the byte only when it is structural. */
function unexpected(byte: number, wanted: string): OperationalError {
  const found = isStructural(byte) ? `'${String.fromCharCode(byte)}'` : 'another character';
  return new OperationalError(`the list response is not valid JSON: ${found} where ${wanted} was expected`);
}
