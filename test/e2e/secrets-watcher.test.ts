// The watcher's side of Secrets on the real control plane (DESIGN section 4; README "Secrets", the
// watcher): a Secret changes and nobody writes the workload. "Rolled" is a new ReplicaSet made by the
// controller manager. The run's webhook is restarted with the option on as an install turns it on (the
// component's flag and RBAC, support/secrets.ts) and given its own flags back in after().
// The admission side (reference shapes, the hash key, values never shown) is secrets.test.ts.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, test, type TestContext } from 'node:test';
import { HASH_KEY_FIELD } from '../../src/secrets/hash-key.ts';
import { createCertificateAuthority, issueCertificate } from '../../src/tls/certs.ts';
import { resourcePath, waitFor, type KubeObject } from '../../src/local/kube.ts';
import { fileSize, logEntries } from '../../src/local/webhook.ts';
import { httpsCall } from '../support/https.ts';
import { apiServerMetrics, metricSum } from './support/install.ts';
import { configMap, expectedChecksums, Scenario, secret, sleep, templateChecksum, workload } from './support/scenario.ts';
import { KEY_PATH, renderSecretsComponent, secretChecksum, SecretsOption, secretPath } from './support/secrets.ts';

const TIMEOUT = { timeout: 150_000 };
const scenario = new Scenario();
const { client } = scenario;
let option: SecretsOption | undefined;

before(async () => {
  option = new SecretsOption(scenario, await renderSecretsComponent(scenario));
  await option.applyRbac();
  await option.restartWithOption();
});

after(async () => {
  try {
    await option?.off();
  } finally {
    await scenario.close();
  }
});

// ---------------------------------------------------------------------------------------------------

/** What a Deployment's single container and its volumes consume, beyond the defaults of workload(). */
interface Consumes {
  readonly configMapVolume?: string;
  readonly secretEnvFrom?: string;
  readonly secretKey?: { name: string; key: string };
  readonly secretVolume?: string;
}

/** A Deployment named `app` consuming what `consumes` says, created and rolled out once; as stored. */
async function deployed(namespace: string, consumes: Consumes): Promise<KubeObject> {
  const deployment = workload('Deployment', namespace, 'app', consumes.configMapVolume ? { volumeConfigMap: consumes.configMapVolume } : {});
  const spec = deployment['spec']['template']['spec'];
  const container = spec['containers'][0];
  if (consumes.secretEnvFrom) container['envFrom'] = [{ secretRef: { name: consumes.secretEnvFrom } }];
  if (consumes.secretKey) container['env'] = [{ name: 'SECRET_VALUE', valueFrom: { secretKeyRef: consumes.secretKey } }];
  if (consumes.secretVolume) {
    container['volumeMounts'] = [...(container['volumeMounts'] ?? []), { name: 'secret', mountPath: '/etc/secret', readOnly: true }];
    spec['volumes'] = [...(spec['volumes'] ?? []), { name: 'secret', secret: { secretName: consumes.secretVolume } }];
  }
  await client.create(deployment);
  const stored = await scenario.waitForObserved(deployment);
  assert.match(secretChecksum(stored) ?? '', /^[0-9a-f]{8}\.[0-9a-f]{64}$/, 'admitted with a checksum/secret');
  await scenario.waitForOwned('ReplicaSet', stored, 1);
  return stored;
}

async function createSecret(object: KubeObject): Promise<void> {
  await client.expect('POST', secretPath(object['metadata']['namespace']), { body: object });
}

/** Merge-patches the values of `values` (plain text) into a Secret's data. */
async function patchSecret(namespace: string, name: string, values: Record<string, string>): Promise<number> {
  const data = Object.fromEntries(Object.entries(values).map(([key, value]) => [key, Buffer.from(value).toString('base64')]));
  await client.expect('PATCH', secretPath(namespace, name), { body: { data }, contentType: 'application/merge-patch+json' });
  return performance.now();
}

async function patchConfigMap(namespace: string, name: string, data: Record<string, string>): Promise<number> {
  await client.expect('PATCH', resourcePath('ConfigMap', namespace, name), { body: { data }, contentType: 'application/merge-patch+json' });
  return performance.now();
}

