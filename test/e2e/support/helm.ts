// Helm, helmfile and kubectl's kustomize as users run them, for the chart tests (test/unit/chart-*.test.ts)
// and the Helm e2e scenarios (test/e2e/helm.test.ts): real binaries from the control-plane build, each
// helm with its own cache/config/data directories (nothing read from or written to the user's ~/.config),
// charts from local directories only (no repository is reachable).

import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseJsonStream, run, type CommandResult, type KubeObject } from '../../../src/local/kube.ts';
import { REPO_ROOT } from '../../../src/local/webhook.ts';

export const CHART_DIR = path.join(REPO_ROOT, 'manifests', 'chart', 'config-checksum-webhook');
export const MANIFESTS_DIR = path.join(REPO_ROOT, 'manifests');
export const OVERLAYS_DIR = path.join(MANIFESTS_DIR, 'overlays');
export const GATEWAY_EXAMPLE_DIR = path.join(REPO_ROOT, 'test', 'examples', 'gateway');


/** The Helm majors the harness builds: `helm` is Helm 3, `helm4` Helm 4 (server-side apply by default). */
export type HelmMajor = 3 | 4;
export const HELM_MAJORS: readonly HelmMajor[] = [3, 4];

export interface ToolsOptions {
  readonly binDir: string;
  /** Which helm runs (and which one helmfile drives through --helm-binary); Helm 3 when absent. */
  readonly helmMajor?: HelmMajor;
  /** Where helm keeps its cache, config and data; a fresh temporary directory when absent. */
  readonly workDir?: string;
  /** Passed as --kubeconfig to helm, helmfile and kubectl; none for rendering only. */
  readonly kubeconfig?: string;
}

/** One set of tools with its own helm home. */
export class HelmTools {
  readonly binDir: string;
  readonly workDir: string;
  readonly kubeconfig: string | undefined;
  readonly helmMajor: HelmMajor;
  readonly helm: string;
  readonly helmfile: string;
  readonly kubectl: string;
  readonly env: NodeJS.ProcessEnv;
  readonly #ownsWorkDir: boolean;

  constructor(options: ToolsOptions) {
    this.binDir = options.binDir;
    this.#ownsWorkDir = options.workDir === undefined;
    this.workDir = options.workDir ?? mkdtempSync(path.join(tmpdir(), 'config-checksum-helm-'));
    this.kubeconfig = options.kubeconfig;
    this.helmMajor = options.helmMajor ?? 3;
    this.helm = path.join(this.binDir, this.helmMajor === 4 ? 'helm4' : 'helm');
    this.helmfile = path.join(this.binDir, 'helmfile');
    this.kubectl = path.join(this.binDir, 'kubectl');
    const home = path.join(this.workDir, 'helm-home');
    for (const dir of ['cache', 'config', 'data']) mkdirSync(path.join(home, dir), { recursive: true });
    this.env = {
      ...process.env,
      HELM_CACHE_HOME: path.join(home, 'cache'),
      HELM_CONFIG_HOME: path.join(home, 'config'),
      HELM_DATA_HOME: path.join(home, 'data'),
      // helmfile's own cache (remote charts, values); unused with local charts, but never the user's.
      HELMFILE_CACHE_HOME: path.join(home, 'helmfile-cache'),
      // No kubeconfig but the one passed explicitly, even for tools that look at the environment first.
      KUBECONFIG: options.kubeconfig ?? path.join(home, 'no-kubeconfig'),
      NO_COLOR: '1',
    };
  }

