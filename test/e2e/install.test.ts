// Installable on a real cluster (DESIGN section 7): the run's own webhook as installed from the shipped
// manifests (its ServiceAccount token, its RBAC, the shipped configuration), the shipped overlays as the
// API server takes them with server-side apply, least privilege proven with the ServiceAccount's own token, self-managed certificates
// (two replicas bootstrapping at once; rotation under a stream of writes with no failed or fail-open
// admission), and the production install (the Dockerfile's build steps, then its ENTRYPOINT on the bundle alone).
// Tests that point the run's MutatingWebhookConfiguration elsewhere give it back (url and caBundle of the
// run's webhook process) in a finally and wait until the API server calls that process again, so the
// other test files are unaffected whatever the order.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { cpSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { splitPem } from '../../src/tls/authority.ts';
import { createCertificateAuthority } from '../../src/tls/certs.ts';
import { freePort } from '../../src/local/control-plane.ts';
import { signalGroup } from '../../src/local/process.ts';
import {
  admissionOutcomes,
  caBundles,
  CONFIGURATION_PATH,
  deleteTlsSecret,
  httpsGet,
  kubeconfigToken,
  pointRegistration,
  readTlsSecret,
  registeredConfiguration,
  restoreRegistration,
  rotationSteps,
  runIn,
  secretCreations,
  selfManagedArgs,
  servedCertificate,
  spawnWebhook,
  TLS_SECRET,
  tokenRequest,
  waitListening,
  webhookCallCounters,
  type ExtraProcess,
  type LoggedStep,
  type TlsSecret,
} from './support/install.ts';
import { GiveUp, parseJsonStream, resourcePath, run, uniqueName, waitFor, type KubeObject } from '../../src/local/kube.ts';
import { CHECKSUM_ANNOTATION, configMap, expectedChecksum, Scenario, sleep, templateChecksum, workload } from './support/scenario.ts';
import { readImageRecipe } from '../../src/local/image.ts';
import { logEntries, renderOverlay, REPO_ROOT, SERVICE_ACCOUNT, waitForWebhook } from '../../src/local/webhook.ts';

const scenario = new Scenario();
after(() => scenario.close());
const { client, kubectl, state } = scenario;
const OVERLAYS_DIR = path.join(REPO_ROOT, 'manifests', 'overlays');
const WEBHOOK_NAME = String((state.shippedConfiguration['webhooks'] as KubeObject[])[0]?.['name']);
const OWN_NAMESPACE = SERVICE_ACCOUNT.namespace;

// ---------------------------------------------------------------------------------------------------
// 0. The run's webhook, as installed from the shipped manifests.

const { serviceAccount, webhook } = state;
const serviceAccountUser = `system:serviceaccount:${serviceAccount.namespace}:${serviceAccount.name}`;

test('the webhook process authenticates with its ServiceAccount token, not an admin certificate', async () => {
  const kubeconfig = readFileSync(webhook.files.kubeconfig, 'utf8');
  assert.match(kubeconfig, /^\s+token: \S+$/m);
  assert.doesNotMatch(kubeconfig, /client-certificate|client-key/);

  const whoami = await run(scenario.state.kubectl, ['--kubeconfig', webhook.files.kubeconfig, 'auth', 'whoami', '-o', 'json']);
  assert.equal(whoami.code, 0, whoami.stderr);
  assert.equal(JSON.parse(whoami.stdout).status.userInfo.username, serviceAccountUser);
});

test('RBAC: the ServiceAccount can read ConfigMaps and patch workloads, and nothing beyond that', async () => {
  const namespace = await scenario.namespace('e2e-rbac', { optIn: true });
  const canI = async (...args: string[]): Promise<string> => {
    const result = await scenario.kubectl.run(['auth', 'can-i', `--as=${serviceAccountUser}`, ...args]);
    return result.stdout.trim();
  };
  const allowed: string[][] = [
    ['get', 'configmaps', '-n', namespace],
    ['patch', 'deployments.apps', '-n', namespace],
    ['patch', 'statefulsets.apps', '-n', namespace],
    ['patch', 'daemonsets.apps', '-n', namespace],
  ];
  const denied: string[][] = [
    ['create', 'configmaps', '-n', namespace],
    ['update', 'configmaps', '-n', namespace],
    ['get', 'secrets', '-n', namespace],
    ['get', 'secrets', '-n', 'kube-system'],
    ['list', 'secrets', '--all-namespaces'],
    ['delete', 'deployments.apps', '-n', namespace],
    ['create', 'pods', '-n', namespace],
  ];
  for (const args of allowed) assert.equal(await canI(...args), 'yes', `can-i ${args.join(' ')}`);
  for (const args of denied) assert.equal(await canI(...args), 'no', `can-i ${args.join(' ')}`);

  // The same questions asked with the webhook's real credential rather than impersonation.
  const own = async (...args: string[]): Promise<string> =>
    (await run(scenario.state.kubectl, ['--kubeconfig', webhook.files.kubeconfig, 'auth', 'can-i', ...args])).stdout.trim();
  assert.equal(await own('get', 'configmaps', '-n', namespace), 'yes');
  assert.equal(await own('get', 'secrets', '-n', namespace), 'no');
});

test('the registered MutatingWebhookConfiguration is the shipped one, pointed at the local process', async () => {
  const registered = await scenario.client.get(`/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${scenario.state.webhookConfiguration}`);
  const shipped = scenario.state.shippedConfiguration as { webhooks: Array<Record<string, unknown>> };
  const webhooks = registered['webhooks'] as Array<Record<string, any>>;
  assert.equal(webhooks.length, shipped.webhooks.length);
  const fields = ['name', 'admissionReviewVersions', 'rules', 'namespaceSelector', 'failurePolicy', 'sideEffects', 'timeoutSeconds', 'reinvocationPolicy', 'matchPolicy'];
  webhooks.forEach((actual, index) => {
    const expected = shipped.webhooks[index]!;
    // A field the manifest leaves out gets the API server's default; every field it sets must arrive as set.
    for (const field of fields.filter((name) => expected[name] !== undefined)) {
      assert.deepEqual(actual[field], expected[field], `webhooks[${index}].${field} as shipped`);
    }
    assert.equal(actual['clientConfig']['url'], `https://127.0.0.1:${webhook.port}/mutate`);
    assert.equal(actual['clientConfig']['service'], undefined);
    assert.equal(Buffer.from(actual['clientConfig']['caBundle'], 'base64').toString('utf8'), readFileSync(webhook.files.caFile, 'utf8'));
  });
});

