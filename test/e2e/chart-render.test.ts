// The Helm chart (manifests/chart/config-checksum-webhook) renders the same objects as the kustomize
// overlays for the same settings, and its values do what values.yaml says. Real `helm template` and
// `kubectl kustomize`; no cluster, but the binaries of the control-plane build (src/local/binaries.ts),
// which is why this runs with the e2e suites and not with `npm run test:unit`.
//
// What "equivalent" means (normalise() in test/e2e/support/helm.ts): the same set of (kind, namespace,
// name), and every object deep-equal once the Helm-only metadata labels (helm.sh/chart,
// app.kubernetes.io/{managed-by,instance,version,name}) are removed from metadata.labels. Nothing else is
// ignored: specs, pod-template labels, selectors, rules, roleRefs, subjects, webhooks and annotations are
// compared as rendered.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { KubeObject } from '../../src/local/kube.ts';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { controlPlaneBinaries } from '../../src/local/binaries.ts';
import { CHART_DIR, GATEWAY_EXAMPLE_DIR, HelmTools, MANIFESTS_DIR, normalise, objectKey } from './support/helm.ts';

// namespace.create=true: the overlays create the Namespace; the chart leaves that to --create-namespace
// unless asked (values.yaml explains why).
const OVERLAYS: ReadonlyArray<{ overlay: string; values: KubeObject }> = [
  { overlay: 'namespace-opt-in', values: { namespace: { create: true } } },
  { overlay: 'cluster-wide', values: { namespace: { create: true }, mode: 'cluster-wide' } },
  { overlay: 'cert-manager', values: { namespace: { create: true }, certificates: { mode: 'cert-manager' } } },
  { overlay: 'client-certificates', values: { namespace: { create: true }, clientCertificates: { enabled: true } } },
  { overlay: 'secrets', values: { namespace: { create: true }, secrets: { enabled: true } } },
  { overlay: 'monitoring', values: { namespace: { create: true }, metrics: { serviceMonitor: { enabled: true }, prometheusRule: { enabled: true }, grafanaDashboard: { enabled: true } } } },
];

// The monitoring components combined with the other options as a user's own overlay would list them
// (paths under manifests/; components in this order), against the values that say the same.
const COMPOSITIONS: ReadonlyArray<{ resources: string[]; components: string[]; values: KubeObject }> = [
  { resources: ['base'], components: ['components/pod-monitor', 'components/prometheus-rule'], values: { metrics: { podMonitor: { enabled: true }, prometheusRule: { enabled: true } } } },
  { resources: ['base'], components: ['components/service-monitor', 'components/client-certificates'], values: { metrics: { serviceMonitor: { enabled: true } }, clientCertificates: { enabled: true } } },
  { resources: ['base'], components: ['components/pod-monitor', 'components/client-certificates', 'components/grafana-dashboard'], values: { metrics: { podMonitor: { enabled: true }, grafanaDashboard: { enabled: true } }, clientCertificates: { enabled: true } } },
  { resources: ['overlays/cert-manager'], components: ['components/service-monitor', 'components/monitoring-cert-manager'], values: { metrics: { serviceMonitor: { enabled: true } }, certificates: { mode: 'cert-manager' } } },
  { resources: ['overlays/cert-manager'], components: ['components/pod-monitor', 'components/monitoring-cert-manager', 'components/client-certificates'], values: { metrics: { podMonitor: { enabled: true } }, certificates: { mode: 'cert-manager' }, clientCertificates: { enabled: true } } },
  { resources: ['base'], components: ['components/monitoring-cert-manager', 'components/secrets'], values: { secrets: { enabled: true } } },
];

function find(objects: readonly KubeObject[], kind: string, name?: string): KubeObject {
  const found = objects.find((o) => o['kind'] === kind && (name === undefined || o['metadata']?.['name'] === name));
  assert.ok(found, `${kind}${name ? ` ${name}` : ''} is rendered`);
  return found;
}

function args(objects: readonly KubeObject[]): string[] {
  return find(objects, 'Deployment')['spec']['template']['spec']['containers'][0]['args'] as string[];
}

