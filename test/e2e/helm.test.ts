// Helm and helmfile users (README "Install with Helm", test/examples/gateway): the real helm and helmfile
// binaries against the run's control plane and webhook (watcher on, its coalescing window as shipped).
// "Rolled" is a new ReplicaSet made by the controller manager; "no further rollout" is checked after
// scenario.configChangeSettleMs, past the watcher's coalescing window.
//
// The measured figures (sync durations, the gap between the two releases of one sync, rollouts) are
// printed as test diagnostics (`# ...` lines of the spec reporter).

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { kubeconfigYaml } from '../controlplane/cluster.ts';
import { spawnLogged, stopGroup, tail } from '../controlplane/process.ts';
import { copyGatewayExample, HelmTools, CHART_DIR } from './support/helm.ts';
import { GiveUp, resourcePath, uniqueName, waitFor, type KubeObject } from './support/kube.ts';
import { expectedChecksum, Scenario, sleep, SOURCES_ANNOTATION, templateChecksum } from './support/scenario.ts';
import { logEntries } from './support/webhook.ts';

const TIMEOUT = { timeout: 300_000 };
const scenario = new Scenario();
const workDir = path.join(scenario.state.runDir, uniqueName('helm'));
mkdirSync(workDir, { recursive: true });
const tools = new HelmTools({ binDir: scenario.state.binDir, workDir, kubeconfig: scenario.state.kubeconfig });
after(() => scenario.close());

const CONFIGURATIONS = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';
// A label no namespace carries: added to the installed chart's selector so that its webhook (a Service
// with no endpoints here) is never called by the API server while the test looks at it.
const NEVER_MATCHES = { key: 'e2e.config-checksum.io/never', operator: 'Exists' } as const;

// ---- the webhook chart ----------------------------------------------------------------------------------

const MODES = [
  {
    mode: 'namespace-opt-in',
    expressions: (_namespace: string) => [{ key: 'config-checksum.io/inject', operator: 'In', values: ['enabled'] }],
  },
  {
    mode: 'cluster-wide',
    expressions: (namespace: string) => [
      { key: 'config-checksum.io/inject', operator: 'NotIn', values: ['disabled'] },
      { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'kube-public', 'kube-node-lease', namespace] },
    ],
  },
] as const;

