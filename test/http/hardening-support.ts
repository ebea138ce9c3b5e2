// Shared pieces of the hardening suites (test/http/hardening-*.test.ts, test/fuzz/run.ts): a log sink that
// scans every line for the canary without keeping them, a ConfigMapReader that records the namespaces it is
// asked about, app parts at log level trace, a keep-alive HTTPS client, and a GC handle for heap figures.

import https from 'node:https';
import { Writable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { ConfigMapLookup } from '../../src/checksum/compute.ts';
import type { ConfigMapReader } from '../../src/kube/configmaps.ts';
import type { MutateSettings } from '../../src/admission/mutate.ts';
import type { AppParts } from '../../src/server/app.ts';
import { Readiness } from '../../src/server/readiness.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { lookupIn, SETTINGS, type ConfigMapData } from '../unit/fakes.ts';

/** A value that must never leave a ConfigMap: not in logs, responses, warnings, metrics or Events. */
export const CANARY = 'canary-5f3b1c9e-leak';

/**
 * Every log line the app writes: counted, checked to be one JSON object, scanned for the canary, and
 * dropped (a long fuzz run must not grow the heap it measures). The last lines are kept for messages.
 */
export class ScanningLog extends Writable {
  lines = 0;
  readonly leaks: string[] = [];
  readonly notJson: string[] = [];
  readonly levels = new Map<string, number>();
  readonly recent: string[] = [];
  readonly #needle: string;
  #partial = '';

  constructor(needle = CANARY) {
    super();
    this.#needle = needle;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    const text = this.#partial + chunk.toString('utf8');
    const parts = text.split('\n');
    this.#partial = parts.pop() ?? '';
    for (const line of parts) {
      if (line.trim() === '') continue;
      this.lines++;
      if (line.includes(this.#needle)) this.leaks.push(line.slice(0, 500));
      try {
        const level = String((JSON.parse(line) as { level?: unknown }).level);
        this.levels.set(level, (this.levels.get(level) ?? 0) + 1);
      } catch {
        this.notJson.push(line.slice(0, 200));
      }
      this.recent.push(line.slice(0, 300));
      if (this.recent.length > 20) this.recent.shift();
    }
    callback();
  }
}

export interface ReadRecord {
  readonly namespace: string;
  readonly name: string;
}

/** In-memory ConfigMaps of every namespace alike; records each read since the last take(). */
export class RecordingReader implements ConfigMapReader {
  total = 0;
  #calls: ReadRecord[] = [];
  readonly #configMaps: Map<string, ConfigMapData>;
  readonly #unreadable: Map<string, string>;

  constructor(configMaps: Record<string, ConfigMapData>, unreadable: Record<string, string> = {}) {
    this.#configMaps = new Map(Object.entries(configMaps));
    this.#unreadable = new Map(Object.entries(unreadable));
  }

  async read(namespace: string, name: string, _signal: AbortSignal): Promise<ConfigMapLookup> {
    this.total++;
    if (this.#calls.length < 10_000) this.#calls.push({ namespace, name });
    return lookupIn(this.#configMaps, this.#unreadable, name);
  }

  /** The reads since the previous call, and forget them. */
  take(): ReadRecord[] {
    const calls = this.#calls;
    this.#calls = [];
    return calls;
  }
}

export function traceParts(reader: ConfigMapReader, settings: Partial<MutateSettings> = {}, level = 'trace'): AppParts & { log: ScanningLog } {
  const log = new ScanningLog();
  return {
    reader,
    settings: { ...SETTINGS, ...settings },
    logger: createLogger(level, log),
    metrics: createMetrics(),
    readiness: new Readiness(),
    log,
  };
}

export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

export interface Call {
  readonly port: number;
  readonly ca: string;
  readonly method?: string;
  readonly path: string;
  readonly body?: Buffer | string;
  readonly contentType?: string | undefined;
  readonly agent?: https.Agent | false;
  readonly timeoutMs?: number;
  readonly cert?: string;
  readonly key?: string;
  readonly maxVersion?: 'TLSv1.2' | 'TLSv1.3';
}

export function call(options: Call): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = {};
    if (options.body !== undefined) headers['content-length'] = Buffer.byteLength(options.body);
    if (options.contentType !== undefined) headers['content-type'] = options.contentType;
    const request = https.request(
      {
        host: '127.0.0.1',
        port: options.port,
        method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
        path: options.path,
        ca: options.ca,
        agent: options.agent ?? false,
        headers,
        ...(options.cert ? { cert: options.cert, key: options.key } : {}),
        ...(options.maxVersion ? { maxVersion: options.maxVersion } : {}),
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    request.setTimeout(options.timeoutMs ?? 15_000, () => request.destroy(new Error(`${options.path}: no answer within ${options.timeoutMs ?? 15_000} ms`)));
    request.on('error', reject);
    request.end(options.body);
  });
}

/** A callable gc() even without --expose-gc on the command line (the test runner starts each file itself). */
export function gcHandle(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return existing;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/** JavaScript heap plus memory held outside it by heap objects (Buffers, large external strings). */
export function usedMemory(): number {
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.external;
}

/** usedMemory() after full collections (a few, so finalizers and weak references settle). */
export async function settledHeap(gc: () => void): Promise<number> {
  for (let round = 0; round < 4; round++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return usedMemory();
}

export const MiB = 1024 * 1024;

export function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}
