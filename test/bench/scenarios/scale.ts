// Scenario 5: scale. 10,000 ConfigMaps and 2,500 workloads (Deployments, StatefulSets, DaemonSets, each
// consuming three ConfigMaps three ways) in 20 opted-in namespaces, the cluster the peers' reference
// figures were taken on; then a fresh webhook process, with the watcher, per repetition: time from its
// spawn to its "watches synced" log line, its CPU time (utime + stime from /proc/<pid>/stat) from spawn to
// the end of its start-up check of every annotated workload, and its memory: resident set at sync and
// just after the check (process_resident_memory_bytes on /metrics), and after a rest from
// /proc/<pid>/status (VmRSS, RssAnon, RssFile; VmHWM for the peak). Variants differ only in node flags
// and the memory limit. The floor: the same node and flags with the same program loaded and nothing
// running (load/idle.mjs).

import type { Environment } from '../../../src/local/environment.ts';
import { GiveUp, type KubeClient, type KubeObject } from '../../../src/local/kube.ts';
import { configMap, workload, type WorkloadKind } from '../../e2e/support/scenario.ts';
import { createAll, eachLimited, metricSum, optedInNamespace, say, sleep, waitFor, waitForLogLine, type BenchWebhook, type Metrics } from '../support/cluster.ts';
import { idleFloor } from '../support/floor.ts';
import { createMemoryLimit, shippedMemoryLimitBytes, type MemoryLimit } from '../support/memory-limit.ts';
import { cpuSeconds, isRunning, procMemory } from '../support/proc.ts';
import { spread, type Spread } from '../support/stats.ts';

export interface ScaleOptions {
  readonly configMaps: number;
  readonly workloads: number;
  readonly namespaces: number;
  readonly repetitions: number;
  /** How long the process rests after its start-up check before its memory is read from /proc. */
  readonly restSeconds: number;
  /**
   * Per variant: node flags added to the image's (NODE_OPTIONS of the webhook process; '' is the image's
   * command), and whether the process runs under the shipped Deployment's memory limit (support/memory-limit.ts).
   */
  readonly variants: Readonly<Record<string, { readonly nodeOptions: string; readonly memoryLimit: boolean }>>;
}

/** What the scenario created, for the size-mix variant to build on. */
export interface ScaleCluster {
  readonly createSeconds: { readonly configMaps: number; readonly workloads: number };
  readonly configMaps: ReadonlyArray<{ readonly namespace: string; readonly name: string }>;
  /** Each workload's ConfigMaps (all three consume every key but the configMapKeyRef, which reads key-0.yaml). */
  readonly workloads: ReadonlyArray<{ readonly namespace: string; readonly name: string; readonly configMaps: readonly string[] }>;
}

/** One fresh process, from spawn to rest. */
export interface StartMeasurement {
  readonly readyMs: number;
  readonly syncedConfigMaps: number;
  readonly syncedWorkloads: number;
  readonly checkAllMs: number;
  /** Workloads the start-up check read live, and those it found up to date from the ConfigMap list alone (products that can). */
  readonly checkedWorkloads: number;
  readonly upToDateWhenListed: number;
  /** Rollouts the start-up check asked for: 0 when every workload was up to date, as it should be here. */
  readonly rolloutsDuringCheck: number;
  /** utime + stime from spawn to the end of the start-up check. */
  readonly cpuToCheckEndSeconds: number;
  /** The bench's own /metrics scrapes counted in that CPU time, and what one costs the process. */
  readonly scrapesDuringCheck: number;
  readonly cpuPerScrapeSeconds: number;
  readonly rssAtSyncBytes: number;
  readonly rssAfterCheckBytes: number;
  readonly heapUsedAfterCheckBytes: number;
  readonly rssAtRestBytes: number;
  readonly rssAnonAtRestBytes: number;
  readonly rssFileAtRestBytes: number;
  readonly vmHwmBytes: number;
}

export interface ScaleRepetition extends StartMeasurement {
  readonly variant: string;
}

export interface StartFigures {
  readonly readyMs: Spread;
  readonly rssAtSyncMiB: Spread;
  readonly rssAfterCheckMiB: Spread;
  readonly rssAtRestMiB: Spread;
  readonly rssAnonAtRestMiB: Spread;
  readonly rssFileAtRestMiB: Spread;
  readonly vmHwmMiB: Spread;
  readonly heapUsedAfterCheckMiB: Spread;
  readonly checkAllMs: Spread;
  readonly cpuToCheckEndSeconds: Spread;
  /** The share of the bench's own scrapes in that CPU time (scrapes x CPU per scrape). */
  readonly scrapeCpuSeconds: Spread;
  readonly rolloutsDuringCheck: Spread;
}