for (const { mode, expressions } of MODES) {
  test(`helm install of the chart in ${mode} mode: accepted, and its MutatingWebhookConfiguration is DESIGN section 7`, TIMEOUT, async (t) => {
    // Names that cannot collide with the run's own registration (config-checksum-webhook): the release
    // namespace's name as fullnameOverride, so the cluster-scoped objects are unique to this test too.
    const namespace = await scenario.namespace(`e2e-helm-${mode === 'cluster-wide' ? 'cw' : 'optin'}`, { optIn: false });
    const runConfiguration = await scenario.client.get(`${CONFIGURATIONS}/${scenario.state.webhookConfiguration}`);
    const install = ['--namespace', namespace, '--set', `mode=${mode}`, '--set', `fullnameOverride=${namespace}`, '--set-json', `namespaceSelector.extraExpressions=[${JSON.stringify(NEVER_MATCHES)}]`];
    const started = performance.now();
    let installed = false;
    try {
      await tools.expectHelm(['install', 'ccw', CHART_DIR, ...install]);
      installed = true;
      t.diagnostic(`helm install (${mode}): ${Math.round(performance.now() - started)} ms`);

      const configuration = await scenario.client.get(`${CONFIGURATIONS}/${namespace}`);
      const [webhook, ...others] = configuration['webhooks'] as KubeObject[];
      assert.equal(others.length, 0, 'one webhook');
      assert.equal(webhook!['name'], 'checksum.config-checksum.io');
      assert.deepEqual(webhook!['admissionReviewVersions'], ['v1']);
      assert.equal(webhook!['sideEffects'], 'None');
      assert.equal(webhook!['failurePolicy'], 'Ignore');
      assert.equal(webhook!['timeoutSeconds'], 5);
      assert.equal(webhook!['reinvocationPolicy'], 'IfNeeded');
      assert.equal(webhook!['matchPolicy'], 'Equivalent');
      assert.deepEqual(webhook!['rules'], [{
        operations: ['CREATE', 'UPDATE'],
        apiGroups: ['apps'],
        apiVersions: ['v1'],
        resources: ['deployments', 'statefulsets', 'daemonsets'],
        scope: 'Namespaced',
      }]);
      assert.deepEqual(webhook!['namespaceSelector'], { matchExpressions: [...expressions(namespace), NEVER_MATCHES] }, `the ${mode} selector, then the extra expression`);
      assert.deepEqual(webhook!['clientConfig']['service'], { name: namespace, namespace, path: '/mutate', port: 443 });

      const clusterRole = await scenario.client.get(`/apis/rbac.authorization.k8s.io/v1/clusterroles/${namespace}`);
      const named = (rules: KubeObject[]): string[] => rules.flatMap((rule) => rule['resourceNames'] ?? []);
      assert.deepEqual(named(clusterRole['rules']), [namespace], 'the ClusterRole names the configuration the chart rendered');
      const role = await scenario.client.get(`/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/roles/${namespace}`);
      assert.deepEqual(named(role['rules']).sort(), ['config-checksum-webhook-leader', `${namespace}-tls`].sort());

      const after = await scenario.client.get(`${CONFIGURATIONS}/${scenario.state.webhookConfiguration}`);
      assert.equal(after['metadata']['resourceVersion'], runConfiguration['metadata']['resourceVersion'], "the run's own registration is untouched");

      if (mode === 'namespace-opt-in') await runChartCommand(t, namespace);
    } finally {
      // The chart's webhook has no endpoints here: it must never outlive the test (a failed install may
      // have left a release too; then the install's error is the one to report).
      const uninstalled = await tools.runHelm(['uninstall', 'ccw', '--namespace', namespace, '--wait']);
      if (installed) assert.equal(uninstalled.code, 0, uninstalled.stderr);
    }
    assert.equal((await scenario.client.request('GET', `${CONFIGURATIONS}/${namespace}`)).status, 404, 'helm uninstall removed the configuration');
    assert.equal((await scenario.client.request('GET', `/apis/rbac.authorization.k8s.io/v1/clusterroles/${namespace}`)).status, 404);
  });
}

/**
 * The chart's own command line (args and env of its Deployment) run as the chart's ServiceAccount, with
 * only the flags a loopback run needs added: it must bootstrap its certificate into the Secret the chart
 * names, publish the CA in the configuration the chart rendered and take the leader Lease, all within the
 * chart's RBAC. Nothing routes the Service here, so the API server never calls it (and the selector
 * matches no namespace anyway).
 */