function selector(objects: readonly KubeObject[]): KubeObject {
  return find(objects, 'MutatingWebhookConfiguration')['webhooks'][0]['namespaceSelector'] as KubeObject;
}

describe('the Helm chart', () => {
  let tools: HelmTools;
  before(() => {
    tools = new HelmTools({ binDir: controlPlaneBinaries() });
  });
  after(() => tools?.close());

  for (const { overlay, values } of OVERLAYS) {
    test(`renders the objects of manifests/overlays/${overlay} (helm template config-checksum-webhook -n config-checksum ${JSON.stringify(values)})`, async () => {
      const [chart, kustomize] = await Promise.all([tools.renderChart(values), tools.renderOverlay(overlay)]);
      const chartObjects = normalise(chart);
      const overlayObjects = normalise(kustomize);
      assert.deepEqual([...chartObjects.keys()].sort(), [...overlayObjects.keys()].sort(), 'the same (kind, namespace, name)');
      for (const [key, expected] of overlayObjects) assert.deepEqual(chartObjects.get(key), expected, `${key} equal after normalisation`);
    });
  }

  for (const { resources, components, values } of COMPOSITIONS) {
    test(`renders the objects of kustomize resources [${resources.join(', ')}] with components [${components.join(', ')}] (${JSON.stringify(values)})`, async () => {
      const [chart, kustomize] = await Promise.all([tools.renderChart({ namespace: { create: true }, ...values }), tools.renderComposition(resources, components)]);
      const chartObjects = normalise(chart);
      const overlayObjects = normalise(kustomize);
      assert.deepEqual([...chartObjects.keys()].sort(), [...overlayObjects.keys()].sort(), 'the same (kind, namespace, name)');
      for (const [key, expected] of overlayObjects) assert.deepEqual(chartObjects.get(key), expected, `${key} equal after normalisation`);
    });
  }

  test('with the default values: the overlay objects but the Namespace, which helm install --create-namespace makes', async () => {
    const [chart, kustomize] = await Promise.all([tools.renderChart(), tools.renderOverlay('namespace-opt-in')]);
    const expected = kustomize.map(objectKey).filter((key) => key !== 'Namespace/config-checksum').sort();
    assert.deepEqual(chart.map(objectKey).sort(), expected);
  });

  test('every name follows the release (fullnameOverride), and so do RBAC resourceNames and the flags', async () => {
    const objects = await tools.renderChart({ fullnameOverride: 'cc-gw' }, { release: 'anything', namespace: 'platform' });
    for (const object of objects) {
      assert.equal(object['metadata']['name'], object['kind'] === 'Issuer' ? 'cc-gw-selfsigned' : 'cc-gw', objectKey(object));
      if (object['kind'] !== 'ClusterRole' && object['kind'] !== 'ClusterRoleBinding' && object['kind'] !== 'MutatingWebhookConfiguration') {
        assert.equal(object['metadata']['namespace'], 'platform', objectKey(object));
      }
    }
    const clusterRole = find(objects, 'ClusterRole');
    const named = (rules: KubeObject[]): string[] => rules.flatMap((rule) => rule['resourceNames'] ?? []);
    assert.deepEqual(named(clusterRole['rules']), ['cc-gw'], 'the webhook configuration it may patch is the one rendered');
    // The Lease name is fixed in the binary (src/watch/watcher.ts): it does not follow the release.
    assert.deepEqual(named(find(objects, 'Role')['rules']).sort(), ['cc-gw-tls', 'config-checksum-webhook-leader']);
    for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
      const binding = find(objects, kind);
      assert.equal(binding['roleRef']['name'], 'cc-gw');
      assert.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', name: 'cc-gw', namespace: 'platform' }]);
    }
    const deployment = find(objects, 'Deployment');
    assert.equal(deployment['spec']['template']['spec']['serviceAccountName'], 'cc-gw');
    assert.deepEqual(args(objects), [
      '--tls-mode=self-managed',
      '--drain-seconds=15',
      '--service-name=cc-gw',
      '--webhook-configuration-name=cc-gw',
      '--tls-secret-name=cc-gw-tls',
    ]);
    assert.deepEqual(find(objects, 'MutatingWebhookConfiguration')['webhooks'][0]['clientConfig'], {
      service: { name: 'cc-gw', namespace: 'platform', path: '/mutate', port: 443 },
    });
  });

  test('secrets.enabled under another release name: the Secrets RBAC follows the release, the hash key Secret keeps the name the binary gives it', async () => {
    const objects = await tools.renderChart({ fullnameOverride: 'cc-gw', secrets: { enabled: true } }, { release: 'anything', namespace: 'platform' });
    const clusterRole = find(objects, 'ClusterRole', 'cc-gw-secrets');
    assert.deepEqual(clusterRole['rules'], [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] }]);
    // The key's name is fixed in src/secrets/hash-key.ts; the webhook only ever GETs and POSTs it.
    assert.deepEqual(find(objects, 'Role', 'cc-gw-secrets')['rules'], [
      { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
      { apiGroups: [''], resources: ['secrets'], resourceNames: ['config-checksum-webhook-hash-key'], verbs: ['get'] },
    ]);
    for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
      const binding = find(objects, kind, 'cc-gw-secrets');
      assert.equal(binding['roleRef']['name'], 'cc-gw-secrets');
      assert.deepEqual(binding['subjects'], [{ kind: 'ServiceAccount', name: 'cc-gw', namespace: 'platform' }]);
    }
    assert.equal(args(objects).filter((arg) => arg === '--secrets=true').length, 1);
  });

  test('secrets.enabled off (the default): no Secrets RBAC, no --secrets flag, and the base RBAC reads no Secret but its own certificate', async () => {
    const objects = await tools.renderChart();
    assert.ok(!objects.some((object) => String(object['metadata']['name']).endsWith('-secrets')), 'no object of the Secrets option');
    assert.ok(!args(objects).some((arg) => arg.startsWith('--secrets')));
    const secretRules = objects
      .filter((object) => object['kind'] === 'ClusterRole' || object['kind'] === 'Role')
      .flatMap((object) => (object['rules'] as KubeObject[]).filter((rule) => (rule['resources'] as string[]).includes('secrets')).map((rule) => ({ kind: object['kind'], ...rule })));
    assert.deepEqual(secretRules, [
      { kind: 'Role', apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
      { kind: 'Role', apiGroups: [''], resources: ['secrets'], resourceNames: ['config-checksum-webhook-tls'], verbs: ['get', 'update'] },
    ]);
  });

  test('the release name gives the names when it does not contain the chart name', async () => {
    const objects = await tools.renderChart({}, { release: 'checksums', namespace: 'ops' });
    assert.equal(find(objects, 'Deployment')['metadata']['name'], 'checksums-config-checksum-webhook');
  });

  test('cluster-wide mode leaves out the release namespace, whatever it is called', async () => {
    const objects = await tools.renderChart({ mode: 'cluster-wide' }, { namespace: 'platform' });
    assert.deepEqual(selector(objects), {
      matchExpressions: [
        { key: 'config-checksum.io/inject', operator: 'NotIn', values: ['disabled'] },
        { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'kube-public', 'kube-node-lease', 'platform'] },
      ],
    });
  });

  test('namespaceSelector.extraExpressions are added to the mode; namespaceSelector.override replaces it', async () => {
    const extra = { key: 'team', operator: 'In', values: ['gateway'] };
    const added = await tools.renderChart({ namespaceSelector: { extraExpressions: [extra] } });
    assert.deepEqual(selector(added), {
      matchExpressions: [{ key: 'config-checksum.io/inject', operator: 'In', values: ['enabled'] }, extra],
    });
    const override = { matchLabels: { 'checksums': 'on' } };
    const replaced = await tools.renderChart({ mode: 'cluster-wide', namespaceSelector: { override, extraExpressions: [extra] } });
    assert.deepEqual(selector(replaced), override);
  });

  test('checksumAnnotation becomes --checksum-annotation, and only when it is not the default', async () => {
    assert.ok(!args(await tools.renderChart()).some((arg) => arg.startsWith('--checksum-annotation')));
    assert.ok(args(await tools.renderChart({ checksumAnnotation: 'example.com/config-hash' })).includes('--checksum-annotation=example.com/config-hash'));
  });

  test('replicas, resources, image and extraArgs reach the Deployment; one replica renders no PodDisruptionBudget', async () => {
    const resources = { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } };
    const objects = await tools.renderChart({
      replicas: 1,
      resources,
      image: { repository: 'registry.example/ccw', tag: '9.9.9', pullPolicy: 'Always' },
      extraArgs: ['--log-level=debug'],
    });
    const deployment = find(objects, 'Deployment');
    const container = deployment['spec']['template']['spec']['containers'][0];
    assert.equal(deployment['spec']['replicas'], 1);
    assert.deepEqual(container['resources'], resources);
    assert.equal(container['image'], 'registry.example/ccw:9.9.9');
    assert.equal(container['imagePullPolicy'], 'Always');
    assert.equal(container['args'].at(-1), '--log-level=debug');
    assert.ok(!objects.some((o) => o['kind'] === 'PodDisruptionBudget'));
  });

  test('cert-manager with an issuer of your own: no Issuer rendered, the Certificate uses yours', async () => {
    const objects = await tools.renderChart({ certificates: { mode: 'cert-manager', certManager: { issuerRef: { name: 'internal-ca', kind: 'ClusterIssuer' } } } });
    assert.ok(!objects.some((o) => o['kind'] === 'Issuer'));
    assert.deepEqual(find(objects, 'Certificate')['spec']['issuerRef'], { name: 'internal-ca', kind: 'ClusterIssuer' });
  });

  test('helm lint --strict passes for the chart in every mode, and for the example charts', async () => {
    const charts = [path.join(GATEWAY_EXAMPLE_DIR, 'charts', 'gateway'), path.join(GATEWAY_EXAMPLE_DIR, 'charts', 'gateway-apis')];
    const monitoring = ['--set', 'metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,metrics.grafanaDashboard.enabled=true,clientCertificates.enabled=true'];
    for (const [chart, set] of [[CHART_DIR, []], [CHART_DIR, ['--set', 'mode=cluster-wide,certificates.mode=cert-manager']], [CHART_DIR, ['--set', 'secrets.enabled=true']], [CHART_DIR, monitoring], ...charts.map((c) => [c, []] as const)] as const) {
      const result = await tools.runHelm(['lint', '--strict', chart, ...set]);
      assert.equal(result.code, 0, `helm lint --strict ${chart} ${set.join(' ')}:\n${result.stdout}${result.stderr}`);
    }
  });

  test('the example: gateway-apis has one key per file of apis/; the gateway has no checksum of its own unless settings.enabled', async () => {
    const apis = await tools.decode(await tools.template(path.join(GATEWAY_EXAMPLE_DIR, 'charts', 'gateway-apis'), 'gateway-apis', 'gateway'));
    assert.deepEqual(Object.keys(find(apis, 'ConfigMap', 'gateway-apis')['data']).sort(), ['orders.yaml', 'users.yaml']);
    const gatewayChart = path.join(GATEWAY_EXAMPLE_DIR, 'charts', 'gateway');
    const plain = find(await tools.decode(await tools.template(gatewayChart, 'gateway', 'gateway')), 'Deployment');
    assert.equal(plain['spec']['template']['metadata']['annotations'], undefined);
    assert.deepEqual(plain['spec']['template']['spec']['volumes'][0], { name: 'apis', configMap: { name: 'gateway-apis' } });
    const own = find(await tools.decode(await tools.template(gatewayChart, 'gateway', 'gateway', { settings: { enabled: true } })), 'Deployment');
    assert.match(own['spec']['template']['metadata']['annotations']['checksum/config'], /^[0-9a-f]{64}$/);
  });

  test('the monitors scrape the probes\' port over HTTPS and verify the serving certificate against the CA of the certificate mode, under the release\'s names', async () => {
    const release = { release: 'anything', namespace: 'platform' };
    const endpoint = (objects: KubeObject[], kind: 'ServiceMonitor' | 'PodMonitor'): KubeObject => {
      const monitor = find(objects, kind, 'cc-gw');
      assert.equal(monitor['metadata']['namespace'], 'platform');
      assert.deepEqual(monitor['spec']['selector'], { matchLabels: { 'app.kubernetes.io/name': 'config-checksum-webhook' } });
      assert.deepEqual(monitor['spec']['namespaceSelector'], { matchNames: ['platform'] });
      const endpoints = monitor['spec'][kind === 'ServiceMonitor' ? 'endpoints' : 'podMetricsEndpoints'] as KubeObject[];
      assert.equal(endpoints.length, 1);
      return endpoints[0]!;
    };
    const selfManaged = await tools.renderChart({ fullnameOverride: 'cc-gw', metrics: { serviceMonitor: { enabled: true } } }, release);
    assert.deepEqual(endpoint(selfManaged, 'ServiceMonitor'), {
      port: 'https',
      scheme: 'https',
      path: '/metrics',
      // The bundle keeps the old CA beside the new one through a CA rotation (src/tls/authority.ts).
      tlsConfig: { ca: { secret: { name: 'cc-gw-tls', key: 'ca-bundle.crt' } }, serverName: 'cc-gw.platform.svc' },
    });
    const certManager = await tools.renderChart({ fullnameOverride: 'cc-gw', certificates: { mode: 'cert-manager' }, clientCertificates: { enabled: true }, metrics: { podMonitor: { enabled: true } } }, release);
    assert.deepEqual(endpoint(certManager, 'PodMonitor'), {
      port: 'health',
      scheme: 'https',
      path: '/metrics',
      tlsConfig: { ca: { secret: { name: 'cc-gw-cert', key: 'ca.crt' } }, serverName: 'cc-gw.platform.svc' },
    });
    // The name the monitors verify is a SAN of the certificate cert-manager issues.
    assert.ok(find(certManager, 'Certificate')['spec']['dnsNames'].includes('cc-gw.platform.svc'));
    // With client certificates, the ServiceMonitor needs the health port on the Service.
    const withClientCertificates = await tools.renderChart({ fullnameOverride: 'cc-gw', clientCertificates: { enabled: true }, metrics: { serviceMonitor: { enabled: true } } }, release);
    assert.equal(endpoint(withClientCertificates, 'ServiceMonitor')['port'], 'health');
    assert.deepEqual(find(withClientCertificates, 'Service')['spec']['ports'], [
      { name: 'https', port: 443, targetPort: 'https', protocol: 'TCP' },
      { name: 'health', port: 8081, targetPort: 'health', protocol: 'TCP' },
    ]);
    assert.deepEqual(find(withClientCertificates, 'Deployment')['spec']['template']['spec']['containers'][0]['ports'].map((port: KubeObject) => port['name']), ['https', 'health']);
  });

  test('monitor values: namespace, labels, annotations, interval, scrapeTimeout, namespaceSelector, relabelings and a TLS config of your own', async () => {
    for (const kind of ['serviceMonitor', 'podMonitor'] as const) {
      const relabelings = [{ action: 'replace', targetLabel: 'cluster', replacement: 'eu-1' }];
      const metricRelabelings = [{ action: 'drop', sourceLabels: ['__name__'], regex: 'nodejs_.*' }];
      const tlsConfig = { ca: { configMap: { name: 'webhook-ca', key: 'ca.crt' } }, serverName: 'webhook.example' };
      const objects = await tools.renderChart({
        metrics: {
          [kind]: {
            enabled: true,
            namespace: 'monitoring',
            labels: { release: 'kube-prometheus-stack' },
            annotations: { owner: 'platform' },
            interval: '30s',
            scrapeTimeout: '10s',
            namespaceSelector: { any: true },
            relabelings,
            metricRelabelings,
            tlsConfig,
          },
        },
      });
      const monitor = find(objects, kind === 'serviceMonitor' ? 'ServiceMonitor' : 'PodMonitor');
      assert.equal(monitor['metadata']['namespace'], 'monitoring');
      assert.equal(monitor['metadata']['labels']['release'], 'kube-prometheus-stack');
      assert.deepEqual(monitor['metadata']['annotations'], { owner: 'platform' });
      assert.deepEqual(monitor['spec']['namespaceSelector'], { any: true });
      assert.deepEqual(monitor['spec'][kind === 'serviceMonitor' ? 'endpoints' : 'podMetricsEndpoints'], [
        { port: 'https', scheme: 'https', path: '/metrics', interval: '30s', scrapeTimeout: '10s', tlsConfig, relabelings, metricRelabelings },
      ]);
    }
  });

  test('grafanaDashboard: the dashboard file in a ConfigMap for Grafana\'s sidecar, the same file as the kustomize component\'s', async () => {
    const file = readFileSync(path.join(CHART_DIR, 'dashboards', 'config-checksum-webhook.json'), 'utf8');
    assert.equal(readFileSync(path.join(MANIFESTS_DIR, 'components', 'grafana-dashboard', 'config-checksum-webhook.json'), 'utf8'), file, 'one dashboard, two copies');
    const dashboard = JSON.parse(file) as KubeObject;
    assert.equal(dashboard['uid'], 'config-checksum-webhook');
    const objects = await tools.renderChart({ metrics: { grafanaDashboard: { enabled: true, namespace: 'monitoring', annotations: { grafana_folder: 'Platform' } } } });
    const configMap = find(objects, 'ConfigMap', 'config-checksum-webhook-dashboard');
    assert.equal(configMap['metadata']['namespace'], 'monitoring');
    assert.equal(configMap['metadata']['labels']['grafana_dashboard'], '1');
    assert.deepEqual(configMap['metadata']['annotations'], { grafana_folder: 'Platform' });
    assert.deepEqual(configMap['data'], { 'config-checksum-webhook.json': file });
  });

  test('both monitors at once are refused: every series would be scraped twice', async () => {
    await assert.rejects(tools.renderChart({ metrics: { serviceMonitor: { enabled: true }, podMonitor: { enabled: true } } }), /enable one/);
  });

  test('values outside the schema are refused with a message that names them', async () => {
    for (const [values, message] of [
      [{ mode: 'everywhere' }, /\/mode/],
      [{ certificates: { mode: 'vault' } }, /\/certificates\/mode/],
      [{ checksumAnnotation: 'not/a/key' }, /\/checksumAnnotation/],
      [{ replicas: 0 }, /\/replicas/],
      [{ secrets: { enabled: 'yes' } }, /\/secrets\/enabled/],
      [{ secrets: true }, /\/secrets/],
      [{ modes: 'cluster-wide' }, /modes/],
      [{ secrets: { enabled: true }, checksumAnnotation: 'checksum/secret' }, /checksumAnnotation must not be checksum\/secret/],
      [{ metrics: { serviceMonitor: { enabled: true, interval: 'often' } } }, /\/metrics\/serviceMonitor\/interval/],
      [{ metrics: { podMonitor: { scrape: '10s' } } }, /scrape/],
      [{ metrics: { prometheusRule: { alerts: { noLeader: { for: 'five minutes' } } } } }, /\/metrics\/prometheusRule\/alerts\/noLeader\/for/],
      [{ metrics: { prometheusRule: { alerts: { admissionsFailingOpen: { ratio: 0 } } } } }, /\/metrics\/prometheusRule\/alerts\/admissionsFailingOpen\/ratio/],
      [{ metrics: { prometheusRule: { alerts: { rolloutsPending: { threshold: 60 } } } } }, /threshold/],
      [{ metrics: { prometheusRule: { runbookBaseUrl: 'README.md' } } }, /\/metrics\/prometheusRule\/runbookBaseUrl/],
      [{ metrics: { grafanaDashboard: { labels: { grafana_dashboard: 1 } } } }, /\/metrics\/grafanaDashboard\/labels\/grafana_dashboard/],
    ] as const) {
      await assert.rejects(tools.renderChart(values as KubeObject), message, JSON.stringify(values));
    }
  });
});
