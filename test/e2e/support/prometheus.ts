// Prometheus and promtool for the monitoring tests (prometheus-rules.test.ts, monitoring.test.ts): the
// binaries of test/monitoring/build-prometheus.sh, the rules file Prometheus loads from a PrometheusRule,
// the scrape config the Prometheus Operator makes of a ServiceMonitor endpoint, and a real Prometheus on
// 127.0.0.1 with its HTTP API.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../../../src/local/control-plane.ts';
import { GiveUp, run, waitFor, type CommandResult, type KubeObject } from '../../../src/local/kube.ts';
import { spawnLogged, stopGroup, tail, type LoggedProcess, type Registry } from '../../../src/local/process.ts';
import { REPO_ROOT } from '../../../src/local/webhook.ts';

export const BUILD_SCRIPT = path.join(REPO_ROOT, 'test', 'monitoring', 'build-prometheus.sh');
export const MONITORING_DIR = path.join(REPO_ROOT, 'test', 'monitoring');
export const DASHBOARD_FILE = path.join(REPO_ROOT, 'manifests', 'chart', 'config-checksum-webhook', 'dashboards', 'config-checksum-webhook.json');

/**
 * The directory with prometheus, promtool and monitoring-crds: PROMETHEUS_BIN when set (the test command
 * builds first and sets it), else what build-prometheus.sh prints (instant on a warm cache; a cold build
 * takes minutes).
 */
