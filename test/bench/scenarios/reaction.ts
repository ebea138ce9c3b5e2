// Scenario 3: reaction of the watch path. A ConfigMap's data changes and nobody writes the workload: time
// from the update (when the PATCH was sent) to the Deployment's pod template carrying the new checksum,
// and to the new ReplicaSet the controller manager makes of it, both seen on the API server's own watch
// streams. Independent loops, each one Deployment and its ConfigMap, change, wait for both, pause, change
// again, so every change is its own coalescing burst. The coalescing window is part of every figure and is
// reported apart: "beyond the window" is the figure minus the window.

import type { Environment } from '../../../src/local/environment.ts';
import { resourcePath, type KubeClient, type KubeObject } from '../../../src/local/kube.ts';
import { configMap, expectedChecksum, workload } from '../../e2e/support/scenario.ts';
import { Arrivals } from '../support/arrivals.ts';
import { createAll, optedInNamespace, say, sleep, templateAnnotation, waitFor, watch, type BenchWebhook } from '../support/cluster.ts';
import { distribution, spread, type Distribution, type Spread } from '../support/stats.ts';

export interface ReactionOptions {
  readonly label: string;
  readonly repetitions: number;
  readonly changesPerRepetition: number;
  readonly loops: number;
  /** The webhook's --coalesce-window-ms (the caller started it so). */
  readonly windowMs: number;
  readonly pauseMs: readonly [number, number];
}

export interface ReactionRepetition {
  readonly toPatchMs: Distribution;
  readonly toReplicaSetMs: Distribution;
  readonly beyondWindowMs: Distribution;
  /** The watcher's own measure (its "rolled out" log lines): first change seen to patched. */
  readonly watcherReactionMs: Distribution;
}

export interface ReactionResult {
  readonly options: ReactionOptions;
  readonly webhookArgs: readonly string[];
  readonly repetitions: readonly ReactionRepetition[];
  readonly figures: {
    readonly toPatchP50Ms: Spread;
    readonly toPatchP99Ms: Spread;
    readonly beyondWindowP50Ms: Spread;
    readonly beyondWindowP99Ms: Spread;
    readonly toReplicaSetP50Ms: Spread;
    readonly toReplicaSetP99Ms: Spread;
    readonly toPatchP99ToWindow: Spread;
    readonly watcherReactionP99Ms: Spread;
  };
}

const CHECKSUM = 'checksum/config';
const TIMEOUT_MS = 60_000;