async function events(namespace: string, reason: string): Promise<KubeObject[]> {
  return (await client.list(resourcePath('Event', namespace))).filter((event) => event['reason'] === reason);
}

/** Waits past the watcher's quiet period and the controller manager's reaction; the ReplicaSets then. */
async function settledReplicaSets(deployment: KubeObject): Promise<KubeObject[]> {
  await sleep(scenario.configChangeSettleMs);
  return scenario.owned('ReplicaSet', await scenario.read(deployment));
}

/** Waits until the Deployment's checksum/secret differs from `before`; the Deployment then. */
function waitForNewSecretChecksum(deployment: KubeObject, before: string | undefined): Promise<KubeObject> {
  return waitFor(`a new checksum/secret on ${deployment['metadata']['name']}`, async () => {
    const current = await scenario.read(deployment);
    return secretChecksum(current) !== before ? current : undefined;
  }, { timeoutMs: 60_000, intervalMs: 100 });
}

async function storedHashKey(): Promise<Buffer> {
  return Buffer.from(String((await client.get(KEY_PATH))['data']?.[HASH_KEY_FIELD] ?? ''), 'base64');
}

async function webhookMetrics(): Promise<string> {
  const { webhook } = scenario.state;
  return (await httpsCall({ port: webhook.port, path: '/metrics', ca: readFileSync(webhook.files.caFile) })).text;
}

/** The given values, plain and base64 (as a Secret's data holds them), found in `text`. */
function leakedValues(text: string, values: readonly string[]): string[] {
  return values.flatMap((value) => [value, Buffer.from(value).toString('base64')]).filter((needle) => text.includes(needle));
}

// ---------------------------------------------------------------------------------------------------

test('a consumed Secret key changed and nobody writes the Deployment: the watcher rolls it exactly once; checksum/secret changes, checksum/config does not; the Event names the Secret and carries no value', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-swatch-key', { optIn: true });
  const oldToken = `token-${randomBytes(8).toString('hex')}`;
  const newToken = `token-${randomBytes(8).toString('hex')}`;
  const appConfig = configMap(namespace, 'app-config', { 'app.yaml': 'level: info\n' });
  await client.create(appConfig);
  await createSecret(secret(namespace, 'app-secret', { API_TOKEN: oldToken, MODE: 'live' }));
  const stored = await deployed(namespace, { configMapVolume: 'app-config', secretEnvFrom: 'app-secret' });

  const changedAt = await patchSecret(namespace, 'app-secret', { API_TOKEN: newToken });
  const rolled = await waitForNewSecretChecksum(stored, secretChecksum(stored));
  t.diagnostic(`reaction: ${Math.round(performance.now() - changedAt)} ms from the Secret's update to the new checksum/secret (coalescing window ${scenario.state.webhook.coalesceWindowMs} ms)`);
  const expected = expectedChecksums(rolled, { configMaps: [appConfig], secrets: [await client.get(secretPath(namespace, 'app-secret'))], key: await storedHashKey() });
  assert.equal(secretChecksum(rolled), expected.secretChecksum, 'the checksum/secret of the new data, under the install\'s key');
  assert.equal(templateChecksum(rolled), templateChecksum(stored), 'checksum/config unchanged');
  assert.equal(templateChecksum(rolled), expected.checksum);

  await scenario.waitForOwned('ReplicaSet', rolled, 2);
  const replicaSets = await settledReplicaSets(stored);
  assert.equal(replicaSets.length, 2, 'exactly one new ReplicaSet');
  assert.ok(replicaSets.some((rs) => secretChecksum(rs) === expected.secretChecksum), 'the new ReplicaSet carries the new checksum/secret');
  const changed = await events(namespace, 'ConfigChanged');
  assert.equal(changed.length, 1, 'one ConfigChanged Event');
  assert.equal(changed[0]!['involvedObject']['name'], 'app');
  assert.match(changed[0]!['message'], /^Secret app-secret changed;/);
  assert.deepEqual(leakedValues(JSON.stringify(changed), [oldToken, newToken]), [], 'no value in the Event');
});

