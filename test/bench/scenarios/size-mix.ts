// Scenario 5b: the size mix. Real clusters hold a few large ConfigMaps among many small ones (dashboards,
// rule files, certificate bundles, GeoIP tables): here the data of 500 of scenario 5's 10,000 ConfigMaps
// is replaced by about 1 MiB each (about 500 MiB of config in all; the other 9,500 keep their 1 KiB), and
// the same 2,500 workloads consume them as before. The watcher needs a digest of each, never the values:
// its memory should stay near the all-small figure, however large the config. Measured as scenario 5
// measures its shipped variant (same process, same memory limit, same rest), plus the time to ready.
//
// The large ConfigMaps are spread evenly (every 20th), so most of them are consumed by a workload, as
// large config usually is. Their new data would roll those workloads; a settling process with a fast
// rate limit lets that happen before the measured processes start, which then find every workload up to
// date, like a cluster that has been running for a while.

import type { Environment } from '../../../src/local/environment.ts';
import { resourcePath, type KubeClient } from '../../../src/local/kube.ts';
import { eachLimited, etcdMetrics, metricSum, say, waitFor, waitForLogLine, type BenchWebhook } from '../support/cluster.ts';
import { createMemoryLimit, shippedMemoryLimitBytes } from '../support/memory-limit.ts';
import { spread, type Spread } from '../support/stats.ts';
import { describeStart, measureStart, startFigures, type ScaleCluster, type StartFigures, type StartMeasurement } from './scale.ts';

export interface SizeMixOptions {
  /** ConfigMaps whose data becomes large (of the scenario's, evenly spread). */
  readonly largeConfigMaps: number;
  /** Bytes of data in each large ConfigMap: under the API server's 1 MiB limit on a ConfigMap's data. */
  readonly largeBytes: number;
  /** Large writes in flight at once. */
  readonly concurrency: number;
  readonly repetitions: number;
  readonly restSeconds: number;
}

export interface SizeMixResult {
  readonly options: SizeMixOptions;
  readonly memoryLimit: { readonly bytes: number; readonly applied: boolean; readonly unavailable?: string };
  readonly replaced: {
    readonly configMaps: number;
    /** One ConfigMap in this many was made large. */
    readonly every: number;
    readonly bytes: number;
    readonly seconds: number;
    /** Workloads consuming a large ConfigMap, each rolled once by the settling process. */
    readonly consumers: number;
    readonly settleSeconds: number;
  };
  /** etcd's database after the writes, and its quota (its default unless the control plane sets one). */
  readonly etcd: { readonly dbSizeBytes: number; readonly quotaBytes: number };
  readonly repetitions: readonly StartMeasurement[];
  /** Repetitions whose process did not reach rest (e.g. killed over the memory limit). */
  readonly failures: readonly string[];
  readonly figures: StartFigures & {
    /** Resident memory at rest over the all-1 KiB figure (scenario 5's shipped variant, its median). */
    readonly rssAtRestToSmall: Spread;
  };
}

const MIB = 2 ** 20;
const KEYS = 5;
// The settling process may roll every consumer at once: nothing else runs meanwhile.
const SETTLE_FLAGS = ['--rollout-rate', '1000', '--rollout-burst', '1000'];

