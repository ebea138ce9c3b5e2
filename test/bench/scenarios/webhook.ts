// Scenario 1: the webhook alone over HTTPS with keep-alive, the ~10 KB Deployment UPDATE review of
// support/review.ts, at fixed rates and at saturation. Three servers, each in its own process, with the
// load generator in another (placement on the cores is left to the OS scheduler: nothing is pinned):
// the floor (minimal fastify), the product with ConfigMaps from memory, the product with live reads from
// kube-apiserver. Per repetition each server is started fresh, warmed up, then measured; the order of
// the servers rotates from one repetition to the next so drift does not favour one of them.

import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { LoadJob, LoadResult } from '../load/loadgen.ts';
import type { ServerArgs, ServerVariant } from '../load/server.ts';
import { forkChild } from '../support/children.ts';
import { metricSum, say, scrape, type Metrics } from '../support/cluster.ts';
import { cpuSeconds } from '../support/proc.ts';
import { benchReview } from '../support/review.ts';
import { ratioSpread, spread, type Spread } from '../support/stats.ts';

export interface WebhookLoadOptions {
  readonly repetitions: number;
  readonly variants: readonly ServerVariant[];
  readonly rates: readonly number[];
  /** Also measure each rate with evenly spaced arrivals (see load/loadgen.ts). */
  readonly paced: boolean;
  readonly connections: number;
  readonly warmupSeconds: number;
  readonly settleSeconds: number;
  readonly durationSeconds: number;
  readonly namespace: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** The webhook's kubeconfig, for the live variant. */
  readonly kubeconfig?: string;
  readonly logDir: string;
  readonly nodeArgs?: readonly string[];
}

export interface Measurement {
  readonly variant: ServerVariant;
  readonly repetition: number;
  /** e.g. "autocannon@500", "paced@500", "saturation". */
  readonly load: string;
  readonly result: LoadResult;
  /** CPU time of the server process per request, in microseconds (from /proc/<pid>/stat). */
  readonly serverCpuMicrosPerRequest: number;
  /** The product's own histograms over the load (settle part included): mean admission, mean ConfigMap read. */
  readonly productAdmissionMeanMs?: number;
  readonly productReadMeanMs?: number;
}

export interface FigureSet {
  readonly p50Ms: Spread;
  readonly p99Ms: Spread;
  readonly maxMs: Spread;
  readonly achievedRate: Spread;
  readonly serverCpuMicrosPerRequest: Spread;
  readonly productAdmissionMeanMs: Spread;
  readonly productReadMeanMs: Spread;
  /** Per repetition, this variant over the floor (same load, same repetition). */
  readonly p50ToFloor?: Spread;
  readonly p99ToFloor?: Spread;
  readonly rateToFloor?: Spread;
}

export interface WebhookLoadResult {
  readonly options: Omit<WebhookLoadOptions, 'certFile' | 'keyFile' | 'caFile' | 'kubeconfig' | 'logDir'>;
  readonly reviewBytes: number;
  /** What each server answered to the review (checked before loading it). */
  readonly answers: Readonly<Record<string, string>>;
  readonly measurements: readonly Measurement[];
  /** figures[variant][load] */
  readonly figures: Readonly<Record<string, Readonly<Record<string, FigureSet>>>>;
}

export async function runWebhookLoad(options: WebhookLoadOptions): Promise<WebhookLoadResult> {
  const { body } = benchReview(options.namespace);
  const ca = readFileSync(options.caFile, 'utf8');
  const measurements: Measurement[] = [];
  const answers: Record<string, string> = {};
  for (let repetition = 1; repetition <= options.repetitions; repetition++) {
    const order = rotate(options.variants, repetition - 1);
    for (const variant of order) {
      const args: ServerArgs = { variant, certFile: options.certFile, keyFile: options.keyFile, namespace: options.namespace, ...(options.kubeconfig ? { kubeconfig: options.kubeconfig } : {}) };
      const server = forkChild<{ port: number; pid: number }>('load/server.ts', args, { logFile: path.join(options.logDir, `server-${variant}.log`), nodeArgs: options.nodeArgs ?? [] });
      try {
        const { port } = await server.message;
        answers[variant] = await answerShape(port, ca, body);
        const job = (load: Partial<LoadJob>): LoadJob => ({ mode: 'autocannon', port, path: '/mutate', body, connections: options.connections, settleSeconds: options.settleSeconds, durationSeconds: options.durationSeconds, ca, ...load });
        say(`scenario 1, repetition ${repetition}/${options.repetitions}: ${variant} (port ${port}), warm-up ${options.warmupSeconds} s`);
        await generate(job({ settleSeconds: 0, durationSeconds: options.warmupSeconds }));
        const loads: Array<[string, Partial<LoadJob>]> = [];
        for (const rate of options.rates) {
          loads.push([`autocannon@${rate}`, { rate }]);
          if (options.paced) loads.push([`paced@${rate}`, { mode: 'paced', rate }]);
        }
        loads.push(['saturation', {}]);
        const product = variant !== 'floor';
        const productMetrics = (): Promise<Metrics | undefined> => (product ? scrape({ port, path: '/metrics', ca }) : Promise.resolve(undefined));
        for (const [load, partial] of loads) {
          const before = await productMetrics();
          const cpuBefore = cpuSeconds(server.pid);
          const result = await generate(job(partial));
          const cpu = (cpuSeconds(server.pid) - cpuBefore) * 1e6;
          const after = await productMetrics();
          // The CPU counter also ran during the settle part: charge it to every request answered.
          const answered = result.responses * (1 + options.settleSeconds / Math.max(1e-9, result.durationSeconds));
          measurements.push({
            variant,
            repetition,
            load,
            result,
            serverCpuMicrosPerRequest: cpu / Math.max(1, answered),
            ...(before && after
              ? {
                  productAdmissionMeanMs: meanMs(before, after, 'config_checksum_admission_duration_seconds'),
                  ...(variant === 'live' ? { productReadMeanMs: meanMs(before, after, 'config_checksum_configmap_read_duration_seconds') } : {}),
                }
              : {}),
          });
          const l = result.latency;
          say(`  ${variant} ${load}: ${result.achievedRate.toFixed(0)} req/s, p50 ${l.p50.toFixed(2)} ms, p99 ${l.p99.toFixed(2)} ms, max ${l.max.toFixed(1)} ms${result.errors + result.non2xx > 0 ? `, ${result.errors} errors, ${result.non2xx} non-2xx` : ''}`);
        }
      } finally {
        await server.stop();
      }
    }
  }
  return {
    options: {
      repetitions: options.repetitions,
      variants: options.variants,
      rates: options.rates,
      paced: options.paced,
      connections: options.connections,
      warmupSeconds: options.warmupSeconds,
      settleSeconds: options.settleSeconds,
      durationSeconds: options.durationSeconds,
      namespace: options.namespace,
      ...(options.nodeArgs ? { nodeArgs: options.nodeArgs } : {}),
    },
    reviewBytes: Buffer.byteLength(body),
    answers,
    measurements,
    figures: figures(measurements, options.repetitions),
  };
}

