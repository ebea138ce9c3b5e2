// Scenario 2: what the webhook adds to a write through the API server. Sequential PATCHes of a pod-template
// label of one Deployment (the ~10 KB one of scenario 1, consuming three ConfigMaps, in an opted-in
// namespace), with the MutatingWebhookConfiguration registered ("on") and deleted ("off"), in blocks in
// the order on, off, off, on, ... so that drift (a busier machine, a growing etcd) weighs on both arms.
// The Deployment is paused: each write changes the template, and without the pause each would start a
// rollout whose controller work (new ReplicaSets, Pods) would compete for the same two cores.

import type { Environment } from '../../../src/local/environment.ts';
import { resourcePath, type KubeClient, type KubeObject } from '../../../src/local/kube.ts';
import { apiServerMetrics, createAll, metricSum, optedInNamespace, say, waitFor, WEBHOOK_CONFIGURATIONS_PATH, type Metrics } from '../support/cluster.ts';
import { benchConfigMaps, benchReview, REVIEW_NAME } from '../support/review.ts';
import { distribution, spread, type Distribution, type Spread } from '../support/stats.ts';

export interface ApiLatencyOptions {
  readonly repetitions: number;
  /** Writes per arm per repetition. */
  readonly writesPerArm: number;
  readonly blockSize: number;
  /** Untimed writes after each switch (the first calls after a switch open connections). */
  readonly warmWrites: number;
}

export interface ArmResult {
  readonly latency: Distribution;
}

export interface ApiLatencyRepetition {
  readonly on: Distribution;
  readonly off: Distribution;
  readonly addedP50Ms: number;
  readonly addedP99Ms: number;
  /** kube-apiserver's own histogram of the webhook calls during the "on" blocks: sum/count. */
  readonly apiServerWebhookMeanMs: number;
  readonly apiServerWebhookCalls: number;
}

export interface ApiLatencyResult {
  readonly options: ApiLatencyOptions;
  readonly namespace: string;
  readonly repetitions: readonly ApiLatencyRepetition[];
  readonly figures: {
    readonly onP50Ms: Spread;
    readonly onP99Ms: Spread;
    readonly offP50Ms: Spread;
    readonly offP99Ms: Spread;
    readonly addedP50Ms: Spread;
    readonly addedP99Ms: Spread;
    readonly p50OnToOff: Spread;
    readonly p99OnToOff: Spread;
    readonly apiServerWebhookMeanMs: Spread;
  };
}

const WEBHOOK_METRIC = 'apiserver_admission_webhook_admission_duration_seconds';

