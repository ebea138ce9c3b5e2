// The watch path against a real control plane (DESIGN sections 2 and 6): a ConfigMap changes and nobody
// writes the workload. "Rolled" is a new ReplicaSet made by the controller manager.
// The webhook process of the run has its watcher on (the shipped default), coalescing window included.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { resourcePath, waitFor, type KubeObject } from '../../src/local/kube.ts';
import { httpsCall } from '../support/https.ts';
import { pointRegistration, restoreRegistration } from './support/install.ts';
import { configMap, expectedChecksum, REQUESTED_ANNOTATION, Scenario, sleep, templateChecksum, workload } from './support/scenario.ts';
import { fileSize, logEntries, startWebhookProcess, stopWebhookProcess, type WebhookProcess } from '../../src/local/webhook.ts';
import { isAlive } from '../../src/local/process.ts';
import { CLOSE_GRACE_MS } from '../../src/server/https.ts';

const TIMEOUT = { timeout: 240_000 };
const LEASE = { namespace: 'config-checksum', name: 'config-checksum-webhook-leader' };
const scenario = new Scenario();
after(() => scenario.close());

/** A Deployment that consumes `configMaps` through volumes, created with its ConfigMaps, rolled out once. */
async function deployed(namespace: string, configMaps: KubeObject[], template: KubeObject = volumeTemplate(configMaps.map((cm) => cm['metadata']['name']))): Promise<KubeObject> {
  for (const cm of configMaps) await scenario.client.create(cm);
  const deployment = { ...workload('Deployment', namespace, 'app'), spec: { ...workload('Deployment', namespace, 'app')['spec'], template } };
  await scenario.client.create(deployment);
  const stored = await scenario.waitForObserved(deployment);
  assert.match(templateChecksum(stored) ?? '', /^[0-9a-f]{64}$/, 'admitted with a checksum');
  await scenario.waitForOwned('ReplicaSet', stored, 1);
  return stored;
}

function volumeTemplate(names: string[], items?: Array<{ key: string; path: string }>): KubeObject {
  return {
    metadata: { labels: { app: 'app' } },
    spec: {
      containers: [{ name: 'app', image: 'registry.invalid/app:1', volumeMounts: names.map((name) => ({ name, mountPath: `/etc/${name}` })) }],
      volumes: names.map((name) => ({ name, configMap: { name, ...(items ? { items } : {}) } })),
    },
  };
}

async function updateData(namespace: string, name: string, data: Record<string, string>): Promise<number> {
  const response = await scenario.client.request('PATCH', resourcePath('ConfigMap', namespace, name), { body: { data }, contentType: 'application/merge-patch+json' });
  assert.equal(response.status, 200, `patch ConfigMap ${name}`);
  return performance.now();
}

/** Waits for the Deployment's checksum to become `expected`; returns when it was first seen. */
async function waitForChecksum(deployment: KubeObject, expected: string, timeoutMs = 60_000): Promise<number> {
  await waitFor(`checksum ${expected.slice(0, 12)} on ${deployment['metadata']['name']}`, async () => templateChecksum(await scenario.read(deployment)) === expected, { timeoutMs, intervalMs: 50 });
  return performance.now();
}

async function configMaps(namespace: string, names: string[]): Promise<KubeObject[]> {
  return Promise.all(names.map((name) => scenario.client.get(resourcePath('ConfigMap', namespace, name))));
}

async function events(namespace: string, reason: string): Promise<KubeObject[]> {
  return (await scenario.client.list(resourcePath('Event', namespace))).filter((event) => event['reason'] === reason);
}

function reportReaction(t: TestContext, label: string, ms: number): void {
  const windowMs = scenario.state.webhook.coalesceWindowMs;
  t.diagnostic(`reaction ${label}: ${Math.round(ms)} ms from ConfigMap update to patched checksum (coalescing window ${windowMs} ms, ${Math.round(ms - windowMs)} ms beyond it)`);
}