// ---------------------------------------------------------------------------------------------------
// 1. The overlays, as rendered and as the API server accepts them.

const INJECT_LABEL = 'config-checksum.io/inject';
const OPT_IN_SELECTOR = { matchExpressions: [{ key: INJECT_LABEL, operator: 'In', values: ['enabled'] }] };
const CLUSTER_WIDE_SELECTOR = {
  matchExpressions: [
    { key: INJECT_LABEL, operator: 'NotIn', values: ['disabled'] },
    { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'kube-public', 'kube-node-lease', OWN_NAMESPACE] },
  ],
};
const OVERLAYS: Readonly<Record<string, KubeObject>> = {
  'namespace-opt-in': OPT_IN_SELECTOR,
  'cluster-wide': CLUSTER_WIDE_SELECTOR,
  'cert-manager': OPT_IN_SELECTOR,
  'secrets': OPT_IN_SELECTOR,
};
// The overlay applied for real; the others go through --dry-run=server.
const APPLIED_OVERLAY = 'namespace-opt-in';
// Objects of a real install that the run's harness did not create itself; removed after the real apply.
const WORKLOAD_KINDS = new Set(['Deployment', 'Service', 'PodDisruptionBudget', 'NetworkPolicy']);

function find(objects: readonly KubeObject[], kind: string): KubeObject {
  const found = objects.filter((object) => object['kind'] === kind);
  assert.equal(found.length, 1, `exactly one ${kind}`);
  return found[0]!;
}

function identity(object: KubeObject): string {
  return `${object['kind']}/${object['metadata']?.['namespace'] ?? ''}/${object['metadata']?.['name']}`;
}

/** DESIGN section 7, field by field, and the scope of the mode (DESIGN section 3). */
function assertWebhookConfiguration(configuration: KubeObject, selector: KubeObject, where: string): void {
  const webhooks = configuration['webhooks'] as KubeObject[];
  assert.equal(webhooks.length, 1, `${where}: one webhook`);
  const webhook = webhooks[0]!;
  assert.deepEqual(webhook['admissionReviewVersions'], ['v1'], `${where}: admissionReviewVersions`);
  assert.equal(webhook['sideEffects'], 'None', `${where}: sideEffects`);
  assert.equal(webhook['failurePolicy'], 'Ignore', `${where}: failurePolicy`);
  assert.equal(webhook['timeoutSeconds'], 5, `${where}: timeoutSeconds`);
  assert.equal(webhook['reinvocationPolicy'], 'IfNeeded', `${where}: reinvocationPolicy`);
  assert.equal(webhook['matchPolicy'], 'Equivalent', `${where}: matchPolicy`);
  const rules = (webhook['rules'] as KubeObject[]).map((rule) => ({
    operations: [...rule['operations']].sort(),
    apiGroups: rule['apiGroups'],
    apiVersions: rule['apiVersions'],
    resources: [...rule['resources']].sort(),
  }));
  assert.deepEqual(rules, [{ operations: ['CREATE', 'UPDATE'], apiGroups: ['apps'], apiVersions: ['v1'], resources: ['daemonsets', 'deployments', 'statefulsets'] }], `${where}: rules (no subresources)`);
  assert.deepEqual(webhook['namespaceSelector'], selector, `${where}: namespaceSelector`);
}

/** The shipped Deployment and what sits beside it (PodDisruptionBudget, NetworkPolicy, Service). */
function assertWorkloadObjects(objects: readonly KubeObject[], where: string): void {
  const deployment = find(objects, 'Deployment');
  const pod = deployment['spec']['template'];
  const podLabels = pod['metadata']['labels'] as Record<string, string>;
  assert.equal(deployment['spec']['replicas'], 2, `${where}: 2 replicas`);
  assert.equal(pod['spec']['serviceAccountName'], SERVICE_ACCOUNT.name, `${where}: runs as the shipped ServiceAccount`);
  const podSecurity = pod['spec']['securityContext'] ?? {};
  const containers = pod['spec']['containers'] as KubeObject[];
  assert.ok(containers.length > 0);
  for (const container of containers) {
    const security = container['securityContext'] ?? {};
    const at = `${where}: container ${container['name']}`;
    assert.equal(security['runAsNonRoot'] ?? podSecurity['runAsNonRoot'], true, `${at}: runAsNonRoot`);
    assert.equal((security['seccompProfile'] ?? podSecurity['seccompProfile'])?.['type'], 'RuntimeDefault', `${at}: seccomp RuntimeDefault`);
    assert.equal(security['readOnlyRootFilesystem'], true, `${at}: readOnlyRootFilesystem`);
    assert.equal(security['allowPrivilegeEscalation'], false, `${at}: allowPrivilegeEscalation false`);
    assert.deepEqual(security['capabilities']?.['drop'], ['ALL'], `${at}: capabilities drop ALL`);
    assert.equal(container['readinessProbe']?.['httpGet']?.['path'], '/readyz', `${at}: readiness probe on /readyz`);
    assert.equal(container['livenessProbe']?.['httpGet']?.['path'], '/healthz', `${at}: liveness probe on /healthz`);
    for (const probe of [container['readinessProbe'], container['livenessProbe']]) {
      assert.equal(probe['httpGet']['scheme'], 'HTTPS', `${at}: probes over HTTPS`);
      const port = (container['ports'] as KubeObject[]).find((candidate) => candidate['name'] === probe['httpGet']['port'] || candidate['containerPort'] === probe['httpGet']['port']);
      // 8443: the default of --port (src/config.ts), which the manifests do not override.
      assert.equal(port?.['containerPort'], 8443, `${at}: probes reach the port the process listens on`);
    }
    const resources = container['resources'] ?? {};
    assert.ok(resources['requests']?.['cpu'] && resources['requests']?.['memory'], `${at}: cpu and memory requests`);
    assert.ok(resources['limits']?.['memory'], `${at}: memory limit`);
  }
  const matchesPods = (selector: KubeObject | undefined): boolean =>
    Object.entries((selector?.['matchLabels'] ?? {}) as Record<string, string>).every(([key, value]) => podLabels[key] === value) && Object.keys(selector?.['matchLabels'] ?? {}).length > 0;
  const budget = find(objects, 'PodDisruptionBudget');
  assert.ok(matchesPods(budget['spec']['selector']), `${where}: the PodDisruptionBudget selects the webhook pods`);
  assert.ok(budget['spec']['minAvailable'] !== undefined && Number(budget['spec']['minAvailable']) < deployment['spec']['replicas'], `${where}: the budget leaves room for a voluntary eviction`);
  const policy = find(objects, 'NetworkPolicy');
  assert.ok(matchesPods(policy['spec']['podSelector']), `${where}: the NetworkPolicy selects the webhook pods`);
  assert.deepEqual(policy['spec']['policyTypes'], ['Ingress'], `${where}: NetworkPolicy restricts ingress`);
  assert.deepEqual((policy['spec']['ingress'] as KubeObject[]).flatMap((rule) => (rule['ports'] as KubeObject[]).map((port) => port['port'])), [8443], `${where}: only the HTTPS port is open`);
  const service = find(objects, 'Service');
  assert.ok(matchesPods({ matchLabels: service['spec']['selector'] }), `${where}: the Service selects the webhook pods`);
  const configuration = find(objects, 'MutatingWebhookConfiguration');
  const target = (configuration['webhooks'] as KubeObject[])[0]!['clientConfig']['service'];
  assert.deepEqual([target['namespace'], target['name'], target['port']], [service['metadata']['namespace'], service['metadata']['name'], service['spec']['ports'][0]['port']], `${where}: the configuration calls the shipped Service`);
  assert.equal(find(objects, 'Namespace')['metadata']['labels'][INJECT_LABEL], 'disabled', `${where}: the webhook's own namespace is never in scope`);
}

