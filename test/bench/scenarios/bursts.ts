// Scenario 3b: bursts, with the shipped coalescing. What users see when a release writes config: a
// Helm-style upgrade writes every ConfigMap of a chart within a moment (here 3 ConfigMaps consumed by one
// Deployment, 200 ms apart), and a controller or script may write one ConfigMap several times in a row
// (here 5 updates, 200 ms apart). Either must roll the Deployment exactly once, with the last config:
// every extra rollout restarts every pod once more. Counted from the API server's watch streams: the
// ReplicaSets the controller manager creates for the Deployment, and the distinct checksums its pod
// template takes; the watcher's own "rolled out" lines for comparison.
//
// How long to keep counting after the burst comes from the burst itself, not from the coalescing
// settings: once the ReplicaSet with the last config appeared, a further rollout could only come from a
// change still pending, which is handled within one reaction time; so counting goes on for as long again
// as the burst took to roll (at least 2 s).

import type { Environment } from '../../../src/local/environment.ts';
import { resourcePath, type KubeClient, type KubeObject } from '../../../src/local/kube.ts';
import { configMap, expectedChecksum, workload } from '../../e2e/support/scenario.ts';
import { Arrivals } from '../support/arrivals.ts';
import { coalescing, createAll, optedInNamespace, say, sleep, templateAnnotation, waitFor, watch, type BenchWebhook } from '../support/cluster.ts';
import { spread, type Spread } from '../support/stats.ts';

export interface BurstOptions {
  readonly repetitions: number;
  /** Time between two writes of a burst. */
  readonly spacingMs: number;
}

export type BurstKind = 'helm' | 'repeated';

export interface BurstRepetition {
  readonly kind: BurstKind;
  readonly writes: number;
  /** First write sent to last write answered. */
  readonly spanMs: number;
  /** First write sent to the ReplicaSet with the last config seen. */
  readonly toLastConfigMs: number;
  /** New ReplicaSets of the Deployment after the first write: rollouts. */
  readonly replicaSets: number;
  /** Distinct checksums the pod template took after the first write. */
  readonly checksums: number;
  /** The watcher's "rolled out" log lines for the Deployment. */
  readonly watcherRollouts: number;
}

export interface BurstResult {
  readonly options: BurstOptions;
  readonly webhookArgs: readonly string[];
  /** The coalescing the process applied (its flags and defaults), for the labels. */
  readonly coalescing: { readonly windowMs: number; readonly maxMs: number };
  readonly repetitions: readonly BurstRepetition[];
  readonly figures: Readonly<Record<BurstKind, { readonly replicaSets: Spread; readonly checksums: Spread; readonly toLastConfigMs: Spread; readonly spanMs: Spread }>>;
}

interface Target {
  readonly kind: BurstKind;
  readonly deployment: KubeObject;
  /** ConfigMaps as last written, by name. */
  readonly configMaps: Map<string, Record<string, string>>;
  /** The ConfigMap of each write, in order. */
  readonly writes: readonly string[];
  /** The pod template's checksum before the next burst. */
  checksum: string;
}

const CHECKSUM = 'checksum/config';
const TIMEOUT_MS = 60_000;

export async function runBursts(environment: Environment, client: KubeClient, webhook: BenchWebhook, options: BurstOptions): Promise<BurstResult> {
  const namespace = await optedInNamespace(client, 'bench-burst');
  const targets = await createTargets(client, namespace);
  const arrivals = new Arrivals();
  const replicaSets: Array<{ owner: string; at: number }> = [];
  const checksums: Array<{ deployment: string; checksum: string; at: number }> = [];
  const deployments = await watch(environment, client, resourcePath('Deployment', namespace), ({ type, object, receivedAt }) => {
    const checksum = templateAnnotation(object, CHECKSUM);
    if (type === 'DELETED' || !checksum) return;
    checksums.push({ deployment: object['metadata']['name'], checksum, at: receivedAt });
  });
  const replicaSetWatch = await watch(environment, client, resourcePath('ReplicaSet', namespace), ({ type, object, receivedAt }) => {
    const owner = object['metadata']?.['ownerReferences']?.[0]?.['name'];
    const checksum = templateAnnotation(object, CHECKSUM);
    if (type !== 'ADDED' || !owner) return;
    replicaSets.push({ owner, at: receivedAt });
    if (checksum) arrivals.record(`replicaset/${owner}/${checksum}`, receivedAt);
  });
  const repetitions: BurstRepetition[] = [];
  try {
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      for (const target of targets) {
        const logStart = webhook.logLines().length;
        const name = String(target.deployment['metadata']['name']);
        const { firstAt, lastAt } = await writeBurst(client, namespace, target, `${target.kind}-${repetition}`, options.spacingMs);
        const expected = expectedChecksum(target.deployment, [...target.configMaps].map(([cm, data]) => configMap(namespace, cm, data))).checksum;
        const lastConfigAt = await arrivals.when(`replicaset/${name}/${expected}`, TIMEOUT_MS);
        await sleep(Math.max(2_000, lastConfigAt - firstAt));
        const result: BurstRepetition = {
          kind: target.kind,
          writes: target.writes.length,
          spanMs: lastAt - firstAt,
          toLastConfigMs: lastConfigAt - firstAt,
          replicaSets: replicaSets.filter((rs) => rs.owner === name && rs.at >= firstAt).length,
          checksums: newChecksums(checksums, name, firstAt, target.checksum),
          watcherRollouts: webhook.logLines().slice(logStart).filter((line) => line['msg'] === 'rolled out' && line['namespace'] === namespace && line['name'] === name).length,
        };
        repetitions.push(result);
        target.checksum = expected;
        say(`scenario 3b (${target.kind}), repetition ${repetition}/${options.repetitions}: ${result.writes} writes over ${result.spanMs.toFixed(0)} ms -> ${result.replicaSets} new ReplicaSet(s), ${result.checksums} checksum(s), last config rolled after ${result.toLastConfigMs.toFixed(0)} ms (watcher: ${result.watcherRollouts} rollout(s))`);
      }
    }
  } finally {
    deployments.stop();
    replicaSetWatch.stop();
  }
  const figures = Object.fromEntries((['helm', 'repeated'] as const).map((kind) => {
    const runs = repetitions.filter((r) => r.kind === kind);
    const pick = (f: (r: BurstRepetition) => number): Spread => spread(runs.map(f));
    return [kind, { replicaSets: pick((r) => r.replicaSets), checksums: pick((r) => r.checksums), toLastConfigMs: pick((r) => r.toLastConfigMs), spanMs: pick((r) => r.spanMs) }];
  })) as BurstResult['figures'];
  return { options, webhookArgs: webhook.args, coalescing: coalescing(webhook), repetitions, figures };
}