async function runChartCommand(t: TestContext, namespace: string): Promise<void> {
  const deployment = await scenario.client.get(resourcePath('Deployment', namespace, namespace));
  const container = deployment['spec']['template']['spec']['containers'][0] as KubeObject;
  assert.equal(deployment['spec']['template']['spec']['serviceAccountName'], namespace);
  const identity = `${namespace}-pod`;
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const entry of container['env'] as KubeObject[]) {
    const field = entry['valueFrom']?.['fieldRef']?.['fieldPath'];
    env[entry['name']] = field === 'metadata.namespace' ? namespace : field === 'metadata.name' ? identity : entry['value'];
  }
  const token = (await scenario.kubectl.expect(['create', 'token', namespace, '-n', namespace, '--duration=1h'])).stdout.trim();
  const kubeconfig = path.join(workDir, `${namespace}.kubeconfig`);
  writeFileSync(kubeconfig, kubeconfigYaml(scenario.state.server, readFileSync(scenario.state.admin.caFile, 'utf8'), `system:serviceaccount:${namespace}:${namespace}`, { token }), { mode: 0o600 });
  const chartArgs = (container['args'] as string[]).filter((arg) => !arg.startsWith('--drain-seconds'));
  const logFile = path.join(scenario.state.runDir, 'logs', `${namespace}.log`);
  const child = spawnLogged({
    name: `chart-webhook-${namespace}`,
    command: process.execPath,
    args: [...scenario.state.webhook.files.program, ...chartArgs, '--host', '127.0.0.1', '--port', '0', '--kubeconfig', kubeconfig, '--cert-extra-sans', '127.0.0.1', '--drain-seconds', '0'],
    cwd: path.resolve(import.meta.dirname, '..', '..'),
    env,
    logFile,
    registry: { file: scenario.state.registryFile },
  });
  try {
    const port = await waitFor('the chart-configured webhook to listen', async () => {
      if (child.exitStatus() !== undefined) throw new GiveUp(`exited (${child.exitStatus()}):\n${tail(logFile)}`);
      const listening = logEntries(logFile).find((line) => line['msg'] === 'listening');
      return typeof listening?.['port'] === 'number' ? listening['port'] : undefined;
    }, { timeoutMs: 90_000, intervalMs: 200 });
    const secret = await scenario.client.get(`/api/v1/namespaces/${namespace}/secrets/${namespace}-tls`);
    assert.ok(Object.keys(secret['data'] ?? {}).length > 0, 'the certificate Secret the chart named exists');
    const configuration = await scenario.client.get(`${CONFIGURATIONS}/${namespace}`);
    const caBundle = Buffer.from(String(configuration['webhooks'][0]['clientConfig']['caBundle'] ?? ''), 'base64').toString('utf8');
    assert.match(caBundle, /BEGIN CERTIFICATE/, 'caBundle published in the configuration the chart rendered');
    assert.equal(await readyz(port, caBundle), 200, 'serves a certificate that caBundle trusts');
    const lease = await waitFor('the leader Lease', async () => {
      const found = await scenario.client.find(resourcePath('Lease', namespace, 'config-checksum-webhook-leader'));
      return found?.['spec']?.['holderIdentity'] === identity ? found : undefined;
    }, { timeoutMs: 60_000 });
    assert.ok(lease);
    const refused = logEntries(logFile).filter((line) => /forbidden|\b403\b/i.test(JSON.stringify(line)));
    assert.deepEqual(refused, [], 'no request refused by RBAC');
    t.diagnostic(`chart command line as its ServiceAccount: ${chartArgs.join(' ')}`);
  } finally {
    await stopGroup(child.pid, 10_000);
    await child.exited;
  }
}

function readyz(port: number, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path: '/readyz', ca, agent: false, timeout: 5_000 }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    }).on('error', reject);
  });
}

// ---- the gateway example: two releases, one helmfile -----------------------------------------------------

/** A position in the run's webhook log: what the webhook did about one namespace since then. */
class WebhookLog {
  readonly #file = scenario.state.webhook.files.logFile;
  readonly #offset: number;

  constructor() {
    this.#offset = statSync(this.#file).size;
  }

  /** Admissions of UPDATEs (not dry runs) of the Deployment `name`: writes someone sent for it. */
  updates(namespace: string, name: string): KubeObject[] {
    return logEntries(this.#file, this.#offset).filter((line) => line['msg'] === 'admission' && line['namespace'] === namespace && line['name'] === name && line['kind'] === 'Deployment' && line['operation'] === 'UPDATE' && line['dryRun'] !== true);
  }

  /** The watcher's own rollouts in `namespace`. */
  watcherRollouts(namespace: string): KubeObject[] {
    return logEntries(this.#file, this.#offset).filter((line) => line['msg'] === 'rolled out' && line['namespace'] === namespace);
  }
}

interface Example {
  readonly namespace: string;
  readonly dir: string;
  readonly helmfile: string;
}

async function gatewayExample(prefix: string): Promise<Example> {
  const namespace = await scenario.namespace(prefix, { optIn: true });
  const dir = copyGatewayExample(path.join(workDir, namespace));
  return { namespace, dir, helmfile: path.join(dir, 'helmfile.yaml') };
}

/** `helmfile -n <namespace> sync`, timed. --skip-deps: the example's charts have no dependencies. */
async function sync(t: TestContext, example: Example, label: string): Promise<number> {
  const started = performance.now();
  await tools.expectHelmfile(example.helmfile, ['--namespace', example.namespace, '--skip-deps', 'sync']);
  const ms = performance.now() - started;
  t.diagnostic(`helmfile sync (${label}): ${Math.round(ms)} ms`);
  return ms;
}

function edit(example: Example, file: string, change: (text: string) => string): void {
  const target = path.join(example.dir, file);
  const before = readFileSync(target, 'utf8');
  const after = change(before);
  assert.notEqual(after, before, `${file} changed`);
  writeFileSync(target, after);
}

const GATEWAY = (namespace: string): KubeObject => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { namespace, name: 'gateway' } });

