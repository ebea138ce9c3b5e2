// Monitoring as kube-prometheus-stack users run it, on the real control plane with a real Prometheus
// (test/monitoring/build-prometheus.sh) on 127.0.0.1:
//   1. The ServiceMonitor, PodMonitor, PrometheusRule and dashboard ConfigMap that the chart and the kustomize
//      components render are accepted by the API server against the Prometheus Operator's own CRDs
//      (server-side dry run, strict field validation).
//   2. Prometheus scrapes three webhooks with the TLS settings the ServiceMonitor renders, which a Prometheus
//      Operator would give it: the run's webhook, whose certificate files are laid out as cert-manager's
//      Secret is (tls.crt, tls.key, ca.crt), with the monitor of certificates.mode=cert-manager; one that
//      requires client certificates, on the health port its monitor names (no client certificate asked);
//      and one with self-managed certificates under a release of the chart (its RBAC, token and names), with
//      the monitor of the default mode, whose CA is read from the key of the Secret that monitor names. That
//      one reaches the API server through a fault proxy that refuses (403) its ConfigMap reads, its
//      namespace list and its Lease, so alerts of the rendered PrometheusRule fire for real: watcher not
//      synced, no leader, admissions failing open, ConfigMap reads failing; and, with their thresholds
//      raised above the certificates' lifetimes, the certificate alerts, from the expiry the webhooks export.
//      The healthy run webhook fires none of the first four. Every query of the Grafana dashboard then
//      evaluates and returns series.

import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { freePort, kubeconfigYaml } from '../../src/local/control-plane.ts';
import { uniqueName, waitFor, type KubeObject } from '../../src/local/kube.ts';
import { createCertificateAuthority, DAY_MS, issueCertificate } from '../../src/tls/certs.ts';
import { httpsCall } from '../support/https.ts';
import { admissionRequest, reviewBody } from '../support/fakes.ts';
import { FaultProxy, readTokenKubeconfig } from './support/fault-proxy.ts';
import { HelmTools } from './support/helm.ts';
import { spawnWebhook, waitListening, type ExtraProcess } from './support/install.ts';
import { DASHBOARD_FILE, prometheusBinaries, PrometheusServer, rulesFile, scrapeConfig, type Alert } from './support/prometheus.ts';
import { configMap, Scenario, sleep, templateChecksum, workload } from './support/scenario.ts';

const TIMEOUT = { timeout: 240_000 };
const MONITORING_KINDS = new Set(['ServiceMonitor', 'PodMonitor', 'PrometheusRule']);
// Requests of the faulty webhook the proxy refuses: ConfigMap reads and lists, the namespace list of its
// scope, its Lease. Its certificate Secret and its webhook configuration pass, so it starts and serves.
const REFUSED_PATHS = /^\/api\/v1\/(namespaces(\?|$)|configmaps|namespaces\/[^/]+\/configmaps)|^\/apis\/coordination\.k8s\.io\//;
// Short enough to fire within the test; the thresholds of the certificate alerts above any certificate here
// (the run's: 2 days; self-managed: 30 days, its CA a year).
const FAST_ALERTS = {
  watcherNotSynced: { for: '5s' },
  noLeader: { for: '5s' },
  apiServerFailingOpen: { for: '5s' },
  admissionsFailingOpen: { for: '5s' },
  configMapReadsFailing: { for: '5s' },
  rolloutsPending: { for: '5s' },
  servingCertificateExpiring: { for: '5s', days: 400 },
  caCertificateExpiring: { for: '5s', days: 400 },
  rolloutRateLimited: { for: '5s' },
};

const scenario = new Scenario();
const state = scenario.state;
const registry = { file: state.registryFile };
const workDir = path.join(state.runDir, uniqueName('monitoring'));
mkdirSync(workDir, { recursive: true });
let tools: HelmTools;
let promBin: string;
const cleanups: Array<() => Promise<unknown>> = [];

before(() => {
  tools = new HelmTools({ binDir: state.binDir });
  promBin = prometheusBinaries((line) => process.stderr.write(`${line}\n`));
});

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => process.stderr.write(`cleanup: ${(error as Error).message}\n`));
  tools?.close();
  await scenario.close();
});

function only(objects: readonly KubeObject[], kind: string): KubeObject {
  const found = objects.filter((object) => object['kind'] === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0]!;
}