export interface ScaleResult {
  readonly options: ScaleOptions;
  /** The limit the memory-limited variants ran under, or why they ran without one. */
  readonly memoryLimit: { readonly bytes: number; readonly applied: boolean; readonly unavailable?: string };
  readonly createSeconds: ScaleCluster['createSeconds'];
  readonly floor: { readonly bareNode: Spread; readonly modulesLoaded: Spread; readonly modulesLoadedHwm: Spread; readonly loadMs: Spread };
  readonly repetitions: readonly ScaleRepetition[];
  /** figures[variant] */
  readonly figures: Readonly<Record<string, StartFigures & {
    /** Resident memory after the check over the floor's (same flags, modules loaded, nothing running). */
    readonly rssToFloor: Spread;
  }>>;
}

const MIB = 2 ** 20;
const KINDS: ReadonlyArray<[WorkloadKind, number]> = [['Deployment', 0.75], ['StatefulSet', 0.15], ['DaemonSet', 0.1]];
// How often the end of the start-up check is looked for: each look is a /metrics scrape, whose CPU lands
// in the very figure being measured, so not more often than the figure's resolution needs.
const CHECK_POLL_MS = 500;

export async function createScaleObjects(client: KubeClient, options: ScaleOptions): Promise<ScaleCluster> {
  const perNamespace = { configMaps: Math.ceil(options.configMaps / options.namespaces), workloads: Math.ceil(options.workloads / options.namespaces) };
  const namespaces: string[] = [];
  for (let index = 0; index < options.namespaces; index++) namespaces.push(await optedInNamespace(client, `bench-scale-${String(index).padStart(3, '0')}`));
  const configMaps: KubeObject[] = [];
  const workloads: KubeObject[] = [];
  const consumed: Array<ScaleCluster['workloads'][number]> = [];
  for (const namespace of namespaces) {
    for (let index = 0; index < perNamespace.configMaps && configMaps.length < options.configMaps; index++) {
      configMaps.push(configMap(namespace, `config-${index}`, smallConfig(namespace, index)));
    }
    let kindIndex = 0;
    let kindLeft = Math.round(perNamespace.workloads * KINDS[0]![1]);
    for (let index = 0; index < perNamespace.workloads && workloads.length < options.workloads; index++) {
      while (kindLeft <= 0 && kindIndex < KINDS.length - 1) kindLeft = Math.round(perNamespace.workloads * KINDS[++kindIndex]![1]);
      kindLeft--;
      const kind = KINDS[kindIndex]![0];
      const [a, b, c] = [index * 3, index * 3 + 1, index * 3 + 2].map((k) => `config-${k % perNamespace.configMaps}`) as [string, string, string];
      const name = `${kind.toLowerCase()}-${index}`;
      const object = workload(kind, namespace, name, { volumeConfigMap: a, envFromConfigMap: b });
      object['spec']['template']['spec']['containers'][0]['env'] = [{ name: 'LEVEL', valueFrom: { configMapKeyRef: { name: c, key: 'key-0.yaml' } } }];
      // No Pods: a DaemonSet has no nodes to run on, Deployments and StatefulSets get no replicas.
      if (kind !== 'DaemonSet') object['spec']['replicas'] = 0;
      workloads.push(object);
      consumed.push({ namespace, name, configMaps: [a, b, c] });
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
  return {
    createSeconds: { configMaps: configMapSeconds, workloads: workloadSeconds },
    configMaps: configMaps.map((object) => ({ namespace: String(object['metadata']['namespace']), name: String(object['metadata']['name']) })),
    workloads: consumed,
  };
}

/** About 1 KiB of data in five keys: a typical application config. */
export function smallConfig(namespace: string, index: number): Record<string, string> {
  return Object.fromEntries(Array.from({ length: 5 }, (_, key) => [`key-${key}.yaml`, `# ${namespace}/config-${index}/${key}\n${'setting: value\n'.repeat(12)}`]));
}

export async function runScale(_environment: Environment, webhook: BenchWebhook, options: ScaleOptions, cluster: ScaleCluster): Promise<ScaleResult> {
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
        const floor = await idleFloor(webhook.program, nodeOptions, 'program', 1_000);
        (floors[variant] ??= []).push(floor.rssBytes);
        if (variant === Object.keys(options.variants)[0]) {
          bare.push((await idleFloor(webhook.program, nodeOptions, 'bare', 1_000)).rssBytes / MIB);
          loaded.push(floor.rssBytes / MIB);
          loadedHwm.push(floor.vmHwmBytes / MIB);
          loadMs.push(floor.loadMs);
        }
        const limited = memoryLimit && !('unavailable' in limit);
        const result: ScaleRepetition = { variant, ...(await measureStart(webhook, { nodeOptions, limit: limited ? limit : undefined, restSeconds: options.restSeconds, syncTimeoutMs: 120_000 })) };
        repetitions.push(result);
        say(`scenario 5, repetition ${repetition}/${options.repetitions}, ${variant}${limited ? ` (memory limit ${limitBytes / MIB} MiB)` : ''}: ${describeStart(result)} (floor ${(floor.rssBytes / MIB).toFixed(0)} MiB)`);
      }
    }
  } finally {
    await webhook.restart([]);
    if (!('unavailable' in limit)) limit.remove();
  }

  const figures: Record<string, ScaleResult['figures'][string]> = {};
  for (const variant of Object.keys(options.variants)) {
    const runs = repetitions.filter((r) => r.variant === variant);
    figures[variant] = { ...startFigures(runs), rssToFloor: spread(runs.map((r, index) => r.rssAfterCheckBytes / floors[variant]![index]!)) };
  }
  const memoryLimitResult = 'unavailable' in limit ? { bytes: limitBytes, applied: false, unavailable: limit.unavailable } : { bytes: limitBytes, applied: true };
  return { options, memoryLimit: memoryLimitResult, createSeconds: cluster.createSeconds, floor: { bareNode: spread(bare), modulesLoaded: spread(loaded), modulesLoadedHwm: spread(loadedHwm), loadMs: spread(loadMs) }, repetitions, figures };
}

