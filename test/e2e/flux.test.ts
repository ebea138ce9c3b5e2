// Flux users (DESIGN section 6, "GitOps-aware"): the real kustomize-controller applies, server-side, what
// a source publishes, against the run's control plane and webhook (watcher on, its coalescing window as
// shipped). The layout is the common one: one source, a Kustomization `config` (path ./config: a ConfigMap)
// and a Kustomization `app` (path ./app: a Deployment mounting that ConfigMap) that depends on `config`,
// kustomize-controller with its default --requeue-dependency of 30 s. A new revision makes both
// Kustomizations reconcile at once; `app` then finds `config` behind and waits up to 30 s for it.
// "Rolled" is a new ReplicaSet made by the controller manager, counted after scenario.configChangeSettleMs.
//
// The first test runs before the Flux CRDs exist; the others install them and start kustomize-controller
// once for the file (stopped at its end). Timings are printed as test diagnostics (`# ...` lines).

import assert from 'node:assert/strict';
import { after, test, type TestContext } from 'node:test';
import { resourcePath, waitFor, type KubeObject } from '../../src/local/kube.ts';
import { Flux, fluxApiInstalled, fluxLabels, readyCondition, type ArtifactSource } from './support/flux.ts';
import { configMap, expectedChecksum, Scenario, sleep, templateChecksum, workload } from './support/scenario.ts';

const TIMEOUT = { timeout: 240_000 };
const scenario = new Scenario();
let fluxStarted: Promise<Flux> | undefined;
after(async () => {
  if (fluxStarted) await (await fluxStarted.catch(() => undefined))?.stop();
  await scenario.close();
});

/** The file's kustomize-controller, with the Flux CRDs installed on first use. */
function flux(): Promise<Flux> {
  fluxStarted ??= Flux.start(scenario.state);
  return fluxStarted;
}

const CONFIG_MAP = 'app-config';
const APP = 'app';

interface Revision {
  readonly data: Record<string, string>;
  readonly image: string;
  readonly configMapLabels?: Record<string, string>;
  readonly deploymentLabels?: Record<string, string>;
}

function configMapOf(namespace: string, revision: Revision): KubeObject {
  const object = configMap(namespace, CONFIG_MAP, revision.data);
  if (revision.configMapLabels) object['metadata']['labels'] = { ...revision.configMapLabels };
  return object;
}

function deploymentOf(namespace: string, revision: Revision): KubeObject {
  const object = workload('Deployment', namespace, APP, { volumeConfigMap: CONFIG_MAP, image: revision.image });
  if (revision.deploymentLabels) object['metadata']['labels'] = { ...revision.deploymentLabels };
  return object;
}

/** The repository's files at one revision: ./config and ./app, one object per file (JSON is YAML). */
function files(namespace: string, revision: Revision): Record<string, string> {
  return {
    'config/configmap.yaml': `${JSON.stringify(configMapOf(namespace, revision), null, 2)}\n`,
    'app/deployment.yaml': `${JSON.stringify(deploymentOf(namespace, revision), null, 2)}\n`,
  };
}

interface Layout {
  readonly namespace: string;
  readonly source: ArtifactSource;
  /** The source of `app` when it is not the one of `config`. */
  readonly appSource: ArtifactSource;
  deployment: KubeObject;
}

/**
 * Creates the sources and both Kustomizations, publishes the first revision and waits until both applied
 * it. `config` is applied first and `app` once `config` is Ready, so that `app` does not start by waiting
 * out a dependency requeue.
 */