/** cert-manager: the Certificate, the Secret the Deployment mounts, and the CA injection agree. */
function assertCertManagerWiring(objects: readonly KubeObject[]): void {
  const certificate = find(objects, 'Certificate');
  const issuer = find(objects, 'Issuer');
  const service = find(objects, 'Service');
  const deployment = find(objects, 'Deployment');
  const configuration = find(objects, 'MutatingWebhookConfiguration');
  assert.equal(certificate['spec']['issuerRef']['name'], issuer['metadata']['name']);
  assert.equal(configuration['metadata']['annotations']?.['cert-manager.io/inject-ca-from'], `${certificate['metadata']['namespace']}/${certificate['metadata']['name']}`);
  const volumes = (deployment['spec']['template']['spec']['volumes'] ?? []) as KubeObject[];
  assert.ok(volumes.some((volume) => volume['secret']?.['secretName'] === certificate['spec']['secretName']), 'the Deployment mounts the Secret cert-manager writes');
  assert.ok((certificate['spec']['dnsNames'] as string[]).includes(`${service['metadata']['name']}.${service['metadata']['namespace']}.svc`), 'the certificate names the Service the API server calls');
  const args = deployment['spec']['template']['spec']['containers'][0]['args'] as string[];
  assert.ok(args.includes('--tls-mode=files'), 'cert-manager mode serves the mounted files');
}

/** The Secrets option (components/secrets): the flag, and read access to Secrets bound to the shipped ServiceAccount. */
function assertSecretsWiring(objects: readonly KubeObject[]): void {
  const args = find(objects, 'Deployment')['spec']['template']['spec']['containers'][0]['args'] as string[];
  assert.ok(args.includes('--secrets=true'), 'the secrets overlay turns the option on');
  const role = objects.find((object) => object['kind'] === 'ClusterRole' && object['metadata']['name'] === 'config-checksum-webhook-secrets');
  assert.deepEqual(role?.['rules'], [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] }], 'read access to Secrets, nothing that writes');
  const binding = objects.find((object) => object['kind'] === 'ClusterRoleBinding' && object['roleRef']?.['name'] === 'config-checksum-webhook-secrets');
  assert.deepEqual(binding?.['subjects'], [{ kind: 'ServiceAccount', ...SERVICE_ACCOUNT }], 'bound to the shipped ServiceAccount');
}

