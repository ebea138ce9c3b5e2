// Hardening against a faulty API server, on the real control plane (issue "Hardening", items 2, 5, 6, 7).
// A second webhook process talks to the API server through a fault proxy (support/fault-proxy.ts) with the
// run's ServiceAccount token; the run's MutatingWebhookConfiguration is pointed at it for the duration of
// a test and restored in `finally`. ConfigMaps here carry a canary that must never show in logs, Events,
// warnings or /metrics.
//   - Admission faults (slow past the read deadline, refused, 403, 500): writes are allowed quickly, the
//     checksum does not move (nothing rolls for the config), the client is warned, fail-open is counted,
//     a dropped checksum is put back; after recovery an unchanged re-apply rolls nothing.
//   - Forged reviews: reads stay in the namespace the review names, even for names built to escape it.
//   - Watch faults: with the run's webhook stopped (it holds the leader Lease) a second one runs the
//     watcher through the proxy; connections are cut while a ConfigMap changes, then restored (a) plainly,
//     the watch resuming from its resourceVersion, and (b) with an injected 410 Gone on every re-watch,
//     forcing a relist. Each time the workload is brought up to date exactly once.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { createCertificateAuthority, issueCertificate, DAY_MS } from '../../src/tls/certs.ts';
import { kubeconfigYaml } from '../../src/local/control-plane.ts';
import { FaultProxy, readTokenKubeconfig, type FaultMode } from './support/fault-proxy.ts';
import { resourcePath, waitFor, type KubeObject, type KubeResponse } from '../../src/local/kube.ts';
import { CHECKSUM_ANNOTATION, configMap, expectedChecksum, Scenario, SETTLE_MS, sleep, sourcesAnnotation, templateChecksum, workload } from './support/scenario.ts';
import { startWebhookProcess, waitForWebhook, WEBHOOK_CONFIGURATION, type WebhookProcess } from '../../src/local/webhook.ts';
import { httpsCall } from '../support/https.ts';

const CANARY = 'canary-5f3b1c9e-leak';
const TIMEOUT = { timeout: 300_000 };
// The API server gives the webhook 5 s (timeoutSeconds); a fail-open answer must come well inside that.
const FAST_MS = 3_000;
const READ_TIMEOUT_MS = 500;
const CONFIGURATION_PATH = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${WEBHOOK_CONFIGURATION}`;
const LEASE = { namespace: 'config-checksum', name: 'config-checksum-webhook-leader' };

const scenario = new Scenario();
const registry = { file: scenario.state.registryFile };
const webhookCa = readFileSync(scenario.state.webhook.files.caFile);
after(() => scenario.close());

interface ProxiedWebhook {
  readonly proxy: FaultProxy;
  readonly process: WebhookProcess;
  readonly logFile: string;
  stop(): Promise<void>;
}

/** A second webhook process (trace logs) whose kubeconfig points at a fresh fault proxy. */
async function proxiedWebhook(name: string, extraArgs: readonly string[]): Promise<ProxiedWebhook> {
  const credentials = readTokenKubeconfig(readFileSync(scenario.state.webhook.files.kubeconfig, 'utf8'));
  const proxyCa = createCertificateAuthority(`fault-proxy-${name}`, DAY_MS);
  const serving = issueCertificate(proxyCa, { commonName: 'fault-proxy', ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'], usage: 'server', validityMs: DAY_MS });
  const proxy = await FaultProxy.start({ upstream: credentials.server, upstreamCa: credentials.caPem, serving });
  const kubeconfig = path.join(scenario.state.webhook.files.dir, `kubeconfig-${name}`);
  writeFileSync(kubeconfig, kubeconfigYaml(proxy.url, proxyCa.certificate, credentials.user, { token: credentials.token }), { mode: 0o600 });
  const logFile = path.join(scenario.state.webhook.files.dir, `webhook-${name}.log`);
  let process: WebhookProcess;
  try {
    process = await startWebhookProcess({ files: { ...scenario.state.webhook.files, kubeconfig, logFile }, registry, port: 0, logLevel: 'trace', extraArgs, startTimeoutMs: 60_000 });
  } catch (error) {
    await proxy.stop();
    throw error;
  }
  return {
    proxy,
    process,
    logFile,
    stop: async () => {
      await process.stop();
      await proxy.stop();
    },
  };
}

/** Points the run's MutatingWebhookConfiguration at `port`; returns how to put it back. */
async function routeAdmissionsTo(port: number): Promise<() => Promise<void>> {
  const setPort = async (to: (url: string) => string): Promise<void> => {
    await waitFor('the webhook configuration updated', async () => {
      const current = await scenario.client.get(CONFIGURATION_PATH);
      for (const webhook of current['webhooks'] as KubeObject[]) webhook['clientConfig']['url'] = to(String(webhook['clientConfig']['url']));
      const response = await scenario.client.request('PUT', CONFIGURATION_PATH, { body: current });
      if (response.status === 409) return undefined;
      if (response.status !== 200) throw new Error(`PUT webhook configuration: ${response.status}`);
      return true;
    }, { timeoutMs: 30_000, intervalMs: 100 });
  };
  const original = ((await scenario.client.get(CONFIGURATION_PATH))['webhooks'] as KubeObject[]).map((webhook) => String(webhook['clientConfig']['url']));
  await setPort((url) => url.replace(/^https:\/\/127\.0\.0\.1:\d+/, `https://127.0.0.1:${port}`));
  let index = 0;
  return () => setPort(() => original[index++ % original.length]!);
}

