// The PrometheusRule of the Helm chart (metrics.prometheusRule) and of manifests/components/prometheus-rule,
// through the real promtool: `promtool check rules` (syntax, templates, every lint) on what both render, and
// `promtool test rules` with test/monitoring/rules.test.yaml, whose input series make each alert fire and
// not fire. Needs no cluster, but helm and kubectl of the control-plane build and promtool of
// test/monitoring/build-prometheus.sh, which is why it runs with the e2e suites and not `npm run test:unit`.

import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { controlPlaneBinaries } from '../../src/local/binaries.ts';
import type { KubeObject } from '../../src/local/kube.ts';
import { HelmTools } from './support/helm.ts';
import { MONITORING_DIR, prometheusBinaries, promtool, rulesFile } from './support/prometheus.ts';

const RULE_VALUES = { metrics: { prometheusRule: { enabled: true } } };
const ALERTS = [
  'ConfigChecksumWatcherNotSynced',
  'ConfigChecksumNoLeader',
  'ConfigChecksumAdmissionsFailingOpen',
  'ConfigChecksumAPIServerFailingOpen',
  'ConfigChecksumConfigMapReadsFailing',
  'ConfigChecksumRolloutsPending',
  'ConfigChecksumServingCertificateExpiring',
  'ConfigChecksumCACertificateExpiring',
  'ConfigChecksumRolloutRateLimited',
];

function prometheusRule(objects: readonly KubeObject[]): KubeObject {
  const found = objects.filter((object) => object['kind'] === 'PrometheusRule');
  assert.equal(found.length, 1, 'one PrometheusRule');
  return found[0]!;
}

function rules(rule: KubeObject): KubeObject[] {
  return (rule['spec']['groups'] as KubeObject[]).flatMap((group) => group['rules'] as KubeObject[]);
}

describe('the PrometheusRule', () => {
  let tools: HelmTools;
  let promBin: string;
  let dir: string;
  before(() => {
    tools = new HelmTools({ binDir: controlPlaneBinaries() });
    promBin = prometheusBinaries((line) => process.stderr.write(`${line}\n`));
    dir = mkdtempSync(path.join(tmpdir(), 'config-checksum-rules-'));
  });
  after(() => {
    tools?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function check(name: string, rule: KubeObject): Promise<string> {
    const file = path.join(dir, `${name}.rules.yaml`);
    writeFileSync(file, rulesFile(rule));
    const checked = await promtool(promBin, ['check', 'rules', '--lint=all', '--lint-fatal', file]);
    assert.equal(checked.code, 0, `promtool check rules (${name}):\n${checked.stdout}${checked.stderr}`);
    return file;
  }

  test('promtool check rules passes for the chart and the kustomize component, which render the same alerts', async (t) => {
    const [chart, component] = await Promise.all([tools.renderChart(RULE_VALUES), tools.renderOverlay('monitoring')]);
    await check('chart', prometheusRule(chart));
    await check('component', prometheusRule(component));
    assert.deepEqual(rules(prometheusRule(chart)), rules(prometheusRule(component)));
    const alerts = rules(prometheusRule(chart));
    assert.deepEqual(alerts.map((rule) => rule['alert']), ALERTS);
    for (const rule of alerts) {
      const name = String(rule['alert']);
      assert.match(String(rule['labels']?.['severity']), /^(warning|critical)$/, `${name}: severity`);
      assert.ok(String(rule['annotations']?.['summary']).length > 20, `${name}: summary`);
      assert.ok(String(rule['annotations']?.['description']).length > 40, `${name}: description`);
      assert.match(String(rule['annotations']?.['runbook_url']), new RegExp(`^https://\\S+/README\\.md#${name.toLowerCase()}$`), `${name}: runbook_url at the README's anchor of its name`);
      assert.match(String(rule['for']), /^\d+m$/, `${name}: for`);
    }
    t.diagnostic(alerts.map((rule) => `${rule['alert']} (${rule['labels']['severity']}, for ${rule['for']}): ${rule['expr']}`).join('\n'));
  });

  test('promtool test rules: each alert fires on series that mean it, after its for, and not on series close to them', async (t) => {
    const rulesPath = await check('default', prometheusRule(await tools.renderChart(RULE_VALUES)));
    // The test file names its rule file rules.yaml, beside it.
    copyFileSync(rulesPath, path.join(dir, 'rules.yaml'));
    copyFileSync(path.join(MONITORING_DIR, 'rules.test.yaml'), path.join(dir, 'rules.test.yaml'));
    const tested = await promtool(promBin, ['test', 'rules', 'rules.test.yaml'], dir);
    t.diagnostic(tested.stdout.trim());
    assert.equal(tested.code, 0, `promtool test rules:\n${tested.stdout}${tested.stderr}`);
    assert.match(tested.stdout, /SUCCESS/);
  });

  test('the values reach the rules: alertLabels, per alert for, severity, threshold and enabled, runbookBaseUrl', async () => {
    const objects = await tools.renderChart({
      metrics: {
        prometheusRule: {
          enabled: true,
          labels: { release: 'kube-prometheus-stack' },
          runbookBaseUrl: 'https://runbooks.example/config-checksum/',
          alertLabels: { team: 'platform' },
          alerts: {
            noLeader: { for: '2m', severity: 'page' },
            admissionsFailingOpen: { ratio: 0.2 },
            rolloutsPending: { seconds: 60 },
            servingCertificateExpiring: { days: 3 },
            rolloutRateLimited: { enabled: false },
          },
        },
      },
    });
    const rule = prometheusRule(objects);
    assert.equal(rule['metadata']['labels']['release'], 'kube-prometheus-stack');
    const byName = new Map(rules(rule).map((entry) => [String(entry['alert']), entry]));
    assert.ok(!byName.has('ConfigChecksumRolloutRateLimited'), 'a disabled alert is left out');
    assert.equal(byName.size, ALERTS.length - 1);
    const noLeader = byName.get('ConfigChecksumNoLeader')!;
    assert.equal(noLeader['for'], '2m');
    assert.deepEqual(noLeader['labels'], { severity: 'page', team: 'platform' });
    assert.equal(noLeader['annotations']['runbook_url'], 'https://runbooks.example/config-checksum#configchecksumnoleader');
    assert.match(byName.get('ConfigChecksumAdmissionsFailingOpen')!['expr'], / > 0\.2$/);
    assert.match(byName.get('ConfigChecksumRolloutsPending')!['expr'], / > 60$/);
    assert.match(byName.get('ConfigChecksumServingCertificateExpiring')!['expr'], / < 3 \* 86400$/);
    assert.deepEqual(byName.get('ConfigChecksumWatcherNotSynced')!['labels'], { severity: 'warning', team: 'platform' }, 'the other alerts keep their defaults');
    await check('custom', rule);
  });
});
