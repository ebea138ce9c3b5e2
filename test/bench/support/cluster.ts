// What the scenarios that need a control plane share: the environment the e2e tests use (etcd,
// kube-apiserver, kube-controller-manager, the webhook process installed from the shipped manifests),
// restarting that webhook process with other flags, bulk creation, watch streams with arrival times,
// and Prometheus text scraping.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { loadConfig } from '../../../src/config.ts';
import type { Environment } from '../../../src/local/environment.ts';
import { GiveUp, KubeClient, resourcePath, waitFor, type KubeObject } from '../../../src/local/kube.ts';
import { fileSize, logEntries, OPT_IN_LABEL, startWebhookProcess, type WebhookProcess } from '../../../src/local/webhook.ts';
import { httpsCall } from '../../support/https.ts';
import { isRunning } from './proc.ts';

export const WEBHOOK_CONFIGURATIONS_PATH = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';

/** The running webhook process of the bench (the environment's first one, or the latest restart). */
export class BenchWebhook {
  readonly #environment: Environment;
  #process: WebhookProcess;
  #logOffset = 0;
  #args: readonly string[] = [];
  #nodeOptions = '';

  constructor(environment: Environment) {
    this.#environment = environment;
    this.#process = environment.webhook.process;
  }

  get pid(): number {
    return this.#process.pid;
  }

  get port(): number {
    return this.#process.port;
  }

  get args(): readonly string[] {
    return this.#args;
  }

  get nodeOptions(): string {
    return this.#nodeOptions;
  }

  /** What follows `node` to run the image's program: the ENTRYPOINT's node flags, then the bundle. */
  get program(): readonly string[] {
    return this.#environment.webhook.files.program;
  }

  get logFile(): string {
    return this.#environment.webhook.files.logFile;
  }

  /** Byte offset of the log where the current process started writing. */
  get logOffset(): number {
    return this.#logOffset;
  }

  get ca(): Buffer {
    return readFileSync(this.#environment.webhook.files.caFile);
  }

  /**
   * Stops the current process and starts the image's program again, with `nodeOptions` in NODE_OPTIONS and
   * behind `launcher` when given (WebhookProcessOptions.launcher), on the same port (the
   * registered configuration points there), with the harness's flags plus `args`. Returns the wall-clock
   * time (Date.now()) just before the spawn.
   */
  async restart(args: readonly string[], nodeOptions = '', launcher?: readonly string[]): Promise<number> {
    await this.#process.stop();
    const files = this.#environment.webhook.files;
    this.#logOffset = fileSize(files.logFile);
    // The harness spawns with this process's environment, synchronously, before its first await: node
    // flags go in through NODE_OPTIONS for exactly that spawn.
    const previous = process.env['NODE_OPTIONS'];
    if (nodeOptions) process.env['NODE_OPTIONS'] = nodeOptions;
    const spawnedAt = Date.now();
    let starting: Promise<WebhookProcess>;
    try {
      starting = startWebhookProcess({ files, registry: this.#environment.controlPlane.registry, port: this.port, extraArgs: args, startTimeoutMs: 120_000, ...(launcher ? { launcher } : {}) });
    } finally {
      if (previous === undefined) delete process.env['NODE_OPTIONS'];
      else process.env['NODE_OPTIONS'] = previous;
    }
    this.#process = await starting;
    this.#args = args;
    this.#nodeOptions = nodeOptions;
    return spawnedAt;
  }

  /** JSON log lines the current process wrote so far. */
  logLines(): Array<Record<string, unknown>> {
    return logEntries(this.logFile, this.#logOffset);
  }

  async metrics(): Promise<Metrics> {
    return scrape({ port: this.port, path: '/metrics', ca: this.ca });
  }

  async stop(): Promise<void> {
    await this.#process.stop();
  }
}

/** Prometheus samples: `name{labels}` (labels as exposed) to value. */
export type Metrics = Map<string, number>;

export function parsePrometheus(text: string): Metrics {
  const samples: Metrics = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** Sum of every sample of `name` whose labels contain all of `labels` (e.g. 'kind="Deployment"'). */
export function metricSum(metrics: Metrics, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const [key, value] of metrics) {
    const brace = key.indexOf('{');
    const metricName = brace === -1 ? key : key.slice(0, brace);
    if (metricName !== name) continue;
    if (labels.every((label) => key.includes(label))) sum += value;
  }
  return sum;
}

export interface ScrapeTarget {
  readonly port: number;
  readonly path: string;
  readonly ca: Buffer | string;
  readonly cert?: Buffer | string;
  readonly key?: Buffer | string;
}

export async function scrape(target: ScrapeTarget): Promise<Metrics> {
  const answer = await httpsCall({ port: target.port, path: target.path, ca: target.ca, cert: target.cert?.toString(), key: target.key?.toString(), timeoutMs: 5_000 });
  return parsePrometheus(answer.text);
}

/** kube-apiserver's own /metrics, read with the admin certificate. */
export function apiServerMetrics(environment: Environment): Promise<Metrics> {
  const { admin, apiServerPort } = environment.controlPlane;
  return scrape({ port: apiServerPort, path: '/metrics', ca: readFileSync(admin.caFile), cert: readFileSync(admin.certFile), key: readFileSync(admin.keyFile) });
}

/** etcd's own /metrics (plain HTTP on loopback, as the control plane runs it). */
export function etcdMetrics(environment: Environment): Promise<Metrics> {
  return new Promise((resolve, reject) => {
    const request = http.get(`${environment.controlPlane.etcdUrl}/metrics`, { timeout: 5_000 }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        text += chunk;
      });
      response.on('end', () => resolve(parsePrometheus(text)));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error('etcd /metrics timed out')));
    request.on('error', reject);
  });
}

export async function optedInNamespace(client: KubeClient, name: string): Promise<string> {
  await client.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { ...OPT_IN_LABEL } } });
  return name;
}