export async function runApiLatency(environment: Environment, client: KubeClient, options: ApiLatencyOptions): Promise<ApiLatencyResult> {
  const namespace = await optedInNamespace(client, 'bench-writes');
  await createAll(client, benchConfigMaps(namespace), 3);
  const deployment = storedShape(benchReview(namespace).review['request']['object'] as KubeObject);
  await client.create(deployment);
  const path = resourcePath('Deployment', namespace, REVIEW_NAME);
  const configuration = registeredConfiguration(environment);
  const configurationPath = `${WEBHOOK_CONFIGURATIONS_PATH}/${configuration['metadata']['name']}`;

  let counter = 0;
  const write = async (): Promise<number> => {
    const body = { spec: { template: { metadata: { labels: { 'bench-write': String(++counter) } } } } };
    const started = performance.now();
    const response = await client.request('PATCH', path, { body, contentType: 'application/merge-patch+json' });
    const elapsed = performance.now() - started;
    if (response.status !== 200) throw new Error(`PATCH answered ${response.status}: ${String(response.body['message'])}`);
    return elapsed;
  };
  // Whether the API server calls the webhook now: a server-side dry-run create comes back with a checksum.
  const called = async (): Promise<boolean> => {
    const probe = structuredClone(deployment);
    probe['metadata']['name'] = `probe-${++counter}`;
    const response = await client.create(probe, { dryRun: 'All' });
    return response.body['spec']?.['template']?.['metadata']?.['annotations']?.['checksum/config'] !== undefined;
  };
  const switchTo = async (on: boolean): Promise<void> => {
    if (on) {
      const response = await client.request('POST', WEBHOOK_CONFIGURATIONS_PATH, { body: configuration });
      if (response.status !== 201 && response.status !== 409) throw new Error(`registering the webhook answered ${response.status}`);
    } else {
      const response = await client.request('DELETE', configurationPath);
      if (response.status !== 200 && response.status !== 404) throw new Error(`deleting the webhook configuration answered ${response.status}`);
    }
    await waitFor(`the webhook to be ${on ? 'called' : 'no longer called'}`, async () => (await called()) === on, { timeoutMs: 30_000, intervalMs: 100 });
    for (let index = 0; index < options.warmWrites; index++) await write();
  };

  const repetitions: ApiLatencyRepetition[] = [];
  try {
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      const samples = { on: [] as number[], off: [] as number[] };
      const blocks = Math.ceil(options.writesPerArm / options.blockSize) * 2;
      let webhookSeconds = 0;
      let webhookCalls = 0;
      let current: boolean | undefined;
      for (let block = 0; block < blocks; block++) {
        // on, off, off, on, on, off, ...: each arm is as often first as second after a switch.
        const on = Math.floor((block + 1) / 2) % 2 === 0;
        if (on !== current) await switchTo(on);
        current = on;
        const before = on ? await apiServerMetrics(environment) : undefined;
        const arm = on ? samples.on : samples.off;
        const count = Math.min(options.blockSize, options.writesPerArm - arm.length);
        for (let index = 0; index < count; index++) arm.push(await write());
        if (before) {
          const after = await apiServerMetrics(environment);
          webhookSeconds += webhookMetric(after, '_sum') - webhookMetric(before, '_sum');
          webhookCalls += webhookMetric(after, '_count') - webhookMetric(before, '_count');
        }
      }
      const on = distribution(samples.on);
      const off = distribution(samples.off);
      repetitions.push({
        on,
        off,
        addedP50Ms: on.p50 - off.p50,
        addedP99Ms: on.p99 - off.p99,
        // The dry-run probes and untimed writes are outside the measured blocks; so are their calls.
        apiServerWebhookMeanMs: webhookCalls > 0 ? (webhookSeconds / webhookCalls) * 1000 : Number.NaN,
        apiServerWebhookCalls: webhookCalls,
      });
      say(`scenario 2, repetition ${repetition}/${options.repetitions}: on p50 ${on.p50.toFixed(2)} p99 ${on.p99.toFixed(2)} ms, off p50 ${off.p50.toFixed(2)} p99 ${off.p99.toFixed(2)} ms (${on.count} + ${off.count} writes); API server's mean webhook call ${(webhookCalls > 0 ? (webhookSeconds / webhookCalls) * 1000 : Number.NaN).toFixed(2)} ms over ${webhookCalls}`);
    }
  } finally {
    // Leave the webhook registered, as the other scenarios expect.
    await switchTo(true).catch((error: unknown) => say(`could not register the webhook again: ${(error as Error).message}`));
  }
  const pick = (f: (r: ApiLatencyRepetition) => number): Spread => spread(repetitions.map(f));
  return {
    options,
    namespace,
    repetitions,
    figures: {
      onP50Ms: pick((r) => r.on.p50),
      onP99Ms: pick((r) => r.on.p99),
      offP50Ms: pick((r) => r.off.p50),
      offP99Ms: pick((r) => r.off.p99),
      addedP50Ms: pick((r) => r.addedP50Ms),
      addedP99Ms: pick((r) => r.addedP99Ms),
      p50OnToOff: pick((r) => r.on.p50 / r.off.p50),
      p99OnToOff: pick((r) => r.on.p99 / r.off.p99),
      apiServerWebhookMeanMs: pick((r) => r.apiServerWebhookMeanMs),
    },
  };
}

function webhookMetric(metrics: Metrics, suffix: '_sum' | '_count'): number {
  return metricSum(metrics, `${WEBHOOK_METRIC}${suffix}`, 'name="checksum.config-checksum.io"', 'operation="UPDATE"');
}

/** The Deployment of the review as a client would create it: no server-set fields, paused. */
function storedShape(object: KubeObject): KubeObject {
  const copy = structuredClone(object);
  const metadata = copy['metadata'];
  for (const field of ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields']) delete metadata[field];
  delete metadata['annotations']['deployment.kubernetes.io/revision'];
  delete copy['status'];
  delete copy['spec']['template']['metadata']['annotations']['checksum/config'];
  delete copy['spec']['template']['metadata']['creationTimestamp'];
  copy['spec']['paused'] = true;
  return copy;
}

/** The configuration as the harness registered it, ready to be created again. */
function registeredConfiguration(environment: Environment): KubeObject {
  const configuration = structuredClone(environment.webhook.configuration);
  const metadata = configuration['metadata'] ?? {};
  configuration['metadata'] = { name: metadata['name'], ...(metadata['labels'] ? { labels: metadata['labels'] } : {}) };
  return configuration;
}

