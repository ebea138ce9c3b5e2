// Helm and helmfile users (README "Install with Helm", test/examples/gateway): the real helm and helmfile
// binaries against the run's control plane and webhook (watcher on, its coalescing window as shipped).
// Every scenario runs twice: under Helm 3 (three-way merge patches, nothing sent for an unchanged object)
// and under Helm 4 (server-side apply of every object of the release), helmfile driving each.
// "Rolled" is a new ReplicaSet made by the controller manager; "no further rollout" is checked after
// scenario.configChangeSettleMs, past the watcher's coalescing window.
//
// The measured figures (sync durations, the gap between the two releases of one sync, rollouts) are
// printed as test diagnostics (`# ...` lines of the spec reporter).

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { kubeconfigYaml } from '../../src/local/control-plane.ts';
import { spawnLogged, stopGroup, tail } from '../../src/local/process.ts';
import { copyGatewayExample, HelmTools, CHART_DIR, HELM_MAJORS } from './support/helm.ts';
import { GiveUp, resourcePath, uniqueName, waitFor, type KubeObject } from '../../src/local/kube.ts';
import { assertOwnsOnlyTheRequest, checksumOwners, expectedChecksum, REQUESTED_ANNOTATION, Scenario, sleep, SOURCES_ANNOTATION, templateChecksum } from './support/scenario.ts';
import { logEntries } from '../../src/local/webhook.ts';
import { httpsCall } from '../support/https.ts';

const TIMEOUT = { timeout: 300_000 };
const scenario = new Scenario();
const workDir = path.join(scenario.state.runDir, uniqueName('helm'));
mkdirSync(workDir, { recursive: true });
// One set of tools per Helm major; every scenario below runs under each, helmfile driving that helm.
const TOOLS = new Map(HELM_MAJORS.map((major) => [major, new HelmTools({ binDir: scenario.state.binDir, workDir: path.join(workDir, `helm${major}`), kubeconfig: scenario.state.kubeconfig, helmMajor: major })]));
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