async function configMaps(namespace: string, names: readonly string[]): Promise<KubeObject[]> {
  return Promise.all(names.map((name) => scenario.client.get(resourcePath('ConfigMap', namespace, name))));
}

/** The checksum the webhook must have written, from the ConfigMaps as stored now. */
async function expected(deployment: KubeObject, names: readonly string[] = ['gateway-apis']): Promise<string> {
  return expectedChecksum(deployment, await configMaps(deployment['metadata']['namespace'], names)).checksum;
}

async function waitForChecksum(namespace: string, checksum: string): Promise<KubeObject> {
  return waitFor(`gateway checksum ${checksum.slice(0, 12)}`, async () => {
    const current = await scenario.read(GATEWAY(namespace));
    return templateChecksum(current) === checksum ? current : undefined;
  }, { timeoutMs: 90_000, intervalMs: 100 });
}

/** First sync of a fresh copy: both releases installed, the gateway admitted with a checksum, one ReplicaSet, and still one after the settle time. */
async function installed(t: TestContext, example: Example, configMapNames: readonly string[] = ['gateway-apis']): Promise<KubeObject> {
  await sync(t, example, 'install');
  const stored = await scenario.waitForObserved(GATEWAY(example.namespace));
  assert.equal(templateChecksum(stored), await expected(stored, configMapNames), 'admitted with the checksum of the ConfigMaps as stored');
  await scenario.waitForOwned('ReplicaSet', stored, 1);
  await sleep(scenario.configChangeSettleMs);
  const settled = await scenario.read(stored);
  assert.equal((await scenario.owned('ReplicaSet', settled)).length, 1, 'installing rolled nothing more');
  return settled;
}

/** Exactly `count` ReplicaSets once the settle time has passed; returns them, newest last. */
async function settledReplicaSets(deployment: KubeObject, count: number): Promise<KubeObject[]> {
  await scenario.waitForOwned('ReplicaSet', deployment, count);
  await sleep(scenario.configChangeSettleMs);
  const replicaSets = await scenario.owned('ReplicaSet', await scenario.read(deployment));
  assert.equal(replicaSets.length, count, `${count} ReplicaSet(s) after ${scenario.configChangeSettleMs} ms`);
  return replicaSets.sort((a, b) => Number(a['metadata']['annotations']['deployment.kubernetes.io/revision']) - Number(b['metadata']['annotations']['deployment.kubernetes.io/revision']));
}

function helmManagedTime(deployment: KubeObject): string | undefined {
  return (deployment['metadata']['managedFields'] as KubeObject[] | undefined)?.find((entry) => entry['manager'] === 'helm' && entry['operation'] === 'Update')?.['time'];
}

/**
 * When the gateway-apis ConfigMap's data and the gateway Deployment's spec (generation) changed, as the API
 * server stored them: the two writes of one sync. Polled every 50 ms; a change is dated when the poll that
 * saw it started, so each time is late by at most one interval plus one round trip.
 */
class ChangeClock {
  configMapAt: number | undefined;
  deploymentAt: number | undefined;
  #running = true;
  readonly #done: Promise<void>;

  static async start(namespace: string): Promise<ChangeClock> {
    const [configMap] = await configMaps(namespace, ['gateway-apis']);
    const deployment = await scenario.read(GATEWAY(namespace));
    return new ChangeClock(namespace, JSON.stringify(configMap!['data']), deployment['metadata']['generation']);
  }

  private constructor(namespace: string, configMapData: string, generation: number) {
    this.#done = this.#poll(namespace, configMapData, generation);
  }

  async #poll(namespace: string, configMapData: string, generation: number): Promise<void> {
    while (this.#running) {
      const now = performance.now();
      try {
        const [[configMap], deployment] = await Promise.all([configMaps(namespace, ['gateway-apis']), scenario.read(GATEWAY(namespace))]);
        if (this.configMapAt === undefined && JSON.stringify(configMap!['data']) !== configMapData) this.configMapAt = now;
        if (this.deploymentAt === undefined && deployment['metadata']['generation'] !== generation) this.deploymentAt = now;
      } catch {
        // A failed poll only costs resolution; the waits on configMapAt/deploymentAt have deadlines.
      }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#done;
  }
}