/** The body of a GET to the webhook process on `port`. */
async function httpsGet(port: number, urlPath: string): Promise<string> {
  return (await httpsCall({ port, path: urlPath, ca: webhookCa, timeoutMs: 10_000 })).text;
}

/** Sum of a metric's samples whose labels contain every `labels` fragment (e.g. 'outcome="fail-open"'). */
async function metric(port: number, name: string, ...labels: string[]): Promise<number> {
  const text = await httpsGet(port, '/metrics');
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (labels.every((label) => line.includes(label))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Returns once the API server sends this namespace's admissions to the process on `port`. */
async function waitForAdmissionsAt(port: number, namespace: string): Promise<void> {
  const canary = workload('Deployment', namespace, 'route-probe', { volumeConfigMap: 'route-probe' });
  await waitFor(`admissions reaching 127.0.0.1:${port}`, async () => {
    const before = await metric(port, 'config_checksum_admissions_total');
    await scenario.client.create(canary, { dryRun: 'All' });
    return (await metric(port, 'config_checksum_admissions_total')) > before;
  }, { timeoutMs: 60_000, intervalMs: 250 });
}

/** GET, change, PUT, timed (the PUT alone); a 409 (the controller wrote status meanwhile) is retried. */
async function timedPut(object: KubeObject, change: (current: KubeObject) => void): Promise<{ response: KubeResponse; ms: number; sent: KubeObject }> {
  return waitFor(`PUT of ${object['metadata']['name']}`, async () => {
    const sent = structuredClone(await scenario.read(object));
    change(sent);
    const started = performance.now();
    const response = await scenario.client.request('PUT', resourcePath(String(object['kind']), object['metadata']['namespace'], object['metadata']['name']), { body: sent });
    const ms = performance.now() - started;
    if (response.status === 409) return undefined;
    assert.equal(response.status, 200, `PUT answered ${response.status}: ${String(response.body['message'])}`);
    return { response, ms, sent };
  }, { timeoutMs: 30_000, intervalMs: 100 });
}

function ourWarnings(response: KubeResponse): string[] {
  return response.warnings.filter((warning) => warning.startsWith('config-checksum:'));
}

async function events(namespace: string): Promise<KubeObject[]> {
  return scenario.client.list(resourcePath('Event', namespace));
}

function assertNoCanary(what: string, text: string): void {
  const at = text.indexOf(CANARY);
  assert.equal(at, -1, `ConfigMap data in ${what}: ...${text.slice(Math.max(0, at - 200), at + 50)}`);
}

test('admission faults between the webhook and the API server: allowed fast, checksum kept, client warned, fail-open counted; recovery rolls nothing', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-faults-admission', { optIn: true });
  const config = configMap(namespace, 'app-config', { 'app.yaml': `token: ${CANARY}\n`, LEVEL: CANARY }, { 'blob.bin': Buffer.from(CANARY).toString('base64') });
  await scenario.client.create(config);
  await scenario.client.create(configMap(namespace, 'route-probe', { probe: CANARY }));
  const deployment = workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config', envFromConfigMap: 'app-config' });

  const second = await proxiedWebhook('faults-admission', ['--watch', 'false', '--configmap-read-timeout-ms', String(READ_TIMEOUT_MS)]);
  const restore = await routeAdmissionsTo(second.process.port);
  const port = second.process.port;
  const allWarnings = new Set<string>();
  try {
    await waitForAdmissionsAt(port, namespace);
    const created = await scenario.client.create(deployment);
    const checksum = templateChecksum(created.body);
    assert.equal(checksum, expectedChecksum(deployment, [config]).checksum, 'admitted with the checksum through the proxy');
    const sources = sourcesAnnotation(created.body);

    const modes: Array<[string, FaultMode]> = [
      ['slow', { kind: 'delay', ms: 3_000 }],
      ['refused', { kind: 'refuse' }],
      ['forbidden', { kind: 'status', status: 403 }],
      ['error', { kind: 'status', status: 500 }],
    ];
    for (const [label, mode] of modes) {
      await second.proxy.setMode(mode);
      const since = performance.now();
      const failOpen = await metric(port, 'config_checksum_admissions_total', 'outcome="fail-open"', 'reason="configmap-unreadable"');

      // A template change (a label): it rolls by itself, but the checksum must not move with it.
      const relabelled = await timedPut(deployment, (current) => (current['spec']['template']['metadata']['labels']['release'] = label));
      assert.equal(relabelled.response.body['spec']['template']['metadata']['labels']['release'], label, 'the write went through');
      assert.equal(templateChecksum(relabelled.response.body), checksum, `${label}: checksum unchanged`);
      assert.equal(sourcesAnnotation(relabelled.response.body), sources);
      const warned = ourWarnings(relabelled.response);
      assert.ok(warned.some((warning) => /could not read ConfigMap "app-config".*checksum left unchanged/.test(warning)), `${label}: warned (${warned.join(' | ')})`);
      assert.ok(relabelled.ms < FAST_MS, `${label}: answered in ${Math.round(relabelled.ms)} ms`);

      // The same fault while the write drops the annotation (a full replace by a tool that does not know it).
      const dropped = await timedPut(deployment, (current) => {
        delete current['spec']['template']['metadata']['annotations'][CHECKSUM_ANNOTATION];
        delete current['metadata']['annotations']['config-checksum.io/sources'];
      });
      assert.equal(templateChecksum(dropped.response.body), checksum, `${label}: the dropped checksum is put back from oldObject`);
      assert.equal(sourcesAnnotation(dropped.response.body), sources, `${label}: the dropped sources annotation is put back`);
      assert.ok(ourWarnings(dropped.response).length > 0);
      assert.ok(dropped.ms < FAST_MS, `${label}: answered in ${Math.round(dropped.ms)} ms`);

      const counted = (await metric(port, 'config_checksum_admissions_total', 'outcome="fail-open"', 'reason="configmap-unreadable"')) - failOpen;
      assert.ok(counted >= 2, `${label}: fail-open counted (${counted})`);
      const injected = second.proxy.since(since, /\/configmaps\//);
      assert.ok(injected.length >= 2 || mode.kind === 'refuse', `${label}: the reads met the fault (${injected.length})`);
      for (const warning of [...warned, ...ourWarnings(dropped.response)]) allWarnings.add(warning);
      t.diagnostic(`${label}: label change ${Math.round(relabelled.ms)} ms, checksum drop ${Math.round(dropped.ms)} ms; fail-open +${counted}; proxy saw ${injected.length} ConfigMap reads (${[...new Set(injected.map((r) => r.outcome))].join(', ') || 'connections refused'}); warning: ${warned[0]}`);
    }

    // Recovery: an unchanged re-apply rolls nothing.
    await second.proxy.setMode({ kind: 'pass' });
    // Let the controller manager finish with the label changes first, so only the re-apply is judged.
    await scenario.waitForObserved(deployment);
    await sleep(SETTLE_MS);
    const settled = await scenario.waitForObserved(deployment);
    const replicaSets = await scenario.owned('ReplicaSet', settled);
    for (const rs of replicaSets) assert.equal(templateChecksum(rs), checksum, `ReplicaSet ${rs['metadata']['name']} carries the one checksum`);
    const unchangedBefore = await metric(port, 'config_checksum_admissions_total', 'outcome="unchanged"');
    const reapplied = await timedPut(deployment, () => {});
    assert.equal(templateChecksum(reapplied.response.body), checksum);
    assert.deepEqual(ourWarnings(reapplied.response), [], 'no warning once the API server answers');
    assert.equal((await metric(port, 'config_checksum_admissions_total', 'outcome="unchanged"')) - unchangedBefore, 1, 'computed, unchanged');
    await sleep(SETTLE_MS);
    const after = await scenario.read(deployment);
    assert.equal(after['metadata']['generation'], settled['metadata']['generation'], 'the re-apply changed no spec');
    assert.equal((await scenario.owned('ReplicaSet', after)).length, replicaSets.length, 'no new ReplicaSet');
    t.diagnostic(`after ${modes.length} faults: ${replicaSets.length} ReplicaSets (1 + one per label change), all with checksum ${checksum?.slice(0, 12)}; unchanged re-apply rolled nothing`);

    // Leaks: the second webhook's whole log (trace), the warnings, /metrics, the namespace's Events.
    assertNoCanary('warnings', [...allWarnings].join('\n'));
    assertNoCanary('/metrics', await httpsGet(port, '/metrics'));
    assertNoCanary('Events', JSON.stringify(await events(namespace)));
    const log = readFileSync(second.logFile, 'utf8');
    assertNoCanary(`the webhook log (${log.split('\n').length} lines at trace)`, log);
  } finally {
    await restore();
    await second.stop();
  }
  await waitForWebhook(scenario.client);
});

test('forged AdmissionReviews: ConfigMap reads stay in the namespace the review names, even for names built to escape it', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-faults-forged', { optIn: false });
  const elsewhere = await scenario.namespace('e2e-faults-elsewhere', { optIn: false });
  await scenario.client.create(configMap(elsewhere, 'secret-config', { key: CANARY }));
  await scenario.client.create(configMap(namespace, 'own', { key: 'mine' }));
  const second = await proxiedWebhook('faults-forged', ['--watch', 'false']);
  try {
    const escapes = [
      `../../namespaces/${elsewhere}/configmaps/secret-config`,
      `../${elsewhere}/configmaps/secret-config`,
      `${elsewhere}/secret-config`,
      '..',
      '.',
      `..%2F..%2Fnamespaces%2F${elsewhere}%2Fconfigmaps%2Fsecret-config`,
    ];
    const object = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'forged', namespace: elsewhere },
      spec: {
        selector: { matchLabels: { app: 'forged' } },
        template: {
          metadata: { labels: { app: 'forged' } },
          spec: {
            containers: [{ name: 'app', image: 'x', env: [{ name: 'OWN', valueFrom: { configMapKeyRef: { name: 'own', key: 'key' } } }, ...escapes.map((name, i) => ({ name: `E${i}`, valueFrom: { configMapKeyRef: { name, key: 'key' } } }))] }],
            volumes: [{ name: 'v', configMap: { name: 'secret-config' } }],
          },
        },
      },
    };
    const review = { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'forged-1', kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, operation: 'CREATE', namespace, name: 'forged', object } };
    const since = performance.now();
    const answer = await httpsCall({ port: second.process.port, path: '/mutate', ca: webhookCa, body: JSON.stringify(review), contentType: 'application/json' });
    assert.equal(answer.status, 200);
    assertNoCanary('the answer', answer.text);
    const reads = second.proxy.since(since, /configmaps/);
    t.diagnostic(`reads the webhook made: ${reads.map((r) => `${r.path} (${r.outcome})`).join(', ')}`);
    assert.ok(reads.length >= 2);
    for (const read of reads) {
      assert.equal(read.method, 'GET');
      const prefix = `/api/v1/namespaces/${namespace}/configmaps/`;
      assert.ok(read.path.startsWith(prefix), `read outside the namespace: ${read.path}`);
      assert.ok(!read.path.slice(prefix.length).includes('/'), `the name stays one path segment: ${read.path}`);
    }
    const response = (JSON.parse(answer.text) as { response: { patch?: string; warnings?: string[] } }).response;
    const operations = response.patch ? (JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as Array<{ path: string; value: unknown }>) : [];
    const sources = operations.map((op) => JSON.stringify(op.value)).join(' ');
    t.diagnostic(`answer: ${operations.length} patch operations; sources ${sources || '(none)'}; warnings ${(response.warnings ?? []).join(' | ')}`);
    // What the API server made of each escape attempt: never the other namespace's ConfigMap. If it had
    // been read, the checksum would be the one computed with it as found.
    const checksumOp = operations.find((op) => op.path.startsWith('/spec/template/metadata'));
    if (checksumOp) {
      const checksum = (checksumOp.value as Record<string, string>)[CHECKSUM_ANNOTATION] ?? String(checksumOp.value);
      const ownOnly = expectedChecksum(object, [configMap(namespace, 'own', { key: 'mine' })]).checksum;
      assert.equal(checksum, ownOnly, 'hashed with only this namespace\'s ConfigMaps (every escape read as missing)');
    }
  } finally {
    await second.stop();
  }
});

