// Secrets on the real control plane (DESIGN section 4, "Secrets (install option, off by default)"): the
// option as it is installed (manifests/components/secrets: one flag, and RBAC for the webhook's
// ServiceAccount), the hash key, and the admission path. The run's webhook starts without the option and
// its shipped RBAC; this file turns the option on with exactly what the component adds (the flag and the
// RBAC objects rendered by kubectl's kustomize) and turns it off again at the end, in after() too, so the
// other test files are unaffected whatever the order.
// The watcher's own rollouts on a Secret change are in secrets-watcher.test.ts: every rollout below follows a write.

import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import jsonpatch from 'fast-json-patch';
import { CONTRACT } from '../../src/config.ts';
import { HASH_KEY_BYTES, HASH_KEY_FIELD, HASH_KEY_SECRET_NAME } from '../../src/secrets/hash-key.ts';
import { waitFor, type KubeObject, type KubeResponse } from '../../src/local/kube.ts';
import { fileSize, logEntries, startWebhookProcess, type WebhookProcess } from '../../src/local/webhook.ts';
import { httpsCall } from '../support/https.ts';
import { metricSum, secretCreations } from './support/install.ts';
import { deleteKeySecret, identity, KEY_PATH, renderSecretsComponent, SECRET_ANNOTATION, secretChecksum, SecretsOption, secretPath } from './support/secrets.ts';
import {
  configMap,
  expectedChecksum,
  expectedChecksums,
  Scenario,
  secret,
  sleep,
  sourcesAnnotation,
  templateChecksum,
  workload,
} from './support/scenario.ts';

const TIMEOUT = { timeout: 180_000 };
const scenario = new Scenario();
const { client } = scenario;
const RUN_WEBHOOK = scenario.state.webhook;
const OWN_NAMESPACE = scenario.state.serviceAccount.namespace;

// ---------------------------------------------------------------------------------------------------
// What the workloads consume. Every Secret value carries a random canary: none may ever show up outside
// the Secret (last test).

const CANARY = `canary-${randomBytes(8).toString('hex')}`;
const canaryValues: string[] = [];
function canary(label: string): string {
  const value = `${CANARY}-${label}`;
  canaryValues.push(value);
  return value;
}

/** One reference shape of DESIGN section 4: where it sits in the pod template, and the sources entry it gives. */
interface Shape {
  readonly container?: KubeObject;
  readonly initContainer?: KubeObject;
  readonly volumes?: KubeObject[];
  readonly annotations?: Record<string, string>;
  readonly sources: string;
}

const SHAPES: Readonly<Record<string, Shape>> = {
  'key-ref': { container: { env: [{ name: 'DB_PASSWORD', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }] }, sources: 'secret/db[password]' },
  'secret-ref': { container: { envFrom: [{ secretRef: { name: 'env' } }] }, sources: 'secret/env' },
  'volume': { volumes: [{ name: 'files', secret: { secretName: 'files' } }], sources: 'secret/files' },
  'volume-items': { volumes: [{ name: 'files', secret: { secretName: 'files', items: [{ key: 'a.conf', path: 'a.conf' }] } }], sources: 'secret/files[a.conf]' },
  'projected': { volumes: [{ name: 'bundle', projected: { sources: [{ secret: { name: 'proj' } }] } }], sources: 'secret/proj' },
  'extra-secrets': { annotations: { [CONTRACT.extraSecretsAnnotation]: 'extra' }, sources: 'secret/extra' },
  'init-container': { initContainer: { env: [{ name: 'TLS_KEY', valueFrom: { secretKeyRef: { name: 'tls', key: 'tls.key' } } }] }, sources: 'secret/tls[tls.key]' },
};

/** A Deployment whose pod template consumes what `shape` says (and, with `also`, more). */
function consumer(namespace: string, name: string, shape: Omit<Shape, 'sources'>, also: { volumeConfigMap?: string } = {}): KubeObject {
  const deployment = workload('Deployment', namespace, name, { ...(shape.annotations ? { annotations: shape.annotations } : {}), ...also });
  const spec = deployment['spec']['template']['spec'];
  Object.assign(spec['containers'][0], shape.container);
  if (shape.initContainer) spec['initContainers'] = [{ name: 'init', image: 'registry.invalid/init:1', ...shape.initContainer }];
  if (shape.volumes) spec['volumes'] = [...(spec['volumes'] ?? []), ...shape.volumes];
  return deployment;
}