export interface StartOptions {
  readonly nodeOptions: string;
  /** The memory limit to run under; none: the heap is sized from the machine's memory. */
  readonly limit: MemoryLimit | undefined;
  readonly restSeconds: number;
  readonly syncTimeoutMs: number;
}

/**
 * A fresh webhook process (the image's program, the harness's flags, shipped defaults) from spawn to
 * rest: synced, its start-up check done, then at rest. Throws when the process dies on the way (under
 * the memory limit: an OOM kill, said so).
 */
export async function measureStart(webhook: BenchWebhook, options: StartOptions): Promise<StartMeasurement> {
  const oomBefore = options.limit?.oomKills() ?? 0;
  try {
    return await startToRest(webhook, options);
  } catch (error) {
    const oomKills = (options.limit?.oomKills() ?? 0) - oomBefore;
    if (oomKills > 0) throw new Error(`the webhook was killed for going over its ${options.limit!.bytes / MIB} MiB memory limit (${oomKills} OOM kill(s)): ${(error as Error).message}`, { cause: error });
    throw error;
  }
}

async function startToRest(webhook: BenchWebhook, options: StartOptions): Promise<StartMeasurement> {
  const spawnedAt = await webhook.restart([], options.nodeOptions, options.limit?.launcher);
  const synced = await waitForLogLine(webhook, 'watches synced', options.syncTimeoutMs);
  const readyMs = Date.parse(String(synced['time'])) - spawnedAt;
  const atSync = await webhook.metrics();
  const checking = await waitForLogLine(webhook, 'checking annotated workloads', 30_000);
  const queued = Number(checking['workloads'] ?? 0);
  const checkStarted = Date.parse(String(checking['time']));
  // The start-up check reads every annotated workload and its ConfigMaps and decides each. The CPU
  // counter is read before each look, so the look that sees the end is not in the figure.
  let scrapes = 0;
  let cpuAtEnd = Number.NaN;
  let atEnd: Metrics = new Map();
  await waitFor('the start-up check to finish', async () => {
    if (!isRunning(webhook.pid)) throw new GiveUp(`the webhook process ${webhook.pid} exited during its start-up check (log: ${webhook.logFile})`);
    const cpu = cpuSeconds(webhook.pid);
    const metrics = await webhook.metrics();
    // A fresh process: its counters started at zero (a baseline scraped at sync would already hold the
    // first decisions of the check, which starts at once).
    if (decided(metrics) < queued) {
      scrapes++;
      return false;
    }
    cpuAtEnd = cpu;
    atEnd = metrics;
    return true;
  }, { timeoutMs: 300_000, intervalMs: CHECK_POLL_MS });
  const checkAllMs = Date.now() - checkStarted;
  await sleep(1_000);
  const settled = await webhook.metrics();
  await sleep(options.restSeconds * 1000);
  const atRest = procMemory(webhook.pid);
  return {
    readyMs,
    syncedConfigMaps: Number(synced['configMaps']),
    syncedWorkloads: Number(synced['workloads']),
    checkAllMs,
    checkedWorkloads: queued,
    upToDateWhenListed: Number(checking['upToDateWhenListed'] ?? 0),
    rolloutsDuringCheck: metricSum(atEnd, 'config_checksum_watch_rollouts_total'),
    cpuToCheckEndSeconds: cpuAtEnd,
    // The scrape at sync, and every look that found the check still running.
    scrapesDuringCheck: scrapes + 1,
    cpuPerScrapeSeconds: await cpuPerScrape(webhook),
    rssAtSyncBytes: metricSum(atSync, 'process_resident_memory_bytes'),
    rssAfterCheckBytes: metricSum(settled, 'process_resident_memory_bytes'),
    heapUsedAfterCheckBytes: metricSum(settled, 'nodejs_heap_size_used_bytes'),
    rssAtRestBytes: atRest.rssBytes,
    rssAnonAtRestBytes: atRest.rssAnonBytes,
    rssFileAtRestBytes: atRest.rssFileBytes,
    vmHwmBytes: atRest.vmHwmBytes,
  };
}