test('the seed scenario: a ConfigMap updated alone rolls its Deployment exactly once, with the new checksum', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-watch-seed', { optIn: true });
  const stored = await deployed(namespace, [configMap(namespace, 'gateway-apis', { 'routes.yaml': 'v1' })]);

  const changedAt = await updateData(namespace, 'gateway-apis', { 'routes.yaml': 'v2' });
  const expected = expectedChecksum(stored, await configMaps(namespace, ['gateway-apis'])).checksum;
  reportReaction(t, 'seed', (await waitForChecksum(stored, expected)) - changedAt);

  const rolled = await scenario.waitForObserved(stored);
  await scenario.waitForOwned('ReplicaSet', rolled, 2);
  await sleep(scenario.configChangeSettleMs);
  const replicaSets = await scenario.owned('ReplicaSet', rolled);
  assert.equal(replicaSets.length, 2, 'exactly one new ReplicaSet');
  assert.ok(replicaSets.some((rs) => templateChecksum(rs) === expected), 'the new ReplicaSet carries the new checksum');
  const [event] = await events(namespace, 'ConfigChanged');
  assert.ok(event, 'a ConfigChanged Event is left on the workload');
  assert.equal(event['involvedObject']['name'], 'app');
  assert.match(event['message'], /gateway-apis/);
  assert.doesNotMatch(event['message'], /v2/, 'the Event names the ConfigMap, never its values');
});

test('a metadata-only change, and a change to a key nobody consumes, roll nothing', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-watch-noop', { optIn: true });
  const keyed = {
    metadata: { labels: { app: 'app' } },
    spec: {
      containers: [{
        name: 'app',
        image: 'registry.invalid/app:1',
        env: [{ name: 'LEVEL', valueFrom: { configMapKeyRef: { name: 'env', key: 'level' } } }],
        volumeMounts: [{ name: 'files', mountPath: '/etc/files' }],
      }],
      volumes: [{ name: 'files', configMap: { name: 'files', items: [{ key: 'used.yaml', path: 'used.yaml' }] } }],
    },
  };
  const stored = await deployed(namespace, [configMap(namespace, 'env', { level: 'info', other: 'a' }), configMap(namespace, 'files', { 'used.yaml': 'x', 'unused.yaml': 'a' })], keyed);
  const checksum = templateChecksum(stored);

  const labelled = await scenario.client.request('PATCH', resourcePath('ConfigMap', namespace, 'env'), { body: { metadata: { labels: { team: 'b' }, annotations: { note: 'n' } } }, contentType: 'application/merge-patch+json' });
  assert.equal(labelled.status, 200);
  await updateData(namespace, 'env', { other: 'b' });
  await updateData(namespace, 'files', { 'unused.yaml': 'b' });

  await sleep(scenario.configChangeSettleMs);
  const after = await scenario.read(stored);
  assert.equal(templateChecksum(after), checksum, 'the checksum did not change');
  assert.equal((await scenario.owned('ReplicaSet', after)).length, 1, 'no new ReplicaSet');
});

test('three ConfigMaps of one Deployment updated back to back: one new ReplicaSet', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-watch-burst', { optIn: true });
  const names = ['one', 'two', 'three'];
  const stored = await deployed(namespace, names.map((name) => configMap(namespace, name, { value: '1' })));

  for (const name of names) await updateData(namespace, name, { value: '2' });
  const expected = expectedChecksum(stored, await configMaps(namespace, names)).checksum;
  await waitForChecksum(stored, expected);

  await sleep(scenario.configChangeSettleMs);
  const replicaSets = await scenario.owned('ReplicaSet', await scenario.read(stored));
  assert.equal(replicaSets.length, 2, 'one rollout for the three changes');
  const [event] = await events(namespace, 'ConfigChanged');
  assert.match(event?.['message'] ?? '', /one, three, two/, 'the Event names every ConfigMap of the burst');
});