interface Fixture {
  namespace: string;
  secrets: KubeObject[];
  appConfig: KubeObject;
  /** Created before the option is on: consumes a ConfigMap only. */
  configOnly: KubeObject;
  /** Created before the option is on: a ConfigMap and a Secret key. */
  mixed: KubeObject;
  /** Created before the option is on: Secrets only. */
  secretOnly: KubeObject;
  /** Their checksum/config with the option off. */
  checksumsOff: Map<string, string | undefined>;
  /** Every Deployment that consumes a Secret, as created. */
  consumers: KubeObject[];
}
let fixture: Fixture | undefined;
function fixed(): Fixture {
  assert.ok(fixture, 'the first test created the namespace and its objects');
  return fixture;
}

/** Every Warning text a client was shown in this file (response headers, kubectl's stderr). */
const warningsSeen: string[] = [];
function seen(response: KubeResponse): KubeResponse {
  warningsSeen.push(...response.warnings);
  return response;
}

// ---------------------------------------------------------------------------------------------------
// The component, and turning the option on and off for the run's webhook.

let option: SecretsOption | undefined;

function installed(): SecretsOption {
  assert.ok(option, 'the component was rendered');
  return option;
}

let secondReplica: WebhookProcess | undefined;
const secondLog = path.join(RUN_WEBHOOK.files.dir, `webhook-secrets-${process.pid}.log`);

/** A request with the webhook's own credential: its ServiceAccount token. */
function asWebhook(method: string, urlPath: string, body?: unknown, contentType?: string): Promise<{ status: number; body: KubeObject }> {
  return installed().asWebhook(method, urlPath, body, contentType);
}

/** The run's webhook with its own flags and the shipped RBAC only; the hash key Secret gone. */
async function turnOff(): Promise<void> {
  await secondReplica?.stop();
  secondReplica = undefined;
  await option?.off();
}

/** The hash key as stored, read with the admin credential. */
async function storedKey(): Promise<{ key: Buffer; uid: string; resourceVersion: string; immutable: boolean }> {
  const stored = await client.get(KEY_PATH);
  return {
    key: Buffer.from(String(stored['data']?.[HASH_KEY_FIELD] ?? ''), 'base64'),
    uid: String(stored['metadata']['uid']),
    resourceVersion: String(stored['metadata']['resourceVersion']),
    immutable: stored['immutable'] === true,
  };
}

/**
 * An AdmissionReview (a dry-run CREATE of `object`) sent to the webhook process on `port` directly, not
 * through the API server: the object as that process would have it admitted, and its warnings.
 */
async function admitAt(port: number, object: KubeObject): Promise<{ object: KubeObject; warnings: string[] }> {
  const review = {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind: { group: 'apps', version: 'v1', kind: 'Deployment' },
      resource: { group: 'apps', version: 'v1', resource: 'deployments' },
      namespace: object['metadata']['namespace'],
      name: object['metadata']['name'],
      operation: 'CREATE',
      object,
      dryRun: true,
      userInfo: { username: 'e2e' },
    },
  };
  const answer = await httpsCall({ port, path: '/mutate', ca: readFileSync(RUN_WEBHOOK.files.caFile), body: JSON.stringify(review), contentType: 'application/json' });
  assert.equal(answer.status, 200, `POST /mutate on port ${port}: ${answer.text}`);
  const response = (answer.json as KubeObject)['response'];
  const patch = response['patch'] ? (JSON.parse(Buffer.from(response['patch'], 'base64').toString('utf8')) as jsonpatch.Operation[]) : [];
  const warnings = (response['warnings'] ?? []) as string[];
  warningsSeen.push(...warnings);
  return { object: jsonpatch.applyPatch(structuredClone(object), patch, true, false).newDocument, warnings };
}