function figures(measurements: readonly Measurement[], repetitions: number): Record<string, Record<string, FigureSet>> {
  const out: Record<string, Record<string, FigureSet>> = {};
  const series = (variant: string, load: string, pick: (m: Measurement) => number): number[] =>
    Array.from({ length: repetitions }, (_, index) => {
      const found = measurements.find((m) => m.variant === variant && m.load === load && m.repetition === index + 1);
      return found ? pick(found) : Number.NaN;
    });
  const variants = [...new Set(measurements.map((m) => m.variant))];
  const loads = [...new Set(measurements.map((m) => m.load))];
  for (const variant of variants) {
    out[variant] = {};
    for (const load of loads) {
      const p50 = series(variant, load, (m) => m.result.latency.p50);
      const p99 = series(variant, load, (m) => m.result.latency.p99);
      const rate = series(variant, load, (m) => m.result.achievedRate);
      const hasFloor = variant !== 'floor' && variants.includes('floor');
      out[variant][load] = {
        p50Ms: spread(p50),
        p99Ms: spread(p99),
        maxMs: spread(series(variant, load, (m) => m.result.latency.max)),
        achievedRate: spread(rate),
        serverCpuMicrosPerRequest: spread(series(variant, load, (m) => m.serverCpuMicrosPerRequest)),
        productAdmissionMeanMs: spread(series(variant, load, (m) => m.productAdmissionMeanMs ?? Number.NaN)),
        productReadMeanMs: spread(series(variant, load, (m) => m.productReadMeanMs ?? Number.NaN)),
        ...(hasFloor
          ? {
              p50ToFloor: ratioSpread(p50, series('floor', load, (m) => m.result.latency.p50)),
              p99ToFloor: ratioSpread(p99, series('floor', load, (m) => m.result.latency.p99)),
              rateToFloor: ratioSpread(rate, series('floor', load, (m) => m.result.achievedRate)),
            }
          : {}),
      };
    }
  }
  return out;
}

async function generate(job: LoadJob): Promise<LoadResult> {
  const generator = forkChild<LoadResult>('load/loadgen.ts', job);
  try {
    return await generator.message;
  } finally {
    await generator.stop();
  }
}

/** One request before the load: what the server answers (allowed, patch operations), so a broken server is not measured. */
function answerShape(port: number, ca: string, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = https.request({ host: '127.0.0.1', port, method: 'POST', path: '/mutate', ca, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const answer = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { response?: { allowed?: boolean; patch?: string; warnings?: string[] } };
        const patch = answer.response?.patch ? (JSON.parse(Buffer.from(answer.response.patch, 'base64').toString('utf8')) as unknown[]) : [];
        if (response.statusCode !== 200 || answer.response?.allowed !== true) reject(new Error(`server answered ${response.statusCode}: ${JSON.stringify(answer).slice(0, 300)}`));
        else if ((answer.response.warnings ?? []).length > 0) reject(new Error(`server answered with warnings: ${answer.response.warnings!.join('; ')}`));
        else resolve(`allowed, ${patch.length} patch operation(s)`);
      });
    });
    request.on('error', reject);
    request.end(body);
  });
}

function meanMs(before: Metrics, after: Metrics, histogram: string): number {
  const count = metricSum(after, `${histogram}_count`) - metricSum(before, `${histogram}_count`);
  const sum = metricSum(after, `${histogram}_sum`) - metricSum(before, `${histogram}_sum`);
  return count > 0 ? (sum / count) * 1000 : Number.NaN;
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const shift = by % Math.max(1, items.length);
  return [...items.slice(shift), ...items.slice(0, shift)];
}