/**
 * Deletes the namespaces the bench made whose names `remove` accepts, and waits until the namespace
 * controller has emptied and removed them (at most `timeoutMs`; after that, goes on and says how many are
 * left). Returns how many were deleted.
 */
export async function deleteBenchNamespaces(client: KubeClient, remove: (name: string) => boolean, timeoutMs: number): Promise<number> {
  const names = (await client.list(resourcePath('Namespace', undefined)))
    .map((namespace) => String(namespace['metadata']['name']))
    .filter((name) => name.startsWith('bench-') && remove(name));
  for (const name of names) await client.request('DELETE', resourcePath('Namespace', undefined, name));
  const left = async (): Promise<number> => (await client.list(resourcePath('Namespace', undefined))).filter((namespace) => names.includes(String(namespace['metadata']['name']))).length;
  try {
    await waitFor(`${names.length} namespace(s) to be deleted`, async () => (await left()) === 0, { timeoutMs, intervalMs: 1_000 });
  } catch {
    say(`${await left()} of ${names.length} deleted namespace(s) still terminating after ${timeoutMs / 1000} s; going on`);
  }
  return names.length;
}

/** Runs `task` over `items` with at most `concurrency` at once; rejects on the first failure. */
export async function eachLimited<T>(items: readonly T[], concurrency: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      await task(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** Creates the objects (POST), `concurrency` at a time; returns the bodies the API server answered. */
export async function createAll(client: KubeClient, objects: readonly KubeObject[], concurrency: number): Promise<KubeObject[]> {
  const created: KubeObject[] = new Array(objects.length);
  await eachLimited(objects, concurrency, async (object, index) => {
    created[index] = (await client.create(object)).body;
  });
  return created;
}

export interface WatchEvent {
  readonly type: string;
  readonly object: KubeObject;
  /** performance.now() when the event's line arrived. */
  readonly receivedAt: number;
}

export interface WatchStream {
  stop(): void;
}

/**
 * LIST `path` for its resourceVersion, then WATCH from there: only changes after the call are delivered,
 * each with the time its line arrived here. The stream is the API server's own watch (no polling delay).
 */
export async function watch(environment: Environment, client: KubeClient, path: string, onEvent: (event: WatchEvent) => void): Promise<WatchStream> {
  const list = await client.get(`${path}?limit=1`);
  const resourceVersion = String(list['metadata']?.['resourceVersion'] ?? '');
  const { admin } = environment.controlPlane;
  const server = new URL(environment.controlPlane.server);
  const controller = new AbortController();
  let stopped = false;
  const open = (): void => {
    const request = https.request({
      host: server.hostname,
      port: server.port,
      method: 'GET',
      path: `${path}?watch=1&resourceVersion=${resourceVersion}&timeoutSeconds=1800`,
      ca: readFileSync(admin.caFile),
      cert: readFileSync(admin.certFile),
      key: readFileSync(admin.keyFile),
      agent: false,
      signal: controller.signal,
      headers: { accept: 'application/json' },
    }, (response) => {
      let buffered = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        const receivedAt = performance.now();
        buffered += chunk;
        let newline: number;
        while ((newline = buffered.indexOf('\n')) !== -1) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (line.trim() === '') continue;
          const event = JSON.parse(line) as { type: string; object: KubeObject };
          onEvent({ type: event.type, object: event.object, receivedAt });
        }
      });
      response.on('error', () => {});
    });
    request.on('error', (error) => {
      if (!stopped) process.stderr.write(`[bench] watch ${path} failed: ${error.message}\n`);
    });
    request.end();
  };
  open();
  return {
    stop: () => {
      stopped = true;
      controller.abort();
    },
  };
}

export function templateAnnotation(object: KubeObject, key: string): string | undefined {
  return object['spec']?.['template']?.['metadata']?.['annotations']?.[key];
}

/** The first line of the current process's log with this message; gives up at once if the process is gone (an OOM kill, a crash). */
export async function waitForLogLine(webhook: BenchWebhook, message: string, timeoutMs: number): Promise<Record<string, unknown>> {
  return waitFor(`the webhook to log "${message}"`, async () => {
    const found = webhook.logLines().find((line) => line['msg'] === message);
    if (!found && !isRunning(webhook.pid)) throw new GiveUp(`the webhook process ${webhook.pid} exited before logging "${message}" (log: ${webhook.logFile})`);
    return found;
  }, { timeoutMs, intervalMs: 50 });
}

/**
 * The coalescing the running process applies, as its own parser reads its flags and the environment it
 * inherited: the quiet period, and the cap on the wait after a burst's first change. For labels and the
 * report only; a scenario that measures the shipped behaviour passes no coalescing flag and so follows
 * whatever the defaults are.
 */
export function coalescing(webhook: BenchWebhook): { readonly windowMs: number; readonly maxMs: number } {
  const config = loadConfig([...webhook.args], process.env);
  return { windowMs: config.coalesceWindowMs, maxMs: config.coalesceMaxMs };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A status line on stderr, prefixed so it stands out in a long run. */
export function say(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

export { KubeClient, waitFor };