export function prometheusBinaries(say: (line: string) => void = () => {}): string {
  const fromEnv = process.env['PROMETHEUS_BIN'];
  if (fromEnv) return fromEnv;
  say(`PROMETHEUS_BIN is not set; running ${path.relative(REPO_ROOT, BUILD_SCRIPT)} (instant when its cache is warm; the first build takes about 6 minutes on 2 cores)`);
  let output: string;
  try {
    output = execFileSync('bash', [BUILD_SCRIPT], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  } catch (error) {
    throw new Error(`prometheus and promtool could not be built (${path.basename(BUILD_SCRIPT)} failed: ${(error as Error).message})`, { cause: error });
  }
  const binDir = output.trim().split('\n').at(-1);
  if (!binDir) throw new Error(`${path.basename(BUILD_SCRIPT)} printed no binary directory`);
  return binDir;
}

export function promtool(binDir: string, args: readonly string[], cwd?: string): Promise<CommandResult> {
  return run(path.join(binDir, 'promtool'), args, undefined, process.env, cwd);
}

/** The rule file Prometheus loads from a PrometheusRule, as the Prometheus Operator writes it: its spec's groups. */
export function rulesFile(prometheusRule: KubeObject): string {
  if (prometheusRule['kind'] !== 'PrometheusRule') throw new Error(`not a PrometheusRule: ${String(prometheusRule['kind'])}`);
  // JSON is YAML: Prometheus and promtool read it as a rules file.
  return `${JSON.stringify({ groups: prometheusRule['spec']['groups'] }, null, 2)}\n`;
}

export interface ScrapeTarget {
  /** The job's name; the Prometheus Operator names it after the Service (ServiceMonitor) or the monitor. */
  readonly jobName: string;
  readonly address: string;
  /** Labels the Prometheus Operator gives a target from Kubernetes service discovery. */
  readonly labels: Readonly<Record<string, string>>;
  /** A file with the PEM the endpoint's tlsConfig.ca names (a Secret key, as the operator mounts it). */
  readonly caFile: string;
  readonly scrapeInterval: string;
}

// The fields of an endpoint that scrapeConfig() translates; anything else the chart renders must be added
// here, so that the test never scrapes with settings other than the rendered ones.
const ENDPOINT_FIELDS = new Set(['port', 'scheme', 'path', 'interval', 'scrapeTimeout', 'tlsConfig']);
const TLS_FIELDS = new Set(['ca', 'serverName']);

/**
 * The scrape config of one ServiceMonitor or PodMonitor endpoint, as the Prometheus Operator generates it,
 * with a static target in place of Kubernetes service discovery (there is no kubelet here to run pods).
 */
export function scrapeConfig(endpoint: KubeObject, target: ScrapeTarget): KubeObject {
  const unknown = Object.keys(endpoint).filter((key) => !ENDPOINT_FIELDS.has(key));
  const tls = endpoint['tlsConfig'] as KubeObject | undefined;
  const unknownTls = Object.keys(tls ?? {}).filter((key) => !TLS_FIELDS.has(key));
  if (unknown.length + unknownTls.length > 0) throw new Error(`endpoint fields this test does not translate: ${[...unknown, ...unknownTls.map((key) => `tlsConfig.${key}`)].join(', ')}`);
  return {
    job_name: target.jobName,
    scheme: endpoint['scheme'] ?? 'http',
    metrics_path: endpoint['path'] ?? '/metrics',
    scrape_interval: endpoint['interval'] ?? target.scrapeInterval,
    ...(endpoint['scrapeTimeout'] ? { scrape_timeout: endpoint['scrapeTimeout'] } : {}),
    ...(tls ? { tls_config: { ca_file: target.caFile, ...(tls['serverName'] ? { server_name: tls['serverName'] } : {}), insecure_skip_verify: false } } : {}),
    static_configs: [{ targets: [target.address], labels: target.labels }],
  };
}

export interface PrometheusOptions {
  readonly binDir: string;
  /** Where its config, rules, data and log go. */
  readonly dir: string;
  readonly registry: Registry;
  readonly scrapeConfigs: readonly KubeObject[];
  /** Rule files' contents by file name. */
  readonly rules: Readonly<Record<string, string>>;
  readonly evaluationInterval?: string;
}

export interface Alert {
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly state: 'pending' | 'firing' | 'inactive';
  readonly value: string;
}

export interface Target {
  readonly labels: Record<string, string>;
  readonly scrapeUrl: string;
  readonly health: string;
  readonly lastError: string;
}

/** A Prometheus on 127.0.0.1 (its own process group, registered with the run, so the teardown stops it). */
export class PrometheusServer {
  readonly url: string;
  readonly logFile: string;
  readonly #process: LoggedProcess;

  private constructor(url: string, process: LoggedProcess) {
    this.url = url;
    this.#process = process;
    this.logFile = process.logFile;
  }

  static async start(options: PrometheusOptions): Promise<PrometheusServer> {
    mkdirSync(path.join(options.dir, 'data'), { recursive: true });
    for (const [name, text] of Object.entries(options.rules)) writeFileSync(path.join(options.dir, name), text);
    const config = {
      global: { scrape_interval: '1s', evaluation_interval: options.evaluationInterval ?? '1s' },
      rule_files: Object.keys(options.rules),
      scrape_configs: options.scrapeConfigs,
    };
    const configFile = path.join(options.dir, 'prometheus.yml');
    writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`);
    const port = await freePort();
    const child = spawnLogged({
      name: 'prometheus',
      command: path.join(options.binDir, 'prometheus'),
      args: [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${path.join(options.dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=1h',
      ],
      cwd: options.dir,
      logFile: path.join(options.dir, 'prometheus.log'),
      registry: options.registry,
    });
    const server = new PrometheusServer(`http://127.0.0.1:${port}`, child);
    await waitFor('Prometheus to answer /-/ready', async () => {
      const status = child.exitStatus();
      if (status !== undefined) throw new GiveUp(`prometheus exited (${status}); log ${child.logFile}:\n${tail(child.logFile)}`);
      const response = await fetch(`${server.url}/-/ready`);
      return response.status === 200;
    }, { timeoutMs: 30_000, intervalMs: 100 });
    return server;
  }

  async #api(urlPath: string, params: Record<string, string> = {}): Promise<KubeObject> {
    const url = new URL(urlPath, this.url);
    for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
    const response = await fetch(url);
    const body = (await response.json()) as KubeObject;
    if (body['status'] !== 'success') throw new Error(`${urlPath} ${JSON.stringify(params)}: ${String(body['errorType'])}: ${String(body['error'])}`);
    return body['data'] as KubeObject;
  }

  /** An instant query; throws with Prometheus' error when it does not evaluate. */
  async query(expr: string): Promise<KubeObject[]> {
    return (await this.#api('/api/v1/query', { query: expr }))['result'] as KubeObject[];
  }

  async alerts(): Promise<Alert[]> {
    return (await this.#api('/api/v1/alerts'))['alerts'] as Alert[];
  }

  async targets(): Promise<Target[]> {
    return (await this.#api('/api/v1/targets', { state: 'active' }))['activeTargets'] as Target[];
  }

  async stop(): Promise<void> {
    await stopGroup(this.#process.pid, 10_000);
  }
}