async function webhookMetrics(port = scenario.state.webhook.port): Promise<string> {
  return (await httpsCall({ port, path: '/metrics', ca: readFileSync(RUN_WEBHOOK.files.caFile) })).text;
}

before(async () => {
  option = new SecretsOption(scenario, await renderSecretsComponent(scenario));
});

after(async () => {
  try {
    await turnOff();
  } finally {
    await scenario.close();
  }
});

// ---------------------------------------------------------------------------------------------------

test('the option off (shipped flags and RBAC): the webhook\'s token is refused every read of a Secret (403), no Secret metric exists, and a Deployment that consumes only Secrets gets no annotation', TIMEOUT, async () => {
  const namespace = await scenario.namespace('e2e-secrets', { optIn: true });
  const secrets = [
    secret(namespace, 'db', { username: 'app', password: canary('db-password') }),
    secret(namespace, 'env', { API_TOKEN: canary('env-token'), MODE: 'live' }),
    secret(namespace, 'files', { 'a.conf': canary('a-conf'), 'b.conf': canary('b-conf') }),
    secret(namespace, 'proj', { 'ca.crt': canary('proj-ca') }),
    secret(namespace, 'extra', { token: canary('extra-token') }),
    secret(namespace, 'tls', { 'tls.crt': canary('tls-crt'), 'tls.key': canary('tls-key') }),
  ];
  for (const object of secrets) await client.expect('POST', secretPath(namespace), { body: object });
  const appConfig = configMap(namespace, 'app-config', { 'app.yaml': 'level: info\n' });
  await client.create(appConfig);

  const refused: Array<[string, string]> = [
    ['read a Secret a workload consumes', secretPath(namespace, 'db')],
    ['list the Secrets of a namespace', secretPath(namespace)],
    ['watch them', `${secretPath(namespace)}?watch=true&timeoutSeconds=1`],
    ['list Secrets cluster-wide', '/api/v1/secrets'],
    ['read the hash key Secret', KEY_PATH],
  ];
  for (const [what, urlPath] of refused) {
    const answer = await asWebhook('GET', urlPath);
    assert.equal(answer.status, 403, `${what}: GET ${urlPath} answered ${answer.status}`);
    assert.equal(answer.body['reason'], 'Forbidden', what);
  }
  assert.doesNotMatch(await webhookMetrics(), /^config_checksum_secret_/m, 'no Secret metric: the option is off');

  const configOnly = workload('Deployment', namespace, 'config-only', { volumeConfigMap: 'app-config' });
  const mixed = consumer(namespace, 'mixed', SHAPES['key-ref']!, { volumeConfigMap: 'app-config' });
  const secretOnly = consumer(namespace, 'secret-only', SHAPES['secret-ref']!);
  const checksumsOff = new Map<string, string | undefined>();
  for (const deployment of [configOnly, mixed, secretOnly]) {
    const created = seen(await client.create(deployment)).body;
    assert.equal(secretChecksum(created), undefined, `${deployment['metadata']['name']}: no ${SECRET_ANNOTATION}`);
    checksumsOff.set(deployment['metadata']['name'], templateChecksum(created));
    await scenario.waitForOwned('ReplicaSet', await scenario.waitForObserved(deployment), 1);
  }
  assert.equal(checksumsOff.get('config-only'), expectedChecksum(configOnly, [appConfig]).checksum);
  assert.equal(checksumsOff.get('mixed'), expectedChecksum(mixed, [appConfig]).checksum, 'the ConfigMap alone is hashed');
  assert.equal(sourcesAnnotation(await scenario.read(mixed)), 'configmap/app-config', 'no Secret named: none was collected');
  const storedSecretOnly = await scenario.read(secretOnly);
  assert.equal(checksumsOff.get('secret-only'), undefined, 'a template that consumes only Secrets consumes nothing the webhook reads');
  assert.equal(sourcesAnnotation(storedSecretOnly), undefined);
  assert.deepEqual(storedSecretOnly['spec']['template']['metadata']['annotations'], undefined, 'the pod template is untouched');
  fixture = { namespace, secrets, appConfig, configOnly, mixed, secretOnly, checksumsOff, consumers: [mixed, secretOnly] };
});

