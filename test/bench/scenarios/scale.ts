// Scenario 5: scale. 10,000 ConfigMaps and 2,000 workloads (Deployments, StatefulSets, DaemonSets, each
// consuming three ConfigMaps three ways) in opted-in namespaces; then a fresh webhook process, with the
// watcher, per repetition: time from its spawn to its "watches synced" log line, and its memory: resident
// set at sync and after the start-up check of every annotated workload (process_resident_memory_bytes on
// /metrics), and the peak (VmHWM of /proc/<pid>/status). Variants differ only in node flags.
// The floor: the same node and flags with the same program loaded and nothing running (load/idle.mjs).

import { readFileSync } from 'node:fs';
import type { Environment } from '../../../src/local/environment.ts';
import type { KubeClient, KubeObject } from '../../../src/local/kube.ts';
import { configMap, workload, type WorkloadKind } from '../../e2e/support/scenario.ts';
import { forkChild } from '../support/children.ts';
import { createAll, eachLimited, metricSum, optedInNamespace, say, sleep, waitFor, waitForLogLine, type BenchWebhook } from '../support/cluster.ts';
import { createMemoryLimit, shippedMemoryLimitBytes } from '../support/memory-limit.ts';
import { spread, type Spread } from '../support/stats.ts';

export interface ScaleOptions {
  readonly configMaps: number;
  readonly workloads: number;
  readonly namespaces: number;
  readonly repetitions: number;
  /**
   * Per variant: node flags added to the image's (NODE_OPTIONS of the webhook process; '' is the image's
   * command), and whether the process runs under the shipped Deployment's memory limit (support/memory-limit.ts).
   */
  readonly variants: Readonly<Record<string, { readonly nodeOptions: string; readonly memoryLimit: boolean }>>;
}

export interface ScaleRepetition {
  readonly variant: string;
  readonly readyMs: number;
  readonly syncedConfigMaps: number;
  readonly syncedWorkloads: number;
  readonly checkAllMs: number;
  readonly rssAtSyncBytes: number;
  readonly rssAfterCheckBytes: number;
  readonly heapUsedAfterCheckBytes: number;
  readonly vmHwmBytes: number;
}

export interface ScaleResult {
  readonly options: ScaleOptions;
  /** The limit the memory-limited variants ran under, or why they ran without one. */
  readonly memoryLimit: { readonly bytes: number; readonly applied: boolean; readonly unavailable?: string };
  readonly createSeconds: { readonly configMaps: number; readonly workloads: number };
  readonly floor: { readonly bareNode: Spread; readonly modulesLoaded: Spread; readonly modulesLoadedHwm: Spread; readonly loadMs: Spread };
  readonly repetitions: readonly ScaleRepetition[];
  /** figures[variant] */
  readonly figures: Readonly<Record<string, {
    readonly readyMs: Spread;
    readonly rssAtSyncMiB: Spread;
    readonly rssAfterCheckMiB: Spread;
    readonly vmHwmMiB: Spread;
    readonly heapUsedAfterCheckMiB: Spread;
    readonly checkAllMs: Spread;
    /** Resident memory after the check over the floor's (same flags, modules loaded, nothing running). */
    readonly rssToFloor: Spread;
  }>>;
}

const MIB = 2 ** 20;
const KINDS: ReadonlyArray<[WorkloadKind, number]> = [['Deployment', 0.75], ['StatefulSet', 0.15], ['DaemonSet', 0.1]];

