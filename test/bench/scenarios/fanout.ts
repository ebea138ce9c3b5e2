// Scenario 4: fan-out. One ConfigMap consumed by N Deployments changes once: the watcher must patch all
// of them, no faster than its token bucket allows (rate R per second, burst B): the last patch cannot come
// before window + (N - B) / R. Measured: time from the update to the last Deployment seen with the new
// checksum (watch stream), the patch rate (1 s windows of those arrival times, and of the webhook's
// config_checksum_watch_rollouts_total sampled every 200 ms), and whether any stretch of patches beat the
// bucket (count in [t_i, t_j] minus R x (t_j - t_i) never above B).

import type { Environment } from '../../../src/local/environment.ts';
import { resourcePath, type KubeClient, type KubeObject } from '../../../src/local/kube.ts';
import { configMap, expectedChecksum, workload } from '../../e2e/support/scenario.ts';
import { createAll, metricSum, optedInNamespace, say, sleep, templateAnnotation, waitFor, waitForLogLine, watch, type BenchWebhook } from '../support/cluster.ts';
import { spread, type Spread } from '../support/stats.ts';

export interface FanoutPhase {
  readonly label: string;
  readonly repetitions: number;
  readonly windowMs: number;
  readonly rate: number;
  readonly burst: number;
}

export interface FanoutOptions {
  readonly deployments: number;
  /** Each phase restarts the webhook with its window, rate and burst, then changes the ConfigMap. */
  readonly phases: readonly FanoutPhase[];
}

export interface FanoutRepetition {
  readonly patched: number;
  readonly firstPatchMs: number;
  readonly allPatchedMs: number;
  /** window + (N - B) / R */
  readonly boundMs: number;
  readonly allPatchedToBound: number;
  readonly peakPerSecondFromEvents: number;
  readonly peakPerSecondFromMetrics: number;
  /** Patches per second between the end of the burst and the last patch. */
  readonly steadyRate: number;
  /** max over i <= j of (j - i + 1) - R x (t_j - t_i): at most B (plus arrival jitter) if the bucket held. */
  readonly bucketExcess: number;
  readonly rolloutsCounted: number;
}

export interface FanoutPhaseResult {
  readonly phase: FanoutPhase;
  readonly webhookArgs: readonly string[];
  readonly repetitions: readonly FanoutRepetition[];
  readonly figures: {
    readonly allPatchedMs: Spread;
    readonly boundMs: Spread;
    readonly allPatchedToBound: Spread;
    readonly peakPerSecondFromEvents: Spread;
    readonly peakPerSecondFromMetrics: Spread;
    readonly steadyRate: Spread;
    readonly bucketExcess: Spread;
  };
}

export interface FanoutResult {
  readonly deployments: number;
  readonly createSeconds: number;
  readonly phases: readonly FanoutPhaseResult[];
}

const CHECKSUM = 'checksum/config';
const SAMPLE_MS = 200;

export async function runFanout(environment: Environment, client: KubeClient, webhook: BenchWebhook, options: FanoutOptions): Promise<FanoutResult> {
  const { deployments } = options;
  const namespace = await optedInNamespace(client, 'bench-fanout');
  const shared = 'shared';
  let data: Record<string, string> = { 'app.yaml': 'level: info\n', value: 'initial' };
  await client.create(configMap(namespace, shared, data));
  const createStarted = performance.now();
  // No replicas: a rollout is a new (empty) ReplicaSet, without a Pod per Deployment to store and track.
  const objects = Array.from({ length: deployments }, (_, index) => {
    const object = workload('Deployment', namespace, `app-${String(index).padStart(4, '0')}`, { envFromConfigMap: shared });
    object['spec']['replicas'] = 0;
    return object;
  });
  const created = await createAll(client, objects, 8);
  const createSeconds = (performance.now() - createStarted) / 1000;
  if (created.some((object) => !templateAnnotation(object, CHECKSUM))) throw new Error('a Deployment was admitted without a checksum');
  say(`scenario 4: ${deployments} Deployments created in ${createSeconds.toFixed(1)} s`);
  const template: KubeObject = created[0]!;
  const phases: FanoutPhaseResult[] = [];
  for (const phase of options.phases) {
    await webhook.restart(['--coalesce-window-ms', String(phase.windowMs), '--rollout-rate', String(phase.rate), '--rollout-burst', String(phase.burst)]);
    await waitForLogLine(webhook, 'watches synced', 120_000);
    // The start-up check finds every Deployment up to date; let it finish before changing anything.
    await sleep(3_000);
    const repetitions: FanoutRepetition[] = [];
    for (let repetition = 1; repetition <= phase.repetitions; repetition++) {
      data = { ...data, value: `${phase.label}-${repetition}` };
      const expected = expectedChecksum(template, [configMap(namespace, shared, data)]).checksum;
      const result = await changeOnce(environment, client, webhook, { namespace, configMap: shared, value: data['value']!, expected, deployments, phase });
      repetitions.push(result);
      say(`scenario 4 (${phase.label}), repetition ${repetition}/${phase.repetitions}: ${result.patched} patched, last after ${(result.allPatchedMs / 1000).toFixed(2)} s (bucket bound ${(result.boundMs / 1000).toFixed(2)} s), peak ${result.peakPerSecondFromEvents}/s (metric ${result.peakPerSecondFromMetrics.toFixed(1)}/s), steady ${result.steadyRate.toFixed(1)}/s, bucket excess ${result.bucketExcess.toFixed(1)}`);
      // Let the rollouts' own traffic (ReplicaSets, status writes, Events) die down before the next change.
      await sleep(5_000);
    }
    const pick = (f: (r: FanoutRepetition) => number): Spread => spread(repetitions.map(f));
    phases.push({
      phase,
      webhookArgs: webhook.args,
      repetitions,
      figures: {
        allPatchedMs: pick((r) => r.allPatchedMs),
        boundMs: pick((r) => r.boundMs),
        allPatchedToBound: pick((r) => r.allPatchedToBound),
        peakPerSecondFromEvents: pick((r) => r.peakPerSecondFromEvents),
        peakPerSecondFromMetrics: pick((r) => r.peakPerSecondFromMetrics),
        steadyRate: pick((r) => r.steadyRate),
        bucketExcess: pick((r) => r.bucketExcess),
      },
    });
  }
  return { deployments: options.deployments, createSeconds, phases };
}