// The sources annotation is capped (MAX_SOURCES_LENGTH in src/checksum/compute.ts): a template consuming a
// great many long keys must not push the object past the API server's 256 KiB of annotations.
test('a template consuming 2,000 long keys is still admitted (annotations under 256 KiB)', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-faults-annotation', { optIn: true });
  const keys = 2_000;
  const key = (i: number): string => `k${String(i).padStart(5, '0')}-`.padEnd(150, 'x');
  for (let c = 0; c < 10; c++) {
    await scenario.client.create(configMap(namespace, `cm-${c}`, Object.fromEntries(Array.from({ length: keys / 10 }, (_, k) => [key(c * (keys / 10) + k), 'v']))));
  }
  const deployment = workload('Deployment', namespace, 'many-keys');
  deployment['spec']['template']['spec']['containers'][0]['env'] = Array.from({ length: keys }, (_, i) => ({ name: `V${i}`, valueFrom: { configMapKeyRef: { name: `cm-${Math.floor(i / (keys / 10))}`, key: key(i) } } }));
  const response = await scenario.client.request('POST', resourcePath('Deployment', namespace), { body: deployment });
  t.diagnostic(`create answered ${response.status}: ${String(response.body['message'] ?? '').slice(0, 200)}`);
  assert.equal(response.status, 201, 'the webhook allowed it, so the write must succeed');
});

