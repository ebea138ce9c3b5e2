// The watch streams of the reflectors (watch/reflector.ts), over KubeHttp: one GET with `watch=1` whose
// body is a line of JSON per event. Its inactivity timeout (30 s) is the watchdog for a silently dead
// connection. Behind an interface, so the reflector can be driven without an API server.

import { ApiError, MAX_RESPONSE_BYTES, ResponseTooLargeError, type KubeHttp, type StreamOptions } from './http.ts';
import { GoneError } from './list.ts';
import { OperationalError } from '../util/errors.ts';
import { asObject, asString } from '../util/json.ts';

export interface WatchSource {
  /**
   * Opens `path` with `query` (resourceVersion, allowWatchBookmarks, timeoutSeconds, labelSelector);
   * `onEvent` gets each event's type and object, `onDone` the end of the stream, once: none when the API
   * server ended it, else the error (after the controller closed it, the abort's reason).
   * Resolves with the controller that closes the stream.
   */
  watch(
    path: string,
    query: Record<string, string | number | boolean>,
    onEvent: (phase: string, object: unknown) => void,
    onDone: (error: unknown) => void,
  ): Promise<AbortController>;
}

export interface WatchSourceOptions {
  /** A stream silent this long ends with a TimeoutError. */
  readonly idleTimeoutMs?: number;
}

// 30 s: a connection that died without a word (no FIN, no RST) is noticed within half a minute. A quiet
// watch is re-opened as often (cheap: from the last resourceVersion; API servers send bookmarks only about
// once a minute).
const IDLE_TIMEOUT_MS = 30_000;
const NEWLINE = 0x0a;

export function watchSource(http: KubeHttp, options: WatchSourceOptions = {}): WatchSource {
  const idleTimeoutMs = options.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
  return {
    watch: async (path, query, onEvent, onDone) => {
      const controller = new AbortController();
      const params = new URLSearchParams({ watch: '1' });
      for (const [key, value] of Object.entries(query)) params.set(key, String(value));
      let done = false;
      const finish = (error: unknown): void => {
        if (done) return;
        done = true;
        controller.abort();
        onDone(error);
      };
      streamEvents(http, { path, query: params }, { signal: controller.signal, idleTimeoutMs }, onEvent).then(() => finish(undefined), finish);
      return controller;
    },
  };
}

/** Reads the events of one watch; resolves when the API server ends it, rejects on everything else. */
async function streamEvents(http: KubeHttp, target: { path: string; query: URLSearchParams }, options: StreamOptions, onEvent: (phase: string, object: unknown) => void): Promise<void> {
  const stream = await http.stream(`${target.path}?${target.query}`, options);
  if (stream.status !== 200) {
    stream.discard();
    // 410: the resourceVersion is too old to watch from (usually said in an ERROR event instead).
    if (stream.status === 410) throw new GoneError('watch expired');
    throw new ApiError(`WATCH ${target.path}`, stream.status);
  }
  const lines = new LineSplitter((line) => {
    const event = parseEvent(line);
    if (event) onEvent(event.type, event.object);
  });
  await stream.read((chunk) => lines.write(chunk));
  lines.end();
}

/** One line of a watch stream as an event; undefined for a blank line. */
function parseEvent(line: Buffer): { type: string; object: unknown } | undefined {
  const text = line.toString('utf8');
  if (text.trim() === '') return undefined;
  let event: unknown;
  try {
    event = JSON.parse(text);
  } catch (cause) {
    throw new OperationalError('a watch event is not valid JSON', { cause });
  }
  const type = asString(asObject(event)?.['type']);
  if (type === undefined) throw new OperationalError('a watch event has no type');
  return { type, object: asObject(event)?.['object'] };
}

/** Lines from chunks that may end anywhere: an event's JSON never holds a raw newline (strings escape it), nor does UTF-8 inside a character. */
class LineSplitter {
  readonly #onLine: (line: Buffer) => void;
  #parts: Buffer[] = [];
  #bytes = 0;

  constructor(onLine: (line: Buffer) => void) {
    this.#onLine = onLine;
  }

  write(chunk: Buffer): void {
    let start = 0;
    for (let end = chunk.indexOf(NEWLINE); end !== -1; end = chunk.indexOf(NEWLINE, start)) {
      this.#add(chunk.subarray(start, end));
      this.end();
      start = end + 1;
    }
    this.#add(chunk.subarray(start));
  }

  /** Hands out the line read so far (the last one, when the stream ends without a newline). */
  end(): void {
    const line = this.#parts.length === 1 ? this.#parts[0] : Buffer.concat(this.#parts);
    this.#parts = [];
    this.#bytes = 0;
    if (line && line.length > 0) this.#onLine(line);
  }

  #add(part: Buffer): void {
    if (part.length === 0) return;
    this.#bytes += part.length;
    if (this.#bytes > MAX_RESPONSE_BYTES) throw new ResponseTooLargeError(`a watch event larger than ${MAX_RESPONSE_BYTES} bytes`);
    this.#parts.push(part);
  }
}
