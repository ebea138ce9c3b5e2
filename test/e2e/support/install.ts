// Building blocks of the installation e2e tests (install.test.ts): extra webhook processes started the way
// a cluster runs them (self-managed certificates, or the production install's own directory), the
// registered MutatingWebhookConfiguration pointed at them and restored, requests with the ServiceAccount's
// bearer token, and the counters of both /metrics endpoints (the webhook's and the API server's).

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { spawnLogged, stopGroup, tail, type Registry } from '../../../src/local/process.ts';
import type { E2EState } from '../../../src/local/environment.ts';
import { GiveUp, KubeClient, run, waitFor, type CommandResult, type KubeObject } from '../../../src/local/kube.ts';
import { localWebhookConfiguration, logEntries, REPO_ROOT, SERVICE_ACCOUNT, waitForWebhook } from '../../../src/local/webhook.ts';
import { httpsCall, type HttpsAnswer } from '../../support/https.ts';

/** The only Secret the shipped Role lets the webhook read and update (manifests/base/rbac.yaml). */
export const TLS_SECRET = 'config-checksum-webhook-tls';
export const TLS_SECRET_PATH = `/api/v1/namespaces/${SERVICE_ACCOUNT.namespace}/secrets/${TLS_SECRET}`;
export const CONFIGURATION_PATH = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';

export interface ExtraProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** When it was spawned (performance.now()). */
  readonly spawnedAt: number;
  exitStatus(): number | string | undefined;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnWebhookOptions {
  readonly state: E2EState;
  /** Names the log file: <runDir>/logs/<name>.log (kept with the run's logs when a test fails). */
  readonly name: string;
  readonly args: readonly string[];
  /** What Node runs, before `args`; default the run's image program (state.webhook.files.program). */
  readonly entry?: readonly string[];
  /** Default: the repository. */
  readonly cwd?: string;
  /** Default: the test's environment. */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * Starts `<Node 24> <image program> <args>` (the Node running the tests: the project's Node 24) in its own process group, registered with the run (so the teardown
 * stops it even when this test file dies), output in its own log file.
 */
export function spawnWebhook(options: SpawnWebhookOptions): ExtraProcess {
  const registry: Registry = { file: options.state.registryFile };
  // A fresh file per start: what a test reads from it (rotation steps, "listening") is this start's only.
  let logFile = path.join(options.state.runDir, 'logs', `${options.name}.log`);
  for (let attempt = 2; existsSync(logFile); attempt++) logFile = path.join(options.state.runDir, 'logs', `${options.name}-${attempt}.log`);
  const cwd = options.cwd ?? REPO_ROOT;
  const child = spawnLogged({
    name: options.name,
    command: process.execPath,
    args: [...(options.entry ?? options.state.webhook.files.program), ...options.args],
    cwd,
    logFile,
    registry,
    ...(options.env ? { env: options.env } : {}),
  });
  const spawnedAt = performance.now();
  return {
    name: options.name,
    pid: child.pid,
    logFile,
    spawnedAt,
    exitStatus: () => child.exitStatus(),
    stop: async (graceMs = 10_000) => {
      await stopGroup(child.pid, graceMs);
      await child.exited;
    },
  };
}

/** Flags of an extra self-managed replica on loopback: no watcher (the run's webhook holds the Lease). */
export function selfManagedArgs(state: E2EState, port: number, timing: readonly string[] = []): string[] {
  return [
    '--host', '127.0.0.1',
    '--port', String(port),
    '--tls-mode', 'self-managed',
    '--watch', 'false',
    '--cert-extra-sans', '127.0.0.1',
    '--kubeconfig', state.webhook.files.kubeconfig,
    '--drain-seconds', '0',
    '--log-level', 'info',
    ...timing,
  ];
}

export interface LoggedStep {
  /** A Step of src/tls/authority.ts. */
  readonly step: string;
  readonly at: number;
}

/** The rotation steps a process logged, in order, with their times (ms since epoch). */
export function rotationSteps(logFile: string): LoggedStep[] {
  return logEntries(logFile)
    .filter((entry) => entry['msg'] === 'certificate rotation step')
    .map((entry) => ({ step: String(entry['step']), at: Date.parse(String(entry['time'])) }));
}

/** Waits until the process logs "listening" (self-managed: only once it has a certificate) and returns the port. */
export async function waitListening(proc: ExtraProcess, timeoutMs = 60_000): Promise<number> {
  return waitFor(`${proc.name} to log "listening"`, async () => {
    const status = proc.exitStatus();
    if (status !== undefined) throw new GiveUp(`${proc.name} exited (${status}); log ${proc.logFile}:\n${tail(proc.logFile)}`);
    const entry = logEntries(proc.logFile).find((line) => line['msg'] === 'listening' && typeof line['port'] === 'number');
    return entry ? (entry['port'] as number) : undefined;
  }, { timeoutMs, intervalMs: 100 });
}

/** GET over TLS to 127.0.0.1, verifying the server against `ca` (including the 127.0.0.1 IP SAN). */
export function httpsGet(port: number, urlPath: string, ca: string | Buffer): Promise<HttpsAnswer> {
  return httpsCall({ port, path: urlPath, ca, timeoutMs: 5_000 });
}

/** The certificate a TLS server on 127.0.0.1 presents, and whether it verifies against `ca`. */
export function servedCertificate(port: number, ca: string): Promise<{ certificate: X509Certificate; authorized: boolean; error: string | undefined }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, rejectUnauthorized: false, timeout: 5_000 }, () => {
      const peer = socket.getPeerCertificate();
      // authorizationError is an OpenSSL code string at run time (e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE).
      const answer = { certificate: new X509Certificate(peer.raw), authorized: socket.authorized, error: socket.authorized ? undefined : String(socket.authorizationError) };
      socket.end();
      resolve(answer);
    });
    socket.on('timeout', () => socket.destroy(new Error('TLS handshake timed out')));
    socket.on('error', reject);
  });
}