test('a missing ConfigMap that appears rolls the waiting Deployment once; a deleted one rolls nothing and warns', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-watch-lifecycle', { optIn: true });
  const deployment = { ...workload('Deployment', namespace, 'app'), spec: { ...workload('Deployment', namespace, 'app')['spec'], template: volumeTemplate(['late']) } };
  const created = await scenario.client.create(deployment);
  assert.ok(created.warnings.some((warning) => warning.includes('"late" not found')), 'admitted with a warning');
  const waiting = await scenario.waitForObserved(deployment);
  await scenario.waitForOwned('ReplicaSet', waiting, 1);

  const late = configMap(namespace, 'late', { 'app.yaml': 'ready' });
  await scenario.client.create(late);
  await waitForChecksum(waiting, expectedChecksum(waiting, [late]).checksum);
  await sleep(scenario.configChangeSettleMs);
  const appeared = await scenario.read(waiting);
  assert.equal((await scenario.owned('ReplicaSet', appeared)).length, 2, 'the appearance rolled it once');

  const deleted = await scenario.client.request('DELETE', resourcePath('ConfigMap', namespace, 'late'));
  assert.equal(deleted.status, 200);
  const [warning] = await waitFor('a ConfigMapDeleted Warning Event', async () => {
    const found = await events(namespace, 'ConfigMapDeleted');
    return found.length > 0 ? found : undefined;
  });
  assert.equal(warning!['type'], 'Warning');
  assert.match(warning!['message'], /late/);
  await sleep(scenario.configChangeSettleMs);
  const afterDelete = await scenario.read(waiting);
  assert.equal(templateChecksum(afterDelete), templateChecksum(appeared), 'deletion changed no checksum');
  assert.equal((await scenario.owned('ReplicaSet', afterDelete)).length, 2, 'deletion rolled nothing');
});

test('the webhook unreachable when the watcher asks: the change stays pending (no rollout, no Event); once the webhook answers, exactly one rollout and one Event', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-watch-pending', { optIn: true });
  const stored = await deployed(namespace, [configMap(namespace, 'pending', { value: '1' })]);
  const before = templateChecksum(stored);
  const { webhook } = scenario.state;
  const linesBefore = rolledOutLines(webhook.files.logFile, 'app', namespace);
  // Admission calls go to a port where nothing listens; failurePolicy Ignore lets every write through unmutated.
  await pointRegistration(scenario.client, scenario.state, await unusedPort());
  let restored = false;
  try {
    await waitFor('the API server to stop calling the webhook', async () => {
      const dryRun = await scenario.client.create(workload('Deployment', namespace, 'probe', { volumeConfigMap: 'pending' }), { dryRun: 'All' });
      return templateChecksum(dryRun.body) === undefined;
    }, { timeoutMs: 30_000, intervalMs: 200 });
    await updateData(namespace, 'pending', { value: '2' });
    const expected = expectedChecksum(stored, await configMaps(namespace, ['pending'])).checksum;
    // The watcher asks (its request annotation is stored), but nothing sets the checksum.
    await waitFor('the rollout request to be stored', async () => (await scenario.read(stored))['metadata']['annotations']?.[REQUESTED_ANNOTATION] === expected, { timeoutMs: 60_000, intervalMs: 100 });
    await sleep(scenario.configChangeSettleMs);
    const pending = await scenario.read(stored);
    assert.equal(templateChecksum(pending), before, 'the checksum is unchanged while the webhook is unreachable');
    assert.equal((await scenario.owned('ReplicaSet', pending)).length, 1, 'nothing rolled');
    assert.equal((await events(namespace, 'ConfigChanged')).length, 0, 'no ConfigChanged Event for a request that did not roll');
    assert.equal(rolledOutLines(webhook.files.logFile, 'app', namespace), linesBefore, 'no rollout logged');

    await restoreRegistration(scenario.client, scenario.state);
    restored = true;
    const restoredAt = performance.now();
    await waitForChecksum(stored, expected, 120_000);
    t.diagnostic(`the pending change landed ${Math.round(performance.now() - restoredAt)} ms after the webhook was reachable again (retries back off up to 60 s)`);
  } finally {
    if (!restored) await restoreRegistration(scenario.client, scenario.state);
  }
  await sleep(scenario.configChangeSettleMs);
  const rolled = await scenario.read(stored);
  assert.equal((await scenario.owned('ReplicaSet', rolled)).length, 2, 'exactly one rollout');
  assert.equal((await events(namespace, 'ConfigChanged')).length, 1, 'exactly one ConfigChanged Event');
  assert.equal(rolledOutLines(webhook.files.logFile, 'app', namespace), linesBefore + 1, 'one rollout logged');
});

