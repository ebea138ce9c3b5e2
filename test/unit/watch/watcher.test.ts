// The watcher's rules without a cluster (DESIGN section 6), on fakes of its parts: an in-memory API whose
// rollout request runs the real workload decision as the webhook would (or not, when "the webhook is
// down"), list/watch loops the test feeds, and a leadership the test hands over. Timing is real but short
// (a 20 ms coalescing window).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import jsonpatch from 'fast-json-patch';
import type { ConfigMapLookup } from '../../../src/checksum/compute.ts';
import type { ConfigMapReader } from '../../../src/kube/configmaps.ts';
import type { WatcherApi } from '../../../src/kube/watcher-api.ts';
import type { EventSpec, RolloutRequest } from '../../../src/kube/workloads.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import { createMetrics, type Metrics } from '../../../src/telemetry/metrics.ts';
import type { JsonObject } from '../../../src/util/json.ts';
import type { LeaderOptions } from '../../../src/watch/leader.ts';
import type { ReflectorHandlers, ReflectorOptions } from '../../../src/watch/reflector.ts';
import { Watcher, type Leadership, type ListWatch, type WatcherOptions } from '../../../src/watch/watcher.ts';
import type { PatchOperation } from '../../../src/workload/annotations.ts';
import { decideWorkload, type SecretSource } from '../../../src/workload/decision.ts';
import { workloadKey, type WorkloadRef } from '../../../src/workload/kinds.ts';

const NS = 'shop';
const WINDOW_MS = 20;
const OPTIONS: WatcherOptions = Object.freeze({
  checksumAnnotation: 'checksum/config',
  webhookConfigurationName: 'config-checksum-webhook',
  namespace: 'config-checksum',
  identity: 'test-replica',
  coalesceWindowMs: WINDOW_MS,
  coalesceMaxMs: WINDOW_MS * 4,
  rolloutRatePerSecond: 1000,
  rolloutBurst: 1000,
  leaseDurationSeconds: 15,
  configMapReadTimeoutMs: 1000,
  maxConfigMaps: 64,
  resyncMinutes: 0,
  gitopsMaxWaitSeconds: 90,
});

type Data = Record<string, string>;

/** The watcher's timers a hundred times faster: its 30 s scope refresh runs every 300 ms. */
const FAST_CLOCK = {
  setTimeout: (callback: () => void, ms: number) => setTimeout(callback, ms / 100),
  setInterval: (callback: () => void, ms: number) => setInterval(callback, ms / 100),
};

/** One list/watch loop the test drives: objects in, then synced. */
class FakeListWatch implements ListWatch {
  synced = false;
  stopped = false;
  readonly options: ReflectorOptions;
  readonly handlers: ReflectorHandlers;
  constructor(options: ReflectorOptions, handlers: ReflectorHandlers) {
    this.options = options;
    this.handlers = handlers;
  }
  start(): void {}
  stop(): void {
    this.stopped = true;
  }
  sync(): void {
    this.synced = true;
    this.handlers.synced?.();
  }
}

class FakeLeadership implements Leadership {
  leading = false;
  readonly options: LeaderOptions;
  constructor(options: LeaderOptions) {
    this.options = options;
  }
  start(): void {}
  async stop(): Promise<void> {}
  set(leading: boolean): void {
    this.leading = leading;
    this.options.onChange(leading);
  }
}

/**
 * The cluster as the watcher sees it. ConfigMaps are read live by the reader; a rollout request stores
 * the request annotation and, while `webhookUp`, runs the real decision on the stored object and applies
 * its operations, as the webhook does inside that request.
 */
class FakeCluster implements WatcherApi, ConfigMapReader {
  readonly configMaps = new Map<string, Data>();
  readonly workloads = new Map<string, JsonObject>();
  readonly events: Array<{ ref: WorkloadRef; event: EventSpec }> = [];
  readonly requests: string[] = [];
  webhookUp = true;
  conflictsToAnswer = 0;
  /** Reads of the webhook configuration that fail before one succeeds. */
  configurationFailures = 0;
  selector: JsonObject = { matchExpressions: [{ key: 'config-checksum.io/inject', operator: 'In', values: ['enabled'] }] };
  readonly listWatches: FakeListWatch[] = [];
  leadership: FakeLeadership | undefined;
  readonly metrics: Metrics = createMetrics();
  /** With --secrets: the webhook and the watcher read Secrets through this (see withSecrets()). */
  secrets: SecretSource | undefined;
  /** The Secrets behind `secrets`, listed at start like the ConfigMaps. */
  secretStore: SecretStore | undefined;
  /** Flux Kustomizations by "namespace/name"; none means the Flux API is absent (the API server's 404). */
  readonly kustomizations = new Map<string, JsonObject>();
  readonly kustomizationReads: string[] = [];
  kustomizationReadError: Error | undefined;
  /** Labels of the ConfigMaps by name, delivered with their watch events (e.g. kustomize-controller's). */
  readonly configMapLabels = new Map<string, Data>();
  #resourceVersion = 1;

  async read(_namespace: string, name: string): Promise<ConfigMapLookup> {
    const data = this.configMaps.get(name);
    return data ? { state: 'found', data, binaryData: undefined } : { state: 'missing' };
  }

  /** Workloads read by name (each read of the watcher's checks). */
  readonly workloadReads: string[] = [];

  async getWorkload(ref: WorkloadRef): Promise<JsonObject | undefined> {
    this.workloadReads.push(ref.name);
    const stored = this.workloads.get(workloadKey(ref));
    return stored && structuredClone(stored);
  }

  async requestRollout(ref: WorkloadRef, resourceVersion: string, request: PatchOperation): Promise<RolloutRequest> {
    const object = structuredClone(this.workloads.get(workloadKey(ref))!) as Record<string, any>;
    if (this.conflictsToAnswer > 0 || object['metadata']['resourceVersion'] !== resourceVersion) {
      this.conflictsToAnswer = Math.max(0, this.conflictsToAnswer - 1);
      this.#store(ref, object);
      return { state: 'conflict' };
    }
    jsonpatch.applyOperation(object, request);
    this.requests.push(object['metadata']['annotations']['config-checksum.io/requested']);
    if (this.webhookUp) {
      const decision = await decideWorkload(object, ref.namespace, { configMaps: this, secrets: this.secrets }, OPTIONS);
      if (decision.kind === 'computed') {
        object['spec']['template']['metadata']['annotations'] = { ...object['spec']['template']['metadata']['annotations'], ...checksumsOf(decision) };
      }
    }
    this.#store(ref, object);
    return { state: 'written', object: structuredClone(object) };
  }

  async recordEvent(ref: WorkloadRef, _uid: string, event: EventSpec): Promise<void> {
    this.events.push({ ref, event });
  }