interface Change {
  readonly namespace: string;
  readonly configMap: string;
  readonly value: string;
  /** The checksum every Deployment must reach. */
  readonly expected: string;
  readonly deployments: number;
  readonly phase: FanoutPhase;
}

/** One ConfigMap change, watched until every Deployment carries `expected`. */
async function changeOnce(environment: Environment, client: KubeClient, webhook: BenchWebhook, change: Change): Promise<FanoutRepetition> {
  const { namespace, expected, deployments, phase: options } = change;
  const arrivals: number[] = [];
  const seen = new Set<string>();
  const stream = await watch(environment, client, resourcePath('Deployment', namespace), ({ type, object, receivedAt }) => {
    const name = object['metadata']?.['name'];
    if (type === 'DELETED' || seen.has(name) || templateAnnotation(object, CHECKSUM) !== expected) return;
    seen.add(name);
    arrivals.push(receivedAt);
  });
  const samples: Array<{ at: number; rollouts: number }> = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const started = performance.now();
      try {
        const metrics = await webhook.metrics();
        samples.push({ at: performance.now(), rollouts: metricSum(metrics, 'config_checksum_watch_rollouts_total', 'kind="Deployment"') });
      } catch {
        // one missed sample
      }
      await sleep(Math.max(0, SAMPLE_MS - (performance.now() - started)));
    }
  })();
  await sleep(1_000);
  const boundMs = options.windowMs + ((deployments - options.burst) / options.rate) * 1000;
  const sentAt = performance.now();
  try {
    const response = await client.request('PATCH', resourcePath('ConfigMap', namespace, change.configMap), { body: { data: { value: change.value } }, contentType: 'application/merge-patch+json' });
    if (response.status !== 200) throw new Error(`PATCH ConfigMap answered ${response.status}`);
    await waitFor(`${deployments} Deployments patched`, async () => seen.size >= deployments, { timeoutMs: boundMs * 3 + 60_000, intervalMs: 100 });
    // A last sample after the last patch, then the rollouts the metric counted in this repetition.
    await sleep(2 * SAMPLE_MS);
  } finally {
    sampling = false;
    await sampler;
    stream.stop();
  }
  const times = arrivals.map((at) => at - sentAt).sort((a, b) => a - b);
  const allPatchedMs = times[times.length - 1]!;
  const afterBurst = times[Math.min(options.burst, times.length - 1)]!;
  const inWindow = samples.filter((sample) => sample.at >= sentAt);
  return {
    patched: times.length,
    firstPatchMs: times[0]!,
    allPatchedMs,
    boundMs,
    allPatchedToBound: allPatchedMs / boundMs,
    peakPerSecondFromEvents: peakPerSecond(times),
    peakPerSecondFromMetrics: peakFromSamples(inWindow),
    steadyRate: (times.length - 1 - options.burst) / ((allPatchedMs - afterBurst) / 1000),
    bucketExcess: bucketExcess(times, options.rate),
    rolloutsCounted: inWindow.length > 1 ? inWindow[inWindow.length - 1]!.rollouts - (samples.filter((s) => s.at < sentAt).at(-1)?.rollouts ?? inWindow[0]!.rollouts) : Number.NaN,
  };
}

/** Most arrivals within any 1 s window (sorted times in ms). */
function peakPerSecond(times: readonly number[]): number {
  let peak = 0;
  let start = 0;
  for (let end = 0; end < times.length; end++) {
    while (times[end]! - times[start]! >= 1000) start++;
    peak = Math.max(peak, end - start + 1);
  }
  return peak;
}

/** Highest counter increase over any 1 s span of the 200 ms samples, per second. */
function peakFromSamples(samples: ReadonlyArray<{ at: number; rollouts: number }>): number {
  let peak = 0;
  for (let i = 0; i < samples.length; i++) {
    for (let j = i + 1; j < samples.length; j++) {
      const span = samples[j]!.at - samples[i]!.at;
      if (span < 950) continue;
      peak = Math.max(peak, (samples[j]!.rollouts - samples[i]!.rollouts) / (span / 1000));
      break;
    }
  }
  return peak;
}

function bucketExcess(times: readonly number[], rate: number): number {
  let excess = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < times.length; i++) {
    for (let j = i; j < times.length; j++) excess = Math.max(excess, j - i + 1 - (rate * (times[j]! - times[i]!)) / 1000);
  }
  return excess;
}