test('a consumed Secret changed while no watcher ran (same hash key): the restarted watcher rolls the Deployment exactly once', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-swatch-down', { optIn: true });
  await createSecret(secret(namespace, 'app-secret', { API_TOKEN: `token-${randomBytes(8).toString('hex')}` }));
  const stored = await deployed(namespace, { secretEnvFrom: 'app-secret' });
  await scenario.stopWebhook();
  await patchSecret(namespace, 'app-secret', { API_TOKEN: `token-${randomBytes(8).toString('hex')}` });
  assert.ok(option);
  await option.restartWithOption();
  const rolled = await waitForNewSecretChecksum(stored, secretChecksum(stored));
  const expected = expectedChecksums(rolled, { configMaps: [], secrets: [await client.get(secretPath(namespace, 'app-secret'))], key: await storedHashKey() });
  assert.equal(secretChecksum(rolled), expected.secretChecksum, 'the checksum/secret of the new data');
  assert.equal((await settledReplicaSets(stored)).length, 2, 'exactly one new ReplicaSet');
  const changed = await events(namespace, 'ConfigChanged');
  assert.equal(changed.length, 1, 'one ConfigChanged Event');
  assert.match(changed[0]!['message'], /^config changed while no watcher was running; rolling out \(checksum\/secret=[0-9a-f]{12}\)$/);
});

test('a kubernetes.io/tls Secret rewritten as cert-manager renews a certificate (new tls.crt, tls.key and ca.crt in one update): exactly one rollout', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-swatch-tls', { optIn: true });
  const certificate = (): Record<string, string> => {
    const ca = createCertificateAuthority('e2e issuer');
    const leaf = issueCertificate(ca, { commonName: 'app.example.test', dnsNames: ['app.example.test'], usage: 'server', validityMs: 90 * 86_400_000 });
    return { 'tls.crt': leaf.certificate, 'tls.key': leaf.privateKey, 'ca.crt': ca.certificate };
  };
  const tlsSecret: KubeObject = { ...secret(namespace, 'app-tls', certificate()), type: 'kubernetes.io/tls' };
  tlsSecret['metadata']['annotations'] = { 'cert-manager.io/certificate-name': 'app', 'cert-manager.io/issuer-name': 'ca-issuer', 'cert-manager.io/issuer-kind': 'Issuer' };
  await createSecret(tlsSecret);
  const stored = await deployed(namespace, { secretVolume: 'app-tls' });

  // cert-manager writes the whole Secret at once: the three keys and its annotations, one update.
  const renewed = Object.fromEntries(Object.entries(certificate()).map(([key, value]) => [key, Buffer.from(value).toString('base64')]));
  const current = await client.get(secretPath(namespace, 'app-tls'));
  const body = { ...current, data: renewed, metadata: { ...current['metadata'], annotations: { ...current['metadata']['annotations'], 'cert-manager.io/common-name': 'app.example.test' } } };
  await client.expect('PUT', secretPath(namespace, 'app-tls'), { body });
  const rolled = await waitForNewSecretChecksum(stored, secretChecksum(stored));
  await scenario.waitForOwned('ReplicaSet', rolled, 2);
  assert.equal((await settledReplicaSets(stored)).length, 2, 'exactly one new ReplicaSet for the three keys');
  const changed = await events(namespace, 'ConfigChanged');
  assert.deepEqual(changed.map((event) => String(event['message']).split(';')[0]), ['Secret app-tls changed'], 'one ConfigChanged Event');
});