async function deploy(t: TestContext, prefix: string, first: Revision, options: { separateSources: boolean; dependsOn: boolean }): Promise<Layout> {
  const controller = await flux();
  const namespace = await scenario.namespace(prefix, { optIn: true });
  const started = performance.now();
  const source = await controller.createSource(namespace, 'repository');
  const appSource = options.separateSources ? await controller.createSource(namespace, 'app-repository') : source;
  const all = files(namespace, first);
  const revision = await controller.publish(source, options.separateSources ? { 'config/configmap.yaml': all['config/configmap.yaml']! } : all);
  const appRevision = options.separateSources ? await controller.publish(appSource, { 'app/deployment.yaml': all['app/deployment.yaml']! }) : revision;
  await controller.applyKustomization({ namespace, name: 'config', path: './config', source });
  await controller.waitForApplied(namespace, 'config', revision);
  await controller.applyKustomization({ namespace, name: APP, path: './app', source: appSource, ...(options.dependsOn ? { dependsOn: ['config'] } : {}) });
  await controller.waitForApplied(namespace, APP, appRevision);
  const deployment = await scenario.waitForObserved(deploymentOf(namespace, first));
  await scenario.waitForOwned('ReplicaSet', deployment, 1);
  t.diagnostic(`${prefix}: first revision applied by config then app in ${Math.round(performance.now() - started)} ms`);
  return { namespace, source, appSource, deployment };
}

async function readConfigMap(namespace: string): Promise<KubeObject> {
  return scenario.client.get(resourcePath('ConfigMap', namespace, CONFIG_MAP));
}

function image(object: KubeObject): string | undefined {
  return object['spec']?.['template']?.['spec']?.['containers']?.[0]?.['image'];
}

interface Seen {
  readonly what: string;
  readonly atMs: number;
}

interface Followed {
  readonly events: Seen[];
  /** ReplicaSets the Deployment did not own before, in the order they appeared. */
  readonly newReplicaSets: KubeObject[];
  readonly appAppliedMs: number;
}

/**
 * From `startedAt` (just before a publication) on: polls both Kustomizations and the Deployment's
 * ReplicaSets until `app` has applied `revision`, then for the settle time, noting when each thing
 * happened. The timeline is what the scenarios report.
 */
async function follow(layout: Layout, revision: string, startedAt: number, before: readonly KubeObject[]): Promise<Followed> {
  const controller = await flux();
  const known = new Set(before.map((rs) => rs['metadata']['name'] as string));
  const events: Seen[] = [];
  const newReplicaSets: KubeObject[] = [];
  const note = (what: string): void => {
    events.push({ what, atMs: Math.round(performance.now() - startedAt) });
  };
  const applied = new Set<string>();
  let appAppliedMs: number | undefined;
  let settledAt = Number.POSITIVE_INFINITY;
  const deadline = performance.now() + 120_000;
  while (performance.now() < settledAt) {
    if (performance.now() > deadline) throw new Error(`app did not apply ${revision} within 120 s; seen: ${JSON.stringify(events)}`);
    for (const name of ['config', APP]) {
      if (applied.has(name)) continue;
      const ks = await controller.readKustomization(layout.namespace, name);
      if (ks['status']?.['lastAppliedRevision'] === revision && readyCondition(ks)?.['status'] === 'True') {
        applied.add(name);
        note(`Kustomization ${name} applied the revision`);
        if (name === APP) {
          appAppliedMs = performance.now() - startedAt;
          settledAt = performance.now() + scenario.configChangeSettleMs;
        }
      }
    }
    for (const rs of await scenario.owned('ReplicaSet', layout.deployment)) {
      const name = rs['metadata']['name'] as string;
      if (known.has(name)) continue;
      known.add(name);
      newReplicaSets.push(rs);
      note(`ReplicaSet ${name} (image ${image(rs)}, checksum ${templateChecksum(rs)?.slice(0, 12)})`);
    }
    await sleep(200);
  }
  return { events, newReplicaSets, appAppliedMs: Math.round(appAppliedMs ?? 0) };
}

function report(t: TestContext, label: string, followed: Followed): string {
  const timeline = followed.events.map((seen) => `+${seen.atMs} ms ${seen.what}`).join('; ');
  t.diagnostic(`${label}: ${followed.newReplicaSets.length} new ReplicaSet(s); ${timeline}`);
  return timeline;
}