export async function runSizeMix(environment: Environment, client: KubeClient, webhook: BenchWebhook, options: SizeMixOptions, cluster: ScaleCluster, smallRssAtRestMiB: number): Promise<SizeMixResult> {
  const every = Math.max(1, Math.floor(cluster.configMaps.length / options.largeConfigMaps));
  const large = cluster.configMaps.filter((_, index) => index % every === 0).slice(0, options.largeConfigMaps);
  const largeKeys = new Set(large.map((cm) => `${cm.namespace}/${cm.name}`));
  const consumers = cluster.workloads.filter((w) => w.configMaps.some((name) => largeKeys.has(`${w.namespace}/${name}`))).length;

  await webhook.restart(SETTLE_FLAGS);
  await waitForLogLine(webhook, 'watches synced', 120_000);
  // Its start-up check finds every workload up to date; the rollouts counted below are the new data's.
  await waitForLogLine(webhook, 'checking annotated workloads', 30_000);
  const rolloutsBefore = metricSum(await webhook.metrics(), 'config_checksum_watch_rollouts_total');
  const written = performance.now();
  await eachLimited(large, options.concurrency, async (cm) => {
    const response = await client.request('PATCH', resourcePath('ConfigMap', cm.namespace, cm.name), { body: { data: largeConfig(cm.namespace, cm.name, options.largeBytes) }, contentType: 'application/merge-patch+json' });
    if (response.status !== 200) throw new Error(`PATCH ConfigMap ${cm.namespace}/${cm.name} (${options.largeBytes} bytes) answered ${response.status}: ${JSON.stringify(response.body).slice(0, 300)}`);
  });
  const writeSeconds = (performance.now() - written) / 1000;
  say(`scenario 5b: ${large.length} ConfigMaps given ${(options.largeBytes / MIB).toFixed(2)} MiB each (${((large.length * options.largeBytes) / MIB).toFixed(0)} MiB) in ${writeSeconds.toFixed(1)} s; waiting for their ${consumers} consumers to roll`);
  const settling = performance.now();
  await waitFor(`${consumers} rollouts of the large ConfigMaps' consumers`, async () => metricSum(await webhook.metrics(), 'config_checksum_watch_rollouts_total') - rolloutsBefore >= consumers, { timeoutMs: 600_000, intervalMs: 2_000 });
  const settleSeconds = (performance.now() - settling) / 1000;
  const etcd = await etcdMetrics(environment);
  const etcdFigures = { dbSizeBytes: metricSum(etcd, 'etcd_mvcc_db_total_size_in_bytes'), quotaBytes: metricSum(etcd, 'etcd_server_quota_backend_bytes') };
  say(`scenario 5b: consumers rolled in ${settleSeconds.toFixed(1)} s; etcd database ${(etcdFigures.dbSizeBytes / MIB).toFixed(0)} MiB of its ${(etcdFigures.quotaBytes / MIB).toFixed(0)} MiB quota`);

  const limitBytes = shippedMemoryLimitBytes();
  const limit = createMemoryLimit(limitBytes, `config-checksum-bench-mix-${process.pid}`);
  const repetitions: StartMeasurement[] = [];
  const failures: string[] = [];
  try {
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      try {
        const result = await measureStart(webhook, { nodeOptions: '', limit: 'unavailable' in limit ? undefined : limit, restSeconds: options.restSeconds, syncTimeoutMs: 300_000 });
        repetitions.push(result);
        say(`scenario 5b, repetition ${repetition}/${options.repetitions}: ${describeStart(result)}`);
      } catch (error) {
        failures.push((error as Error).message);
        say(`scenario 5b, repetition ${repetition}/${options.repetitions} FAILED: ${(error as Error).message}`);
      }
    }
  } finally {
    await webhook.restart([]);
    if (!('unavailable' in limit)) limit.remove();
  }
  return {
    options,
    memoryLimit: 'unavailable' in limit ? { bytes: limitBytes, applied: false, unavailable: limit.unavailable } : { bytes: limitBytes, applied: true },
    replaced: { configMaps: large.length, every, bytes: large.length * options.largeBytes, seconds: writeSeconds, consumers, settleSeconds },
    etcd: etcdFigures,
    repetitions,
    failures,
    figures: { ...startFigures(repetitions), rssAtRestToSmall: spread(repetitions.map((r) => r.rssAtRestBytes / MIB / smallRssAtRestMiB)) },
  };
}

/**
 * `bytes` of text in the small config's five keys (so every consumer, the configMapKeyRef on key-0.yaml
 * included, sees its config change), each line distinct, as real large config is.
 */
function largeConfig(namespace: string, name: string, bytes: number): Record<string, string> {
  const perKey = Math.floor(bytes / KEYS);
  return Object.fromEntries(Array.from({ length: KEYS }, (_, key) => {
    const lines: string[] = [];
    let length = 0;
    for (let line = 0; length < perKey; line++) {
      const text = `entry-${line}: {source: ${namespace}/${name}, key: ${key}, weight: ${(line * 7919) % 10007}}\n`;
      lines.push(text);
      length += text.length;
    }
    return [`key-${key}.yaml`, lines.join('').slice(0, perKey)];
  }));
}