test('a Secret re-applied by another field manager every 2 s with the same data (as External Secrets refreshes it), 5 times: zero rollouts', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-swatch-eso', { optIn: true });
  const values = { username: 'app', password: `pw-${randomBytes(8).toString('hex')}` };
  const credentials = secret(namespace, 'db-credentials', values);
  await createSecret(credentials);
  const stored = await deployed(namespace, { secretKey: { name: 'db-credentials', key: 'password' } });
  const skippedBefore = metricSum(await webhookMetrics(), 'config_checksum_watch_skipped_total', { reason: 'metadata-only' });

  let resourceVersion = String((await client.get(secretPath(namespace, 'db-credentials')))['metadata']['resourceVersion']);
  for (let refresh = 1; refresh <= 5; refresh++) {
    // The same data, server-side applied by its own field manager, with the refresh time it records: a
    // real write each time (a new resourceVersion, a watch event), nothing consumed changed.
    const applied = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: { name: 'db-credentials', namespace, annotations: { 'reconcile.external-secrets.io/data-hash': 'same-data', 'e2e.config-checksum.io/refreshed': String(refresh) } },
      data: credentials['data'],
    };
    const response = await client.expect('PATCH', secretPath(namespace, 'db-credentials'), { body: applied, contentType: 'application/apply-patch+yaml', query: { fieldManager: 'external-secrets', force: 'true' } });
    const written = String(response.body['metadata']['resourceVersion']);
    assert.notEqual(written, resourceVersion, `refresh ${refresh} was a write`);
    resourceVersion = written;
    await sleep(2_000);
  }

  const replicaSets = await settledReplicaSets(stored);
  const skipped = metricSum(await webhookMetrics(), 'config_checksum_watch_skipped_total', { reason: 'metadata-only' }) - skippedBefore;
  t.diagnostic(`5 refreshes: the watcher skipped ${skipped} metadata-only change(s) of a consumed Secret`);
  assert.equal(replicaSets.length, 1, 'no new ReplicaSet');
  assert.equal(secretChecksum(await scenario.read(stored)), secretChecksum(stored), 'checksum/secret unchanged');
  assert.deepEqual(await events(namespace, 'ConfigChanged'), [], 'no ConfigChanged Event');
  // Zero rollouts means something only if the watcher saw the refreshes: it did, and left them alone.
  assert.ok(skipped >= 5, `the watcher saw each refresh and skipped it (${skipped})`);
});

test('a ConfigMap and a Secret of one Deployment changed together (within 300 ms): exactly one rollout, and the Event names both', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-swatch-both', { optIn: true });
  await client.create(configMap(namespace, 'app', { 'app.yaml': 'release: 1\n' }));
  await createSecret(secret(namespace, 'db', { password: `pw-${randomBytes(8).toString('hex')}` }));
  const stored = await deployed(namespace, { configMapVolume: 'app', secretKey: { name: 'db', key: 'password' } });

  // A release's config and credentials applied together.
  const [configMapAt, secretAt] = await Promise.all([
    patchConfigMap(namespace, 'app', { 'app.yaml': 'release: 2\n' }),
    patchSecret(namespace, 'db', { password: `pw-${randomBytes(8).toString('hex')}` }),
  ]);
  const apartMs = Math.abs(configMapAt - secretAt);
  t.diagnostic(`the two updates completed ${Math.round(apartMs)} ms apart`);
  assert.ok(apartMs < 300, `changed together: ${Math.round(apartMs)} ms apart`);

  const rolled = await waitFor('both checksums to change', async () => {
    const current = await scenario.read(stored);
    return templateChecksum(current) !== templateChecksum(stored) && secretChecksum(current) !== secretChecksum(stored) ? current : undefined;
  }, { timeoutMs: 60_000, intervalMs: 100 });
  await scenario.waitForOwned('ReplicaSet', rolled, 2);
  assert.equal((await settledReplicaSets(stored)).length, 2, 'exactly one new ReplicaSet for both changes');
  const changed = await events(namespace, 'ConfigChanged');
  assert.equal(changed.length, 1, 'one ConfigChanged Event');
  assert.match(changed[0]!['message'], /^ConfigMap app and Secret db changed;/);
});

test('a consumed Secret deleted: no rollout, and a SecretDeleted Warning Event', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-swatch-delete', { optIn: true });
  await createSecret(secret(namespace, 'app-secret', { API_TOKEN: `token-${randomBytes(8).toString('hex')}` }));
  const stored = await deployed(namespace, { secretEnvFrom: 'app-secret' });

  await client.expect('DELETE', secretPath(namespace, 'app-secret'));
  const [warning] = await waitFor('a SecretDeleted Event', async () => {
    const found = await events(namespace, 'SecretDeleted');
    return found.length > 0 ? found : undefined;
  }, { timeoutMs: 60_000, intervalMs: 200 });
  assert.equal(warning!['type'], 'Warning');
  assert.equal(warning!['involvedObject']['name'], 'app');
  assert.match(warning!['message'], /^Secret app-secret was deleted; not rolling out/);

  assert.equal((await settledReplicaSets(stored)).length, 1, 'no new ReplicaSet');
  assert.equal(secretChecksum(await scenario.read(stored)), secretChecksum(stored), 'checksum/secret unchanged');
  assert.deepEqual(await events(namespace, 'ConfigChanged'), [], 'no ConfigChanged Event');
});