test('helmfile: only an API definition file changes; the gateway release (unchanged, so helm sends nothing) rolls exactly once', TIMEOUT, async (t) => {
  const example = await gatewayExample('e2e-helmfile-apis');
  const stored = await installed(t, example);
  assert.equal(stored['metadata']['annotations'][SOURCES_ANNOTATION], 'configmap/gateway-apis');
  const helmWrote = helmManagedTime(stored);
  assert.ok(helmWrote, 'helm is a field manager of the Deployment');

  // The story's change: a new route in one definition file.
  edit(example, 'apis/orders.yaml', (text) => `${text}  - {method: POST, path: /}\n`);
  const log = new WebhookLog();
  await sync(t, example, 'a definition file changed');
  const checksum = await expected(stored);
  assert.notEqual(checksum, templateChecksum(stored));
  const rolled = await waitForChecksum(example.namespace, checksum);
  const replicaSets = await settledReplicaSets(rolled, 2);
  assert.equal(templateChecksum(replicaSets[1]!), checksum, 'the new ReplicaSet carries the new checksum');

  const current = await scenario.read(rolled);
  assert.equal(helmManagedTime(current), helmWrote, 'helm did not write the Deployment in the second sync');
  assert.equal(log.watcherRollouts(example.namespace).length, 1, 'the watcher rolled it, once');
  t.diagnostic(`rollouts: ${replicaSets.length - 1} (watcher: ${log.watcherRollouts(example.namespace).length})`);
});

test('helmfile: a definition file and the gateway image change in one sync; one new ReplicaSet with both', TIMEOUT, async (t) => {
  const example = await gatewayExample('e2e-helmfile-both');
  const stored = await installed(t, example);

  edit(example, 'apis/users.yaml', (text) => `${text}  - {method: DELETE, path: /{id}}\n`);
  edit(example, 'values/gateway.yaml', (text) => text.replace('tag: "1.37.0"', 'tag: "1.36.1"'));
  const log = new WebhookLog();
  const clock = await ChangeClock.start(example.namespace);
  await sync(t, example, 'definition file and image tag changed');
  await waitFor('both writes seen', async () => clock.configMapAt !== undefined && clock.deploymentAt !== undefined, { timeoutMs: 30_000 });
  await clock.stop();
  const gapMs = clock.deploymentAt! - clock.configMapAt!;
  const windowMs = scenario.state.webhook.coalesceWindowMs;
  t.diagnostic(`gap between the two releases' writes (ConfigMap stored -> Deployment stored): ${Math.round(gapMs)} ms (±50 ms polling; watcher coalescing window ${windowMs} ms)`);
  assert.ok(gapMs >= 0, 'needs: [gateway-apis] writes the ConfigMap first');
  assert.ok(gapMs < windowMs, 'the Deployment update arrived within the coalescing window');

  const checksum = await expected(stored);
  const rolled = await waitForChecksum(example.namespace, checksum);
  const replicaSets = await settledReplicaSets(rolled, 2);
  const newest = replicaSets[1]!;
  assert.equal(newest['spec']['template']['spec']['containers'][0]['image'], 'busybox:1.36.1');
  assert.equal(templateChecksum(newest), checksum, 'the one new ReplicaSet has the new image and the new checksum');
  assert.equal(log.watcherRollouts(example.namespace).length, 0, "the Deployment's own UPDATE carried the new checksum; the watcher found it up to date");
  t.diagnostic(`rollouts: ${replicaSets.length - 1} (watcher: 0); Deployment UPDATEs admitted: ${log.updates(example.namespace, 'gateway').length}`);
});