function crd(kind: string, plural: string): KubeObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.cert-manager.io` },
    spec: {
      group: 'cert-manager.io',
      scope: 'Namespaced',
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
    },
  };
}
const CRD_PATH = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
const CERT_MANAGER_CRDS = [crd('Issuer', 'issuers'), crd('Certificate', 'certificates')];

async function createCertManagerCrds(): Promise<void> {
  for (const definition of CERT_MANAGER_CRDS) {
    if (!(await client.find(`${CRD_PATH}/${definition['metadata']['name']}`))) await client.expect('POST', CRD_PATH, { body: definition });
  }
  for (const definition of CERT_MANAGER_CRDS) {
    await waitFor(`CRD ${definition['metadata']['name']} established`, async () => {
      const stored = await client.get(`${CRD_PATH}/${definition['metadata']['name']}`);
      return ((stored['status']?.['conditions'] ?? []) as KubeObject[]).some((condition) => condition['type'] === 'Established' && condition['status'] === 'True');
    }, { timeoutMs: 30_000 });
  }
}

async function deleteCertManagerCrds(): Promise<void> {
  for (const definition of CERT_MANAGER_CRDS) await client.request('DELETE', `${CRD_PATH}/${definition['metadata']['name']}`);
}

test('every manifest of the overlays is accepted by server-side apply and carries DESIGN section 7', { timeout: 180_000 }, async (t) => {
  await createCertManagerCrds();
  const configurationPath = `${CONFIGURATION_PATH}/${state.webhookConfiguration}`;
  try {
    const rendered: Record<string, KubeObject[]> = {};
    for (const overlay of Object.keys(OVERLAYS)) {
      const objects = await renderOverlay(kubectl, path.join(OVERLAYS_DIR, overlay));
      rendered[overlay] = objects;
      assertWebhookConfiguration(find(objects, 'MutatingWebhookConfiguration'), OVERLAYS[overlay]!, `${overlay} (rendered)`);
      assertWorkloadObjects(objects, `${overlay} (rendered)`);
    }
    assertCertManagerWiring(rendered['cert-manager']!);
    assertSecretsWiring(rendered['secrets']!);

    // A real install of the default mode. The run's registration (url on 127.0.0.1, written by the
    // harness's client-side apply) would leave url beside the shipped service under server-side apply, which
    // the API server rightly refuses; a real cluster has no such registration, so it goes first.
    const deleted = await client.request('DELETE', configurationPath);
    assert.equal(deleted.status, 200, 'the run registration removed for the real install');
    try {
      const overlay = APPLIED_OVERLAY;
      const applied = await kubectl.run(['apply', '--server-side', '-k', path.join(OVERLAYS_DIR, overlay), '-o', 'json']);
      assert.equal(applied.code, 0, `kubectl apply --server-side -k ${overlay}: ${applied.stderr}`);
      const answered = parseJsonStream(applied.stdout);
      assert.deepEqual(answered.map(identity).sort(), rendered[overlay]!.map(identity).sort(), `${overlay}: every rendered object applied`);
      const stored = parseJsonStream((await kubectl.expect(['get', '-k', path.join(OVERLAYS_DIR, overlay), '-o', 'json', '--show-managed-fields'])).stdout);
      assert.equal(stored.length, rendered[overlay]!.length, `${overlay}: every object stored`);
      assertWebhookConfiguration(find(stored, 'MutatingWebhookConfiguration'), OVERLAYS[overlay]!, `${overlay} (stored)`);
      assertWorkloadObjects(stored, `${overlay} (stored)`);
      assert.equal(find(stored, 'MutatingWebhookConfiguration')['metadata']['managedFields'].some((entry: KubeObject) => entry['operation'] === 'Apply'), true, 'stored by server-side apply');
      t.diagnostic(`${overlay}: ${stored.length} objects applied for real with --server-side`);

      // The other modes against that install, as an upgrade or a mode switch would be: accepted, not stored.
      for (const other of Object.keys(OVERLAYS).filter((name) => name !== overlay)) {
        const dryRun = await kubectl.run(['apply', '--server-side', '--dry-run=server', '-k', path.join(OVERLAYS_DIR, other), '-o', 'json']);
        assert.equal(dryRun.code, 0, `kubectl apply --server-side --dry-run=server -k ${other}: ${dryRun.stderr}`);
        const objects = parseJsonStream(dryRun.stdout);
        assert.deepEqual(objects.map(identity).sort(), rendered[other]!.map(identity).sort(), `${other}: every rendered object accepted`);
        assertWebhookConfiguration(find(objects, 'MutatingWebhookConfiguration'), OVERLAYS[other]!, `${other} (server dry run)`);
        assertWorkloadObjects(objects, `${other} (server dry run)`);
        if (other === 'cert-manager') assertCertManagerWiring(objects);
        if (other === 'secrets') assertSecretsWiring(objects);
        t.diagnostic(`${other}: ${objects.length} objects accepted with --server-side --dry-run=server`);
      }
      assertWebhookConfiguration(await client.get(configurationPath), OPT_IN_SELECTOR, 'after the dry runs (nothing stored)');
    } finally {
      const names = rendered[APPLIED_OVERLAY]!.filter((object) => WORKLOAD_KINDS.has(String(object['kind']))).map((object) => `${String(object['kind']).toLowerCase()}/${object['metadata']['name']}`);
      await kubectl.run(['delete', '-n', OWN_NAMESPACE, '--ignore-not-found', '--wait=false', ...names]);
      await restoreRegistration(client, state);
    }
  } finally {
    await deleteCertManagerCrds();
  }
  const restored = (await registeredConfiguration(client, state.webhookConfiguration))['webhooks'][0]['clientConfig'];
  assert.equal(restored['url'], `https://127.0.0.1:${state.webhook.port}/mutate`, 'the run registration is back');
});

// ---------------------------------------------------------------------------------------------------
// 2. Least privilege, with the webhook's own credential.

test("least privilege: the ServiceAccount's token is refused (403) for everything outside its grants", { timeout: 120_000 }, async () => {
  const token = kubeconfigToken(state.webhook.files.kubeconfig);
  const as = (method: string, urlPath: string, body?: unknown, contentType?: string) => tokenRequest(state, token, method, urlPath, body, contentType);
  const namespace = await scenario.namespace('e2e-least-privilege', { optIn: true });
  const otherWebhook = 'other-webhook';
  const otherSecret = uniqueName('other-secret');
  const secret = (ns: string, name: string): KubeObject => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, stringData: { password: 'not for the webhook' } });
  await client.create(configMap(namespace, 'app', { key: 'one' }));
  // A Secret bearing the webhook's own Secret name, in another namespace: the grant is for its namespace only.
  await client.expect('POST', `/api/v1/namespaces/${namespace}/secrets`, { body: secret(namespace, TLS_SECRET) });
  await client.expect('POST', `/api/v1/namespaces/${OWN_NAMESPACE}/secrets`, { body: secret(OWN_NAMESPACE, otherSecret) });
  await client.expect('POST', CONFIGURATION_PATH, { body: { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: otherWebhook }, webhooks: [] } });
  try {
    // The token is valid and does what the webhook needs: the refusals below are authorization, not authentication.
    assert.equal((await as('GET', resourcePath('ConfigMap', namespace, 'app'))).status, 200, 'reads ConfigMaps');
    assert.equal((await as('GET', `${CONFIGURATION_PATH}/${state.webhookConfiguration}`)).status, 200, 'reads its own configuration');

    const mergePatch = 'application/merge-patch+json';
    const refused: Array<[string, string, string, unknown?, string?]> = [
      ['read a Secret in another namespace (even named like its own)', 'GET', `/api/v1/namespaces/${namespace}/secrets/${TLS_SECRET}`],
      ['list Secrets of kube-system', 'GET', '/api/v1/namespaces/kube-system/secrets'],
      ['list Secrets cluster-wide', 'GET', '/api/v1/secrets'],
      ['read a Secret of its own namespace with another name', 'GET', `/api/v1/namespaces/${OWN_NAMESPACE}/secrets/${otherSecret}`],
      ['list Secrets of its own namespace', 'GET', `/api/v1/namespaces/${OWN_NAMESPACE}/secrets`],
      ['delete its own certificate Secret', 'DELETE', `/api/v1/namespaces/${OWN_NAMESPACE}/secrets/${TLS_SECRET}`],
      ['patch another MutatingWebhookConfiguration', 'PATCH', `${CONFIGURATION_PATH}/${otherWebhook}`, { metadata: { labels: { hijacked: 'true' } } }, mergePatch],
      ['read another MutatingWebhookConfiguration', 'GET', `${CONFIGURATION_PATH}/${otherWebhook}`],
      ['create a MutatingWebhookConfiguration', 'POST', CONFIGURATION_PATH, { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'planted' }, webhooks: [] }],
      ['delete its own MutatingWebhookConfiguration', 'DELETE', `${CONFIGURATION_PATH}/${state.webhookConfiguration}`],
      ['create a ConfigMap', 'POST', resourcePath('ConfigMap', namespace), configMap(namespace, 'planted', { key: 'x' })],
      ['change a ConfigMap', 'PATCH', resourcePath('ConfigMap', namespace, 'app'), { data: { key: 'two' } }, mergePatch],
      ['replace a ConfigMap', 'PUT', resourcePath('ConfigMap', namespace, 'app'), configMap(namespace, 'app', { key: 'three' })],
      ['delete a ConfigMap', 'DELETE', resourcePath('ConfigMap', namespace, 'app')],
      ['delete a Deployment', 'DELETE', resourcePath('Deployment', namespace, 'anything')],
      ['create a Pod', 'POST', `/api/v1/namespaces/${namespace}/pods`, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'planted' }, spec: { containers: [{ name: 'c', image: 'registry.invalid/x:1' }] } }],
    ];
    const wrong: string[] = [];
    for (const [what, method, urlPath, body, contentType] of refused) {
      const response = await as(method, urlPath, body, contentType);
      if (response.status !== 403 || response.body['reason'] !== 'Forbidden') wrong.push(`${what}: ${method} ${urlPath} answered ${response.status} ${String(response.body['reason'] ?? '')}`);
    }
    assert.deepEqual(wrong, [], 'every request outside the grants is refused with 403 Forbidden');

    // And nothing changed behind a refusal.
    assert.equal((await client.get(resourcePath('ConfigMap', namespace, 'app')))['data']['key'], 'one');
    assert.equal((await client.get(`${CONFIGURATION_PATH}/${otherWebhook}`))['metadata']['labels'], undefined);
    assert.equal(await client.find(`${CONFIGURATION_PATH}/planted`), undefined);
  } finally {
    await client.request('DELETE', `${CONFIGURATION_PATH}/${otherWebhook}`);
    await client.request('DELETE', `/api/v1/namespaces/${OWN_NAMESPACE}/secrets/${otherSecret}`);
  }
});