/** A loopback port nothing listens on (bound once by the OS, then released). */
async function unusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// Scenarios that stop the run's webhook process restart it on the same port afterwards
// (scenario.restartWebhook), so the order of the test files does not matter.
async function leaseHolder(): Promise<string> {
  const response = await scenario.client.request('GET', resourcePath('Lease', LEASE.namespace, LEASE.name));
  return response.status === 200 ? String(response.body['spec']?.['holderIdentity'] ?? '') : '';
}

function rolledOutLines(logFile: string, name: string, namespace: string): number {
  return readFileSync(logFile, 'utf8').split('\n').filter((line) => line.includes('"msg":"rolled out"') && line.includes(`"namespace":"${namespace}"`) && line.includes(`"name":"${name}"`)).length;
}

test('two watcher replicas: only the leader writes; when it dies, the other takes over and handles the next change', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-watch-leader', { optIn: true });
  const stored = await deployed(namespace, [configMap(namespace, 'shared', { value: '1' })]);
  const { webhook } = scenario.state;
  const registry = { file: scenario.state.registryFile };
  let second: WebhookProcess | undefined;
  let mainStopped = false;
  try {
    second = await startWebhookProcess({
      files: { ...webhook.files, logFile: path.join(webhook.files.dir, 'webhook-second.log') },
      registry,
      port: 0,
      logLevel: webhook.logLevel,
      extraArgs: webhook.extraArgs,
      outliveParent: true,
    });
    assert.match(await leaseHolder(), new RegExp(`-${webhook.pid}$`), 'the first replica holds the lease');

    await updateData(namespace, 'shared', { value: '2' });
    await waitForChecksum(stored, expectedChecksum(stored, await configMaps(namespace, ['shared'])).checksum);
    await sleep(scenario.configChangeSettleMs);
    assert.equal((await scenario.owned('ReplicaSet', await scenario.read(stored))).length, 2, 'one rollout with two replicas watching');
    assert.equal(rolledOutLines(webhook.files.logFile, 'app', namespace), 1, 'the leader wrote');
    assert.equal(rolledOutLines(second.logFile, 'app', namespace), 0, 'the other replica did not');

    // A leader that dies without releasing its lease: the other must wait out the lease, then lead. The
    // Service of a real install sends admissions to the replica that is left; here the registration is
    // pointed at it, since the watcher's requests are rolled out by whichever webhook the API server calls.
    process.kill(-webhook.pid, 'SIGKILL');
    mainStopped = true;
    await stopWebhookProcess(webhook.pid, registry);
    await pointRegistration(scenario.client, scenario.state, second.port, readFileSync(webhook.files.caFile, 'utf8'));
    const killedAt = performance.now();
    await waitFor('the second replica to hold the lease', async () => (await leaseHolder()).endsWith(`-${second!.pid}`), { timeoutMs: 60_000, intervalMs: 200 });
    t.diagnostic(`failover: lease taken over ${Math.round(performance.now() - killedAt)} ms after the leader was killed (lease duration 15 s)`);

    await updateData(namespace, 'shared', { value: '3' });
    await waitForChecksum(stored, expectedChecksum(stored, await configMaps(namespace, ['shared'])).checksum);
    await sleep(scenario.configChangeSettleMs);
    assert.equal((await scenario.owned('ReplicaSet', await scenario.read(stored))).length, 3, 'the next change rolled once more');
    assert.equal(rolledOutLines(second.logFile, 'app', namespace), 1, 'the new leader wrote it');
  } finally {
    // The second replica releases the lease on SIGTERM, so the restarted first one leads at once.
    await second?.stop();
    if (mainStopped) {
      await restoreRegistration(scenario.client, scenario.state, { wait: false });
      await scenario.restartWebhook();
    }
  }
  await waitFor('the restarted webhook to lead', async () => (await leaseHolder()).endsWith(`-${scenario.state.webhook.pid}`), { timeoutMs: 30_000, intervalMs: 200 });
});