// ---- without the Flux API ---------------------------------------------------------------------------------

test('Flux API absent: a Deployment and ConfigMap carrying Flux labels, applied with kubectl, roll once on a ConfigMap change', TIMEOUT, async (t) => {
  assert.equal(await fluxApiInstalled(scenario.client), false, 'this test runs before the Flux CRDs are installed');
  const namespace = await scenario.namespace('e2e-flux-absent', { optIn: true });
  const first: Revision = { data: { 'app.yaml': 'level: info' }, image: 'registry.invalid/app:1' };
  const cm = configMapOf(namespace, first);
  cm['metadata']['labels'] = fluxLabels(namespace, 'config');
  const deployment = deploymentOf(namespace, { ...first, deploymentLabels: fluxLabels(namespace, APP) });
  await scenario.kubectl.apply([cm, deployment]);
  const stored = await scenario.waitForObserved(deployment);
  await scenario.waitForOwned('ReplicaSet', stored, 1);

  cm['data'] = { 'app.yaml': 'level: debug' };
  const changedAt = performance.now();
  await scenario.kubectl.apply(cm);
  const expected = expectedChecksum(stored, [await readConfigMap(namespace)]).checksum;
  await scenario.waitForOwned('ReplicaSet', stored, 2);
  const rolledMs = Math.round(performance.now() - changedAt);
  t.diagnostic(`Flux API absent: new ReplicaSet ${rolledMs} ms after kubectl apply of the ConfigMap (coalescing window ${scenario.state.webhook.coalesceWindowMs} ms)`);
  assert.ok(rolledMs < scenario.state.webhook.coalesceWindowMs + 5_000, `rolled within a few seconds (${rolledMs} ms)`);

  await sleep(scenario.configChangeSettleMs);
  const replicaSets = await scenario.owned('ReplicaSet', stored);
  assert.equal(replicaSets.length, 2, 'exactly one rollout');
  assert.ok(replicaSets.some((rs) => templateChecksum(rs) === expected), 'the new ReplicaSet carries the new checksum');
});

// ---- one source, `app` depends on `config` ----------------------------------------------------------------

let layout: Layout | undefined;
const REVISION_1: Revision = { data: { 'app.yaml': 'level: info' }, image: 'registry.invalid/app:1' };
const REVISION_2: Revision = { ...REVISION_1, data: { 'app.yaml': 'level: debug' } };
const REVISION_3: Revision = { ...REVISION_2, configMapLabels: { team: 'payments' } };
const REVISION_4: Revision = { ...REVISION_3, data: { 'app.yaml': 'level: warn' }, image: 'registry.invalid/app:2' };

function current(): Layout {
  if (!layout) throw new Error('the first Flux revision was not deployed (see the first reconcile test)');
  return layout;
}

test('first reconcile: Flux applies config, then app; one ReplicaSet, with the checksum, and Flux labels on both objects', TIMEOUT, async (t) => {
  const started = performance.now();
  await flux();
  t.diagnostic(`Flux CRDs installed and kustomize-controller ready in ${Math.round(performance.now() - started)} ms`);
  layout = await deploy(t, 'e2e-flux', REVISION_1, { separateSources: false, dependsOn: true });
  const { namespace, deployment } = layout;

  const cm = await readConfigMap(namespace);
  assert.equal(templateChecksum(deployment), expectedChecksum(deployment, [cm]).checksum, 'the webhook set the checksum on the Flux apply');
  assert.equal(image(deployment), REVISION_1.image);
  for (const [object, kustomization] of [[deployment, APP], [cm, 'config']] as const) {
    const labels = object['metadata']['labels'] ?? {};
    for (const [key, value] of Object.entries(fluxLabels(namespace, kustomization))) {
      assert.equal(labels[key], value, `${object['kind']} carries ${key}=${value}`);
    }
  }
  await sleep(scenario.configChangeSettleMs);
  assert.equal((await scenario.owned('ReplicaSet', deployment)).length, 1, 'exactly one ReplicaSet');
});