// ---------------------------------------------------------------------------------------------------
// 3 and 4. Self-managed certificates, with the shipped ServiceAccount's token and RBAC.

interface Replicas {
  readonly processes: ExtraProcess[];
  readonly ports: number[];
}

/** Whether a webhook's log has the admission line of a real (not dry-run) patched CREATE of namespace/name. */
function admissionLogged(logFile: string, namespace: string, name: string): boolean {
  return logEntries(logFile).some((entry) =>
    entry['msg'] === 'admission' && entry['namespace'] === namespace && entry['name'] === name && entry['operation'] === 'CREATE' && entry['outcome'] === 'patched' && entry['dryRun'] === false);
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/**
 * Points the registration at the first of `count` fresh self-managed replicas (no Secret, no caBundle),
 * starts them in the same tick, and waits until each serves /readyz with the CA of the Secret they made.
 */
async function startReplicas(label: string, count: number, timing: readonly string[], replicas: Replicas): Promise<{ secret: TlsSecret; readyMs: number }> {
  await deleteTlsSecret(client);
  replicas.ports.push(...(await distinctFreePorts(count)));
  await pointRegistration(client, state, replicas.ports[0]!);
  assert.deepEqual(caBundles(await registeredConfiguration(client, state.webhookConfiguration)), [undefined], 'no caBundle before the replicas start');
  const started = performance.now();
  for (const [index, port] of replicas.ports.entries()) {
    replicas.processes.push(spawnWebhook({ state, name: `install-${label}-${index}`, args: selfManagedArgs(state, port, timing) }));
  }
  await Promise.all(replicas.processes.map((proc) => waitListening(proc, 90_000)));
  const secret = await readTlsSecret(client);
  assert.ok(secret, `Secret ${TLS_SECRET} exists once the replicas listen`);
  await Promise.all(replicas.ports.map((port, index) =>
    waitFor(`replica ${index} ready`, async () => {
      const status = replicas.processes[index]!.exitStatus();
      if (status !== undefined) throw new GiveUp(`replica ${index} exited (${status})`);
      const current = await readTlsSecret(client);
      return (await httpsGet(port, '/readyz', current?.bundle ?? secret.bundle)).status === 200;
    }, { timeoutMs: 60_000, intervalMs: 100 }),
  ));
  return { secret, readyMs: performance.now() - started };
}

async function stopReplicas(replicas: Replicas): Promise<void> {
  await Promise.all(replicas.processes.map((proc) => proc.stop()));
  await restoreRegistration(client, state);
  await deleteTlsSecret(client);
}

/** Waits until the API server's admissions reach `port` (its admission counter moves), returns the counts. */
async function waitForAdmissionsAt(port: number, ca: string | (() => Promise<string>)): Promise<Record<string, number>> {
  return waitFor(`the API server to call the webhook on port ${port}`, async () => {
    await waitForWebhook(client);
    const outcomes = await admissionOutcomes(port, typeof ca === 'string' ? ca : await ca());
    return (outcomes['patched'] ?? 0) > 0 ? outcomes : undefined;
  }, { timeoutMs: 90_000, intervalMs: 250 });
}

test('certificate bootstrap: two self-managed replicas started together make one Secret, serve its certificate, publish its CA', { timeout: 180_000 }, async (t) => {
  const namespace = await scenario.namespace('e2e-bootstrap', { optIn: true });
  const config = configMap(namespace, 'app-config', { 'app.yaml': 'level: info\n' });
  await client.create(config);
  const replicas: Replicas = { processes: [], ports: [] };
  try {
    const creationsBefore = await secretCreations(client);
    const { secret, readyMs } = await startReplicas('bootstrap', 2, [], replicas);
    const creations = await secretCreations(client);
    const raced = creations.conflicts - creationsBefore.conflicts;
    t.diagnostic(`bootstrap: both replicas ready ${Math.round(readyMs)} ms after they were started together; ${raced} create(s) lost the race (409) and adopted the winner's Secret`);
    // Nothing else in the run creates Secrets while this test runs.
    assert.equal(creations.created - creationsBefore.created, 1, 'exactly one Secret was ever created');

    const labelled = (await client.list(`/api/v1/namespaces/${OWN_NAMESPACE}/secrets`)).filter((item) => item['metadata']['labels']?.['app.kubernetes.io/name'] === 'config-checksum-webhook');
    assert.deepEqual(labelled.map((item) => item['metadata']['name']), [TLS_SECRET], 'exactly one certificate Secret');
    const steps = replicas.processes.map((proc) => rotationSteps(proc.logFile).map((entry) => entry.step));
    assert.deepEqual(steps.flat(), ['created'], `one replica created the CA and certificate, the other adopted them (steps per replica: ${JSON.stringify(steps)})`);

    const leaf = new X509Certificate(secret.leaf);
    const ca = new X509Certificate(secret.caCertificate);
    assert.equal(secret.bundle.trim(), secret.caCertificate.trim(), 'a fresh bundle holds the one CA');
    assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey), 'the serving certificate is signed by the Secret CA');
    assert.match(leaf.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    assert.match(leaf.subjectAltName ?? '', /DNS:config-checksum-webhook\.config-checksum\.svc(,|$)/);
    for (const [index, port] of replicas.ports.entries()) {
      const served = await servedCertificate(port, secret.bundle);
      assert.ok(served.authorized, `replica ${index}: the served chain verifies against the bundle (${served.error})`);
      assert.equal(served.certificate.fingerprint256, leaf.fingerprint256, `replica ${index} serves the Secret's certificate`);
    }
    assert.deepEqual(caBundles(await registeredConfiguration(client, state.webhookConfiguration)), [secret.bundle], "caBundle equals the Secret's ca-bundle.crt");

    // The API server trusts the published CA: a real create is mutated through the first replica.
    const ca0 = secret.bundle;
    const before = await waitForAdmissionsAt(replicas.ports[0]!, ca0);
    const deployment = workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config' });
    const created = await client.create(deployment);
    assert.equal(templateChecksum(created.body), expectedChecksum(deployment, [config]).checksum, 'mutated through the self-managed replica');
    const afterCreate = await admissionOutcomes(replicas.ports[0]!, ca0);
    assert.ok(afterCreate['patched']! > before['patched']!, 'the self-managed replica counted the create');
    assert.ok(admissionLogged(replicas.processes[0]!.logFile, namespace, 'web'), 'the self-managed replica logged the create');
    assert.equal(afterCreate['fail-open'], 0);
  } finally {
    await stopReplicas(replicas);
  }
});