// ---------------------------------------------------------------------------------------------------
// Helm keeps one release Secret per revision (type helm.sh/release.v1, up to about 1 MiB each): a
// watcher that listed them would hold the largest objects of many clusters for nothing.

const RELEASE_SECRETS = 1000;
const RELEASE_BYTES = 500 * 1024;
// The API server's response-size histogram buckets are powers of ten: a LIST holding the release Secrets
// is over 25 MB, one without them a few KB.
const LARGE_RESPONSE_BYTES = 1e7;

/** Resident memory of a process, from the kernel (KiB). */
function residentKiB(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]);
}

/** LIST calls on Secrets the API server answered, in all and with more than LARGE_RESPONSE_BYTES. */
async function secretLists(): Promise<{ all: number; large: number }> {
  const text = await apiServerMetrics(client);
  const labels = { resource: 'secrets', verb: 'LIST' };
  const all = metricSum(text, 'apiserver_response_sizes_count', labels);
  let small = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_response_sizes_bucket{') || !line.includes('resource="secrets"') || !line.includes('verb="LIST"')) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    if (le !== undefined && Number(le) === LARGE_RESPONSE_BYTES) small += Number(line.split(' ').pop());
  }
  return { all, large: all - small };
}

const SETTLE_RSS_MS = 10_000;

interface Restart {
  readonly rssKiB: number;
  readonly peakKiB: number;
  readonly synced: KubeObject;
  /** From the restarted process's first log line to its "watches synced" line. */
  readonly syncMs: number;
  /** V8's heap in use and the memory outside it (Buffers), from the webhook's own metrics. */
  readonly heapUsedBytes: number;
  readonly externalBytes: number;
}

/**
 * Restarts the run's webhook with the option on, waits for its watches to sync (log line and metric) and
 * for start-up to settle, and measures its resident memory: the median of nine samples.
 */
async function restartAndMeasure(): Promise<Restart> {
  const logFile = scenario.state.webhook.files.logFile;
  const offset = fileSize(logFile);
  assert.ok(option);
  await option.restartWithOption();
  const synced = await waitFor('the restarted watcher to sync', async () => logEntries(logFile, offset).find((line) => line['msg'] === 'watches synced'), { timeoutMs: 60_000, intervalMs: 200 });
  const syncMs = Date.parse(String(synced['time'])) - Date.parse(String(logEntries(logFile, offset)[0]?.['time']));
  assert.equal(metricSum(await webhookMetrics(), 'config_checksum_watch_synced'), 1, 'config_checksum_watch_synced says so too');
  // Start-up garbage (the bundle, TLS, the first lists) takes several seconds to be collected; a single
  // sample then varies by a few MiB between two identical restarts, the median of nine less.
  await sleep(SETTLE_RSS_MS);
  const { pid } = scenario.state.webhook;
  const samples: number[] = [];
  for (let sample = 0; sample < 9; sample++) {
    samples.push(residentKiB(pid));
    await sleep(300);
  }
  samples.sort((a, b) => a - b);
  const metrics = await webhookMetrics();
  return { rssKiB: samples[4]!, peakKiB: residentKiB(pid, 'VmHWM'), synced, syncMs, heapUsedBytes: metricSum(metrics, 'nodejs_heap_size_used_bytes'), externalBytes: metricSum(metrics, 'nodejs_external_memory_bytes') };
}

function mib(kib: number): string {
  return `${(kib / 1024).toFixed(1)} MiB`;
}

function report(t: TestContext, label: string, restart: Restart): void {
  t.diagnostic(`${label}: VmRSS ${mib(restart.rssKiB)} (peak ${mib(restart.peakKiB)}; V8 heap used ${mib(restart.heapUsedBytes / 1024)}, external ${mib(restart.externalBytes / 1024)}), synced in ${restart.syncMs} ms after its first log line, with ${String(restart.synced['configMaps'])} ConfigMaps and ${String(restart.synced['workloads'])} workloads`);
}