test('the monitors, the rule and the dashboard ConfigMap of the chart and the kustomize components are valid for the Prometheus Operator\'s CRDs', TIMEOUT, async (t) => {
  const crdDir = path.join(promBin, 'monitoring-crds');
  const crdFiles = readdirSync(crdDir).map((file) => path.join(crdDir, file));
  await scenario.kubectl.expect(['apply', '--server-side', ...crdFiles.flatMap((file) => ['-f', file])]);
  const crdNames = ['servicemonitors', 'podmonitors', 'prometheusrules'].map((plural) => `crd/${plural}.monitoring.coreos.com`);
  try {
    await scenario.kubectl.expect(['wait', '--for', 'condition=established', '--timeout=60s', ...crdNames]);
    const monitoring = { serviceMonitor: { enabled: true, labels: { release: 'kube-prometheus-stack' }, interval: '30s', scrapeTimeout: '10s', relabelings: [{ action: 'replace', targetLabel: 'cluster', replacement: 'e2e' }], metricRelabelings: [{ action: 'drop', sourceLabels: ['__name__'], regex: 'nodejs_.*' }] }, prometheusRule: { enabled: true, alertLabels: { team: 'platform' } }, grafanaDashboard: { enabled: true } };
    const renderings: Array<[string, Promise<KubeObject[]>]> = [
      ['chart, self-managed, every monitor value', tools.renderChart({ metrics: monitoring })],
      ['chart, cert-manager, client certificates, PodMonitor', tools.renderChart({ certificates: { mode: 'cert-manager' }, clientCertificates: { enabled: true }, metrics: { podMonitor: { enabled: true } } })],
      ['kustomize overlays/monitoring', tools.renderOverlay('monitoring')],
      ['kustomize cert-manager + pod-monitor + monitoring-cert-manager', tools.renderComposition(['overlays/cert-manager'], ['components/pod-monitor', 'components/monitoring-cert-manager'])],
    ];
    for (const [what, rendering] of renderings) {
      const objects = (await rendering).filter((object) => MONITORING_KINDS.has(String(object['kind'])) || String(object['metadata']['name']).endsWith('-dashboard'));
      assert.ok(objects.length >= 1, `${what}: something to check`);
      const answer = await scenario.kubectl.run(['apply', '--server-side', '--dry-run=server', '--field-manager=e2e-monitoring', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
      assert.equal(answer.code, 0, `${what}: the API server refused: ${answer.stderr}`);
      t.diagnostic(`${what}: ${answer.stdout.trim().split('\n').join('; ')}`);
    }
  } finally {
    await scenario.kubectl.run(['delete', '--ignore-not-found', '--wait=false', ...crdNames]);
  }
});

/** The second webhook: a release of the chart in its own namespace, self-managed certificates, its API calls through the proxy. */
async function faultyWebhook(namespace: string, fullname: string, rendered: KubeObject[]): Promise<{ process: ExtraProcess; port: number; proxy: FaultProxy }> {
  const configuration = only(rendered, 'MutatingWebhookConfiguration');
  // Never called by the API server: no namespace has this label. The watcher reads its scope from it.
  configuration['webhooks'][0]['namespaceSelector'] = { matchLabels: { 'config-checksum.io/monitoring-e2e': 'never' } };
  const identity = rendered.filter((object) => ['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding'].includes(String(object['kind'])));
  await scenario.kubectl.apply([...identity, configuration]);
  cleanups.push(() => scenario.kubectl.run(['delete', '--ignore-not-found', '--wait=false', `clusterrole/${fullname}`, `clusterrolebinding/${fullname}`, `mutatingwebhookconfiguration/${fullname}`]));
  const token = (await scenario.kubectl.expect(['create', 'token', fullname, '-n', namespace, '--duration=1h'])).stdout.trim();

  const upstream = readTokenKubeconfig(readFileSync(state.webhook.files.kubeconfig, 'utf8'));
  const proxyCa = createCertificateAuthority('monitoring fault proxy', DAY_MS);
  const serving = issueCertificate(proxyCa, { commonName: 'fault-proxy', ipAddresses: ['127.0.0.1'], usage: 'server', validityMs: DAY_MS });
  const proxy = await FaultProxy.start({ upstream: upstream.server, upstreamCa: upstream.caPem, serving });
  cleanups.push(() => proxy.stop());
  await proxy.setMode({ kind: 'status', status: 403, paths: REFUSED_PATHS });
  const kubeconfig = path.join(workDir, 'kubeconfig-faulty');
  writeFileSync(kubeconfig, kubeconfigYaml(proxy.url, proxyCa.certificate, `system:serviceaccount:${namespace}:${fullname}`, { token }), { mode: 0o600 });

  // The rendered Deployment's flags (mode and the names of this release), then the ones of a loopback run.
  const renderedArgs = only(rendered, 'Deployment')['spec']['template']['spec']['containers'][0]['args'] as string[];
  const process = spawnWebhook({
    state,
    name: 'webhook-monitoring-faulty',
    args: [
      ...renderedArgs,
      '--host', '127.0.0.1', '--port', '0', '--drain-seconds', '0', '--log-level', 'info',
      '--kubeconfig', kubeconfig,
      '--namespace', namespace,
      '--identity', 'monitoring-faulty',
      '--cert-extra-sans', '127.0.0.1',
      '--configmap-read-timeout-ms', '500',
    ],
  });
  cleanups.push(() => process.stop());
  return { process, port: await waitListening(process), proxy };
}

/**
 * The run's webhook requiring client certificates (--client-ca-file), as the client-certificates option
 * runs it: /metrics is then served without one on the health port only. No watcher: the run's webhook leads.
 */
async function clientCertificateWebhook(): Promise<{ admissionPort: number; healthPort: number }> {
  const clientCa = path.join(workDir, 'client-ca.crt');
  writeFileSync(clientCa, createCertificateAuthority('monitoring client CA', DAY_MS).certificate);
  const healthPort = await freePort();
  const { files } = state.webhook;
  const process = spawnWebhook({
    state,
    name: 'webhook-monitoring-client-certificates',
    args: [
      '--host', '127.0.0.1', '--port', '0', '--drain-seconds', '0', '--watch', 'false',
      '--tls-mode', 'files', '--tls-cert-file', files.certFile, '--tls-key-file', files.keyFile,
      '--client-ca-file', clientCa, '--health-port', String(healthPort),
      '--kubeconfig', files.kubeconfig,
    ],
  });
  cleanups.push(() => process.stop());
  return { admissionPort: await waitListening(process), healthPort };
}

/** The PEM of a Secret key, as the Prometheus Operator copies the one a monitor's tlsConfig.ca names into Prometheus. */
async function secretKey(namespace: string, selector: KubeObject): Promise<string> {
  const secret = await scenario.client.get(`/api/v1/namespaces/${namespace}/secrets/${String(selector['name'])}`);
  const value = secret['data']?.[String(selector['key'])];
  assert.ok(typeof value === 'string' && value.length > 0, `Secret ${String(selector['name'])} has key ${String(selector['key'])}`);
  return Buffer.from(value, 'base64').toString('utf8');
}

function firing(alerts: readonly Alert[], name: string, namespace: string): Alert | undefined {
  return alerts.find((alert) => alert.state === 'firing' && alert.labels['alertname'] === name && alert.labels['namespace'] === namespace);
}

/** The dashboard's queries with its variables as Grafana fills them: every namespace, a 1 m rate window. */
function dashboardQueries(): Array<{ panel: string; expr: string }> {
  const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as KubeObject;
  return (dashboard['panels'] as KubeObject[])
    .filter((panel) => panel['type'] !== 'row')
    .flatMap((panel) => (panel['targets'] as KubeObject[]).map((target) => ({
      panel: `${String(panel['title'])} (${String(target['refId'])})`,
      expr: String(target['expr']).replaceAll('$namespace', '.*').replaceAll('$__rate_interval', '1m'),
    })));
}

test('a real Prometheus scrapes three webhooks with the rendered TLS settings; refused API calls fire the rendered alerts; every dashboard query returns series', TIMEOUT, async (t) => {
  const namespace = await scenario.namespace('e2e-monitoring', { optIn: false });
  const fullname = uniqueName('ccw-mon');
  const metrics = { serviceMonitor: { enabled: true }, prometheusRule: { enabled: true, alerts: FAST_ALERTS } };
  const [faultyRelease, runRelease, clientCertificateRelease] = await Promise.all([
    tools.renderChart({ fullnameOverride: fullname, metrics }, { release: fullname, namespace }),
    tools.renderChart({ certificates: { mode: 'cert-manager' }, metrics: { serviceMonitor: { enabled: true } } }),
    tools.renderChart({ certificates: { mode: 'cert-manager' }, clientCertificates: { enabled: true }, metrics: { serviceMonitor: { enabled: true } } }),
  ]);
  const faulty = await faultyWebhook(namespace, fullname, faultyRelease);
  const clientCertificates = await clientCertificateWebhook();

  // The scrape configs the operator would make of the two ServiceMonitors' endpoints.
  const faultyEndpoint = only(faultyRelease, 'ServiceMonitor')['spec']['endpoints'][0] as KubeObject;
  const runEndpoint = only(runRelease, 'ServiceMonitor')['spec']['endpoints'][0] as KubeObject;
  const clientCertificateEndpoint = only(clientCertificateRelease, 'ServiceMonitor')['spec']['endpoints'][0] as KubeObject;
  // The port each monitor names, on each process: https is the admission port, health the health listener.
  const portOf = (endpoint: KubeObject, ports: Record<string, number>): number => {
    const port = ports[String(endpoint['port'])];
    assert.ok(port !== undefined, `the monitor's port ${String(endpoint['port'])} is one the process serves`);
    return port;
  };
  assert.deepEqual(faultyEndpoint['tlsConfig']['ca']['secret'], { name: `${fullname}-tls`, key: 'ca-bundle.crt' });
  assert.equal(faultyEndpoint['tlsConfig']['serverName'], `${fullname}.${namespace}.svc`);
  assert.deepEqual(runEndpoint['tlsConfig']['ca']['secret'], { name: 'config-checksum-webhook-cert', key: 'ca.crt' });
  const faultyCa = path.join(workDir, 'faulty-ca.crt');
  writeFileSync(faultyCa, await secretKey(namespace, faultyEndpoint['tlsConfig']['ca']['secret']));
  // The run's files are cert-manager's Secret as mounted: the key the monitor names is the file of that name.
  const runCa = path.join(state.webhook.files.dir, String(runEndpoint['tlsConfig']['ca']['secret']['key']));
  const scrapeConfigs = [
    scrapeConfig(faultyEndpoint, { jobName: fullname, address: `127.0.0.1:${portOf(faultyEndpoint, { https: faulty.port })}`, labels: { namespace, pod: 'monitoring-faulty' }, caFile: faultyCa, scrapeInterval: '1s' }),
    scrapeConfig(runEndpoint, { jobName: 'config-checksum-webhook', address: `127.0.0.1:${portOf(runEndpoint, { https: state.webhook.port })}`, labels: { namespace: 'config-checksum', pod: 'webhook-run' }, caFile: runCa, scrapeInterval: '1s' }),
    scrapeConfig(clientCertificateEndpoint, { jobName: 'config-checksum-webhook-client-certificates', address: `127.0.0.1:${portOf(clientCertificateEndpoint, { https: clientCertificates.admissionPort, health: clientCertificates.healthPort })}`, labels: { namespace: 'config-checksum', pod: 'webhook-client-certificates' }, caFile: runCa, scrapeInterval: '1s' }),
  ];
  assert.equal(clientCertificateEndpoint['port'], 'health', 'with client certificates the monitor scrapes the health port');
  const prometheus = await PrometheusServer.start({ binDir: promBin, dir: path.join(workDir, 'prometheus'), registry, scrapeConfigs, rules: { 'rules.yaml': rulesFile(only(faultyRelease, 'PrometheusRule')) } });
  cleanups.push(() => prometheus.stop());

  const targets = await waitFor('every target up', async () => {
    const active = await prometheus.targets();
    return active.length === scrapeConfigs.length && active.every((target) => target.health === 'up') ? active : undefined;
  }, { timeoutMs: 30_000, intervalMs: 250 });
  t.diagnostic(`targets up: ${targets.map((target) => `${target.scrapeUrl} (${target.labels['job']})`).join(', ')}`);

  // Admissions at the faulty webhook, straight from here: each needs a ConfigMap it cannot read.
  const faultyCaPem = readFileSync(faultyCa, 'utf8');
  let reviewing = true;
  const reviews = (async () => {
    for (let index = 0; reviewing; index++) {
      const object = workload('Deployment', namespace, `probe-${index % 5}`, { envFromConfigMap: 'app-config' });
      const answer = await httpsCall({ port: faulty.port, ca: faultyCaPem, path: '/mutate', body: JSON.stringify(reviewBody(admissionRequest(object, { uid: `review-${index}`, namespace }))), contentType: 'application/json' });
      assert.equal(answer.status, 200);
      await sleep(250);
    }
  })();

  try {
    // A rollout by the run's webhook and a change that rolls nothing, for the dashboard's watcher panels.
    const apps = await scenario.namespace('e2e-monitoring-apps', { optIn: true });
    await scenario.client.create(configMap(apps, 'app-config', { level: 'info' }));
    const deployment = workload('Deployment', apps, 'web', { envFromConfigMap: 'app-config' });
    const created = templateChecksum((await scenario.client.create(deployment)).body);
    assert.match(created ?? '', /^[0-9a-f]{64}$/);
    await scenario.client.expect('PATCH', `/api/v1/namespaces/${apps}/configmaps/app-config`, { body: { metadata: { labels: { touched: 'yes' } } }, contentType: 'application/merge-patch+json' });
    await scenario.client.expect('PATCH', `/api/v1/namespaces/${apps}/configmaps/app-config`, { body: { data: { level: 'debug' } }, contentType: 'application/merge-patch+json' });
    await waitFor('the watcher to roll the Deployment', async () => templateChecksum(await scenario.read(deployment)) !== created, { timeoutMs: 60_000, intervalMs: 200 });

    const expected: Array<[string, string]> = [
      ['ConfigChecksumWatcherNotSynced', namespace],
      ['ConfigChecksumNoLeader', namespace],
      ['ConfigChecksumAdmissionsFailingOpen', namespace],
      ['ConfigChecksumConfigMapReadsFailing', namespace],
      ['ConfigChecksumServingCertificateExpiring', namespace],
      ['ConfigChecksumCACertificateExpiring', namespace],
      ['ConfigChecksumServingCertificateExpiring', 'config-checksum'],
      ['ConfigChecksumCACertificateExpiring', 'config-checksum'],
    ];
    const started = performance.now();
    const alerts = await waitFor('the alerts to fire', async () => {
      const current = await prometheus.alerts();
      return expected.every(([name, where]) => firing(current, name, where)) ? current : undefined;
    }, { timeoutMs: 90_000, intervalMs: 500 });
    t.diagnostic(`firing after ${Math.round((performance.now() - started) / 1000)} s:\n${alerts.filter((alert) => alert.state === 'firing').map((alert) => `${alert.labels['alertname']} {${Object.entries(alert.labels).filter(([key]) => key !== 'alertname').map(([key, value]) => `${key}=${value}`).join(', ')}}: ${alert.annotations['description']}`).join('\n')}`);

    // The healthy run webhook: synced, leading, no fail-open, its reads fine.
    for (const name of ['ConfigChecksumWatcherNotSynced', 'ConfigChecksumNoLeader', 'ConfigChecksumAdmissionsFailingOpen', 'ConfigChecksumConfigMapReadsFailing', 'ConfigChecksumRolloutsPending', 'ConfigChecksumRolloutRateLimited']) {
      assert.equal(alerts.find((alert) => alert.labels['alertname'] === name && alert.labels['namespace'] === 'config-checksum'), undefined, `${name} neither pending nor firing for the run's webhook`);
    }
    assert.equal(firing(alerts, 'ConfigChecksumWatcherNotSynced', namespace)?.labels['pod'], 'monitoring-faulty');
    assert.equal(firing(alerts, 'ConfigChecksumAdmissionsFailingOpen', namespace)?.annotations['description']?.startsWith('100% of the admissions'), true);
    // The certificate alerts carry the webhooks' own certificates: the self-managed one of 30 days, the run's of 2.
    const faultyServing = Number(firing(alerts, 'ConfigChecksumServingCertificateExpiring', namespace)?.value);
    assert.ok(faultyServing > 29 * 86_400 && faultyServing <= 30 * 86_400, `self-managed serving certificate: ${faultyServing} s left`);
    const runCaLeft = Number(firing(alerts, 'ConfigChecksumCACertificateExpiring', 'config-checksum')?.value);
    assert.ok(runCaLeft > DAY_MS / 1000 && runCaLeft <= (2 * DAY_MS) / 1000, `the run's CA: ${runCaLeft} s left`);
    assert.ok(faulty.proxy.requests.some((request) => request.outcome === 'answered 403' && request.path.includes('/configmaps/')), 'the ConfigMap reads met the fault');
  } finally {
    reviewing = false;
    await reviews;
  }

  // Every query of the dashboard, as Grafana would send it.
  const failures: string[] = [];
  const counts: string[] = [];
  for (const { panel, expr } of dashboardQueries()) {
    try {
      const result = await prometheus.query(expr);
      counts.push(`${panel}: ${result.length}`);
      if (result.length === 0) failures.push(`${panel}: no series for ${expr}`);
    } catch (error) {
      failures.push(`${panel}: ${(error as Error).message}`);
    }
  }
  t.diagnostic(`dashboard queries (series each): ${counts.join('; ')}`);
  assert.deepEqual(failures, [], 'every dashboard query evaluates and returns series');
});
