// Watching the app under hostile input (the limits, leak, fuzz, shutdown and client-certificate suites,
// and npm run fuzz): a log sink that scans every line for the canary without keeping them, a
// ConfigMapReader that records the namespaces it is asked about, app parts at log level trace, and a GC
// handle for heap figures.

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
import { lookupIn, SETTINGS, type ConfigMapData } from './fakes.ts';

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