export async function createScaleObjects(client: KubeClient, options: ScaleOptions): Promise<ScaleResult['createSeconds']> {
  const perNamespace = { configMaps: Math.ceil(options.configMaps / options.namespaces), workloads: Math.ceil(options.workloads / options.namespaces) };
  const namespaces: string[] = [];
  for (let index = 0; index < options.namespaces; index++) namespaces.push(await optedInNamespace(client, `bench-scale-${String(index).padStart(3, '0')}`));
  const configMaps: KubeObject[] = [];
  const workloads: KubeObject[] = [];
  for (const namespace of namespaces) {
    for (let index = 0; index < perNamespace.configMaps && configMaps.length < options.configMaps; index++) {
      // About 1 KiB of data in five keys: a typical application config.
      configMaps.push(configMap(namespace, `config-${index}`, Object.fromEntries(Array.from({ length: 5 }, (_, key) => [`key-${key}.yaml`, `# ${namespace}/config-${index}/${key}\n${'setting: value\n'.repeat(12)}`]))));
    }
    let kindIndex = 0;
    let kindLeft = Math.round(perNamespace.workloads * KINDS[0]![1]);
    for (let index = 0; index < perNamespace.workloads && workloads.length < options.workloads; index++) {
      while (kindLeft <= 0 && kindIndex < KINDS.length - 1) kindLeft = Math.round(perNamespace.workloads * KINDS[++kindIndex]![1]);
      kindLeft--;
      const kind = KINDS[kindIndex]![0];
      const [a, b, c] = [index * 3, index * 3 + 1, index * 3 + 2].map((k) => `config-${k % perNamespace.configMaps}`);
      const object = workload(kind, namespace, `${kind.toLowerCase()}-${index}`, { volumeConfigMap: a!, envFromConfigMap: b! });
      object['spec']['template']['spec']['containers'][0]['env'] = [{ name: 'LEVEL', valueFrom: { configMapKeyRef: { name: c, key: 'key-0.yaml' } } }];
      // No Pods: a DaemonSet has no nodes to run on, Deployments and StatefulSets get no replicas.
      if (kind !== 'DaemonSet') object['spec']['replicas'] = 0;
      workloads.push(object);
    }
  }
  let started = performance.now();
  await createAll(client, configMaps, 16);
  const configMapSeconds = (performance.now() - started) / 1000;
  say(`scenario 5: ${configMaps.length} ConfigMaps created in ${configMapSeconds.toFixed(1)} s`);
  started = performance.now();
  await eachLimited(workloads, 8, async (object) => {
    await client.create(object);
  });
  const workloadSeconds = (performance.now() - started) / 1000;
  say(`scenario 5: ${workloads.length} workloads created in ${workloadSeconds.toFixed(1)} s`);
  return { configMaps: configMapSeconds, workloads: workloadSeconds };
}

