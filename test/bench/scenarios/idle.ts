// Scenario 6: the idle process. The image's program (the bundle of src/build.ts with the ENTRYPOINT's node
// flags, shipped defaults, under the shipped Deployment's memory limit, as scenario 5 runs it) on a bare
// cluster: nothing beyond the system's own objects and the harness's canary. Ready means its /readyz
// answers 200 and its watcher logged "watches synced"; then it rests, and its memory is read from
// /proc/<pid>/status, which does not touch the process (a /metrics scrape would allocate in it).
// Beside it, the floors Node itself sets: node running an empty file, node with only node:https and
// node:crypto loaded, and node with the bundle loaded and nothing started, each at rest as long.

import { say, sleep, waitForLogLine, type BenchWebhook } from '../support/cluster.ts';
import { idleFloor, type FloorFigures } from '../support/floor.ts';
import { createMemoryLimit, shippedMemoryLimitBytes } from '../support/memory-limit.ts';
import { cpuSeconds, procMemory, type ProcMemory } from '../support/proc.ts';
import { spread, type Spread } from '../support/stats.ts';

export interface IdleOptions {
  readonly repetitions: number;
  /** How long the ready process rests before its memory is read. */
  readonly restSeconds: number;
}

export interface IdleRepetition {
  readonly readyMs: number;
  readonly memory: ProcMemory;
  /** utime + stime over the rest: the cost of lease renewals and open watches. */
  readonly restCpuSeconds: number;
  readonly floors: Readonly<Record<'bare' | 'builtins' | 'program', FloorFigures>>;
}

type MemoryFigures = { readonly rssMiB: Spread; readonly rssAnonMiB: Spread; readonly rssFileMiB: Spread };

export interface IdleResult {
  readonly options: IdleOptions;
  readonly memoryLimit: { readonly bytes: number; readonly applied: boolean; readonly unavailable?: string };
  /** What the cluster held when the process synced (its own log line). */
  readonly synced: { readonly configMaps: number; readonly workloads: number; readonly namespacesInScope: number };
  readonly repetitions: readonly IdleRepetition[];
  readonly figures: MemoryFigures & {
    readonly readyMs: Spread;
    readonly vmHwmMiB: Spread;
    readonly restCpuSeconds: Spread;
    readonly floors: Readonly<Record<'bare' | 'builtins' | 'program', MemoryFigures>>;
  };
}

const MIB = 2 ** 20;

export async function runIdle(webhook: BenchWebhook, options: IdleOptions): Promise<IdleResult> {
  const limitBytes = shippedMemoryLimitBytes();
  const limit = createMemoryLimit(limitBytes, `config-checksum-bench-idle-${process.pid}`);
  if ('unavailable' in limit) say(`scenario 6: the Deployment's memory limit cannot be applied here (${limit.unavailable}); the process runs without it`);
  const repetitions: IdleRepetition[] = [];
  let synced: Record<string, unknown> = {};
  try {
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      const spawnedAt = await webhook.restart([], '', 'unavailable' in limit ? undefined : limit.launcher);
      synced = await waitForLogLine(webhook, 'watches synced', 60_000);
      const readyMs = Date.parse(String(synced['time'])) - spawnedAt;
      const restMs = options.restSeconds * 1000;
      const cpuBefore = cpuSeconds(webhook.pid);
      // The floors rest alongside: idle processes barely compete for the cores, and the run stays short.
      const [bare, builtins, program] = await Promise.all([
        idleFloor(webhook.program, '', 'bare', restMs),
        idleFloor(webhook.program, '', 'builtins', restMs),
        idleFloor(webhook.program, '', 'program', restMs),
        sleep(restMs),
      ]);
      const memory = procMemory(webhook.pid);
      const result: IdleRepetition = { readyMs, memory, restCpuSeconds: cpuSeconds(webhook.pid) - cpuBefore, floors: { bare, builtins, program } };
      repetitions.push(result);
      say(`scenario 6, repetition ${repetition}/${options.repetitions}: ready after ${(readyMs / 1000).toFixed(2)} s; after ${options.restSeconds} s at rest VmRSS ${mib(memory.rssBytes)} MiB (anon ${mib(memory.rssAnonBytes)}, file ${mib(memory.rssFileBytes)}); floors: empty file ${mib(bare.rssBytes)}, https+crypto ${mib(builtins.rssBytes)}, bundle loaded ${mib(program.rssBytes)} MiB`);
    }
  } finally {
    await webhook.restart([]);
    if (!('unavailable' in limit)) limit.remove();
  }
  const pick = (f: (r: IdleRepetition) => number): Spread => spread(repetitions.map(f));
  const memoryFigures = (f: (r: IdleRepetition) => { rssBytes: number; rssAnonBytes: number; rssFileBytes: number }): MemoryFigures => ({
    rssMiB: pick((r) => f(r).rssBytes / MIB),
    rssAnonMiB: pick((r) => f(r).rssAnonBytes / MIB),
    rssFileMiB: pick((r) => f(r).rssFileBytes / MIB),
  });
  return {
    options,
    memoryLimit: 'unavailable' in limit ? { bytes: limitBytes, applied: false, unavailable: limit.unavailable } : { bytes: limitBytes, applied: true },
    synced: { configMaps: Number(synced['configMaps']), workloads: Number(synced['workloads']), namespacesInScope: Number(synced['namespacesInScope']) },
    repetitions,
    figures: {
      ...memoryFigures((r) => r.memory),
      readyMs: pick((r) => r.readyMs),
      vmHwmMiB: pick((r) => r.memory.vmHwmBytes / MIB),
      restCpuSeconds: pick((r) => r.restCpuSeconds),
      floors: {
        bare: memoryFigures((r) => r.floors.bare),
        builtins: memoryFigures((r) => r.floors.builtins),
        program: memoryFigures((r) => r.floors.program),
      },
    },
  };
}

function mib(bytes: number): string {
  return (bytes / MIB).toFixed(0);
}