  async getKustomization(namespace: string, name: string): Promise<JsonObject | undefined> {
    this.kustomizationReads.push(`${namespace}/${name}`);
    if (this.kustomizationReadError) throw this.kustomizationReadError;
    const found = this.kustomizations.get(`${namespace}/${name}`);
    return found && structuredClone(found);
  }

  async getWebhookConfiguration(): Promise<JsonObject | undefined> {
    if (this.configurationFailures > 0) {
      this.configurationFailures--;
      throw new Error('injected: the API server refused');
    }
    return { webhooks: [{ namespaceSelector: this.selector }] };
  }

  /** Stores a Deployment reading `configMaps` through envFrom, with the checksum the webhook gives it now. */
  async deployment(name: string, configMaps: readonly string[], options: { checksum?: boolean; namespace?: string; container?: JsonObject; labels?: Data } = {}): Promise<JsonObject> {
    const ref: WorkloadRef = { kind: 'Deployment', namespace: options.namespace ?? NS, name };
    const object: Record<string, any> = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace: ref.namespace, uid: `uid-${name}`, ...(options.labels ? { labels: options.labels } : {}) },
      spec: { template: { metadata: { annotations: {} }, spec: { containers: [options.container ?? { name: 'app', envFrom: configMaps.map((cm) => ({ configMapRef: { name: cm } })) }] } } },
    };
    if (options.checksum !== false) {
      const decision = await decideWorkload(object, ref.namespace, { configMaps: this, secrets: this.secrets }, OPTIONS);
      assert.equal(decision.kind, 'computed');
      if (decision.kind === 'computed') Object.assign(object['spec']['template']['metadata']['annotations'], checksumsOf(decision));
    }
    this.#store(ref, object);
    return this.workloads.get(workloadKey(ref))!;
  }

  checksumOf(name: string, namespace = NS): string | undefined {
    return (this.workloads.get(workloadKey({ kind: 'Deployment', namespace, name })) as Record<string, any>)['spec']['template']['metadata']['annotations']['checksum/config'];
  }

  watch(path: string): FakeListWatch {
    const found = this.listWatches.filter((lw) => lw.options.path === path && !lw.stopped).at(-1);
    assert.ok(found, `a list/watch of ${path}`);
    return found;
  }

  /** Changes a ConfigMap's data and delivers the watch event. */
  setConfigMap(name: string, data: Data, namespace = NS): void {
    this.configMaps.set(name, data);
    this.watch('/api/v1/configmaps').handlers.upsert(configMapObject(name, data, namespace, this.configMapLabels.get(name)));
  }

  #store(ref: WorkloadRef, object: Record<string, any>): void {
    object['metadata']['resourceVersion'] = String(this.#resourceVersion++);
    this.workloads.set(workloadKey(ref), object);
  }
}

/** The pod-template annotations the webhook sets for a computed decision. */
function checksumsOf(decision: { checksum: string | undefined; secretChecksum: string | undefined }): Record<string, string> {
  return {
    ...(decision.checksum === undefined ? {} : { 'checksum/config': decision.checksum }),
    ...(decision.secretChecksum === undefined ? {} : { 'checksum/secret': decision.secretChecksum }),
  };
}

function configMapObject(name: string, data: Data, namespace = NS, labels?: Data): JsonObject {
  return { metadata: { name, namespace, ...(labels ? { labels } : {}) }, data };
}

function newWatcher(cluster: FakeCluster, options: Partial<WatcherOptions> = {}): Watcher {
  return new Watcher({
    api: cluster,
    reader: cluster,
    secrets: cluster.secrets,
    listWatch: (listOptions, handlers) => {
      const listWatch = new FakeListWatch(listOptions, handlers);
      cluster.listWatches.push(listWatch);
      return listWatch;
    },
    leadership: (leaderOptions) => (cluster.leadership = new FakeLeadership(leaderOptions)),
    clock: FAST_CLOCK,
    logger: createLogger('silent'),
    metrics: cluster.metrics,
  }, { ...OPTIONS, ...options });
}