test('helmfile: nothing changes, sync again; no new ReplicaSet and no write to the gateway', TIMEOUT, async (t) => {
  const example = await gatewayExample('e2e-helmfile-noop');
  const stored = await installed(t, example);
  const log = new WebhookLog();
  for (const round of [1, 2]) await sync(t, example, `no change, round ${round}`);
  await sleep(scenario.configChangeSettleMs);
  const current = await scenario.read(stored);
  assert.equal(templateChecksum(current), templateChecksum(stored));
  assert.equal(current['metadata']['generation'], stored['metadata']['generation']);
  assert.equal((await scenario.owned('ReplicaSet', current)).length, 1, 'no new ReplicaSet');
  assert.equal(log.updates(example.namespace, 'gateway').length, 0, 'helm sent no UPDATE for the unchanged Deployment');
  assert.equal(log.watcherRollouts(example.namespace).length, 0);
});

test("a chart with its own checksum/config (the single-chart pattern): the webhook's value wins, repeated syncs roll nothing, a change to that ConfigMap rolls once", TIMEOUT, async (t) => {
  const example = await gatewayExample('e2e-helmfile-own');
  edit(example, 'values/gateway.yaml', (text) => `${text}settings:\n  enabled: true\n`);
  const names = ['gateway-apis', 'gateway-settings'];
  const stored = await installed(t, example, names);
  const chartValue = async (): Promise<string> => {
    const manifest = (await tools.expectHelm(['get', 'manifest', 'gateway', '--namespace', example.namespace])).stdout;
    const deployment = (await tools.decode(manifest)).find((o) => o['kind'] === 'Deployment')!;
    return templateChecksum(deployment)!;
  };
  const own = await chartValue();
  const live = templateChecksum(stored)!;
  assert.match(own, /^[0-9a-f]{64}$/, "the chart renders its own checksum");
  assert.notEqual(live, own, "the webhook's checksum (both ConfigMaps) replaced the chart's (its own ConfigMap's template)");
  assert.match(stored['metadata']['annotations'][SOURCES_ANNOTATION], /configmap\/gateway-apis, configmap\/gateway-settings/);

  // Helm 3's three-way patch includes every field whose live value differs from the chart's manifest, so
  // each upgrade re-sends the chart's own value; the webhook puts its own back in the same admission, the
  // stored object is unchanged and the API server records no write (no new generation, nothing rolls).
  const seen: string[] = [];
  const writes: KubeObject[][] = [];
  for (const round of [1, 2, 3]) {
    const log = new WebhookLog();
    await sync(t, example, `no change, round ${round}`);
    seen.push(templateChecksum(await scenario.read(stored))!);
    writes.push(log.updates(example.namespace, 'gateway'));
  }
  t.diagnostic(`live checksum after each sync: ${seen.map((value) => value.slice(0, 12)).join(', ')}; Deployment UPDATEs helm sent per sync: ${writes.map((w) => w.length).join(', ')} (outcomes: ${writes.flat().map((w) => `${w['outcome']}/checksumChanged=${w['checksumChanged']}`).join(', ')})`);
  assert.deepEqual(seen, [live, live, live], 'no flip-flop: the live value stays the webhook\'s');
  assert.deepEqual(writes.map((w) => w.length), [1, 1, 1], 'helm 3 re-sent its own value once per sync');
  for (const admission of writes.flat()) {
    assert.equal(admission['outcome'], 'patched', "helm's re-sent value was replaced by the webhook's");
    assert.equal(admission['checksumChanged'], false, 'to the value the workload already runs with');
  }
  await sleep(scenario.configChangeSettleMs);
  const unchanged = await scenario.read(stored);
  assert.equal(unchanged['metadata']['generation'], stored['metadata']['generation'], 'no spec change stored');
  assert.equal((await scenario.owned('ReplicaSet', unchanged)).length, 1, 'no new ReplicaSet');

  edit(example, 'values/gateway.yaml', (text) => `${text}  data:\n    LISTEN_PORT: "8080"\n    ACCESS_LOG: "false"\n`);
  const log = new WebhookLog();
  await sync(t, example, "the chart's own ConfigMap changed");
  const checksum = await expected(stored, names);
  assert.notEqual(await chartValue(), own, "the chart's own value changed too");
  const rolled = await waitForChecksum(example.namespace, checksum);
  const replicaSets = await settledReplicaSets(rolled, 2);
  assert.equal(templateChecksum(replicaSets[1]!), checksum, 'the new ReplicaSet carries the webhook\'s checksum');
  assert.equal(log.watcherRollouts(example.namespace).length, 0, "helm's own Deployment patch carried the change; the watcher had nothing to do");
});