export async function runScale(_environment: Environment, webhook: BenchWebhook, options: ScaleOptions, createSeconds: ScaleResult['createSeconds']): Promise<ScaleResult> {
  const repetitions: ScaleRepetition[] = [];
  const floors: Record<string, number[]> = {};
  const bare: number[] = [];
  const loaded: number[] = [];
  const loadedHwm: number[] = [];
  const loadMs: number[] = [];
  const limitBytes = shippedMemoryLimitBytes();
  const limit = createMemoryLimit(limitBytes, `config-checksum-bench-${process.pid}`);
  if ('unavailable' in limit) say(`scenario 5: the Deployment's memory limit cannot be applied here (${limit.unavailable}); every variant runs without it`);
  try {
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      for (const [variant, { nodeOptions, memoryLimit }] of Object.entries(options.variants)) {
        const floor = await idleFloor(webhook.program, nodeOptions);
        (floors[variant] ??= []).push(floor.rssBytes);
        if (variant === Object.keys(options.variants)[0]) {
          bare.push((await idleFloor(webhook.program, nodeOptions, 'bare')).rssBytes / MIB);
          loaded.push(floor.rssBytes / MIB);
          loadedHwm.push(floor.vmHwmBytes / MIB);
          loadMs.push(floor.loadMs);
        }
        const spawnedAt = await webhook.restart([], nodeOptions, memoryLimit && !('unavailable' in limit) ? limit.launcher : undefined);
        const synced = await waitForLogLine(webhook, 'watches synced', 120_000);
        const readyMs = Date.parse(String(synced['time'])) - spawnedAt;
        const atSync = await webhook.metrics();
        const checking = await waitForLogLine(webhook, 'checking annotated workloads', 30_000);
        const queued = Number(checking['workloads'] ?? 0);
        // The start-up check reads every annotated workload and its ConfigMaps and finds it up to date.
        const checkStarted = Date.parse(String(checking['time']));
        const decided = (metrics: Map<string, number>): number =>
          metricSum(metrics, 'config_checksum_watch_skipped_total') + metricSum(metrics, 'config_checksum_watch_rollouts_total') + metricSum(metrics, 'config_checksum_watch_errors_total', 'operation="reconcile"');
        // A fresh process: its counters started at zero (a baseline scraped at sync would already hold the
        // first decisions of the check, which starts at once).
        await waitFor('the start-up check to finish', async () => decided(await webhook.metrics()) >= queued, { timeoutMs: 300_000, intervalMs: 250 });
        const checkAllMs = Date.now() - checkStarted;
        await sleep(1_000);
        const settled = await webhook.metrics();
        const result: ScaleRepetition = {
          variant,
          readyMs,
          syncedConfigMaps: Number(synced['configMaps']),
          syncedWorkloads: Number(synced['workloads']),
          checkAllMs,
          rssAtSyncBytes: metricSum(atSync, 'process_resident_memory_bytes'),
          rssAfterCheckBytes: metricSum(settled, 'process_resident_memory_bytes'),
          heapUsedAfterCheckBytes: metricSum(settled, 'nodejs_heap_size_used_bytes'),
          vmHwmBytes: vmHwm(webhook.pid),
        };
        repetitions.push(result);
        say(`scenario 5, repetition ${repetition}/${options.repetitions}, ${variant}${memoryLimit && !('unavailable' in limit) ? ` (memory limit ${limitBytes / MIB} MiB)` : ''}: synced ${result.syncedConfigMaps} ConfigMaps, ${result.syncedWorkloads} workloads after ${(readyMs / 1000).toFixed(2)} s; check of ${queued} in ${(checkAllMs / 1000).toFixed(1)} s; RSS ${(result.rssAtSyncBytes / MIB).toFixed(0)} MiB at sync, ${(result.rssAfterCheckBytes / MIB).toFixed(0)} MiB after, peak ${(result.vmHwmBytes / MIB).toFixed(0)} MiB (floor ${(floor.rssBytes / MIB).toFixed(0)} MiB)`);
      }
    }
  } finally {
    await webhook.restart([]);
    if (!('unavailable' in limit)) limit.remove();
  }

  const figures: Record<string, ScaleResult['figures'][string]> = {};
  for (const variant of Object.keys(options.variants)) {
    const runs = repetitions.filter((r) => r.variant === variant);
    const pick = (f: (r: ScaleRepetition) => number): Spread => spread(runs.map(f));
    figures[variant] = {
      readyMs: pick((r) => r.readyMs),
      rssAtSyncMiB: pick((r) => r.rssAtSyncBytes / MIB),
      rssAfterCheckMiB: pick((r) => r.rssAfterCheckBytes / MIB),
      vmHwmMiB: pick((r) => r.vmHwmBytes / MIB),
      heapUsedAfterCheckMiB: pick((r) => r.heapUsedAfterCheckBytes / MIB),
      checkAllMs: pick((r) => r.checkAllMs),
      rssToFloor: spread(runs.map((r, index) => r.rssAfterCheckBytes / floors[variant]![index]!)),
    };
  }
  const memoryLimitResult = 'unavailable' in limit ? { bytes: limitBytes, applied: false, unavailable: limit.unavailable } : { bytes: limitBytes, applied: true };
  return { options, memoryLimit: memoryLimitResult, createSeconds, floor: { bareNode: spread(bare), modulesLoaded: spread(loaded), modulesLoadedHwm: spread(loadedHwm), loadMs: spread(loadMs) }, repetitions, figures };
}

/**
 * The idle process under the same node flags as the webhook (the image's plus the variant's), loading its
 * program or nothing. Never under the memory limit: an idle process's few MiB of heap are far below any
 * heap limit, so the limit cannot change its figure.
 */
async function idleFloor(program: readonly string[], nodeOptions: string, load?: 'bare'): Promise<{ rssBytes: number; vmHwmBytes: number; loadMs: number }> {
  const imageFlags = program.slice(0, -1);
  const child = forkChild<{ rssBytes: number; vmHwmBytes: number; loadMs: number }>('load/idle.mjs', load ?? program.at(-1), { nodeArgs: [...imageFlags, ...nodeOptions.split(' ').filter(Boolean)] });
  try {
    return await child.message;
  } finally {
    await child.stop();
  }
}

function vmHwm(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN) * 1024;
}