test(`${RELEASE_SECRETS} Helm release Secrets of 500 KiB in an opted-in namespace are never listed: the restarted watcher syncs, its resident memory is within 5% of what it is with one of them, and changing one rolls nothing`, { timeout: 900_000 }, async (t) => {
  const namespace = await scenario.namespace('e2e-swatch-helm', { optIn: true });
  const release = (revision: number): KubeObject => ({
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'helm.sh/release.v1',
    metadata: { name: `sh.helm.release.v1.app.v${revision}`, namespace, labels: { owner: 'helm', name: 'app', status: revision === RELEASE_SECRETS ? 'deployed' : 'superseded', version: String(revision) } },
    data: { release: randomBytes(RELEASE_BYTES).toString('base64') },
  });
  // A workload that mounts the latest release Secret, both there before the restarts without the others:
  // were release Secrets watched, that one changing would roll it. Every start-up pass reads it live (as
  // admission does) on both sides, so what differs between them is the other 999.
  const latest = `sh.helm.release.v1.app.v${RELEASE_SECRETS}`;
  await createSecret(release(RELEASE_SECRETS));
  const stored = await deployed(namespace, { secretVolume: latest });
  // Two identical restarts differ by a few MiB on a busy machine (when garbage is collected): each side is
  // restarted twice and the smaller of its two is compared.
  const without = [await restartAndMeasure(), await restartAndMeasure()];
  without.forEach((restart, index) => report(t, `restart ${index + 1} with 1 release Secret`, restart));

  const createdAt = performance.now();
  for (let revision = 1; revision < RELEASE_SECRETS; revision += 9) {
    await Promise.all([...Array(9).keys()].map((offset) => createSecret(release(revision + offset))));
  }
  t.diagnostic(`${RELEASE_SECRETS - 1} more release Secrets (${(RELEASE_SECRETS - 1) * RELEASE_BYTES / 1024 / 1024} MiB of data) created in ${Math.round(performance.now() - createdAt)} ms`);

  // The API server and etcd take a few seconds to settle after half a GiB of writes.
  await sleep(10_000);
  const listsBefore = await secretLists();
  const withReleases = [await restartAndMeasure(), await restartAndMeasure()];
  withReleases.forEach((restart, index) => report(t, `restart ${index + 1} with ${RELEASE_SECRETS} release Secrets`, restart));
  const listsAfter = await secretLists();
  t.diagnostic(`API server: ${listsAfter.all - listsBefore.all} LIST call(s) on Secrets during the restart, ${listsAfter.large - listsBefore.large} of them over ${LARGE_RESPONSE_BYTES} bytes`);
  assert.ok(listsAfter.all > listsBefore.all, 'the restarted watcher listed Secrets');
  assert.equal(listsAfter.large - listsBefore.large, 0, 'no LIST on Secrets answered with the release Secrets');
  const withKiB = Math.min(...withReleases.map((restart) => restart.rssKiB));
  const withoutKiB = Math.min(...without.map((restart) => restart.rssKiB));
  const ratio = withKiB / withoutKiB;
  t.diagnostic(`resident memory with ${RELEASE_SECRETS} release Secrets / with 1 (the smaller of two restarts each): ${ratio.toFixed(3)}`);
  assert.ok(Math.abs(ratio - 1) <= 0.05, `VmRSS ${mib(withKiB)} with ${RELEASE_SECRETS} release Secrets, ${mib(withoutKiB)} with 1: within 5%`);

  // A change to the mounted one is never seen by the watch: nothing rolls (until a level-based pass reads it).
  await patchSecret(namespace, latest, { release: randomBytes(1024).toString('base64') });
  assert.equal((await settledReplicaSets(stored)).length, 1, 'no new ReplicaSet');
  assert.equal(secretChecksum(await scenario.read(stored)), secretChecksum(stored), 'checksum/secret unchanged');
  assert.deepEqual(await events(namespace, 'ConfigChanged'), [], 'no ConfigChanged Event');
  // Half a GiB the API server's watch cache would otherwise keep for the rest of the run (the namespace
  // controller deletes them; a DELETE of the collection would answer with all of them).
  await client.expect('DELETE', `/api/v1/namespaces/${namespace}`);
});