// The shortest lifetimes src/config.ts accepts with a 3 s propagation (lifetime / 3 > 3 x propagation,
// CA at least 60 s): the CA is rotated every 40 s (at 2/3 of its life), so two rotations take 80 s.
const ROTATION_TIMING = ['--ca-validity-seconds', '60', '--cert-validity-seconds', '30', '--cert-propagation-seconds', '3', '--cert-poll-seconds', '1'];
// One write every 250 ms, each taking the checksum away so that only a called webhook can put it back.
const WRITE_INTERVAL_MS = 250;
const ROTATIONS = 2;

test('rotation under load: two CA rotations during a stream of Deployment writes, no failed and no fail-open admission', { timeout: 300_000 }, async (t) => {
  assert.doesNotThrow(() => loadConfig(ROTATION_TIMING, {}), 'the timing flags satisfy the product constraints');
  const namespace = await scenario.namespace('e2e-rotation', { optIn: true });
  const config = configMap(namespace, 'app-config', { LEVEL: 'info' });
  await client.create(config);
  // Paused and scaled to zero: every write is an UPDATE the webhook must answer, and nothing rolls.
  const deployment = workload('Deployment', namespace, 'load', { envFromConfigMap: 'app-config' });
  deployment['spec'] = { ...deployment['spec'], replicas: 0, paused: true };
  await client.create(deployment);
  const expected = expectedChecksum(deployment, [config]).checksum;
  const deploymentPath = resourcePath('Deployment', namespace, 'load');

  const replicas: Replicas = { processes: [], ports: [] };
  try {
    const { secret } = await startReplicas('rotation', 2, ROTATION_TIMING, replicas);
    const port = replicas.ports[0]!;
    const bundle = async (): Promise<string> => (await readTlsSecret(client))?.bundle ?? secret.bundle;
    await waitForAdmissionsAt(port, bundle);
    const apiBefore = await webhookCallCounters(client, WEBHOOK_NAME);
    const webhookBefore = await admissionOutcomes(port, await bundle());

    // Beside the writes: the Secret's CA over time (each new one is a rotation), and a fresh TLS handshake
    // with each replica, verified against the caBundle published at that moment, as a new connection of
    // the API server (or one through the Service, to either replica) would be.
    const cas: string[] = [secret.caCertificate];
    const handshakeFailures: string[] = [];
    let handshakes = 0;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const current = await readTlsSecret(client).catch(() => undefined);
        if (current && current.caCertificate !== cas.at(-1)) cas.push(current.caCertificate);
        const published = caBundles(await registeredConfiguration(client, state.webhookConfiguration))[0] ?? '';
        for (const [index, replicaPort] of replicas.ports.entries()) {
          const served = await servedCertificate(replicaPort, published).catch((error: Error) => ({ authorized: false, error: error.message }));
          handshakes++;
          if (!served.authorized) handshakeFailures.push(`replica ${index}: ${served.error} (bundle of ${splitPem(published).length} CA)`);
        }
        await sleep(250);
      }
    })();
    const timeline = (): LoggedStep[] => replicas.processes.flatMap((proc) => rotationSteps(proc.logFile)).sort((a, b) => a.at - b.at);
    const count = (step: string): number => timeline().filter((entry) => entry.step === step).length;

    const failures: string[] = [];
    let writes = 0;
    const started = performance.now();
    // Deadline: the second rotation completes about 86 s after the Secret was made.
    const deadline = started + 150_000;
    let completedAt: number | undefined;
    try {
      for (let tick = 1; ; tick++) {
        const due = started + tick * WRITE_INTERVAL_MS;
        const response = await client.request('PATCH', deploymentPath, {
          body: { spec: { template: { metadata: { labels: { tick: String(tick) }, annotations: { [CHECKSUM_ANNOTATION]: null } } } } },
          contentType: 'application/merge-patch+json',
        });
        writes++;
        if (response.status !== 200) failures.push(`write ${tick}: HTTP ${response.status} ${String(response.body['message'] ?? '')}`);
        else if (templateChecksum(response.body) !== expected) failures.push(`write ${tick}: checksum ${String(templateChecksum(response.body))} (fail-open)`);
        if (completedAt === undefined && count('old-ca-removed') >= ROTATIONS && cas.length > ROTATIONS) completedAt = performance.now();
        // Keep writing a little past the last narrowing of the bundle, while the API server takes it in.
        if (completedAt !== undefined && performance.now() - completedAt > 3_000) break;
        if (performance.now() > deadline) break;
        await sleep(Math.max(0, due - performance.now()));
      }
    } finally {
      watching = false;
      await watcher;
    }
    const seconds = (performance.now() - started) / 1000;
    const apiAfter = await webhookCallCounters(client, WEBHOOK_NAME);
    const webhookAfter = await admissionOutcomes(port, await bundle());
    const rotations = cas.length - 1;
    const steps = timeline();
    const origin = steps[0]?.at ?? 0;
    const stepList = steps.map((entry) => `${entry.step}@${((entry.at - origin) / 1000).toFixed(1)}s`).join(', ');
    t.diagnostic(`rotation: ${writes} writes in ${seconds.toFixed(1)} s, ${rotations} CA rotations seen in the Secret; steps (both replicas): ${stepList}`);
    t.diagnostic(`rotation: ${handshakes} fresh TLS handshakes with the replicas against the published caBundle, ${handshakeFailures.length} failed`);
    t.diagnostic(`rotation: API server fail-open ${apiBefore.failOpen} -> ${apiAfter.failOpen}, rejections ${apiBefore.rejections} -> ${apiAfter.rejections}, webhook requests +${apiAfter.requests - apiBefore.requests}; webhook outcomes ${JSON.stringify(webhookBefore)} -> ${JSON.stringify(webhookAfter)}`);

    assert.ok(rotations >= ROTATIONS, `at least ${ROTATIONS} CA rotations during the load (saw ${rotations} within ${seconds.toFixed(0)} s)`);
    assert.ok(count('ca-added') >= ROTATIONS && count('leaf-from-new-ca') >= ROTATIONS && count('old-ca-removed') >= ROTATIONS, `every rotation went through its three steps: ${stepList}`);
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${writes} writes failed or came back without the checksum`);
    assert.ok(handshakes > 0);
    assert.deepEqual(handshakeFailures.slice(0, 10), [], `${handshakeFailures.length} of ${handshakes} handshakes failed against the published caBundle`);
    assert.equal(webhookAfter['fail-open'], 0, 'the webhook answered no admission fail-open');
    const answered = webhookAfter['patched']! - webhookBefore['patched']!;
    assert.ok(answered >= writes, `the replica patched every write (${answered} patched for ${writes} writes)`);
    assert.equal(apiAfter.failOpen - apiBefore.failOpen, 0, 'the API server failed open on no call');
    assert.equal(apiAfter.rejections - apiBefore.rejections, 0, 'the API server recorded no failed call');
    assert.ok(apiAfter.requests - apiBefore.requests >= writes, 'the API server counted a webhook call for every write');
  } finally {
    await stopReplicas(replicas);
  }
});

// ---------------------------------------------------------------------------------------------------
// 5. The production install: the Dockerfile's steps outside Docker.

/** Every path under `dir` with its size and modification time. */
function snapshot(dir: string): Map<string, string> {
  const entries = new Map<string, string>();
  for (const relative of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const stats = lstatSync(path.join(dir, relative));
    entries.set(relative, `${stats.size}:${stats.mtimeMs}`);
  }
  return entries;
}

function diffSnapshots(before: Map<string, string>, after: Map<string, string>): string[] {
  const changed = [...after].filter(([relative, stamp]) => before.get(relative) !== stamp).map(([relative]) => `written: ${relative}`);
  return [...changed, ...[...before.keys()].filter((relative) => !after.has(relative)).map((relative) => `removed: ${relative}`)];
}

test('production install: the Dockerfile\'s build steps, then its ENTRYPOINT alone in an empty directory serves TLS and admits through the API server', { timeout: 300_000 }, async (t) => {
  const buildDir = mkdtempSync(path.join(os.tmpdir(), 'config-checksum-image-build-'));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'config-checksum-image-'));
  let proc: ExtraProcess | undefined;
  let pointed = false;
  try {
    // The steps as the Dockerfile says them, so this test follows it when it changes.
    const image = readImageRecipe();
    assert.equal(image.run.entrypoint[0], 'node', 'the image runs node');
    assert.equal(process.versions.node.split('.')[0], '24', 'the project Node is the image Node major');
    for (const entry of ['package.json', 'package-lock.json', 'src']) cpSync(path.join(REPO_ROOT, entry), path.join(buildDir, entry), { recursive: true });
    // The build stage's RUN steps under the project's Node 24, as in the node:24 image (its WORKDIR is buildDir).
    const buildEnv = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env['PATH'] ?? ''}` };
    for (const step of image.build.steps) {
      const started = performance.now();
      const result = await runIn(buildDir, 'sh', ['-c', step], buildEnv);
      assert.equal(result.code, 0, `build step "${step}" failed:\n${result.stderr.slice(-2_000)}`);
      t.diagnostic(`build step "${step}": ${Math.round(performance.now() - started)} ms`);
    }
    // The run stage: only what it copies from the build stage. The build stage's WORKDIR is buildDir here,
    // the run stage's is dir; a path outside either WORKDIR is refused rather than written on this machine.
    const under = (root: string, workdir: string, target: string): string => {
      const relative = path.relative(workdir, path.resolve(workdir, target));
      assert.ok(!relative.startsWith('..') && !path.isAbsolute(relative), `${target} is outside WORKDIR ${workdir}`);
      return path.join(root, relative);
    };
    for (const copy of image.run.copies) {
      cpSync(under(buildDir, image.build.workdir, copy.from), under(dir, image.run.workdir, copy.to), { recursive: true });
    }
    const shippedFiles = readdirSync(dir).sort();
    t.diagnostic(`run stage holds: ${shippedFiles.map((file) => `${file} (${(lstatSync(path.join(dir, file)).size / 1024).toFixed(0)} KiB)`).join(', ')}`);
    assert.ok(!shippedFiles.includes('node_modules'), 'no node_modules in the image: the bundle is the whole program');
    const program = image.run.entrypoint.slice(1).find((arg) => !arg.startsWith('--'));
    assert.ok(program && shippedFiles.includes(program), `the ENTRYPOINT's program ${String(program)} is in the run stage`);
    assert.match(readFileSync(path.join(dir, 'main.LICENSES.txt'), 'utf8'), /fastify@[\d.]+ \(MIT\)/, 'the licences of the bundled packages travel with it');

    // The command of the image's ENTRYPOINT with the args and env of the shipped Deployment; the test
    // changes only where it listens, the TLS files (the run's, in place of self-managed), the credential
    // (the ServiceAccount token in place of the in-cluster mount), and turns the watcher off (the run's
    // webhook leads the Lease).
    const shipped = find(await renderOverlay(kubectl, path.join(OVERLAYS_DIR, 'namespace-opt-in')), 'Deployment');
    const container = shipped['spec']['template']['spec']['containers'][0];
    const fieldRefs: Record<string, string> = { 'metadata.namespace': shipped['metadata']['namespace'], 'metadata.name': `${shipped['metadata']['name']}-5d8f7c-install` };
    const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...image.run.env };
    for (const variable of container['env'] as KubeObject[]) {
      const value = variable['value'] ?? fieldRefs[variable['valueFrom']?.['fieldRef']?.['fieldPath']];
      assert.ok(value !== undefined, `env ${variable['name']} resolvable`);
      env[variable['name']] = value;
    }
    const args = (container['args'] as string[]).filter((arg) => !arg.startsWith('--tls-mode'));
    const port = await freePort();
    const files = state.webhook.files;
    // The Deployment mounts the root filesystem read-only: the process must write nothing where it runs.
    const installed = snapshot(dir);
    proc = spawnWebhook({
      state,
      name: 'install-production',
      cwd: dir,
      env,
      entry: image.run.entrypoint.slice(1),
      args: [...args, '--tls-mode=files', `--tls-cert-file=${files.certFile}`, `--tls-key-file=${files.keyFile}`, '--host=127.0.0.1', `--port=${port}`, `--kubeconfig=${files.kubeconfig}`, '--watch=false'],
    });
    assert.equal(await waitListening(proc), port);
    const ca = readFileSync(files.caFile);
    const healthz = await httpsGet(port, '/healthz', ca);
    assert.equal(healthz.status, 200, '/healthz over TLS');
    assert.deepEqual(healthz.json, { status: 'ok' });
    assert.equal((await httpsGet(port, '/readyz', ca)).status, 200, '/readyz over TLS');

    // An admission through the API server, answered by this install.
    const namespace = await scenario.namespace('e2e-production', { optIn: true });
    const config = configMap(namespace, 'app-config', { 'app.yaml': 'level: info\n' });
    await client.create(config);
    pointed = true;
    await pointRegistration(client, state, port, ca.toString('utf8'));
    const before = await waitForAdmissionsAt(port, ca.toString('utf8'));
    const deployment = workload('Deployment', namespace, 'web', { volumeConfigMap: 'app-config' });
    const created = await client.create(deployment);
    assert.equal(templateChecksum(created.body), expectedChecksum(deployment, [config]).checksum, 'mutated by the production install');
    const afterCreate = await admissionOutcomes(port, ca);
    assert.ok(afterCreate['patched']! > before['patched']!, 'the production install counted the create');
    assert.ok(admissionLogged(proc.logFile, namespace, 'web'), 'the production install logged the create');
    const logged = logEntries(proc.logFile);
    assert.deepEqual(logged.filter((entry) => Number(entry['level']) >= 50).map((entry) => entry['msg']), [], 'no error logged');

    // SIGTERM with the shipped --drain-seconds: unready at once, still serving during the drain window.
    signalGroup(proc.pid, 'SIGTERM');
    await waitFor('/readyz to answer 503 while draining', async () => (await httpsGet(port, '/readyz', ca)).status === 503, { timeoutMs: 10_000, intervalMs: 100 });
    assert.equal((await httpsGet(port, '/healthz', ca)).status, 200, 'still serving during the drain window');
    await proc.stop(1_000);
    const changed = diffSnapshots(installed, snapshot(dir));
    assert.deepEqual(changed, [], 'the process wrote nothing into its install directory (readOnlyRootFilesystem)');
  } finally {
    await proc?.stop(1_000);
    if (pointed) await restoreRegistration(client, state);
    rmSync(dir, { recursive: true, force: true });
    rmSync(buildDir, { recursive: true, force: true });
  }
  assert.ok(!existsSync(dir) && !existsSync(buildDir), 'the build and install directories are removed');
});