/** A started, synced watcher over `cluster`, leading unless told otherwise. */
async function startedWatcher(cluster: FakeCluster, options: { leading?: boolean; inScope?: readonly string[]; resyncMinutes?: number; gitopsMaxWaitSeconds?: number; rollout?: Pick<WatcherOptions, 'rolloutRatePerSecond' | 'rolloutBurst'> } = {}): Promise<Watcher> {
  const watcher = newWatcher(cluster, {
    ...(options.resyncMinutes === undefined ? {} : { resyncMinutes: options.resyncMinutes }),
    ...(options.gitopsMaxWaitSeconds === undefined ? {} : { gitopsMaxWaitSeconds: options.gitopsMaxWaitSeconds }),
    ...options.rollout,
  });
  await watcher.start();
  for (const namespace of options.inScope ?? [NS]) cluster.watch('/api/v1/namespaces').handlers.upsert({ metadata: { name: namespace } });
  for (const object of cluster.workloads.values()) cluster.watch('/apis/apps/v1/deployments').handlers.upsert(object);
  if (options.leading !== false) cluster.leadership!.set(true);
  // Workloads are listed first; the ConfigMaps' list/watch starts once they are.
  for (const [name, data] of cluster.secretStore?.secrets ?? []) cluster.watch('/api/v1/secrets').handlers.upsert({ metadata: { name, namespace: NS }, data });
  for (const listWatch of [...cluster.listWatches]) listWatch.sync();
  for (const [name, data] of cluster.configMaps) cluster.watch('/api/v1/configmaps').handlers.upsert(configMapObject(name, data, NS, cluster.configMapLabels.get(name)));
  cluster.watch('/api/v1/configmaps').sync();
  assert.ok(watcher.synced, 'synced once every list/watch listed');
  return watcher;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` every 5 ms for up to `timeoutMs`. */
async function eventually(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 2_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await probe())) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function counter(metrics: Metrics, name: 'watchRollouts' | 'watchRetries'): Promise<number> {
  return (await metrics[name].get()).values.reduce((sum, value) => sum + value.value, 0);
}

describe('watcher', () => {
  test('a consumed key changes: one rollout request with the new checksum, which the webhook sets; one Event; the metric', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    const before = (await cluster.deployment('web', ['app']), cluster.checksumOf('web'));
    const watcher = await startedWatcher(cluster);
    try {
      cluster.setConfigMap('app', { level: 'debug' });
      await eventually('the rollout', () => cluster.events.length === 1);
      assert.notEqual(cluster.checksumOf('web'), before);
      assert.deepEqual(cluster.requests, [cluster.checksumOf('web')], 'asked once, for the checksum the webhook then set');
      assert.equal(cluster.events[0]!.event.reason, 'ConfigChanged');
      assert.match(cluster.events[0]!.event.message, /ConfigMap app changed/);
      assert.doesNotMatch(cluster.events[0]!.event.message, /debug/, 'names, never values');
      assert.equal(await counter(cluster.metrics, 'watchRollouts'), 1);
    } finally {
      await watcher.stop();
    }
  });

  test('three ConfigMaps changed within the window: one request', async () => {
    const cluster = new FakeCluster();
    for (const name of ['a', 'b', 'c']) cluster.configMaps.set(name, { v: '1' });
    await cluster.deployment('web', ['a', 'b', 'c']);
    const watcher = await startedWatcher(cluster);
    try {
      for (const name of ['a', 'b', 'c']) cluster.setConfigMap(name, { v: '2' });
      await eventually('the rollout', () => cluster.events.length === 1);
      await sleep(WINDOW_MS * 5);
      assert.equal(cluster.requests.length, 1);
      assert.match(cluster.events[0]!.event.message, /ConfigMap a, b, c changed/);
    } finally {
      await watcher.stop();
    }
  });

  test('a metadata-only change and a change to a key nobody consumes request nothing', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    await cluster.deployment('web', [], { container: { name: 'app', env: [{ name: 'L', valueFrom: { configMapKeyRef: { name: 'app', key: 'level' } } }] } });
    const watcher = await startedWatcher(cluster);
    try {
      cluster.watch('/api/v1/configmaps').handlers.upsert({ metadata: { name: 'app', namespace: NS, labels: { team: 'b' } }, data: { level: 'info' } });
      cluster.setConfigMap('app', { level: 'info', other: 'new' });
      await sleep(WINDOW_MS * 10);
      assert.deepEqual(cluster.requests, []);
    } finally {
      await watcher.stop();
    }
  });

  test('the webhook down when asked: the change stays pending (no Event, no metric) and lands once it is back', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    await cluster.deployment('web', ['app']);
    const before = cluster.checksumOf('web');
    cluster.webhookUp = false;
    const watcher = await startedWatcher(cluster);
    try {
      cluster.setConfigMap('app', { level: 'debug' });
      await eventually('the first request', () => cluster.requests.length === 1);
      await eventually('a retry scheduled', () => (cluster.metrics.watchPending as unknown as { hashMap: Record<string, { value: number }> }).hashMap['']?.value === 1);
      assert.equal(cluster.checksumOf('web'), before, 'nothing rolled');
      assert.equal(cluster.events.length, 0, 'no Event for a request that did not roll');
      assert.equal(await counter(cluster.metrics, 'watchRollouts'), 0);
      cluster.webhookUp = true;
      await eventually('the retried request to land', () => cluster.events.length === 1, 5_000);
      assert.notEqual(cluster.checksumOf('web'), before);
      assert.ok(cluster.requests.length >= 2, 'asked again');
      assert.ok(await counter(cluster.metrics, 'watchRetries') >= 1);
      assert.equal(await counter(cluster.metrics, 'watchRollouts'), 1, 'counted once');
    } finally {
      await watcher.stop();
    }
  });

  test('a rollout that does not land: the oldest pending rollout ages from its change through every retry, and is gone once it lands', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    await cluster.deployment('web', ['app']);
    cluster.webhookUp = false;
    const watcher = await startedWatcher(cluster);
    try {
      const changed = performance.now();
      cluster.setConfigMap('app', { level: 'debug' });
      await eventually('two requests that did not land', () => cluster.requests.length >= 2, 5_000);
      assert.equal(cluster.metrics.pendingRollouts.size, 1, 'pending between its attempts');
      const age = cluster.metrics.pendingRollouts.oldestAgeSeconds();
      assert.ok(age >= (performance.now() - changed) / 1000 - 0.05, `counted from the change, coalescing window included (${age} s)`);
      cluster.webhookUp = true;
      await eventually('the retried request to land', () => cluster.events.length === 1, 5_000);
      assert.equal(cluster.metrics.pendingRollouts.oldestAgeSeconds(), 0, 'none pending once it landed');
      cluster.webhookUp = false;
      cluster.setConfigMap('app', { level: 'trace' });
      await eventually('a request that did not land', () => cluster.requests.length >= 4, 5_000);
      assert.equal(cluster.metrics.pendingRollouts.size, 1);
    } finally {
      await watcher.stop();
    }
    assert.equal(cluster.metrics.pendingRollouts.size, 0, 'stop() forgets what it will not roll');
  });

  test('rollouts beyond the burst wait for the rate limit, and the wait is counted', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    for (let index = 0; index < 8; index++) await cluster.deployment(`web-${index}`, ['app']);
    const watcher = await startedWatcher(cluster, { rollout: { rolloutRatePerSecond: 20, rolloutBurst: 2 } });
    try {
      cluster.setConfigMap('app', { level: 'debug' });
      await eventually('every rollout', () => cluster.events.length === 8, 5_000);
      const waited = (await cluster.metrics.watchRateLimitWait.get()).values[0]?.value ?? 0;
      // 6 writes past the burst of 2, one token every 50 ms, 4 at a time: at least 6 x 50 ms waited in all.
      assert.ok(waited >= 0.25, `writes waited ${waited} s for tokens`);
      assert.equal((await cluster.metrics.watchRateLimitWaiting.get()).values[0]?.value, 0, 'none waiting now');
    } finally {
      await watcher.stop();
    }
  });

  test('a write that raced the request: read again and asked again at once', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    await cluster.deployment('web', ['app']);
    cluster.conflictsToAnswer = 2;
    const watcher = await startedWatcher(cluster);
    try {
      cluster.setConfigMap('app', { level: 'debug' });
      await eventually('the rollout', () => cluster.events.length === 1, 400);
      assert.equal(await counter(cluster.metrics, 'watchRetries'), 0, 'conflicts are not failures to back off from');
    } finally {
      await watcher.stop();
    }
  });

  test('the start-up pass reads only what the ConfigMap list did not show up to date', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    cluster.configMaps.set('other', { level: 'info' });
    await cluster.deployment('current', ['app']);
    await cluster.deployment('stale', ['other']);
    cluster.configMaps.set('other', { level: 'changed while no watcher ran' });
    const watcher = await startedWatcher(cluster);
    try {
      await eventually('the stale workload rolled', () => cluster.events.length === 1);
      assert.equal(cluster.events[0]!.ref.name, 'stale');
      await sleep(WINDOW_MS * 5);
      assert.ok(!cluster.workloadReads.includes('current'), `the up-to-date workload was not read: ${JSON.stringify(cluster.workloadReads)}`);
    } finally {
      await watcher.stop();
    }
  });

  test('only the leader asks; a new leader brings every stale annotated workload up to date, and none without a checksum', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    await cluster.deployment('web', ['app']);
    await cluster.deployment('fresh', ['app'], { checksum: false });
    const watcher = await startedWatcher(cluster, { leading: false });
    try {
      cluster.setConfigMap('app', { level: 'debug' });
      await sleep(WINDOW_MS * 10);
      assert.deepEqual(cluster.requests, [], 'a follower never writes');
      cluster.leadership!.set(true);
      await eventually('the new leader to roll the stale workload', () => cluster.events.length === 1);
      assert.equal(cluster.events[0]!.ref.name, 'web');
      assert.match(cluster.events[0]!.event.message, /config changed while no watcher was running/);
      assert.equal(cluster.checksumOf('fresh'), undefined, 'a workload without a checksum is never rolled by the watcher');
    } finally {
      await watcher.stop();
    }
  });

  test('a deleted ConfigMap rolls nothing and leaves a Warning Event on each consumer', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    await cluster.deployment('web', ['app']);
    const watcher = await startedWatcher(cluster);
    try {
      cluster.configMaps.delete('app');
      cluster.watch('/api/v1/configmaps').handlers.remove(configMapObject('app', {}));
      await eventually('the Warning Event', () => cluster.events.length === 1);
      await sleep(WINDOW_MS * 5);
      assert.equal(cluster.events[0]!.event.type, 'Warning');
      assert.equal(cluster.events[0]!.event.reason, 'ConfigMapDeleted');
      assert.deepEqual(cluster.requests, []);
    } finally {
      await watcher.stop();
    }
  });

  test('config that went missing never rolls from the watcher: a required ConfigMap deleted while no watcher ran, a required key removed', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('gone', { level: 'info' });
    cluster.configMaps.set('keyed', { level: 'info', other: '1' });
    await cluster.deployment('web', ['gone']);
    await cluster.deployment('api', [], { container: { name: 'app', env: [{ name: 'L', valueFrom: { configMapKeyRef: { name: 'keyed', key: 'level' } } }] } });
    cluster.configMaps.delete('gone');
    const watcher = await startedWatcher(cluster);
    try {
      cluster.setConfigMap('keyed', { other: '2' });
      await sleep(WINDOW_MS * 10);
      assert.deepEqual(cluster.requests, [], 'new pods could not start: nothing is rolled');
      const skipped = (await cluster.metrics.watchSkipped.get()).values.find((value) => value.labels['reason'] === 'required-config-missing');
      assert.equal(skipped?.value, 2, 'both were decided and skipped for that reason');
    } finally {
      await watcher.stop();
    }
  });

  test('the webhook configuration unreadable at start: not synced (nothing checked against an empty index) until it is read; then the start-up pass rolls the stale workload', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    await cluster.deployment('web', ['app']);
    cluster.configMaps.set('app', { level: 'changed while no watcher ran' });
    cluster.configurationFailures = 1;
    const watcher = newWatcher(cluster);
    try {
      await watcher.start();
      assert.throws(() => cluster.watch('/api/v1/namespaces'), /a list\/watch of/, 'no scope yet');
      cluster.watch('/apis/apps/v1/deployments').handlers.upsert(cluster.workloads.values().next().value!);
      cluster.leadership!.set(true);
      for (const listWatch of [...cluster.listWatches]) listWatch.sync();
      cluster.watch('/api/v1/configmaps').handlers.upsert(configMapObject('app', cluster.configMaps.get('app')!));
      cluster.watch('/api/v1/configmaps').sync();
      assert.equal(watcher.synced, false, 'every list/watch listed, but the scope is unknown');
      assert.equal((await cluster.metrics.watchSynced.get()).values[0]?.value, 0, 'config_checksum_watch_synced says so');
      await eventually('the scope to be read again (retried every 2 s, 20 ms on the fast clock)', () => cluster.listWatches.some((lw) => lw.options.path === '/api/v1/namespaces'), 5_000);
      cluster.watch('/api/v1/namespaces').handlers.upsert({ metadata: { name: NS } });
      cluster.watch('/api/v1/namespaces').sync();
      assert.equal(watcher.synced, true);
      assert.equal((await cluster.metrics.watchSynced.get()).values[0]?.value, 1);
      await eventually('the start-up pass to roll the stale workload', () => cluster.events.length === 1);
      assert.match(cluster.events[0]!.event.message, /config changed while no watcher was running/);
    } finally {
      await watcher.stop();
    }
  });

  test('a change whose event never arrived is rolled by the periodic level-based pass, once', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    const before = (await cluster.deployment('web', ['app']), cluster.checksumOf('web'));
    // Half a minute on the fast clock: a pass every 300 ms.
    const watcher = await startedWatcher(cluster, { resyncMinutes: 0.5 });
    try {
      await sleep(100); // the start-up pass finds it up to date first
      cluster.configMaps.set('app', { level: 'debug' }); // stored, but no watch event is delivered
      await eventually('the periodic pass to roll it', () => cluster.events.length === 1, 3_000);
      assert.notEqual(cluster.checksumOf('web'), before);
      assert.match(cluster.events[0]!.event.message, /no change event reached the watcher/);
      await sleep(800);
      assert.equal(cluster.requests.length, 1, 'later passes find it up to date');
    } finally {
      await watcher.stop();
    }
  });

  test('a new namespaceSelector: namespaces are listed again with it, and the scope follows', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    await cluster.deployment('web', ['app'], { namespace: 'team-b' });
    const watcher = await startedWatcher(cluster, { inScope: [NS] });
    try {
      const first = cluster.watch('/api/v1/namespaces');
      cluster.selector = { matchLabels: { team: 'b' } };
      await eventually('the refreshed scope (every 30 s, 300 ms on the fast clock)', () => cluster.watch('/api/v1/namespaces') !== first, 3_000);
      assert.ok(first.stopped, 'the old namespace list/watch is stopped');
      const second = cluster.watch('/api/v1/namespaces');
      assert.equal(second.options.labelSelector, 'team=b');
      second.handlers.upsert({ metadata: { name: 'team-b' } });
      second.sync();
      // team-b's workloads were out of scope, so not indexed: they are listed now, once.
      const list = cluster.watch('/apis/apps/v1/namespaces/team-b/deployments');
      for (const object of cluster.workloads.values()) list.handlers.upsert(object);
      list.sync();
      assert.ok(list.stopped, 'the one-off list stops once it has listed');
      cluster.setConfigMap('app', { level: 'debug' }, 'team-b');
      await eventually('the rollout in the namespace now in scope', () => cluster.events.length === 1);
      assert.equal(cluster.events[0]!.ref.namespace, 'team-b');
    } finally {
      await watcher.stop();
    }
  });

  test('only workloads in scope are indexed: one outside costs nothing; a namespace that joins has its workloads listed once, one that leaves is dropped', async () => {
    const cluster = new FakeCluster();
    // (The fake reads ConfigMaps by name whatever the namespace: each namespace has its own name here.)
    cluster.configMaps.set('app', { level: 'info' });
    cluster.configMaps.set('other', { level: 'info' });
    await cluster.deployment('inside', ['app']);
    await cluster.deployment('outside', ['other'], { namespace: 'elsewhere' });
    const watcher = await startedWatcher(cluster, { inScope: [NS] });
    const indexed = async (): Promise<number> => (await cluster.metrics.watchWorkloads.get()).values[0]!.value;
    try {
      assert.equal(await indexed(), 1, 'the workload outside the scope was dropped once the scope was listed');
      cluster.watch('/apis/apps/v1/deployments').handlers.upsert(cluster.workloads.get(workloadKey({ kind: 'Deployment', namespace: 'elsewhere', name: 'outside' }))!);
      assert.equal(await indexed(), 1, 'and its updates are not indexed');

      const namespaces = cluster.watch('/api/v1/namespaces');
      namespaces.handlers.upsert({ metadata: { name: 'elsewhere' } });
      const lists = ['deployments', 'statefulsets', 'daemonsets'].map((resource) => cluster.watch(`/apis/apps/v1/namespaces/elsewhere/${resource}`));
      lists[0]!.handlers.upsert(cluster.workloads.get(workloadKey({ kind: 'Deployment', namespace: 'elsewhere', name: 'outside' }))!);
      for (const list of lists) list.sync();
      assert.ok(lists.every((list) => list.stopped), 'each one-off list stops once it has listed');
      assert.equal(await indexed(), 2, 'the joining namespace\'s workload is indexed');
      cluster.setConfigMap('other', { level: 'debug' }, 'elsewhere');
      await eventually('the rollout in the joining namespace', () => cluster.events.length === 1);
      assert.equal(cluster.events[0]!.ref.name, 'outside', JSON.stringify(cluster.events));

      namespaces.handlers.remove({ metadata: { name: 'elsewhere' } });
      assert.equal(await indexed(), 1, 'a namespace that leaves the scope takes its workloads out of the index');
    } finally {
      await watcher.stop();
    }
  });

  test('a change in the gap while a new selector\'s namespaces are listed is caught once they are', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    await cluster.deployment('web', ['app']);
    const watcher = await startedWatcher(cluster, { inScope: [NS] });
    try {
      const first = cluster.watch('/api/v1/namespaces');
      cluster.selector = { matchLabels: { team: 'b' } };
      await eventually('the refreshed scope', () => cluster.watch('/api/v1/namespaces') !== first, 3_000);
      cluster.setConfigMap('app', { level: 'debug' }); // the scope is empty now: the event is dropped
      await sleep(WINDOW_MS * 5);
      assert.deepEqual(cluster.requests, []);
      const second = cluster.watch('/api/v1/namespaces');
      second.handlers.upsert({ metadata: { name: NS } });
      second.sync();
      await eventually('the check after the new scope is listed', () => cluster.events.length === 1);
      assert.match(cluster.events[0]!.event.message, /while the scope was being read again/);
    } finally {
      await watcher.stop();
    }
  });

  test('an update that adds a ConfigMap which changes a moment later, its event seen first: the workload is still rolled', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('a', { v: '1' });
    cluster.configMaps.set('b', { v: '1' });
    await cluster.deployment('web', ['a']);
    const watcher = await startedWatcher(cluster);
    try {
      await sleep(50); // the start-up pass is done
      const updated = await cluster.deployment('web', ['a', 'b']); // admitted with b as it was
      cluster.setConfigMap('b', { v: '2' }); // nobody consumes b in the index yet: this event rolls nothing
      cluster.watch('/apis/apps/v1/deployments').handlers.upsert(updated); // the workload's own event, second
      await eventually('the workload to be checked and rolled', () => cluster.events.length === 1);
      assert.match(cluster.events[0]!.event.message, /ConfigMap b changed/);
    } finally {
      await watcher.stop();
    }
  });

  test('stop() at random points of the watcher\'s work (bursts, pending retries, a failing webhook): it always resolves, and nothing is written after it', async (t) => {
    const stopTimes: number[] = [];
    for (let round = 0; round < 30; round++) {
      const cluster = new FakeCluster();
      for (const name of ['a', 'b', 'c']) cluster.configMaps.set(name, { v: '0' });
      for (const name of ['w1', 'w2', 'w3', 'w4']) await cluster.deployment(name, ['a', 'b', 'c']);
      cluster.webhookUp = round % 2 === 0;
      const watcher = await startedWatcher(cluster, { resyncMinutes: 0.1 });
      for (let change = 1; change <= 5; change++) cluster.setConfigMap(['a', 'b', 'c'][change % 3]!, { v: String(change) });
      await sleep(Math.random() * 150);
      const started = performance.now();
      await Promise.race([watcher.stop(), sleep(2_000).then(() => assert.fail(`round ${round}: stop() did not resolve within 2 s`))]);
      stopTimes.push(performance.now() - started);
      const written = cluster.requests.length;
      await sleep(WINDOW_MS * 5);
      assert.equal(cluster.requests.length, written, `round ${round}: no request after stop()`);
    }
    t.diagnostic(`stop() took at most ${Math.round(Math.max(...stopTimes))} ms over ${stopTimes.length} rounds`);
  });

  test('a workload whose annotations leave no room for the request annotation is not asked for (the write would be refused forever)', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    const web = (await cluster.deployment('web', ['app'])) as Record<string, any>;
    web['metadata']['annotations'] = { filler: 'x'.repeat(256 * 1024 - 'filler'.length - 10) };
    const watcher = await startedWatcher(cluster);
    try {
      cluster.setConfigMap('app', { level: 'debug' });
      await sleep(WINDOW_MS * 10);
      assert.deepEqual(cluster.requests, []);
      const skipped = (await cluster.metrics.watchSkipped.get()).values.find((value) => value.labels['reason'] === 'annotations-full');
      assert.equal(skipped?.value, 1);
    } finally {
      await watcher.stop();
    }
  });

  test('scope is the webhook configuration\'s namespaceSelector: namespaces are listed with it, and a workload outside it is never asked for', async () => {
    const cluster = new FakeCluster();
    cluster.configMaps.set('app', { level: 'info' });
    await cluster.deployment('web', ['app'], { namespace: 'other' });
    const watcher = await startedWatcher(cluster, { inScope: [NS] });
    try {
      assert.equal(cluster.watch('/api/v1/namespaces').options.labelSelector, 'config-checksum.io/inject in (enabled)');
      cluster.setConfigMap('app', { level: 'debug' }, 'other');
      await sleep(WINDOW_MS * 10);
      assert.deepEqual(cluster.requests, [], 'namespace other is not in scope');
    } finally {
      await watcher.stop();
    }
  });
});

/** Secrets of the namespace, read live by webhook and watcher alike; values are kept base64, as the API serves them. */
class SecretStore {
  readonly secrets = new Map<string, Data>();
  unreadable = false;
  key = Uint8Array.from({ length: 32 }, (_, index) => index);

  set(name: string, plain: Data): void {
    this.secrets.set(name, Object.fromEntries(Object.entries(plain).map(([k, v]) => [k, Buffer.from(v).toString('base64')])));
  }

  source(): SecretSource {
    return {
      reader: {
        read: async (_namespace: string, name: string): Promise<ConfigMapLookup> => {
          if (this.unreadable) return { state: 'unreadable', reason: 'HTTP 403' };
          const data = this.secrets.get(name);
          return data ? { state: 'found', data, binaryData: undefined } : { state: 'missing' };
        },
      },
      key: () => this.key,
      annotation: 'checksum/secret',
    };
  }
}

/** A cluster whose webhook (and watcher) hash Secrets; `web` reads ConfigMap `app` and Secret `db` through envFrom. */
async function withSecrets(): Promise<{ cluster: FakeCluster; store: SecretStore }> {
  const cluster = new FakeCluster();
  const store = new SecretStore();
  cluster.secrets = store.source();
  cluster.secretStore = store;
  cluster.configMaps.set('app', { level: 'info' });
  store.set('db', { password: 'one' });
  await cluster.deployment('web', [], { container: { name: 'app', envFrom: [{ configMapRef: { name: 'app' } }, { secretRef: { name: 'db' } }] } });
  return { cluster, store };
}

/** Changes a Secret and delivers its watch event (values base64, as the API serves them). */
function setSecret(cluster: FakeCluster, store: SecretStore, name: string, plain: Data, metadata: Record<string, unknown> = {}): void {
  store.set(name, plain);
  cluster.watch('/api/v1/secrets').handlers.upsert({ metadata: { name, namespace: NS, ...metadata }, data: store.secrets.get(name) });
}

function secretChecksumOf(cluster: FakeCluster, name = 'web'): string | undefined {
  return (cluster.workloads.get(workloadKey({ kind: 'Deployment', namespace: NS, name })) as Record<string, any>)['spec']['template']['metadata']['annotations']['checksum/secret'];
}

describe('watcher with --secrets', () => {
  test('a ConfigMap change of a workload that also consumes a Secret: one request carrying both checksums; the webhook sets both; counted once', async () => {
    const { cluster, store } = await withSecrets();
    const beforeSecret = secretChecksumOf(cluster);
    assert.match(beforeSecret ?? '', /^[0-9a-f]{8}\.[0-9a-f]{64}$/);
    const watcher = await startedWatcher(cluster);
    try {
      store.set('db', { password: 'two' });
      cluster.setConfigMap('app', { level: 'debug' });
      await eventually('the rollout', () => cluster.events.length === 1);
      assert.equal(cluster.requests.length, 1);
      assert.match(cluster.requests[0]!, /^[0-9a-f]{64}$/);
      assert.notEqual(cluster.requests[0], cluster.checksumOf('web'), 'the request value is derived from both checksums');
      assert.notEqual(secretChecksumOf(cluster), beforeSecret, 'the webhook set checksum/secret in the same request');
      assert.equal(await counter(cluster.metrics, 'watchRollouts'), 1);
    } finally {
      await watcher.stop();
    }
  });

  test('a new hash key (the workload\'s checksum/secret made with another): a level-based pass rolls nothing; it shows at the next write', async () => {
    const { cluster, store } = await withSecrets();
    store.key = Uint8Array.from({ length: 32 }, () => 7);
    const watcher = await startedWatcher(cluster);
    try {
      await eventually('the start-up pass reads the workload', () => cluster.workloadReads.length >= 1);
      await sleep(WINDOW_MS * 10);
      assert.deepEqual(cluster.requests, []);
      assert.equal(cluster.events.length, 0);
      assert.ok(((await cluster.metrics.watchSkipped.get()).values.find((value) => value.labels['reason'] === 'up-to-date')?.value ?? 0) >= 1, 'decided, and found up to date');
    } finally {
      await watcher.stop();
    }
  });

  test('a Secret changed while no watcher ran (same key): the start-up pass rolls the workload once', async () => {
    const { cluster, store } = await withSecrets();
    const before = secretChecksumOf(cluster);
    store.set('db', { password: 'changed' });
    const watcher = await startedWatcher(cluster);
    try {
      await eventually('the rollout', () => cluster.events.length === 1);
      await sleep(WINDOW_MS * 10);
      assert.equal(cluster.requests.length, 1);
      assert.notEqual(secretChecksumOf(cluster), before, 'the webhook set the new checksum/secret');
      assert.match(cluster.events[0]!.event.message, /^config changed while no watcher was running; rolling out \(checksum\/secret=[0-9a-f]{12}\)$/);
    } finally {
      await watcher.stop();
    }
  });

  test('a workload consuming only Secrets is checked by level-based passes too', async () => {
    const cluster = new FakeCluster();
    const store = new SecretStore();
    cluster.secrets = store.source();
    cluster.secretStore = store;
    store.set('db', { password: 'one' });
    await cluster.deployment('web', [], { container: { name: 'app', envFrom: [{ secretRef: { name: 'db' } }] } });
    store.set('db', { password: 'two' });
    const watcher = await startedWatcher(cluster);
    try {
      await eventually('the rollout', () => cluster.requests.length === 1);
    } finally {
      await watcher.stop();
    }
  });

  test('Secrets unreadable when a ConfigMap changes: nothing is asked, the change stays pending, and lands once they are readable', async () => {
    const { cluster, store } = await withSecrets();
    const watcher = await startedWatcher(cluster);
    try {
      store.unreadable = true;
      cluster.setConfigMap('app', { level: 'debug' });
      await eventually('a retry scheduled', () => (cluster.metrics.watchPending as unknown as { hashMap: Record<string, { value: number }> }).hashMap['']?.value === 1);
      assert.deepEqual(cluster.requests, []);
      store.unreadable = false;
      await eventually('the retried change to land', () => cluster.events.length === 1, 5_000);
      assert.equal(cluster.requests.length, 1);
    } finally {
      await watcher.stop();
    }
  });

  test('Secrets are listed and watched without Helm release Secrets and service-account tokens; without --secrets, not at all', async () => {
    const { cluster } = await withSecrets();
    const watcher = await startedWatcher(cluster);
    try {
      assert.equal(cluster.watch('/api/v1/secrets').options.fieldSelector, 'type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token');
    } finally {
      await watcher.stop();
    }
    const plain = new FakeCluster();
    const without = await startedWatcher(plain);
    try {
      assert.throws(() => plain.watch('/api/v1/secrets'), /a list\/watch of/);
    } finally {
      await without.stop();
    }
  });

  test('a consumed Secret key changes: one request; the webhook sets checksum/secret; the Event names the Secret, never a value', async () => {
    const { cluster, store } = await withSecrets();
    const before = secretChecksumOf(cluster);
    const configBefore = cluster.checksumOf('web');
    const watcher = await startedWatcher(cluster);
    try {
      setSecret(cluster, store, 'db', { password: 'two-canary-value' });
      await eventually('the rollout', () => cluster.events.length === 1);
      assert.equal(cluster.requests.length, 1);
      assert.notEqual(secretChecksumOf(cluster), before);
      assert.equal(cluster.checksumOf('web'), configBefore, 'checksum/config unchanged');
      assert.match(cluster.events[0]!.event.message, /^Secret db changed; rolling out \(checksum\/secret=[0-9a-f]{12}\)$/);
      assert.doesNotMatch(JSON.stringify(cluster.events), /canary/);
    } finally {
      await watcher.stop();
    }
  });

  test('a Secret change to a key nobody consumes, or to its metadata only, requests nothing', async () => {
    const { cluster, store } = await withSecrets();
    store.set('tls', { 'tls.crt': 'a', 'tls.key': 'b' });
    await cluster.deployment('keyed', [], { container: { name: 'app', env: [{ name: 'CRT', valueFrom: { secretKeyRef: { name: 'tls', key: 'tls.crt' } } }] } });
    const watcher = await startedWatcher(cluster);
    try {
      setSecret(cluster, store, 'tls', { 'tls.crt': 'a', 'tls.key': 'rotated' });
      setSecret(cluster, store, 'db', { password: 'one' }, { labels: { touched: 'yes' } });
      await sleep(WINDOW_MS * 10);
      assert.deepEqual(cluster.requests, []);
      setSecret(cluster, store, 'tls', { 'tls.crt': 'renewed', 'tls.key': 'rotated-again' });
      await eventually('the consumed key\'s change rolled', () => cluster.events.length === 1);
      assert.equal(cluster.events[0]!.ref.name, 'keyed');
    } finally {
      await watcher.stop();
    }
  });

  test('a ConfigMap and a Secret of one release changed together: one request, the Event names both', async () => {
    const { cluster, store } = await withSecrets();
    const watcher = await startedWatcher(cluster);
    try {
      cluster.setConfigMap('app', { level: 'debug' });
      setSecret(cluster, store, 'db', { password: 'two' });
      await eventually('the rollout', () => cluster.events.length === 1);
      await sleep(WINDOW_MS * 5);
      assert.equal(cluster.requests.length, 1);
      assert.match(cluster.events[0]!.event.message, /^ConfigMap app and Secret db changed; rolling out/);
    } finally {
      await watcher.stop();
    }
  });

  test('a consumed Secret deleted: nothing rolls, a Warning Event names it', async () => {
    const { cluster, store } = await withSecrets();
    const watcher = await startedWatcher(cluster);
    try {
      store.secrets.delete('db');
      cluster.watch('/api/v1/secrets').handlers.remove({ metadata: { name: 'db', namespace: NS } });
      await eventually('the warning', () => cluster.events.length === 1);
      assert.equal(cluster.events[0]!.event.type, 'Warning');
      assert.equal(cluster.events[0]!.event.reason, 'SecretDeleted');
      assert.deepEqual(cluster.requests, []);
    } finally {
      await watcher.stop();
    }
  });

  test('a required Secret gone: a ConfigMap change rolls nothing (new pods could not start)', async () => {
    const { cluster, store } = await withSecrets();
    const watcher = await startedWatcher(cluster);
    try {
      store.secrets.delete('db');
      cluster.setConfigMap('app', { level: 'debug' });
      await sleep(WINDOW_MS * 10);
      assert.deepEqual(cluster.requests, []);
      assert.equal((await cluster.metrics.watchSkipped.get()).values.find((value) => value.labels['reason'] === 'required-config-missing')?.value, 1);
    } finally {
      await watcher.stop();
    }
  });
});

/** kustomize-controller's labels on what a Kustomization applied. */
function fluxLabels(name: string, namespace = 'flux-system'): Data {
  return { 'kustomize.toolkit.fluxcd.io/name': name, 'kustomize.toolkit.fluxcd.io/namespace': namespace };
}

function kustomization(name: string, status: JsonObject, spec: JsonObject = {}): JsonObject {
  return {
    apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
    kind: 'Kustomization',
    metadata: { name, namespace: 'flux-system' },
    spec: { sourceRef: { kind: 'ExternalArtifact', name: 'repo' }, ...spec },
    status,
  };
}

const OLD_REVISION = 'main@sha1:1111111111111111111111111111111111111111';
const NEW_REVISION = 'main@sha1:2222222222222222222222222222222222222222';

/**
 * The usual Flux layout: Kustomization `config` applied ConfigMap `app` and is applying NEW_REVISION;
 * Kustomization `app` applied Deployment `web` at OLD_REVISION (it depends on `config`).
 */
async function fluxLayout(appStatus: JsonObject = { lastAppliedRevision: OLD_REVISION, lastAttemptedRevision: OLD_REVISION }, appSpec: JsonObject = {}): Promise<FakeCluster> {
  const cluster = new FakeCluster();
  cluster.configMaps.set('app', { level: 'info' });
  cluster.configMapLabels.set('app', fluxLabels('config'));
  await cluster.deployment('web', ['app'], { labels: fluxLabels('app') });
  cluster.kustomizations.set('flux-system/config', kustomization('config', { lastAppliedRevision: OLD_REVISION, lastAttemptedRevision: NEW_REVISION }));
  cluster.kustomizations.set('flux-system/app', kustomization('app', appStatus, { dependsOn: [{ name: 'config' }], ...appSpec }));
  return cluster;
}

async function gitopsWaits(metrics: Metrics): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const value of (await metrics.gitopsWait.get()).values) {
    if (value.metricName === 'config_checksum_watch_gitops_wait_seconds_count') counts[String(value.labels['outcome'])] = value.value;
  }
  return counts;
}

describe('watcher: held for a Flux Kustomization that has yet to apply the revision', () => {
  test('config applied first: nothing rolls until the workload\'s Kustomization applies the revision; its apply is the one rollout, told in an Event and the metric', async () => {
    const cluster = await fluxLayout();
    const watcher = await startedWatcher(cluster);
    try {
      cluster.setConfigMap('app', { level: 'debug' });
      await eventually('the hold', async () => (await cluster.metrics.gitopsHeld.get()).values[0]?.value === 1);
      await sleep(WINDOW_MS * 10);
      assert.deepEqual(cluster.requests, [], 'no rollout while Kustomization app has yet to apply the revision');
      // kustomize-controller applies `app` (new image and all): the webhook sets the new checksum in that write.
      await cluster.deployment('web', ['app'], { labels: fluxLabels('app'), container: { name: 'app', image: 'app:2', envFrom: [{ configMapRef: { name: 'app' } }] } });
      cluster.kustomizations.set('flux-system/app', kustomization('app', { lastAppliedRevision: NEW_REVISION, lastAttemptedRevision: NEW_REVISION }, { dependsOn: [{ name: 'config' }] }));
      await eventually('the Event', () => cluster.events.length === 1);
      await sleep(WINDOW_MS * 5);
      assert.deepEqual(cluster.requests, [], 'the watcher never requested a rollout of its own');
      assert.equal(cluster.events[0]!.event.reason, 'ConfigChanged');
      assert.match(cluster.events[0]!.event.message, new RegExp(`^ConfigMap app changed; rolled out by the apply of Kustomization flux-system/app \\(${NEW_REVISION}\\) after waiting \\d+ s for it \\(checksum/config=`));
      assert.deepEqual(await gitopsWaits(cluster.metrics), { applied: 1 });
      assert.equal((await cluster.metrics.gitopsHeld.get()).values[0]?.value, 0);
      assert.equal(await counter(cluster.metrics, 'watchRollouts'), 0, 'not counted as a rollout the watcher requested');
    } finally {
      await watcher.stop();
    }
  });

  test('the workload\'s Kustomization never applies it: the watcher rolls after --gitops-max-wait-seconds and says how long it waited', async () => {
    const cluster = await fluxLayout();
    const watcher = await startedWatcher(cluster, { gitopsMaxWaitSeconds: 1 });
    try {
      const changedAt = performance.now();
      cluster.setConfigMap('app', { level: 'debug' });
      await eventually('the rollout', () => cluster.requests.length === 1, 5_000);
      assert.ok(performance.now() - changedAt >= 1_000, 'held for the maximum wait');
      await eventually('the Event', () => cluster.events.length === 1);
      assert.match(cluster.events[0]!.event.message, /^ConfigMap app changed; waited 1 s for Kustomization flux-system\/app to apply main@sha1:2{40}, the longest --gitops-max-wait-seconds allows; rolling out \(checksum\/config=/);
      assert.deepEqual(await gitopsWaits(cluster.metrics), { 'max-wait': 1 });
      await sleep(WINDOW_MS * 5);
      assert.equal(cluster.requests.length, 1);
    } finally {
      await watcher.stop();
    }
  });

  test('the workload\'s Kustomization tries the revision and fails: the hold ends and the watcher rolls', async () => {
    const cluster = await fluxLayout();
    const watcher = await startedWatcher(cluster);
    try {
      cluster.setConfigMap('app', { level: 'debug' });
      await eventually('the hold', async () => (await cluster.metrics.gitopsHeld.get()).values[0]?.value === 1);
      cluster.kustomizations.set('flux-system/app', kustomization('app', {
        lastAppliedRevision: OLD_REVISION,
        lastAttemptedRevision: NEW_REVISION,
        conditions: [{ type: 'Ready', status: 'False', reason: 'BuildFailed' }],
      }, { dependsOn: [{ name: 'config' }] }));
      await eventually('the rollout', () => cluster.requests.length === 1);
      await eventually('the Event', () => cluster.events.length === 1);
      assert.match(cluster.events[0]!.event.message, /waited \d+ s for Kustomization flux-system\/app to apply main@sha1:2{40}; it finished without rolling the workload; rolling out/);
      assert.deepEqual(await gitopsWaits(cluster.metrics), { released: 1 });
    } finally {
      await watcher.stop();
    }
  });

  // Each case: the layout is changed so that nothing is to be waited for, and the change rolls as without Flux.
  const rollsAtOnce: Array<[string, (cluster: FakeCluster) => void]> = [
    ['the Flux API absent (no Kustomization to read)', (cluster) => cluster.kustomizations.clear()],
    ['the workload\'s Kustomization has applied the revision already', (cluster) => cluster.kustomizations.set('flux-system/app', kustomization('app', { lastAppliedRevision: NEW_REVISION }))],
    ['the two Kustomizations have different sources', (cluster) => cluster.kustomizations.set('flux-system/app', kustomization('app', { lastAppliedRevision: OLD_REVISION }, { sourceRef: { kind: 'GitRepository', name: 'other' } }))],
    ['the workload\'s Kustomization is suspended', (cluster) => cluster.kustomizations.set('flux-system/app', kustomization('app', { lastAppliedRevision: OLD_REVISION }, { suspend: true }))],
    ['one Kustomization applied both (its apply writes the ConfigMap first)', (cluster) => cluster.configMapLabels.set('app', fluxLabels('app'))],
    ['the ConfigMap has no Flux labels (written by someone else)', (cluster) => cluster.configMapLabels.delete('app')],
    ['a Kustomization cannot be read (403)', (cluster) => (cluster.kustomizationReadError = new Error('GET Kustomization flux-system/app: HTTP 403'))],
  ];
  for (const [name, change] of rollsAtOnce) {
    test(`rolls at once: ${name}`, async () => {
      const cluster = await fluxLayout();
      change(cluster);
      const watcher = await startedWatcher(cluster);
      try {
        cluster.setConfigMap('app', { level: 'debug' });
        await eventually('the rollout', () => cluster.requests.length === 1, 1_000);
        assert.deepEqual(await gitopsWaits(cluster.metrics), {});
      } finally {
        await watcher.stop();
      }
    });
  }

  // Each case: the change rolls at once and no Kustomization is read at all.
  const readsNothing: Array<[string, { gitopsMaxWaitSeconds?: number }, (cluster: FakeCluster) => Promise<unknown>]> = [
    ['--gitops-max-wait-seconds=0', { gitopsMaxWaitSeconds: 0 }, async () => undefined],
    ['a workload without Flux labels', {}, (cluster) => cluster.deployment('web', ['app'])],
  ];
  for (const [name, options, change] of readsNothing) {
    test(`no Kustomization is read: ${name}`, async () => {
      const cluster = await fluxLayout();
      await change(cluster);
      const watcher = await startedWatcher(cluster, options);
      try {
        cluster.setConfigMap('app', { level: 'debug' });
        await eventually('the rollout', () => cluster.requests.length === 1, 1_000);
        assert.deepEqual(cluster.kustomizationReads, []);
      } finally {
        await watcher.stop();
      }
    });
  }

  test('a restart while held: the start-up pass holds the stale workload too, from the labels of every ConfigMap it consumes', async () => {
    const cluster = await fluxLayout();
    cluster.configMaps.set('app', { level: 'debug' });
    const watcher = await startedWatcher(cluster);
    try {
      await eventually('the hold', async () => (await cluster.metrics.gitopsHeld.get()).values[0]?.value === 1);
      await sleep(WINDOW_MS * 10);
      assert.deepEqual(cluster.requests, []);
      cluster.kustomizations.set('flux-system/app', kustomization('app', { lastAppliedRevision: NEW_REVISION }));
      await eventually('the rollout', () => cluster.requests.length === 1);
      assert.deepEqual(await gitopsWaits(cluster.metrics), { released: 1 });
    } finally {
      await watcher.stop();
    }
  });
});