// --- watch faults ----------------------------------------------------------------------------------------

async function leaseHolder(): Promise<string> {
  const response = await scenario.client.request('GET', resourcePath('Lease', LEASE.namespace, LEASE.name));
  return response.status === 200 ? String(response.body['spec']?.['holderIdentity'] ?? '') : '';
}

function logLines(logFile: string, message: string, namespace: string): number {
  return readFileSync(logFile, 'utf8').split('\n').filter((line) => line.includes(`"msg":"${message}"`) && line.includes(`"namespace":"${namespace}"`)).length;
}

async function updateData(namespace: string, name: string, data: Record<string, string>): Promise<void> {
  const response = await scenario.client.request('PATCH', resourcePath('ConfigMap', namespace, name), { body: { data }, contentType: 'application/merge-patch+json' });
  assert.equal(response.status, 200, `patch ConfigMap ${name}`);
}

async function rolloutOnce(t: TestContext, label: string, options: { second: ProxiedWebhook; namespace: string; deployment: KubeObject; value: string; restoreMode: FaultMode; replicaSets: number; rollouts: number }): Promise<void> {
  const { second, namespace, deployment } = options;
  const port = second.process.port;
  const restartsBefore = await metric(port, 'config_checksum_watch_restarts_total');
  const droppedBefore = second.proxy.droppedConnections;
  await second.proxy.setMode({ kind: 'drop' });
  await updateData(namespace, 'settings', { value: `${options.value} ${CANARY}` });
  const expected = expectedChecksum(deployment, [await scenario.client.get(resourcePath('ConfigMap', namespace, 'settings'))]).checksum;
  // The change is not seen while the connections are down.
  await sleep(3_000);
  assert.notEqual(templateChecksum(await scenario.read(deployment)), expected, `${label}: nothing can be patched through the cut`);
  const dropped = second.proxy.droppedConnections - droppedBefore;
  await second.proxy.setMode(options.restoreMode);
  const restoredAt = performance.now();
  await waitFor(`${label}: checksum ${expected.slice(0, 12)}`, async () => templateChecksum(await scenario.read(deployment)) === expected, { timeoutMs: 120_000, intervalMs: 100 });
  const caughtUpMs = performance.now() - restoredAt;
  await sleep(SETTLE_MS + 1_000);
  const current = await scenario.waitForObserved(deployment);
  assert.equal(templateChecksum(current), expected, `${label}: still the new checksum`);
  assert.equal((await scenario.owned('ReplicaSet', current)).length, options.replicaSets, `${label}: exactly one new ReplicaSet`);
  assert.equal(logLines(second.logFile, 'rolled out', namespace), options.rollouts, `${label}: one rollout by the watcher`);
  const changed = (await events(namespace)).filter((event) => event['reason'] === 'ConfigChanged');
  assert.equal(changed.length, options.rollouts, `${label}: one ConfigChanged Event per rollout`);
  const restarts = (await metric(port, 'config_checksum_watch_restarts_total')) - restartsBefore;
  const expired = await metric(port, 'config_checksum_watch_restarts_total', 'reason="expired"');
  t.diagnostic(`${label}: ${dropped} connection attempts cut during the outage; caught up ${Math.round(caughtUpMs)} ms after the connections came back; watch restarts +${restarts} (expired total ${expired}); ReplicaSets ${options.replicaSets}`);
}