test('ConfigMaps near 1 MiB, more than fit in one 8 MiB response: the restarted watcher lists them page by page, syncs, and rolls the next change', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-watch-large', { optIn: true });
  const big = 'v'.repeat(900 * 1024);
  for (let index = 0; index < 12; index++) await scenario.client.create(configMap(namespace, `large-${index}`, { value: big }));
  const stored = await deployed(namespace, [configMap(namespace, 'large-config', { value: big.slice(0, 1000) })]);
  const { webhook } = scenario.state;
  const offset = fileSize(webhook.files.logFile);
  await scenario.stopWebhook();
  await scenario.restartWebhook(); // the new process lists every ConfigMap of the cluster, about 11 MiB of them
  const synced = await waitFor('the restarted watcher to sync', async () => logEntries(webhook.files.logFile, offset).find((line) => line['msg'] === 'watches synced'), { timeoutMs: 60_000, intervalMs: 200 });
  t.diagnostic(`synced with ${String(synced['configMaps'])} ConfigMaps in the cluster`);
  await updateData(namespace, 'large-config', { value: 'changed' });
  await waitForChecksum(stored, expectedChecksum(stored, await configMaps(namespace, ['large-config'])).checksum);
  await sleep(scenario.configChangeSettleMs);
  assert.equal((await scenario.owned('ReplicaSet', await scenario.read(stored))).length, 2, 'one rollout');
});

test('watcher down while a ConfigMap changes: on start, the stale workload rolls once; one that never had a checksum does not', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-watch-restart', { optIn: true });
  const stale = await deployed(namespace, [configMap(namespace, 'settings', { value: '1' })]);
  let stopped = false;
  let never: KubeObject;
  try {
    await scenario.stopWebhook();
    stopped = true;
    // Admitted while the webhook is down (failurePolicy Ignore): no checksum.
    never = { ...workload('Deployment', namespace, 'never'), spec: { ...workload('Deployment', namespace, 'never')['spec'], template: volumeTemplate(['settings']) } };
    never['spec']['selector'] = { matchLabels: { app: 'never' } };
    never['spec']['template']['metadata']['labels'] = { app: 'never' };
    await scenario.client.create(never);
    await updateData(namespace, 'settings', { value: '2' });
    await sleep(1_000);
  } finally {
    if (stopped) await scenario.restartWebhook();
  }
  await waitForChecksum(stale, expectedChecksum(stale, await configMaps(namespace, ['settings'])).checksum);
  await sleep(scenario.configChangeSettleMs);
  assert.equal((await scenario.owned('ReplicaSet', await scenario.read(stale))).length, 2, 'brought up to date once');
  const untouched = await scenario.waitForObserved(never!);
  assert.equal(templateChecksum(untouched), undefined, 'never given a checksum by the watcher');
  assert.equal((await scenario.owned('ReplicaSet', untouched)).length, 1, 'not rolled');
});