test('the component adds one flag and RBAC for the webhook\'s ServiceAccount: with it, the token may get, list and watch Secrets anywhere and create its key; every write to a Secret but that create is still refused', TIMEOUT, async () => {
  const { namespace } = fixed();
  const { objects, flags } = installed().component;
  assert.deepEqual(flags, ['--secrets=true'], 'the flag the component adds');
  assert.deepEqual(objects.map(identity).sort(), [
    'ClusterRole//config-checksum-webhook-secrets',
    'ClusterRoleBinding//config-checksum-webhook-secrets',
    `Role/${OWN_NAMESPACE}/config-checksum-webhook-secrets`,
    `RoleBinding/${OWN_NAMESPACE}/config-checksum-webhook-secrets`,
  ]);
  for (const binding of objects.filter((object) => String(object['kind']).endsWith('Binding'))) {
    assert.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', ...scenario.state.serviceAccount }], `${identity(binding)} binds the webhook's ServiceAccount`);
  }

  await installed().applyRbac();
  await waitFor('the authorizer to see the new bindings', async () => (await asWebhook('GET', secretPath(namespace, 'db'))).status === 200, { timeoutMs: 30_000, intervalMs: 100 });

  const allowed: Array<[string, string, string, number[], unknown?]> = [
    ['read a Secret a workload consumes', 'GET', secretPath(namespace, 'db'), [200]],
    ['list the Secrets of a namespace', 'GET', secretPath(namespace), [200]],
    ['watch them', 'GET', `${secretPath(namespace)}?watch=true&timeoutSeconds=1`, [200]],
    ['list Secrets cluster-wide (the watcher)', 'GET', '/api/v1/secrets?limit=1', [200]],
    // Allowed whether or not the key exists yet: 404 or 200, and 201 or 409 (AlreadyExists).
    ['read the hash key Secret', 'GET', KEY_PATH, [200, 404]],
    ['create a Secret in its own namespace (server-side dry run)', 'POST', `${secretPath(OWN_NAMESPACE)}?dryRun=All`, [201, 409], secret(OWN_NAMESPACE, HASH_KEY_SECRET_NAME, { [HASH_KEY_FIELD]: 'x'.repeat(HASH_KEY_BYTES) })],
  ];
  const refused: Array<[string, string, string, unknown?, string?]> = [
    ['delete a Secret', 'DELETE', secretPath(namespace, 'db')],
    ['delete every Secret of a namespace', 'DELETE', secretPath(namespace)],
    ['replace a Secret', 'PUT', secretPath(namespace, 'db'), secret(namespace, 'db', { password: 'planted' })],
    ['patch a Secret', 'PATCH', secretPath(namespace, 'db'), { data: { password: Buffer.from('planted').toString('base64') } }, 'application/merge-patch+json'],
    ['create a Secret in another namespace', 'POST', `${secretPath(namespace)}?dryRun=All`, secret(namespace, 'planted', { x: 'y' })],
    ['replace the hash key Secret', 'PUT', KEY_PATH, secret(OWN_NAMESPACE, HASH_KEY_SECRET_NAME, { [HASH_KEY_FIELD]: 'y'.repeat(HASH_KEY_BYTES) })],
    ['delete the hash key Secret', 'DELETE', KEY_PATH],
  ];
  const wrong: string[] = [];
  for (const [what, method, urlPath, statuses, body] of allowed) {
    const answer = await asWebhook(method, urlPath, body);
    if (!statuses.includes(answer.status)) wrong.push(`${what}: ${method} ${urlPath} answered ${answer.status}, expected ${statuses.join(' or ')}`);
  }
  for (const [what, method, urlPath, body, contentType] of refused) {
    const answer = await asWebhook(method, urlPath, body, contentType);
    if (answer.status !== 403) wrong.push(`${what}: ${method} ${urlPath} answered ${answer.status}, expected 403`);
  }
  assert.deepEqual(wrong, []);
  assert.equal((await client.get(secretPath(namespace, 'db')))['data']['password'], fixed().secrets[0]!['data']['password'], 'nothing changed behind a refusal');
});

test('the option on: the webhook creates the hash key Secret once; a second replica started at the same moment adopts it, and both hash with that key', TIMEOUT, async (t) => {
  const { namespace, secrets } = fixed();
  await deleteKeySecret(client);
  const offset = fileSize(RUN_WEBHOOK.files.logFile);
  const creationsBefore = await secretCreations(client);
  const { flags } = installed();

  await scenario.stopWebhook();
  installed().flagsChanged();
  const started = performance.now();
  const [restarted, started2] = await Promise.allSettled([
    scenario.restartWebhook(flags),
    // Trace level: the value test below reads this log too.
    startWebhookProcess({
      files: { ...RUN_WEBHOOK.files, logFile: secondLog },
      registry: { file: scenario.state.registryFile },
      port: 0,
      logLevel: 'trace',
      extraArgs: [...flags, '--watch', 'false'],
      outliveParent: true,
    }),
  ]);
  // Kept before any throw, so that turnOff() stops it whatever failed.
  if (started2.status === 'fulfilled') secondReplica = started2.value;
  if (restarted.status === 'rejected') throw restarted.reason;
  if (started2.status === 'rejected') throw started2.reason;
  const second = started2.value;
  t.diagnostic(`both replicas ready ${Math.round(performance.now() - started)} ms after they were started together`);

  const stored = await storedKey();
  assert.equal(stored.key.length, HASH_KEY_BYTES, `${HASH_KEY_BYTES} random bytes`);
  assert.equal(stored.immutable, true, 'the key Secret is immutable');
  const creations = await secretCreations(client);
  t.diagnostic(`hash key: ${creations.conflicts - creationsBefore.conflicts} create(s) lost the race (409) and adopted the winner's`);
  assert.equal(creations.created - creationsBefore.created, 1, 'exactly one Secret created for two replicas');
  const loads = [...logEntries(RUN_WEBHOOK.files.logFile, offset), ...logEntries(secondLog)].map((entry) => String(entry['msg'])).filter((msg) => msg.startsWith('hash key '));
  assert.deepEqual(loads.sort(), ['hash key created', 'hash key loaded'], 'one replica created the key, the other loaded it');

  const probe = consumer(namespace, 'probe', SHAPES['key-ref']!);
  const expected = expectedChecksums(probe, { configMaps: [], secrets, key: stored.key }).secretChecksum;
  for (const [replica, port] of [['restarted', scenario.state.webhook.port], ['second', second.port]] as const) {
    assert.equal(secretChecksum((await admitAt(port, probe)).object), expected, `the ${replica} replica hashes with the stored key`);
    assert.equal(metricSum(await webhookMetrics(port), 'config_checksum_secret_hash_key_loaded'), 1, `the ${replica} replica reports its key loaded`);
  }
  const later = await storedKey();
  assert.deepEqual([later.uid, later.resourceVersion, later.key.equals(stored.key)], [stored.uid, stored.resourceVersion, true], 'the stored key is the one created, unchanged');
  await second.stop();
  secondReplica = undefined;
});

test('every reference shape, in containers and initContainers, gives checksum/secret (keyed with the install\'s key) and a sources entry with names and keys only', TIMEOUT, async () => {
  const { namespace, secrets, consumers } = fixed();
  const { key } = await storedKey();
  for (const [name, shape] of Object.entries(SHAPES)) {
    const deployment = consumer(namespace, name, shape);
    const created = seen(await client.create(deployment)).body;
    const expected = expectedChecksums(deployment, { configMaps: [], secrets, key });
    assert.match(secretChecksum(created) ?? '', /^[0-9a-f]{8}\.[0-9a-f]{64}$/, `${name}: ${SECRET_ANNOTATION} is the key id, a dot and 64 hex characters`);
    assert.equal(secretChecksum(created), expected.secretChecksum, `${name}: the HMAC of the consumed keys`);
    assert.equal(sourcesAnnotation(created), shape.sources, `${name}: sources`);
    assert.equal(expected.sources, shape.sources, `${name}: the core names the same sources`);
    assert.equal(templateChecksum(created), undefined, `${name}: no ConfigMap consumed, no checksum/config`);
    await scenario.waitForOwned('ReplicaSet', await scenario.waitForObserved(deployment), 1);
    consumers.push(deployment);
  }
  const keyRef = consumers.find((deployment) => deployment['metadata']['name'] === 'key-ref')!;
  const otherKey = expectedChecksums(keyRef, { configMaps: [], secrets, key: Buffer.alloc(HASH_KEY_BYTES) }).secretChecksum;
  assert.notEqual(secretChecksum(await scenario.read(keyRef)), otherKey, 'the same Secrets under another key give another checksum');
});

test('turning the option on changes no checksum/config: a Deployment that consumes no Secret keeps its value and gets no ReplicaSet; one that also consumes a Secret keeps checksum/config and gets checksum/secret at its next write', TIMEOUT, async () => {
  const { appConfig, configOnly, mixed, secretOnly, checksumsOff, secrets } = fixed();
  const { key } = await storedKey();

  const { read, response } = await scenario.putAsRead(configOnly);
  seen(response);
  assert.equal(templateChecksum(read), checksumsOff.get('config-only'), 'unchanged since the option was turned on');
  assert.equal(templateChecksum(response.body), checksumsOff.get('config-only'), 'and unchanged by a write');
  assert.equal(secretChecksum(response.body), undefined);
  assert.equal(response.body['metadata']['resourceVersion'], read['metadata']['resourceVersion'], 'nothing to write');

  for (const deployment of [mixed, secretOnly]) {
    const name = deployment['metadata']['name'];
    const written = seen((await scenario.putAsRead(deployment)).response).body;
    const expected = expectedChecksums(deployment, { configMaps: [appConfig], secrets, key });
    assert.equal(templateChecksum(written), checksumsOff.get(name), `${name}: checksum/config as before`);
    assert.equal(templateChecksum(written), expected.checksum, `${name}: which is the ConfigMaps' checksum`);
    assert.equal(secretChecksum(written), expected.secretChecksum, `${name}: ${SECRET_ANNOTATION} added`);
    assert.equal(sourcesAnnotation(written), expected.sources);
    await scenario.waitForOwned('ReplicaSet', written, 2);
  }
  assert.equal(sourcesAnnotation(await scenario.read(mixed)), 'configmap/app-config, secret/db[password]');

  // Past the watcher's quiet period: the restarted watcher (option on) found nothing to roll either.
  await sleep(scenario.configChangeSettleMs);
  const stored = await scenario.read(configOnly);
  assert.equal(templateChecksum(stored), checksumsOff.get('config-only'));
  assert.equal((await scenario.owned('ReplicaSet', stored)).length, 1, 'no new ReplicaSet for the Deployment that consumes no Secret');
  for (const deployment of [mixed, secretOnly]) assert.equal((await scenario.owned('ReplicaSet', await scenario.read(deployment))).length, 2, `${deployment['metadata']['name']}: one rollout`);
});

test('a consumed key changed, then the Deployment written (an image change, as a release does): one new ReplicaSet with the new checksum/secret; a change to a key it does not consume gives nothing to write', TIMEOUT, async () => {
  const { namespace, secrets, consumers } = fixed();
  const { key } = await storedKey();
  const deployment = consumers.find((candidate) => candidate['metadata']['name'] === 'key-ref')!;
  const before = await scenario.read(deployment);
  const oldChecksum = secretChecksum(before);
  const db = secrets.find((candidate) => candidate['metadata']['name'] === 'db')!;
  const patchDb = async (values: Record<string, string>): Promise<void> => {
    const data = Object.fromEntries(Object.entries(values).map(([name, value]) => [name, Buffer.from(value).toString('base64')]));
    await client.expect('PATCH', secretPath(namespace, 'db'), { body: { data }, contentType: 'application/merge-patch+json' });
    Object.assign(db['data'], data);
  };

  await patchDb({ username: 'app-2' });
  const untouched = await scenario.putAsRead(deployment);
  seen(untouched.response);
  assert.equal(secretChecksum(untouched.response.body), oldChecksum, 'username is not consumed');
  assert.equal(untouched.response.body['metadata']['resourceVersion'], untouched.read['metadata']['resourceVersion'], 'nothing written');

  await patchDb({ password: canary('db-password-2') });
  const written = seen((await scenario.putAsRead(deployment, { change: (current) => (current['spec']['template']['spec']['containers'][0]['image'] = 'registry.invalid/app:2') })).response).body;
  const expected = expectedChecksums(written, { configMaps: [], secrets, key }).secretChecksum;
  assert.notEqual(expected, oldChecksum);
  assert.equal(secretChecksum(written), expected, 'the write carries the new checksum/secret');
  await scenario.waitForOwned('ReplicaSet', written, 2);
  await sleep(scenario.configChangeSettleMs);
  const replicaSets = await scenario.owned('ReplicaSet', await scenario.read(deployment));
  assert.equal(replicaSets.length, 2, 'exactly one new ReplicaSet');
  const newest = replicaSets.find((rs) => rs['spec']['template']['spec']['containers'][0]['image'] === 'registry.invalid/app:2');
  assert.equal(secretChecksum(newest!), expected, 'the new image and the new checksum/secret, in one rollout');
});

test('a missing required Secret, or a missing key: admitted, hashed as absent, and kubectl shows a warning that names it and carries no value; an optional one is silent', TIMEOUT, async () => {
  const { namespace, secrets, consumers } = fixed();
  const { key } = await storedKey();
  const cases: Array<[string, KubeObject, RegExp | undefined, string]> = [
    ['absent-secret', { name: 'absent-secret', key: 'password' }, /Warning: config-checksum: Secret "absent-secret" not found/, 'secret/absent-secret[password](missing)'],
    ['absent-key', { name: 'db', key: 'no-such-key' }, /Warning: config-checksum: key "no-such-key" not found in Secret "db"/, 'secret/db[no-such-key]'],
    ['absent-optional', { name: 'absent-optional', key: 'password', optional: true }, undefined, 'secret/absent-optional[password](missing)'],
  ];
  for (const [name, secretKeyRef, warning, sources] of cases) {
    const deployment = consumer(namespace, name, { container: { env: [{ name: 'VALUE', valueFrom: { secretKeyRef } }] } });
    const applied = await scenario.kubectl.apply(deployment);
    warningsSeen.push(applied.stderr);
    if (warning) assert.match(applied.stderr, warning, `${name}: kubectl printed ${applied.stderr}`);
    else assert.doesNotMatch(applied.stderr, /Warning/, `${name}: no warning for an optional Secret`);
    for (const value of canaryValues) assert.ok(!applied.stderr.includes(value), `${name}: the warning carries no Secret value`);
    const stored = await scenario.read(deployment);
    assert.equal(secretChecksum(stored), expectedChecksums(deployment, { configMaps: [], secrets, key }).secretChecksum, `${name}: hashed as absent`);
    assert.equal(sourcesAnnotation(stored), sources);
    consumers.push(deployment);
  }
});

test('the hash key Secret deleted while the webhook is stopped: the next start makes a new key, and each Deployment that consumes a Secret rolls exactly once, at its next write', TIMEOUT, async () => {
  const { appConfig, configOnly, secrets, consumers } = fixed();
  const old = await storedKey();
  const counts = new Map<string, number>();
  for (const deployment of [configOnly, ...consumers]) counts.set(deployment['metadata']['name'], (await scenario.owned('ReplicaSet', await scenario.read(deployment))).length);

  await scenario.stopWebhook();
  await deleteKeySecret(client);
  await scenario.restartWebhook(scenario.state.webhook.extraArgs);
  const fresh = await storedKey();
  assert.notEqual(fresh.uid, old.uid, 'a new Secret');
  assert.ok(!fresh.key.equals(old.key), 'with a new key');

  for (const deployment of consumers) {
    const name = deployment['metadata']['name'];
    const written = seen((await scenario.putAsRead(deployment)).response).body;
    const expected = expectedChecksums(written, { configMaps: [appConfig], secrets, key: fresh.key }).secretChecksum;
    assert.equal(secretChecksum(written), expected, `${name}: ${SECRET_ANNOTATION} under the new key`);
    assert.notEqual(expected, expectedChecksums(written, { configMaps: [appConfig], secrets, key: old.key }).secretChecksum);
    await scenario.waitForOwned('ReplicaSet', written, counts.get(name)! + 1);
  }
  const config = seen((await scenario.putAsRead(configOnly)).response).body;
  assert.equal(templateChecksum(config), expectedChecksum(configOnly, [appConfig]).checksum, 'checksum/config does not depend on the key');

  await sleep(scenario.configChangeSettleMs);
  const wrong: string[] = [];
  for (const deployment of [configOnly, ...consumers]) {
    const name = deployment['metadata']['name'];
    const wanted = counts.get(name)! + (deployment === configOnly ? 0 : 1);
    const { read, response } = await scenario.putAsRead(deployment);
    seen(response);
    if (response.body['metadata']['resourceVersion'] !== read['metadata']['resourceVersion']) wrong.push(`${name}: a further write changed it`);
    const found = (await scenario.owned('ReplicaSet', read)).length;
    if (found !== wanted) wrong.push(`${name}: ${found} ReplicaSets, expected ${wanted}`);
  }
  assert.deepEqual(wrong, [], `${consumers.length} Secret consumers, one rollout each; the Deployment that consumes no Secret, none`);
});

test('a canary Secret value never appears in the webhooks\' logs (info and trace), the Events, the metrics, the annotations or the warnings; nor does the hash key', TIMEOUT, async () => {
  const { namespace } = fixed();
  const key = (await storedKey()).key;
  const annotations = [
    ...(await client.list(`/apis/apps/v1/namespaces/${namespace}/deployments`)),
    ...(await client.list(`/apis/apps/v1/namespaces/${namespace}/replicasets`)),
  ].map((object) => ({ workload: object['metadata']['annotations'], template: object['spec']['template']['metadata']['annotations'] }));
  const places: Array<[string, string]> = [
    ['the run\'s webhook log', readFileSync(RUN_WEBHOOK.files.logFile, 'utf8')],
    ['the second replica\'s log (trace)', readFileSync(secondLog, 'utf8')],
    ['Events (core)', JSON.stringify(await client.list('/api/v1/events'))],
    ['Events (events.k8s.io)', JSON.stringify(await client.list('/apis/events.k8s.io/v1/events'))],
    ['the webhook\'s metrics', await webhookMetrics()],
    ['annotations', JSON.stringify(annotations)],
    ['warnings', warningsSeen.join('\n')],
  ];
  // Each place holds what this file did: the search below would find a value there if one had leaked.
  const [log, trace, events, , metrics, annotationText, warningText] = places.map(([, text]) => text);
  assert.ok(log!.includes(namespace) && trace!.includes(namespace), 'both logs name the namespace of the admissions');
  assert.ok(events!.includes(namespace), 'there are Events for the namespace');
  assert.match(metrics!, /^config_checksum_secret_reads_total/m);
  assert.ok(annotationText!.includes('secret/db[password]') && annotationText!.includes(SECRET_ANNOTATION));
  assert.ok(warningText!.includes('absent-secret'));

  const needles: Array<[string, string]> = canaryValues.flatMap((value) => [[value, value], [`${value} (base64)`, Buffer.from(value).toString('base64')]] as Array<[string, string]>);
  needles.push(['the hash key (base64)', key.toString('base64')], ['the hash key (hex)', key.toString('hex')]);
  const leaks = places.flatMap(([where, text]) => needles.filter(([, needle]) => text.includes(needle)).map(([what]) => `${what} in ${where}`));
  assert.deepEqual(leaks, [], `searched ${places.length} places for ${needles.length} values`);
});

test('the option turned off again (the run\'s flags, the component\'s RBAC deleted): the token is refused Secrets again', TIMEOUT, async () => {
  const { namespace } = fixed();
  await turnOff();
  await waitFor('the authorizer to drop the deleted bindings', async () => (await asWebhook('GET', secretPath(namespace, 'db'))).status === 403, { timeoutMs: 30_000, intervalMs: 100 });
  assert.equal((await asWebhook('GET', '/api/v1/secrets')).status, 403);
  assert.doesNotMatch(await webhookMetrics(), /^config_checksum_secret_/m, 'the run\'s webhook runs without the option');
});