test('a revision changing the ConfigMap only: exactly one new ReplicaSet, with the new checksum', TIMEOUT, async (t) => {
  const layout = current();
  const controller = await flux();
  const before = await scenario.owned('ReplicaSet', layout.deployment);
  const startedAt = performance.now();
  const revision = await controller.publish(layout.source, files(layout.namespace, REVISION_2));
  const followed = await follow(layout, revision, startedAt, before);
  report(t, 'ConfigMap-only revision', followed);

  const expected = expectedChecksum(layout.deployment, [await readConfigMap(layout.namespace)]).checksum;
  assert.equal(followed.newReplicaSets.length, 1, 'exactly one new ReplicaSet');
  assert.equal(templateChecksum(followed.newReplicaSets[0]!), expected, 'the new ReplicaSet carries the new checksum');
  assert.equal(templateChecksum(await scenario.read(layout.deployment)), expected);
});

test('a revision changing nothing that matters, then forced reconciles: no new ReplicaSet', TIMEOUT, async (t) => {
  const layout = current();
  const controller = await flux();
  const before = await scenario.owned('ReplicaSet', layout.deployment);
  const checksum = templateChecksum(await scenario.read(layout.deployment));
  const startedAt = performance.now();
  // A label on the ConfigMap: a new revision and a write of the ConfigMap, its data unchanged.
  const revision = await controller.publish(layout.source, files(layout.namespace, REVISION_3));
  const followed = await follow(layout, revision, startedAt, before);
  report(t, 'revision with a ConfigMap label only', followed);
  assert.equal((await readConfigMap(layout.namespace))['metadata']['labels']?.['team'], 'payments', 'Flux applied the label');
  assert.equal(followed.newReplicaSets.length, 0, 'no new ReplicaSet for the revision');

  const forcedAt = performance.now();
  await controller.requestReconcile(layout.namespace, 'config');
  await controller.requestReconcile(layout.namespace, APP);
  t.diagnostic(`forced reconciles of config and app handled in ${Math.round(performance.now() - forcedAt)} ms`);
  await sleep(scenario.configChangeSettleMs);
  const after = await scenario.read(layout.deployment);
  assert.equal((await scenario.owned('ReplicaSet', after)).length, before.length, 'no new ReplicaSet after the forced reconciles');
  assert.equal(templateChecksum(after), checksum, 'the checksum is unchanged');
});

test('a revision changing the ConfigMap and the image: exactly one new ReplicaSet, with the new image and the new checksum', TIMEOUT, async (t) => {
  const layout = current();
  const controller = await flux();
  const before = await scenario.owned('ReplicaSet', layout.deployment);
  const startedAt = performance.now();
  const revision = await controller.publish(layout.source, files(layout.namespace, REVISION_4));
  const followed = await follow(layout, revision, startedAt, before);
  const timeline = report(t, 'ConfigMap and image revision', followed);

  const stored = await scenario.read(layout.deployment);
  const expected = expectedChecksum(stored, [await readConfigMap(layout.namespace)]).checksum;
  assert.equal(image(stored), REVISION_4.image, 'Flux applied the new image');
  assert.equal(templateChecksum(stored), expected, 'the Deployment carries the new checksum');
  const seen = followed.newReplicaSets.map((rs) => `${image(rs)} ${templateChecksum(rs)?.slice(0, 12)}`).join(', ');
  assert.equal(followed.newReplicaSets.length, 1, `exactly one new ReplicaSet (app applied at +${followed.appAppliedMs} ms; new ReplicaSets: ${seen}; ${timeline})`);
  const [rolled] = followed.newReplicaSets;
  assert.equal(image(rolled!), REVISION_4.image, 'the one new ReplicaSet has the new image');
  assert.equal(templateChecksum(rolled!), expected, 'the one new ReplicaSet has the new checksum');
  // The watcher held its rollout for app's apply, and says so on the Deployment.
  const said = await waitFor('the ConfigChanged Event naming the revision', async () => {
    const events = await scenario.client.list(`/api/v1/namespaces/${layout.namespace}/events?fieldSelector=reason%3DConfigChanged`);
    return events.find((event) => String(event['message']).includes(revision));
  }, { timeoutMs: 15_000, intervalMs: 250 });
  t.diagnostic(`Event: ${String(said['message'])}`);
  assert.match(String(said['message']), new RegExp(`^ConfigMap ${CONFIG_MAP} changed; rolled out by the apply of Kustomization ${layout.namespace}/${APP} \\(${revision.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\) after waiting \\d+ s for it`));
});