test('the watcher holds digests, not data: resident memory and ConfigMaps tracked after this file', TIMEOUT, async (t) => {
  const { webhook } = scenario.state;
  const metrics = (await httpsCall({ port: webhook.port, path: '/metrics', ca: readFileSync(webhook.files.caFile) })).text;
  const value = (name: string): number => Number(new RegExp(`^${name} ([0-9.e+]+)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);
  const rss = value('process_resident_memory_bytes');
  const tracked = value('config_checksum_watch_configmaps');
  assert.ok(Number.isFinite(rss) && rss > 0, 'resident memory is exported');
  assert.ok(tracked >= 1, 'the watcher tracks the ConfigMaps of the cluster');
  t.diagnostic(`watcher process: ${(rss / 1024 / 1024).toFixed(1)} MiB resident with ${tracked} ConfigMaps tracked`);
});

test('SIGTERM at random points of the watcher\'s work: the process always stops within its bound, and no change is lost across the restarts', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-watch-sigterm', { optIn: true });
  const names = ['one', 'two', 'three'];
  const stored = await deployed(namespace, names.map((name) => configMap(namespace, name, { value: '0' })));
  const { webhook } = scenario.state;
  const registry = { file: scenario.state.registryFile };
  const runFlags = webhook.extraArgs;
  // The run's webhook keeps answering admissions but watches nothing: each round's process is the only
  // watcher, so it leads, and its requests are admitted by the run's webhook.
  await scenario.stopWebhook();
  await scenario.restartWebhook([...runFlags, '--watch', 'false']);
  const seed = Date.now();
  let random = seed;
  const nextRandom = (): number => ((random = (random * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  t.diagnostic(`random seed ${seed}`);
  try {
    for (let round = 1; round <= 6; round++) {
      const watcher = await startWebhookProcess({
        files: { ...webhook.files, logFile: path.join(webhook.files.dir, `webhook-sigterm-${round}.log`) },
        registry,
        port: 0,
        logLevel: webhook.logLevel,
        extraArgs: runFlags,
        outliveParent: true,
      });
      await waitFor('the round\'s watcher to lead', async () => (await leaseHolder()).endsWith(`-${watcher.pid}`), { timeoutMs: 30_000, intervalMs: 100 });
      // A burst of changes, then SIGTERM somewhere in the quiet period, the reads, the request or the Event.
      for (const name of names) {
        await updateData(namespace, name, { value: `${round}-${name}` });
        await sleep(Math.floor(nextRandom() * 300));
      }
      const delayMs = Math.floor(nextRandom() * 2_500);
      await sleep(delayMs);
      const sentAt = performance.now();
      process.kill(-watcher.pid, 'SIGTERM');
      await waitFor(`watcher ${watcher.pid} to exit after SIGTERM`, async () => !isAlive(watcher.pid), { timeoutMs: 30_000, intervalMs: 20 });
      const stoppedMs = performance.now() - sentAt;
      await watcher.stop();
      const lines = logEntries(watcher.logFile).map((entry) => String(entry['msg']));
      t.diagnostic(`round ${round}: SIGTERM ${delayMs} ms after the burst, exited in ${Math.round(stoppedMs)} ms; rolled out in this round: ${lines.filter((msg) => msg === 'rolled out').length}`);
      assert.ok(lines.includes('stopped'), `round ${round}: the process logged "stopped" (a bounded, orderly stop)`);
      assert.ok(!lines.includes('shutdown did not finish in time; exiting'), `round ${round}: stopped without its watchdog`);
      assert.ok(stoppedMs < CLOSE_GRACE_MS + 4_000, `round ${round}: exited ${Math.round(stoppedMs)} ms after SIGTERM (drain 0 s, close grace ${CLOSE_GRACE_MS} ms)`);
    }
    // Whatever each kill interrupted, the last change reaches the Deployment: the next leader's start-up
    // pass rolls what a stopped one left pending.
    const last = await startWebhookProcess({
      files: { ...webhook.files, logFile: path.join(webhook.files.dir, 'webhook-sigterm-last.log') },
      registry,
      port: 0,
      logLevel: webhook.logLevel,
      extraArgs: runFlags,
      outliveParent: true,
    });
    try {
      await waitForChecksum(stored, expectedChecksum(stored, await configMaps(namespace, names)).checksum);
    } finally {
      await last.stop();
    }
  } finally {
    await scenario.stopWebhook();
    await scenario.restartWebhook(runFlags);
  }
  await waitFor('the restarted webhook to lead', async () => (await leaseHolder()).endsWith(`-${scenario.state.webhook.pid}`), { timeoutMs: 30_000, intervalMs: 200 });
});