export async function runReaction(environment: Environment, client: KubeClient, webhook: BenchWebhook, options: ReactionOptions): Promise<ReactionResult> {
  const namespace = await optedInNamespace(client, `bench-react-${options.label}`);
  const loops = Array.from({ length: options.loops }, (_, index) => ({ deployment: `app-${index}`, configMap: `config-${index}`, data: { 'app.yaml': 'level: info\n', 'feature.flag': 'on', value: 'initial' } as Record<string, string> }));
  await createAll(client, loops.map((loop) => configMap(namespace, loop.configMap, loop.data)), 4);
  const stored: KubeObject[] = [];
  for (const loop of loops) {
    const created = (await client.create(workload('Deployment', namespace, loop.deployment, { volumeConfigMap: loop.configMap }))).body;
    if (!templateAnnotation(created, CHECKSUM)) throw new Error('the Deployment was admitted without a checksum');
    stored.push(created);
  }
  for (const object of stored) {
    await waitFor(`the first ReplicaSet of ${object['metadata']['name']}`, async () => (await client.list(resourcePath('ReplicaSet', namespace))).some((rs) => rs['metadata']['ownerReferences']?.[0]?.['uid'] === object['metadata']['uid']));
  }

  const arrivals = new Arrivals();
  const deployments = await watch(environment, client, resourcePath('Deployment', namespace), ({ type, object, receivedAt }) => {
    const checksum = templateAnnotation(object, CHECKSUM);
    if (type !== 'DELETED' && checksum) arrivals.record(`deployment/${object['metadata']['name']}/${checksum}`, receivedAt);
  });
  const replicaSets = await watch(environment, client, resourcePath('ReplicaSet', namespace), ({ type, object, receivedAt }) => {
    const checksum = templateAnnotation(object, CHECKSUM);
    const owner = object['metadata']?.['ownerReferences']?.[0]?.['name'];
    if (type === 'ADDED' && checksum && owner) arrivals.record(`replicaset/${owner}/${checksum}`, receivedAt);
  });

  const repetitions: ReactionRepetition[] = [];
  try {
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      const toPatch: number[] = [];
      const toReplicaSet: number[] = [];
      const logStart = webhook.logLines().length;
      const perLoop = Math.ceil(options.changesPerRepetition / options.loops);
      await Promise.all(loops.map(async (loop, index) => {
        // Start the loops out of step, so their patches do not arrive together.
        await sleep(index * ((options.windowMs + 300) / options.loops));
        for (let change = 0; change < perLoop; change++) {
          const value = `${options.label}-${repetition}-${change}`;
          const data = { ...loop.data, value };
          const expected = expectedChecksum(stored[index]!, [configMap(namespace, loop.configMap, data)]).checksum;
          const sentAt = performance.now();
          const response = await client.request('PATCH', resourcePath('ConfigMap', namespace, loop.configMap), { body: { data: { value } }, contentType: 'application/merge-patch+json' });
          if (response.status !== 200) throw new Error(`PATCH ConfigMap answered ${response.status}`);
          loop.data = data;
          const patchedAt = await arrivals.when(`deployment/${loop.deployment}/${expected}`, TIMEOUT_MS);
          const replicaSetAt = await arrivals.when(`replicaset/${loop.deployment}/${expected}`, TIMEOUT_MS);
          toPatch.push(patchedAt - sentAt);
          toReplicaSet.push(replicaSetAt - sentAt);
          const [low, high] = options.pauseMs;
          await sleep(low + Math.random() * (high - low));
        }
      }));
      const watcherReaction = webhook.logLines().slice(logStart)
        .filter((line) => line['msg'] === 'rolled out' && line['namespace'] === namespace)
        .map((line) => Number(line['reactionMs']));
      const patchDistribution = distribution(toPatch);
      repetitions.push({
        toPatchMs: patchDistribution,
        toReplicaSetMs: distribution(toReplicaSet),
        beyondWindowMs: distribution(toPatch.map((ms) => ms - options.windowMs)),
        watcherReactionMs: distribution(watcherReaction),
      });
      say(`scenario 3 (${options.label}), repetition ${repetition}/${options.repetitions}: ${toPatch.length} changes, to patch p50 ${patchDistribution.p50.toFixed(0)} p99 ${patchDistribution.p99.toFixed(0)} ms (window ${options.windowMs} ms), to ReplicaSet p99 ${distribution(toReplicaSet).p99.toFixed(0)} ms`);
    }
  } finally {
    deployments.stop();
    replicaSets.stop();
  }
  const pick = (f: (r: ReactionRepetition) => number): Spread => spread(repetitions.map(f));
  return {
    options,
    webhookArgs: webhook.args,
    repetitions,
    figures: {
      toPatchP50Ms: pick((r) => r.toPatchMs.p50),
      toPatchP99Ms: pick((r) => r.toPatchMs.p99),
      beyondWindowP50Ms: pick((r) => r.beyondWindowMs.p50),
      beyondWindowP99Ms: pick((r) => r.beyondWindowMs.p99),
      toReplicaSetP50Ms: pick((r) => r.toReplicaSetMs.p50),
      toReplicaSetP99Ms: pick((r) => r.toReplicaSetMs.p99),
      toPatchP99ToWindow: pick((r) => r.toPatchMs.p99 / options.windowMs),
      watcherReactionP99Ms: pick((r) => r.watcherReactionMs.p99),
    },
  };
}