// ---- a watcher rollout, then a Flux apply of the workload --------------------------------------------------

test('after a watcher rollout, Flux server-side applies the Deployment without a conflict and without a rollout', TIMEOUT, async (t) => {
  const controller = await flux();
  // `app` has a source of its own: a new revision of `config` leaves it with nothing to apply, so the
  // watcher rolls the Deployment. No dependsOn here: kustomize-controller enqueues a Kustomization's
  // dependencies with it when its source changes, and `app` finding `config` in the middle of that
  // reconcile (not Ready) would wait out the 30 s dependency requeue before applying.
  const separate = await deploy(t, 'e2e-flux-ssa', REVISION_1, { separateSources: true, dependsOn: false });
  const { namespace } = separate;
  const configRevision = await controller.publish(separate.source, { 'config/configmap.yaml': files(namespace, REVISION_2)['config/configmap.yaml']! });
  const changedAt = performance.now();
  await controller.waitForApplied(namespace, 'config', configRevision);
  const expected = expectedChecksum(separate.deployment, [await readConfigMap(namespace)]).checksum;
  await waitFor('the watcher to roll app', async () => templateChecksum(await scenario.read(separate.deployment)) === expected, { intervalMs: 100 });
  await scenario.waitForOwned('ReplicaSet', separate.deployment, 2);
  t.diagnostic(`watcher rollout ${Math.round(performance.now() - changedAt)} ms after the config revision was published`);

  // The next revision of app changes the Deployment's metadata only.
  const labelled: Revision = { ...REVISION_1, deploymentLabels: { team: 'payments' } };
  const appRevision = await controller.publish(separate.appSource, { 'app/deployment.yaml': files(namespace, labelled)['app/deployment.yaml']! });
  const applied = await controller.waitForApplied(namespace, APP, appRevision);
  const conditions = (applied['status']?.['conditions'] ?? []) as KubeObject[];
  assert.deepEqual(conditions.filter((condition) => /conflict/i.test(String(condition['message']))), [], 'no condition mentions a conflict');
  assert.equal(readyCondition(applied)?.['status'], 'True');
  // Failed reconciles log at error level; a server-side apply conflict reads "Apply failed with N
  // conflict(s): conflict with <manager> ...".
  const logged = controller.logFor(namespace, APP).filter((entry) => entry['level'] === 'error' || /apply failed|conflict with/i.test(JSON.stringify(entry)));
  assert.deepEqual(logged, [], 'kustomize-controller logged no failure and no conflict for app');
  t.diagnostic(`app: ${String(readyCondition(applied)?.['message'])}`);

  await sleep(scenario.configChangeSettleMs);
  const stored = await scenario.read(separate.deployment);
  assert.equal(stored['metadata']['labels']?.['team'], 'payments', 'Flux applied the new label');
  assert.equal(templateChecksum(stored), expected, 'the checksum the watcher brought is kept');
  assert.equal((await scenario.owned('ReplicaSet', stored)).length, 2, 'no rollout for the metadata-only apply');
});