test('client certificates required (overlay client-certificates): the Deployment\'s probes reach the health port without a certificate, the admission port refuses callers without one', { timeout: 120_000 }, async (t) => {
  const rendered = await renderOverlay(kubectl, path.join(OVERLAYS_DIR, 'client-certificates'));
  const deployment = rendered.find((object) => object['kind'] === 'Deployment')!;
  const container = deployment['spec']['template']['spec']['containers'][0] as KubeObject;
  const ports = Object.fromEntries((container['ports'] as KubeObject[]).map((port) => [port['name'], port['containerPort']]));
  const probePort = ports[container['readinessProbe']['httpGet']['port']];
  const args = container['args'] as string[];
  assert.ok(args.includes(`--health-port=${probePort}`), 'the probes use the port the process serves health on');
  assert.equal(ports[container['livenessProbe']['httpGet']['port']], probePort);

  // The Deployment's command on loopback: the CA file where the Secret volume would put it, free ports
  // for the admission and health listeners (8443 and 8081 may be taken here), the run's certificate files
  // instead of the self-managed Secret (which would publish another CA in the run's registration), no watcher.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'config-checksum-client-ca-'));
  try {
    const clientCa = createCertificateAuthority('api-server-client-ca');
    writeFileSync(path.join(dir, 'ca.crt'), clientCa.certificate);
    const healthPort = await freePort();
    const { files } = state.webhook;
    const local = (arg: string): string[] => {
      if (arg.startsWith('--client-ca-file=')) return [`--client-ca-file=${path.join(dir, 'ca.crt')}`];
      if (arg.startsWith('--health-port=')) return [`--health-port=${healthPort}`];
      if (arg === '--tls-mode=self-managed') return ['--tls-mode=files', `--tls-cert-file=${files.certFile}`, `--tls-key-file=${files.keyFile}`];
      return [arg];
    };
    const proc = spawnWebhook({
      state,
      name: 'client-certificates',
      args: [...args.flatMap(local), '--host', '127.0.0.1', '--port', '0', '--watch', 'false', '--kubeconfig', files.kubeconfig, '--drain-seconds', '0'],
    });
    try {
      const port = await waitListening(proc);
      const ca = readFileSync(files.caFile, 'utf8');
      // What kubelet does: GET the probe path on the probe port, no client certificate.
      assert.equal((await httpsGet(healthPort, '/readyz', ca)).status, 200, 'ready, as kubelet sees it');
      assert.equal((await httpsGet(healthPort, '/healthz', ca)).status, 200, 'alive, as kubelet sees it');
      await assert.rejects(httpsGet(port, '/readyz', ca), 'the admission port refuses a caller without a client certificate');
      t.diagnostic(`admission port ${port} requires client certificates; health port ${healthPort} serves the probes`);
    } finally {
      await proc.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