function decided(metrics: Metrics): number {
  return metricSum(metrics, 'config_checksum_watch_skipped_total') + metricSum(metrics, 'config_checksum_watch_rollouts_total') + metricSum(metrics, 'config_checksum_watch_errors_total', 'operation="reconcile"');
}

/** What one /metrics scrape (a fresh TLS connection each) costs the process, over 10 of them at rest. */
async function cpuPerScrape(webhook: BenchWebhook): Promise<number> {
  const before = cpuSeconds(webhook.pid);
  for (let index = 0; index < 10; index++) await webhook.metrics();
  return (cpuSeconds(webhook.pid) - before) / 10;
}

export function startFigures(runs: readonly StartMeasurement[]): StartFigures {
  const pick = (f: (r: StartMeasurement) => number): Spread => spread(runs.map(f));
  return {
    readyMs: pick((r) => r.readyMs),
    rssAtSyncMiB: pick((r) => r.rssAtSyncBytes / MIB),
    rssAfterCheckMiB: pick((r) => r.rssAfterCheckBytes / MIB),
    rssAtRestMiB: pick((r) => r.rssAtRestBytes / MIB),
    rssAnonAtRestMiB: pick((r) => r.rssAnonAtRestBytes / MIB),
    rssFileAtRestMiB: pick((r) => r.rssFileAtRestBytes / MIB),
    vmHwmMiB: pick((r) => r.vmHwmBytes / MIB),
    heapUsedAfterCheckMiB: pick((r) => r.heapUsedAfterCheckBytes / MIB),
    checkAllMs: pick((r) => r.checkAllMs),
    cpuToCheckEndSeconds: pick((r) => r.cpuToCheckEndSeconds),
    scrapeCpuSeconds: pick((r) => r.scrapesDuringCheck * r.cpuPerScrapeSeconds),
    rolloutsDuringCheck: pick((r) => r.rolloutsDuringCheck),
  };
}

export function describeStart(r: StartMeasurement): string {
  const mib = (bytes: number): string => (bytes / MIB).toFixed(0);
  return `synced ${r.syncedConfigMaps} ConfigMaps, ${r.syncedWorkloads} workloads after ${(r.readyMs / 1000).toFixed(2)} s; check of ${r.checkedWorkloads} (${r.upToDateWhenListed} more up to date from the list) in ${(r.checkAllMs / 1000).toFixed(1)} s (${r.rolloutsDuringCheck} rollouts); CPU to the check's end ${r.cpuToCheckEndSeconds.toFixed(2)} s; RSS ${mib(r.rssAtSyncBytes)} MiB at sync, ${mib(r.rssAfterCheckBytes)} MiB after the check, ${mib(r.rssAtRestBytes)} MiB at rest (anon ${mib(r.rssAnonAtRestBytes)}, file ${mib(r.rssFileAtRestBytes)}), peak ${mib(r.vmHwmBytes)} MiB`;
}
