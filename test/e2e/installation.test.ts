// The webhook as installed from the shipped manifests: its identity is the shipped ServiceAccount (with
// the least-privilege RBAC of DESIGN section 7), and the registered configuration is the shipped one.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { run } from './support/kube.ts';
import { Scenario } from './support/scenario.ts';

const scenario = new Scenario();
after(() => scenario.close());
const { serviceAccount, webhook } = scenario.state;
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