test('watch faults: connections cut while a ConfigMap changes, restored plainly and then with 410 Gone: the workload is brought up to date exactly once each time', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-faults-watch', { optIn: true });
  await scenario.client.create(configMap(namespace, 'settings', { value: `1 ${CANARY}` }));
  await scenario.client.create(configMap(namespace, 'route-probe', { probe: '1' }));
  const deployment = workload('Deployment', namespace, 'app', { volumeConfigMap: 'settings' });

  // The run's webhook holds the leader Lease: stop it (it releases the Lease) for the duration.
  let mainStopped = false;
  let second: ProxiedWebhook | undefined;
  let restore: (() => Promise<void>) | undefined;
  try {
    await scenario.stopWebhook();
    mainStopped = true;
    second = await proxiedWebhook('faults-watch', ['--watch', 'true', '--coalesce-window-ms', '1000', '--identity', 'faults-watcher']);
    const port = second.process.port;
    restore = await routeAdmissionsTo(port);
    await waitFor('the proxied watcher to lead and sync', async () => (await leaseHolder()) === 'faults-watcher' && (await metric(port, 'config_checksum_watch_leader')) === 1 && readFileSync(second!.logFile, 'utf8').includes('"msg":"watches synced"'), { timeoutMs: 90_000, intervalMs: 250 });
    await waitForAdmissionsAt(port, namespace);

    await scenario.client.create(deployment);
    const stored = await scenario.waitForObserved(deployment);
    assert.match(templateChecksum(stored) ?? '', /^[0-9a-f]{64}$/);
    await scenario.waitForOwned('ReplicaSet', stored, 1);

    // (a) The watches resume from their resourceVersion and see the change as an event.
    await rolloutOnce(t, 'cut, then restored', { second, namespace, deployment: stored, value: '2', restoreMode: { kind: 'pass' }, replicaSets: 2, rollouts: 1 });
    // (b) Every re-watch is answered 410 Gone: the watcher relists and finds the change by digest.
    const goneSince = performance.now();
    await rolloutOnce(t, 'cut, then 410 Gone on re-watch', { second, namespace, deployment: stored, value: '3', restoreMode: { kind: 'gone' }, replicaSets: 3, rollouts: 2 });
    const gone = second.proxy.since(goneSince).filter((r) => r.outcome === 'gone');
    t.diagnostic(`410 injected on: ${gone.map((r) => r.path.split('?')[0]).join(', ')}`);
    assert.ok(gone.some((r) => r.path.startsWith('/api/v1/configmaps')), 'the ConfigMap watch got its 410');
    assert.ok((await metric(port, 'config_checksum_watch_restarts_total', 'reason="expired"')) >= 1, 'the watcher counted the expiry and relisted');
    await second.proxy.setMode({ kind: 'pass' });

    assertNoCanary('/metrics', await httpsGet(port, '/metrics'));
    assertNoCanary('Events', JSON.stringify(await events(namespace)));
    assertNoCanary('the watcher log (trace)', readFileSync(second.logFile, 'utf8'));
  } finally {
    if (restore) await restore();
    // SIGTERM: the second watcher releases the Lease, so the restarted run webhook leads at once.
    await second?.stop();
    if (mainStopped) await scenario.restartWebhook();
  }
  await waitFor('the restarted run webhook to lead', async () => (await leaseHolder()).endsWith(`-${scenario.state.webhook.pid}`), { timeoutMs: 60_000, intervalMs: 250 });
  assertNoCanary('the run webhook log', readFileSync(scenario.state.webhook.files.logFile, 'utf8'));
});