test('helm upgrade --dry-run=server does not show a pending config rollout; kubectl diff --server-side does', TIMEOUT, async (t) => {
  const example = await gatewayExample('e2e-helm-dryrun');
  const stored = await installed(t, example);
  const before = templateChecksum(stored)!;
  const chart = path.join(example.dir, 'charts', 'gateway');
  const values = path.join(example.dir, 'values', 'gateway.yaml');
  const windowMs = scenario.state.webhook.coalesceWindowMs;

  // The ConfigMap changes directly (as the gateway-apis release would) and both previews run at once,
  // inside the watcher's coalescing window. If the machine is too slow for that, the watcher may have
  // rolled first: then the attempt is repeated with another change.
  for (let attempt = 1; ; attempt++) {
    const patched = await scenario.client.request('PATCH', resourcePath('ConfigMap', example.namespace, 'gateway-apis'), {
      body: { data: { 'payments.yaml': `name: payments\nbasePath: /payments\nrevision: ${attempt}\n` } },
      contentType: 'application/merge-patch+json',
    });
    assert.equal(patched.status, 200);
    const changedAt = performance.now();
    const pending = await expected(stored);

    const dryRun = await tools.expectHelm(['upgrade', 'gateway', chart, '--namespace', example.namespace, '--values', values, '--dry-run=server']);
    const helmMs = performance.now() - changedAt;
    const rendered = (await tools.decode(dryRun.stdout.slice(dryRun.stdout.indexOf('---')))).find((o) => o['kind'] === 'Deployment');
    assert.ok(rendered, 'helm printed the Deployment it would send');
    // The chart's manifest is what the live object already holds, so client-side `kubectl diff` computes an
    // empty patch and sends nothing: no request, no webhook, no difference. A server-side apply always
    // goes to the API server (dry run), through the webhook.
    const template = await tools.expectHelm(['template', 'gateway', chart, '--namespace', example.namespace, '--values', values]);
    const clientSide = await tools.runKubectl(['diff', '--namespace', example.namespace, '-f', '-'], template.stdout);
    const diff = await tools.runKubectl(['diff', '--server-side', '--namespace', example.namespace, '-f', '-'], template.stdout);
    const diffMs = performance.now() - changedAt;
    const live = templateChecksum(await scenario.read(stored));
    if (live !== before) {
      t.diagnostic(`attempt ${attempt}: the watcher rolled after ${Math.round(diffMs)} ms, before the previews were done; again`);
      assert.ok(attempt < 3, `previews slower than the ${windowMs} ms window three times`);
      await scenario.waitForOwned('ReplicaSet', await scenario.read(stored), attempt + 1);
      continue;
    }
    t.diagnostic(`helm upgrade --dry-run=server done ${Math.round(helmMs)} ms after the ConfigMap change, both kubectl diffs ${Math.round(diffMs)} ms (window ${windowMs} ms)`);
    assert.equal(templateChecksum(rendered), undefined, 'helm prints what it rendered: no webhook ran on it');
    assert.equal(clientSide.code, 0, `client-side kubectl diff sent nothing, so it shows nothing: ${clientSide.stdout}${clientSide.stderr}`);
    assert.equal(diff.code, 1, `kubectl diff --server-side found a difference: ${diff.stderr}`);
    assert.match(diff.stdout, new RegExp(`^-\\s+checksum/config: ${before}$`, 'm'), diff.stdout);
    assert.match(diff.stdout, new RegExp(`^\\+\\s+checksum/config: ${pending}$`, 'm'), 'kubectl diff shows the checksum the webhook would write');
    t.diagnostic(`kubectl diff --server-side:\n${diff.stdout.split('\n').filter((line) => /^[-+]\s/.test(line)).join('\n')}`);

    // And what the preview showed is what then happened: the watcher rolled it, with that checksum.
    const rolled = await waitForChecksum(example.namespace, pending);
    const replicaSets = await settledReplicaSets(rolled, attempt + 1);
    assert.equal(templateChecksum(replicaSets.at(-1)!), pending);
    return;
  }
});