/**
 * helm: one Deployment consuming 3 ConfigMaps three ways (envFrom, volume, configMapKeyRef), each written
 * once per burst. repeated: one Deployment consuming one ConfigMap (volume), written 5 times per burst.
 * No replicas: a rollout is a new (empty) ReplicaSet, which is what is counted.
 */
async function createTargets(client: KubeClient, namespace: string): Promise<Target[]> {
  const initial = (): Record<string, string> => ({ 'app.yaml': 'level: info\n', level: 'info' });
  const helm = workload('Deployment', namespace, 'chart-app', { envFromConfigMap: 'chart-env', volumeConfigMap: 'chart-files' });
  helm['spec']['template']['spec']['containers'][0]['env'] = [{ name: 'LEVEL', valueFrom: { configMapKeyRef: { name: 'chart-flags', key: 'level' } } }];
  const repeated = workload('Deployment', namespace, 'scripted-app', { volumeConfigMap: 'scripted-config' });
  const specs: Array<{ kind: BurstKind; object: KubeObject; configMaps: string[]; writes: string[] }> = [
    { kind: 'helm', object: helm, configMaps: ['chart-env', 'chart-files', 'chart-flags'], writes: ['chart-env', 'chart-files', 'chart-flags'] },
    { kind: 'repeated', object: repeated, configMaps: ['scripted-config'], writes: Array.from({ length: 5 }, () => 'scripted-config') },
  ];
  const targets: Target[] = [];
  for (const spec of specs) {
    await createAll(client, spec.configMaps.map((name) => configMap(namespace, name, initial())), 3);
    spec.object['spec']['replicas'] = 0;
    const created = (await client.create(spec.object)).body;
    if (!templateAnnotation(created, CHECKSUM)) throw new Error(`the Deployment ${spec.object['metadata']['name']} was admitted without a checksum`);
    await waitFor(`the first ReplicaSet of ${created['metadata']['name']}`, async () => (await client.list(resourcePath('ReplicaSet', namespace))).some((rs) => rs['metadata']['ownerReferences']?.[0]?.['uid'] === created['metadata']['uid']));
    targets.push({ kind: spec.kind, deployment: created, configMaps: new Map(spec.configMaps.map((name) => [name, initial()])), writes: spec.writes, checksum: templateAnnotation(created, CHECKSUM)! });
  }
  return targets;
}

/** Checksums the Deployment's pod template took after `since`, other than `previous` (which late status writes repeat). */
function newChecksums(seen: ReadonlyArray<{ deployment: string; checksum: string; at: number }>, deployment: string, since: number, previous: string): number {
  return new Set(seen.filter((entry) => entry.deployment === deployment && entry.at >= since && entry.checksum !== previous).map((entry) => entry.checksum)).size;
}

/** The burst's writes, `spacingMs` apart from the first one's sending; each changes every key the Deployment consumes. */
async function writeBurst(client: KubeClient, namespace: string, target: Target, label: string, spacingMs: number): Promise<{ firstAt: number; lastAt: number }> {
  const firstAt = performance.now();
  let lastAt = firstAt;
  for (const [index, name] of target.writes.entries()) {
    await sleep(Math.max(0, firstAt + index * spacingMs - performance.now()));
    const value = `${label}-${index}`;
    const data = { 'app.yaml': `level: ${value}\n`, level: value };
    const response = await client.request('PATCH', resourcePath('ConfigMap', namespace, name), { body: { data }, contentType: 'application/merge-patch+json' });
    if (response.status !== 200) throw new Error(`PATCH ConfigMap ${name} answered ${response.status}`);
    target.configMaps.set(name, data);
    lastAt = performance.now();
  }
  return { firstAt, lastAt };
}