  #cluster(): string[] {
    return this.kubeconfig ? ['--kubeconfig', this.kubeconfig] : [];
  }

  runHelm(args: readonly string[], input?: string): Promise<CommandResult> {
    return run(this.helm, [...args, ...this.#cluster()], input, this.env);
  }

  /** helmfile with the helmfile.yaml at `file`; it resolves charts and values relative to that file. */
  runHelmfile(file: string, args: readonly string[]): Promise<CommandResult> {
    return run(this.helmfile, ['--helm-binary', this.helm, ...this.#cluster(), '--no-color', '--file', file, ...args], undefined, this.env);
  }

  runKubectl(args: readonly string[], input?: string): Promise<CommandResult> {
    return run(this.kubectl, [...this.#cluster(), ...args], input, this.env);
  }

  async expectHelm(args: readonly string[], input?: string): Promise<CommandResult> {
    return expectOk(`helm ${args.join(' ')}`, await this.runHelm(args, input));
  }

  async expectHelmfile(file: string, args: readonly string[]): Promise<CommandResult> {
    return expectOk(`helmfile ${args.join(' ')}`, await this.runHelmfile(file, args));
  }

  async expectKubectl(args: readonly string[], input?: string): Promise<CommandResult> {
    return expectOk(`kubectl ${args.join(' ')}`, await this.runKubectl(args, input));
  }

  /**
   * YAML documents (helm's or kustomize's output) as JSON objects, decoded by kubectl itself: `label
   * --local` contacts no server, knows no kinds it must map (cert-manager's are fine), and prints each
   * object as JSON. The label it removes is set by nobody; kubectl adds an empty `labels: {}` to objects
   * without labels, which normalise() drops.
   */
  async decode(yaml: string): Promise<KubeObject[]> {
    const decoded = expectOk('kubectl label --local', await run(this.kubectl, ['label', '--local', '-f', '-', 'config-checksum.io/decode-', '-o', 'json'], yaml, this.env));
    return parseJsonStream(decoded.stdout);
  }

  /** `helm template` of a chart with values (written to a file, as a user's -f values.yaml). */
  async template(chart: string, release: string, namespace: string, values: KubeObject = {}, extraArgs: readonly string[] = []): Promise<string> {
    const valuesFile = path.join(this.workDir, `values-${process.hrtime.bigint()}.json`);
    writeFileSync(valuesFile, JSON.stringify(values));
    // No --kubeconfig: rendering must not depend on a cluster.
    const result = await run(this.helm, ['template', release, chart, '--namespace', namespace, '--values', valuesFile, ...extraArgs], undefined, this.env);
    return expectOk(`helm template ${release} ${chart} ${JSON.stringify(values)}`, result).stdout;
  }

  async renderChart(values: KubeObject = {}, options: { release?: string; namespace?: string } = {}): Promise<KubeObject[]> {
    return this.decode(await this.template(CHART_DIR, options.release ?? 'config-checksum-webhook', options.namespace ?? 'config-checksum', values));
  }

  async renderOverlay(overlay: string): Promise<KubeObject[]> {
    const result = await run(this.kubectl, ['kustomize', path.join(OVERLAYS_DIR, overlay)], undefined, this.env);
    return this.decode(expectOk(`kubectl kustomize ${overlay}`, result).stdout);
  }

  /**
   * What a user's own overlay renders: a kustomization in a fresh directory of the work directory with these
   * resources and components (paths under manifests/, e.g. 'overlays/cert-manager', 'components/pod-monitor'),
   * in this order, as `kubectl kustomize` does.
   */
  async renderComposition(resources: readonly string[], components: readonly string[]): Promise<KubeObject[]> {
    const dir = mkdtempSync(path.join(this.workDir, 'overlay-'));
    const relative = (entry: string): string => path.relative(dir, path.join(MANIFESTS_DIR, entry));
    const kustomization = {
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      resources: resources.map(relative),
      components: components.map(relative),
    };
    writeFileSync(path.join(dir, 'kustomization.yaml'), JSON.stringify(kustomization));
    const result = await run(this.kubectl, ['kustomize', dir], undefined, this.env);
    return this.decode(expectOk(`kubectl kustomize ${[...resources, ...components].join(' + ')}`, result).stdout);
  }

  /** Removes the helm home when this instance made it. */
  close(): void {
    if (this.#ownsWorkDir) rmSync(this.workDir, { recursive: true, force: true });
  }
}

function expectOk(what: string, result: CommandResult): CommandResult {
  if (result.code !== 0) throw new Error(`${what} exited ${result.code}:\n${result.stderr.trim()}\n${result.stdout.trim().split('\n').slice(-20).join('\n')}`);
  return result;
}

// ---- Comparing the chart with the kustomize overlays ----------------------------------------------------

/**
 * Labels that the chart puts on every object's metadata and the overlays do not: Helm's bookkeeping
 * (helm.sh/chart, app.kubernetes.io/managed-by, app.kubernetes.io/instance, app.kubernetes.io/version)
 * and the recommended name label (the overlays set it on the Deployment and Service only). No selector
 * in either rendering matches an object's metadata labels: Services, PodDisruptionBudgets,
 * NetworkPolicies and topology constraints select pods, through spec.template.metadata.labels and the
 * selectors, which are compared as they are.
 */
export const HELM_ONLY_LABELS: readonly string[] = [
  'helm.sh/chart',
  'app.kubernetes.io/managed-by',
  'app.kubernetes.io/instance',
  'app.kubernetes.io/version',
  'app.kubernetes.io/name',
];

export function objectKey(object: KubeObject): string {
  const namespace = object['metadata']?.['namespace'];
  return `${object['kind']}/${namespace ? `${namespace}/` : ''}${object['metadata']?.['name']}`;
}

/**
 * The one normalisation applied before comparing: HELM_ONLY_LABELS removed from metadata.labels, and an
 * empty metadata.labels removed. Everything else (apiVersion, every other label, annotations, spec, rules,
 * roleRef, subjects, webhooks, data) is compared unchanged; documents are matched by kind, namespace and
 * name, so their order and the YAML comments do not matter.
 */
export function normalise(objects: readonly KubeObject[]): Map<string, KubeObject> {
  const byKey = new Map<string, KubeObject>();
  for (const original of objects) {
    const object = structuredClone(original);
    const labels = object['metadata']?.['labels'] as Record<string, string> | undefined;
    if (labels) {
      for (const key of HELM_ONLY_LABELS) delete labels[key];
      if (Object.keys(labels).length === 0) delete object['metadata']['labels'];
    }
    const key = objectKey(object);
    if (byKey.has(key)) throw new Error(`${key} rendered twice`);
    byKey.set(key, object);
  }
  return byKey;
}

// ---- The gateway example --------------------------------------------------------------------------------

/**
 * A working copy of test/examples/gateway (scenarios edit its files), symbolic links kept as links, so the
 * gateway-apis chart's apis/ still points at the copy's apis/ folder.
 */
export function copyGatewayExample(into: string): string {
  const target = path.join(into, 'gateway');
  cpSync(GATEWAY_EXAMPLE_DIR, target, { recursive: true, verbatimSymlinks: true });
  return target;
}
