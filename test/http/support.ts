// The app's parts for the HTTP suites, with its log lines kept for assertions.

import { Writable } from 'node:stream';
import type { AppParts } from '../../src/server/app.ts';
import { Readiness } from '../../src/server/readiness.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import type { ConfigMapReader } from '../../src/kube/configmaps.ts';
import type { MutateSettings } from '../../src/admission/mutate.ts';
import { SETTINGS } from '../support/fakes.ts';

/** Every JSON log line the app writes, parsed. */
export class LogLines extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      this.raw.push(line);
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    callback();
  }

  /** Every line, as written. */
  get text(): string {
    return this.raw.join('\n');
  }
}

export function testParts(reader: ConfigMapReader, settings: Partial<MutateSettings> = {}): AppParts & { logs: LogLines } {
  const logs = new LogLines();
  return {
    reader,
    settings: { ...SETTINGS, ...settings },
    logger: createLogger('info', logs),
    metrics: createMetrics(),
    readiness: new Readiness(),
    logs,
  };
}