/** Sum of the samples of a Prometheus text metric whose labels include all of `labels`. */
export function metricSum(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const match = /^[^{\s]+(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const found = Object.fromEntries([...(match[1] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) sum += Number(match[2]);
  }
  return sum;
}

/** The API server's own /metrics (the admin certificate may read it). */
export async function apiServerMetrics(client: KubeClient): Promise<string> {
  const response = await client.request('GET', '/metrics');
  if (response.status !== 200 || typeof response.body['text'] !== 'string') throw new Error(`GET /metrics answered ${response.status}`);
  return response.body['text'];
}

/** What the API server recorded about calls to one webhook (by its name in the configuration). */
export interface WebhookCallCounters {
  readonly requests: number;
  readonly failOpen: number;
  readonly rejections: number;
}

export async function webhookCallCounters(client: KubeClient, webhookName: string): Promise<WebhookCallCounters> {
  const text = await apiServerMetrics(client);
  const labels = { name: webhookName, type: 'admit' };
  return {
    requests: metricSum(text, 'apiserver_admission_webhook_request_total', labels),
    failOpen: metricSum(text, 'apiserver_admission_webhook_fail_open_count', labels),
    rejections: metricSum(text, 'apiserver_admission_webhook_rejection_count', labels),
  };
}

/** Secret creations the API server answered, by result: 201 made one, 409 lost a race to an existing one. */
export async function secretCreations(client: KubeClient): Promise<{ created: number; conflicts: number }> {
  const text = await apiServerMetrics(client);
  const labels = { group: '', resource: 'secrets', subresource: '', verb: 'POST' };
  return {
    created: metricSum(text, 'apiserver_request_total', { ...labels, code: '201' }),
    conflicts: metricSum(text, 'apiserver_request_total', { ...labels, code: '409' }),
  };
}

/** The webhook process's admissions by outcome, from its /metrics. */
export async function admissionOutcomes(port: number, ca: string | Buffer): Promise<Record<string, number>> {
  const answer = await httpsGet(port, '/metrics', ca);
  if (answer.status !== 200) throw new Error(`webhook /metrics answered ${answer.status}`);
  const outcomes: Record<string, number> = {};
  for (const outcome of ['patched', 'unchanged', 'skipped', 'fail-open']) outcomes[outcome] = metricSum(answer.text, 'config_checksum_admissions_total', { outcome });
  return outcomes;
}

export interface TlsSecret {
  readonly caCertificate: string;
  readonly bundle: string;
  readonly leaf: string;
  readonly resourceVersion: string;
}

/** The self-managed Secret as the admin sees it, or undefined while it does not exist (or holds no leaf). */
export async function readTlsSecret(client: KubeClient): Promise<TlsSecret | undefined> {
  const secret = await client.find(TLS_SECRET_PATH);
  const data = secret?.['data'] as Record<string, string> | undefined;
  if (!secret || !data?.['tls.crt']) return undefined;
  const text = (key: string): string => Buffer.from(data[key] ?? '', 'base64').toString('utf8');
  return { caCertificate: text('ca.crt'), bundle: text('ca-bundle.crt'), leaf: text('tls.crt'), resourceVersion: String(secret['metadata']['resourceVersion']) };
}

export async function deleteTlsSecret(client: KubeClient): Promise<void> {
  const response = await client.request('DELETE', TLS_SECRET_PATH);
  if (response.status !== 200 && response.status !== 404) throw new Error(`DELETE Secret ${TLS_SECRET} answered ${response.status}`);
  await waitFor(`Secret ${TLS_SECRET} gone`, async () => (await client.find(TLS_SECRET_PATH)) === undefined, { timeoutMs: 30_000, intervalMs: 100 });
}

export function registeredConfiguration(client: KubeClient, name: string): Promise<KubeObject> {
  return client.get(`${CONFIGURATION_PATH}/${name}`);
}

/** The CA bundle(s) of the registered configuration, decoded (undefined where none is set). */
export function caBundles(configuration: KubeObject): Array<string | undefined> {
  return (configuration['webhooks'] as KubeObject[]).map((webhook) => {
    const encoded = webhook['clientConfig']?.['caBundle'];
    return typeof encoded === 'string' && encoded !== '' ? Buffer.from(encoded, 'base64').toString('utf8') : undefined;
  });
}

/**
 * Points every webhook of the run's registered configuration at https://127.0.0.1:<port>/mutate. With
 * `caPem` the caBundle is set to it; without, caBundle is removed, for the product to publish.
 */
export async function pointRegistration(client: KubeClient, state: E2EState, port: number, caPem?: string): Promise<void> {
  const path = `${CONFIGURATION_PATH}/${state.webhookConfiguration}`;
  await waitFor('the configuration repointed without a conflict', async () => {
    const current = await client.get(path);
    for (const webhook of current['webhooks'] as KubeObject[]) {
      webhook['clientConfig'] = { url: `https://127.0.0.1:${port}/mutate`, ...(caPem ? { caBundle: Buffer.from(caPem).toString('base64') } : {}) };
    }
    const response = await client.request('PUT', path, { body: current });
    if (response.status === 409) return false;
    if (response.status !== 200) throw new GiveUp(`PUT ${path} answered ${response.status}: ${String(response.body['message'])}`);
    return true;
  }, { timeoutMs: 30_000, intervalMs: 100 });
}

/**
 * Gives the run its registration back (the shipped webhooks, url and caBundle of the run's webhook
 * process) and, unless told not to (the process is not running yet), waits until the API server calls
 * that process again.
 */
export async function restoreRegistration(client: KubeClient, state: E2EState, { wait = true }: { wait?: boolean } = {}): Promise<void> {
  const path = `${CONFIGURATION_PATH}/${state.webhookConfiguration}`;
  const wanted = localWebhookConfiguration(state.shippedConfiguration, state.webhook.port, readFileSync(state.webhook.files.caFile, 'utf8'));
  await waitFor('the configuration restored without a conflict', async () => {
    const current = await client.find(path);
    const response = current
      ? await client.request('PUT', path, { body: { ...current, webhooks: wanted['webhooks'] } })
      : await client.request('POST', CONFIGURATION_PATH, { body: { ...wanted, metadata: { name: state.webhookConfiguration } } });
    if (response.status === 409) return false;
    if (response.status !== 200 && response.status !== 201) throw new GiveUp(`restoring ${path} answered ${response.status}: ${String(response.body['message'])}`);
    return true;
  }, { timeoutMs: 30_000, intervalMs: 100 });
  if (wait) await waitForWebhook(client);
}

/** The bearer token of a kubeconfig written by kubeconfigYaml (the webhook's ServiceAccount token). */
export function kubeconfigToken(kubeconfig: string): string {
  const match = /^\s+token: (\S+)$/m.exec(readFileSync(kubeconfig, 'utf8'));
  if (!match) throw new Error(`${kubeconfig} holds no token`);
  return match[1]!;
}

/** A request to the API server with a bearer token (no client certificate): the webhook's credential. */
export async function tokenRequest(state: E2EState, token: string, method: string, urlPath: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: KubeObject }> {
  const server = new URL(state.server);
  const answer = await httpsCall({
    host: server.hostname,
    port: Number(server.port),
    method,
    path: urlPath,
    ca: readFileSync(state.admin.caFile),
    headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body), contentType }),
  });
  return { status: answer.status, body: (answer.json as KubeObject | undefined) ?? { text: answer.text } };
}

/** Runs a command in `cwd` with its output captured; never throws for a non-zero exit. */
export function runIn(cwd: string, command: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<CommandResult> {
  return run(command, args, undefined, env, cwd);
}