for (const [major, tools] of TOOLS) for (const { mode, expressions } of MODES) {
  test(`Helm ${major}: helm install of the chart in ${mode} mode: accepted, and its MutatingWebhookConfiguration is DESIGN section 7`, TIMEOUT, async (t) => {
    // Names that cannot collide with the run's own registration (config-checksum-webhook): the release
    // namespace's name as fullnameOverride, so the cluster-scoped objects are unique to this test too.
    const namespace = await scenario.namespace(`e2e-helm${major}-${mode === 'cluster-wide' ? 'cw' : 'optin'}`, { optIn: false });
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

async function readyz(port: number, ca: string): Promise<number> {
  return (await httpsCall({ port, path: '/readyz', ca, timeoutMs: 5_000 })).status;
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
async function sync(t: TestContext, tools: HelmTools, example: Example, label: string): Promise<number> {
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
async function installed(t: TestContext, tools: HelmTools, example: Example, configMapNames: readonly string[] = ['gateway-apis']): Promise<KubeObject> {
  await sync(t, tools, example, 'install');
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

/** When helm last wrote the Deployment: its managedFields entry (operation Update for Helm 3, Apply for Helm 4). */
function helmManagedTime(deployment: KubeObject): string | undefined {
  return (deployment['metadata']['managedFields'] as KubeObject[] | undefined)?.find((entry) => entry['manager'] === 'helm')?.['time'];
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

for (const [major, tools] of TOOLS) {
  test(`Helm ${major}: helmfile: only an API definition file changes; the gateway rolls exactly once (Helm 3 sends nothing for the unchanged release, so the watcher rolls it; Helm 4 re-applies it, so the webhook does)`, TIMEOUT, async (t) => {
    const example = await gatewayExample(`e2e-helm${major}-apis`);
    const stored = await installed(t, tools, example);
    assert.equal(stored['metadata']['annotations'][SOURCES_ANNOTATION], 'configmap/gateway-apis');
    const helmWrote = helmManagedTime(stored);
    assert.ok(helmWrote, 'helm is a field manager of the Deployment');

    // The story's change: a new route in one definition file.
    edit(example, 'apis/orders.yaml', (text) => `${text}  - {method: POST, path: /}\n`);
    const log = new WebhookLog();
    await sync(t, tools, example, 'a definition file changed');
    const checksum = await expected(stored);
    assert.notEqual(checksum, templateChecksum(stored));
    const rolled = await waitForChecksum(example.namespace, checksum);
    const replicaSets = await settledReplicaSets(rolled, 2);
    assert.equal(templateChecksum(replicaSets[1]!), checksum, 'the new ReplicaSet carries the new checksum');

    const current = await scenario.read(rolled);
    const helmRolled = log.updates(example.namespace, 'gateway').filter((line) => line['checksumChanged'] === true && line['rolloutRequest'] !== true);
    if (major === 3) {
      assert.equal(helmManagedTime(current), helmWrote, 'helm did not write the Deployment in the second sync');
      assert.equal(log.watcherRollouts(example.namespace).length, 1, 'the watcher rolled it, once');
    } else {
      // Within the watcher's coalescing window after the ConfigMap, Helm 4 applied the unchanged Deployment
      // again (server-side apply sends every object); the webhook hashed the new config in that request.
      assert.equal(helmRolled.length, 1, "the webhook rolled it in helm's own apply");
      assert.equal(log.watcherRollouts(example.namespace).length, 0, 'and the watcher found it up to date');
    }
    t.diagnostic(`rollouts: ${replicaSets.length - 1} (watcher: ${log.watcherRollouts(example.namespace).length}, in helm's own write: ${helmRolled.length})`);
  });

  test(`Helm ${major}: helmfile: a definition file and the gateway image change in one sync; one new ReplicaSet with both`, TIMEOUT, async (t) => {
    const example = await gatewayExample(`e2e-helm${major}-both`);
    const stored = await installed(t, tools, example);

    edit(example, 'apis/users.yaml', (text) => `${text}  - {method: DELETE, path: /{id}}\n`);
    edit(example, 'values/gateway.yaml', (text) => text.replace('tag: "1.37.0"', 'tag: "1.36.1"'));
    const log = new WebhookLog();
    const clock = await ChangeClock.start(example.namespace);
    await sync(t, tools, example, 'definition file and image tag changed');
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

  test(`Helm ${major}: helmfile: nothing changes, sync again; no new ReplicaSet and no change stored`, TIMEOUT, async (t) => {
    const example = await gatewayExample(`e2e-helm${major}-noop`);
    const stored = await installed(t, tools, example);
    const log = new WebhookLog();
    for (const round of [1, 2]) await sync(t, tools, example, `no change, round ${round}`);
    await sleep(scenario.configChangeSettleMs);
    const current = await scenario.read(stored);
    assert.equal(templateChecksum(current), templateChecksum(stored));
    assert.equal(current['metadata']['generation'], stored['metadata']['generation']);
    assert.equal((await scenario.owned('ReplicaSet', current)).length, 1, 'no new ReplicaSet');
    const updates = log.updates(example.namespace, 'gateway');
    if (major === 3) {
      assert.equal(updates.length, 0, 'helm 3 sent no UPDATE for the unchanged Deployment');
    } else {
      // Helm 4 applies every object of the release each time; the webhook finds the checksum current.
      assert.equal(updates.length, 2, 'helm 4 applied the unchanged Deployment once per sync');
      for (const update of updates) assert.equal(update['outcome'], 'unchanged', 'the webhook changed nothing in it');
    }
    t.diagnostic(`Deployment UPDATEs over two no-op syncs: ${updates.length}`);
    assert.equal(log.watcherRollouts(example.namespace).length, 0);
  });

  test(`Helm ${major}: a chart with its own checksum/config (the single-chart pattern): the webhook's value wins, repeated syncs roll nothing, a change to that ConfigMap rolls once`, TIMEOUT, async (t) => {
    const example = await gatewayExample(`e2e-helm${major}-own`);
    edit(example, 'values/gateway.yaml', (text) => `${text}settings:\n  enabled: true\n`);
    const names = ['gateway-apis', 'gateway-settings'];
    const stored = await installed(t, tools, example, names);
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

    // Helm 3's three-way patch includes every field whose live value differs from the chart's manifest, and
    // Helm 4 applies the whole manifest, so each upgrade re-sends the chart's own value; the webhook puts its
    // own back in the same admission, the stored object is unchanged and the API server records no write
    // (no new generation, nothing rolls).
    const seen: string[] = [];
    const writes: KubeObject[][] = [];
    for (const round of [1, 2, 3]) {
      const log = new WebhookLog();
      await sync(t, tools, example, `no change, round ${round}`);
      seen.push(templateChecksum(await scenario.read(stored))!);
      writes.push(log.updates(example.namespace, 'gateway'));
    }
    t.diagnostic(`live checksum after each sync: ${seen.map((value) => value.slice(0, 12)).join(', ')}; Deployment UPDATEs helm sent per sync: ${writes.map((w) => w.length).join(', ')} (outcomes: ${writes.flat().map((w) => `${w['outcome']}/checksumChanged=${w['checksumChanged']}`).join(', ')})`);
    assert.deepEqual(seen, [live, live, live], 'no flip-flop: the live value stays the webhook\'s');
    assert.deepEqual(writes.map((w) => w.length), [1, 1, 1], `helm ${major} re-sent its own value once per sync`);
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
    await sync(t, tools, example, "the chart's own ConfigMap changed");
    const checksum = await expected(stored, names);
    assert.notEqual(await chartValue(), own, "the chart's own value changed too");
    const rolled = await waitForChecksum(example.namespace, checksum);
    const replicaSets = await settledReplicaSets(rolled, 2);
    assert.equal(templateChecksum(replicaSets[1]!), checksum, 'the new ReplicaSet carries the webhook\'s checksum');
    assert.equal(log.watcherRollouts(example.namespace).length, 0, "helm's own Deployment patch carried the change; the watcher had nothing to do");
  });

  test(`Helm ${major}: helm upgrade --dry-run=server does not show a pending config rollout; kubectl diff --server-side does`, TIMEOUT, (t) =>
    // The previews (helm and two kubectl diffs, several seconds here) must run before the watcher acts, which
    // the shipped 1 s quiet period does not leave time for: this test's webhook waits 10 s.
    withWebhookFlags(['--coalesce-window-ms', '10000'], () => previewsShowPendingRollout(t, tools, major)));
}

async function previewsShowPendingRollout(t: TestContext, tools: HelmTools, major: number): Promise<void> {
  const example = await gatewayExample(`e2e-helm${major}-dryrun`);
  const stored = await installed(t, tools, example);
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
}

/** Runs `body` with the run's webhook restarted with `flags` added, then restarts it with the run's own flags. */
async function withWebhookFlags<T>(flags: readonly string[], body: () => Promise<T>): Promise<T> {
  const runFlags = scenario.state.webhook.extraArgs;
  await scenario.stopWebhook();
  await scenario.restartWebhook([...runFlags, ...flags]);
  try {
    return await body();
  } finally {
    await scenario.stopWebhook();
    await scenario.restartWebhook(runFlags);
  }
}

// ---- Helm 4 (server-side apply) and the single writer of the pod template ------------------------------

/** The gateway example with the chart's own checksum/config on (settings.enabled), installed by helmfile and Helm 4. */
async function helm4ChartWithOwnChecksum(t: TestContext, prefix: string): Promise<{ tools: HelmTools; example: Example; stored: KubeObject; upgrade: string[] }> {
  const tools = TOOLS.get(4)!;
  const example = await gatewayExample(prefix);
  edit(example, 'values/gateway.yaml', (text) => `${text}settings:\n  enabled: true\n`);
  const stored = await installed(t, tools, example, OWN_CHECKSUM_CONFIGMAPS);
  assert.deepEqual(checksumOwners(stored), ['helm (Apply)'], 'helm applied its own checksum/config and owns it');
  const upgrade = ['upgrade', 'gateway', path.join(example.dir, 'charts', 'gateway'), '--namespace', example.namespace, '--values', path.join(example.dir, 'values', 'gateway.yaml')];
  return { tools, example, stored, upgrade };
}

const OWN_CHECKSUM_CONFIGMAPS = ['gateway-apis', 'gateway-settings'];

/** The Deployment's rollout revision (deployment.kubernetes.io/revision): one more per rollout, reused ReplicaSets included. */
async function revision(deployment: KubeObject): Promise<string | undefined> {
  const observed = await scenario.waitForObserved(deployment);
  return observed['metadata']['annotations']?.['deployment.kubernetes.io/revision'];
}

test('Helm 4, a chart with its own checksum/config: the config release alone changes and rolls once (the watcher asks, the webhook writes); helm upgrade, helm rollback and helmfile sync then succeed without --force-conflicts and roll nothing', TIMEOUT, async (t) => {
  const { tools, example, stored, upgrade } = await helm4ChartWithOwnChecksum(t, 'e2e-helm4-single-writer');
  const { namespace } = example;
  const ordersFile = path.join(example.dir, 'apis', 'orders.yaml');
  const originalOrders = readFileSync(ordersFile, 'utf8');

  // 1. Only the config release: `helmfile -l name=gateway-apis sync`, as in the issue that found the conflict.
  edit(example, 'apis/orders.yaml', (text) => `${text}  - {method: POST, path: /}\n`);
  let log = new WebhookLog();
  await tools.expectHelmfile(example.helmfile, ['--namespace', namespace, '--skip-deps', '--selector', 'name=gateway-apis', 'sync']);
  let checksum = await expected(stored, OWN_CHECKSUM_CONFIGMAPS);
  let rolled = await waitForChecksum(namespace, checksum);
  await settledReplicaSets(rolled, 2);
  assert.equal(log.watcherRollouts(namespace).length, 1, 'the watcher asked once');
  const request = log.updates(namespace, 'gateway').filter((line) => line['rolloutRequest'] === true);
  assert.equal(request.length, 1, "the webhook admitted the watcher's request");
  assert.equal(request[0]!['checksumChanged'], true, 'and set the new checksum in it');
  assert.match(String(request[0]!['user']), /^system:serviceaccount:config-checksum:/, "the request was the webhook's own ServiceAccount");
  rolled = await scenario.read(rolled);
  assert.equal(rolled['metadata']['annotations'][REQUESTED_ANNOTATION], checksum, 'the request annotation names the checksum asked for');
  assertOwnsOnlyTheRequest(rolled);
  assert.deepEqual(checksumOwners(rolled), ['helm (Apply)'], 'helm still owns checksum/config after the rollout');

  // 2. The gateway release again: no conflict, nothing rolls.
  const upgraded = await tools.runHelm(upgrade);
  assert.equal(upgraded.code, 0, `helm upgrade gateway succeeded without --force-conflicts:\n${upgraded.stderr}`);
  await settledReplicaSets(rolled, 2);

  // 3. The config release rolled back: its ConfigMap changes back, the gateway rolls once more, back to
  // the template of its first revision (the controller scales that ReplicaSet up again: revision 3).
  log = new WebhookLog();
  await tools.expectHelm(['rollback', 'gateway-apis', '--namespace', namespace]);
  checksum = await expected(stored, OWN_CHECKSUM_CONFIGMAPS);
  assert.equal(checksum, templateChecksum(stored), 'the config is the installed one again');
  rolled = await waitForChecksum(namespace, checksum);
  await settledReplicaSets(rolled, 2);
  assert.equal(await revision(rolled), '3', 'rolled back to the first template, as revision 3');
  assert.equal(log.watcherRollouts(namespace).length, 1, 'the watcher asked once for the rollback');

  // 4. The gateway release rolled back (to the same manifest), then 5. a full helmfile sync with the files
  // as the rolled-back release has them: both succeed, nothing rolls.
  const rolledBack = await tools.runHelm(['rollback', 'gateway', '--namespace', namespace]);
  assert.equal(rolledBack.code, 0, `helm rollback gateway succeeded without --force-conflicts:\n${rolledBack.stderr}`);
  writeFileSync(ordersFile, originalOrders);
  const synced = await tools.runHelmfile(example.helmfile, ['--namespace', namespace, '--skip-deps', 'sync']);
  assert.equal(synced.code, 0, `helmfile sync succeeded:\n${synced.stderr}`);
  const final = (await settledReplicaSets(rolled, 2)).at(-1)!;
  assert.equal(templateChecksum(final), checksum);
  assert.equal(await revision(rolled), '3', 'neither the gateway rollback nor the sync rolled');
  const current = await scenario.read(rolled);
  assertOwnsOnlyTheRequest(current);
  assert.deepEqual(checksumOwners(current), ['helm (Apply)']);
  t.diagnostic('rollouts (Deployment revision): install 1, config release changed 2, helm upgrade 2, config rollback 3, gateway rollback and helmfile sync 3');
});

test('Helm 4, upgrading from a version whose watcher patched the pod template: the first upgrade conflicts once, helmfile sync --args=--force-conflicts gives checksum/config back to helm, later upgrades need nothing', TIMEOUT, async (t) => {
  const { tools, example, stored, upgrade } = await helm4ChartWithOwnChecksum(t, 'e2e-helm4-migrate');
  const { namespace } = example;

  // What the previous version's watcher did on a ConfigMap change: an ordinary PATCH of the pod template,
  // with no field manager and no User-Agent, so the API server moved checksum/config away from helm.
  const changed = await scenario.client.request('PATCH', resourcePath('ConfigMap', namespace, 'gateway-apis'), {
    body: { data: { 'payments.yaml': 'name: payments\nbasePath: /payments\n' } },
    contentType: 'application/merge-patch+json',
  });
  assert.equal(changed.status, 200);
  const checksum = await expected(stored, OWN_CHECKSUM_CONFIGMAPS);
  const patched = await scenario.client.request('PATCH', resourcePath('Deployment', namespace, 'gateway'), {
    body: [{ op: 'add', path: '/spec/template/metadata/annotations/checksum~1config', value: checksum }],
    contentType: 'application/json-patch+json',
  });
  assert.equal(patched.status, 200);
  const before = (await settledReplicaSets(await scenario.read(stored), 2)).at(-1)!;
  assert.equal(templateChecksum(before), checksum);
  const owners = checksumOwners(await scenario.read(stored));
  assert.ok(!owners.includes('helm (Apply)'), `the old-style PATCH took checksum/config from helm (owners: ${owners.join(', ')})`);

  const conflicted = await tools.runHelm(upgrade);
  assert.notEqual(conflicted.code, 0, 'the first Helm 4 upgrade after such a PATCH conflicts');
  assert.match(conflicted.stderr, /conflict/i);
  assert.match(conflicted.stderr, /checksum\/config/);
  t.diagnostic(`first upgrade: ${conflicted.stderr.trim().split('\n').at(-1)}`);

  // The README's one-time step, as a helmfile user runs it (helm upgrade --force-conflicts is the same flag).
  await tools.expectHelmfile(example.helmfile, ['--namespace', namespace, '--skip-deps', '--selector', 'name=gateway', 'sync', '--args=--force-conflicts']);
  const taken = await scenario.read(stored);
  assert.deepEqual(checksumOwners(taken), ['helm (Apply)'], '--force-conflicts gave checksum/config back to helm');
  assert.equal(templateChecksum(taken), checksum, "the webhook kept the checksum of the stored config in helm's apply");

  const again = await tools.runHelm(upgrade);
  assert.equal(again.code, 0, `a later upgrade needs no flag:\n${again.stderr}`);
  await settledReplicaSets(taken, 2);
});
