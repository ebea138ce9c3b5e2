// How the e2e tests talk to the control plane: a raw HTTPS client with the admin certificate (it sees
// status codes and Warning headers as they are, and never re-serialises objects through typed models),
// kubectl from the binary directory, and polling with deadlines.
// Independent of src/kube on purpose: the tests must not share the transport they are checking.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';

export type KubeObject = Record<string, any>;

export interface KubeResponse {
  readonly status: number;
  /** Texts of the `Warning: 299 - "..."` headers, unquoted. */
  readonly warnings: readonly string[];
  readonly body: KubeObject;
}

export interface AdminCredentials {
  readonly server: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface RequestOptions {
  readonly body?: unknown;
  readonly contentType?: string;
  /** Query parameters, e.g. { dryRun: 'All' }. */
  readonly query?: Readonly<Record<string, string>>;
}

export class KubeClient {
  readonly server: URL;
  readonly #agent: https.Agent;

  constructor(credentials: AdminCredentials) {
    this.server = new URL(credentials.server);
    this.#agent = new https.Agent({
      keepAlive: true,
      ca: readFileSync(credentials.caFile),
      cert: readFileSync(credentials.certFile),
      key: readFileSync(credentials.keyFile),
    });
  }

  request(method: string, path: string, options: RequestOptions = {}): Promise<KubeResponse> {
    const query = options.query ? `?${new URLSearchParams(options.query).toString()}` : '';
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    return new Promise((resolve, reject) => {
      const request = https.request(
        {
          agent: this.#agent,
          method,
          host: this.server.hostname,
          port: this.server.port,
          path: `${path}${query}`,
          timeout: 30_000,
          headers: {
            accept: 'application/json',
            ...(payload ? { 'content-type': options.contentType ?? 'application/json', 'content-length': payload.length } : {}),
          },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('error', reject);
          response.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let body: KubeObject = {};
            try {
              body = text === '' ? {} : (JSON.parse(text) as KubeObject);
            } catch {
              body = { text };
            }
            resolve({ status: response.statusCode ?? 0, warnings: parseWarnings(response.headersDistinct['warning'] ?? []), body });
          });
        },
      );
      request.on('timeout', () => request.destroy(new Error(`${method} ${path} timed out`)));
      request.on('error', reject);
      request.end(payload);
    });
  }

  /** The request, which must answer 2xx; otherwise throws with the status and the API server's message. */
  async expect(method: string, path: string, options: RequestOptions = {}): Promise<KubeResponse> {
    const response = await this.request(method, path, options);
    if (response.status < 200 || response.status > 299) {
      throw new Error(`${method} ${path} answered ${response.status}: ${String(response.body['message'] ?? JSON.stringify(response.body))}`);
    }
    return response;
  }

  async get(path: string): Promise<KubeObject> {
    return (await this.expect('GET', path)).body;
  }

  /** GET that turns 404 into undefined. */
  async find(path: string): Promise<KubeObject | undefined> {
    const response = await this.request('GET', path);
    if (response.status === 404) return undefined;
    if (response.status !== 200) throw new Error(`GET ${path} answered ${response.status}: ${String(response.body['message'])}`);
    return response.body;
  }

  create(object: KubeObject, query?: Record<string, string>): Promise<KubeResponse> {
    return this.expect('POST', collectionPath(object), { body: object, ...(query ? { query } : {}) });
  }

  /** PUT of a whole object (as read, or as changed by the caller), with its resourceVersion. */
  replace(object: KubeObject, query?: Record<string, string>): Promise<KubeResponse> {
    return this.expect('PUT', objectPath(object), { body: object, ...(query ? { query } : {}) });
  }

  async list(path: string): Promise<KubeObject[]> {
    return ((await this.get(path))['items'] ?? []) as KubeObject[];
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** `299 - "text"` -> text (RFC 7234 warn-text, as kube-apiserver writes it). */
function parseWarnings(values: readonly string[]): string[] {
  return values.map((value) => {
    const match = /^\d{3} \S+ "((?:[^"\\]|\\.)*)"/.exec(value);
    return match ? match[1]!.replace(/\\(.)/g, '$1') : value;
  });
}

const RESOURCES: Readonly<Record<string, { readonly prefix: string; readonly plural: string; readonly namespaced: boolean }>> = {
  Namespace: { prefix: '/api/v1', plural: 'namespaces', namespaced: false },
  ConfigMap: { prefix: '/api/v1', plural: 'configmaps', namespaced: true },
  Deployment: { prefix: '/apis/apps/v1', plural: 'deployments', namespaced: true },
  StatefulSet: { prefix: '/apis/apps/v1', plural: 'statefulsets', namespaced: true },
  DaemonSet: { prefix: '/apis/apps/v1', plural: 'daemonsets', namespaced: true },
  ReplicaSet: { prefix: '/apis/apps/v1', plural: 'replicasets', namespaced: true },
  ControllerRevision: { prefix: '/apis/apps/v1', plural: 'controllerrevisions', namespaced: true },
  Event: { prefix: '/api/v1', plural: 'events', namespaced: true },
  Lease: { prefix: '/apis/coordination.k8s.io/v1', plural: 'leases', namespaced: true },
};

export function resourcePath(kind: string, namespace: string | undefined, name?: string): string {
  const resource = RESOURCES[kind];
  if (!resource) throw new Error(`no path known for kind ${kind}`);
  const scope = resource.namespaced ? `/namespaces/${encodeURIComponent(namespace ?? '')}` : '';
  return `${resource.prefix}${scope}/${resource.plural}${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;
}

export function collectionPath(object: KubeObject): string {
  return resourcePath(String(object['kind']), object['metadata']?.['namespace']);
}

export function objectPath(object: KubeObject): string {
  return resourcePath(String(object['kind']), object['metadata']?.['namespace'], String(object['metadata']?.['name']));
}

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command with optional stdin and working directory; never throws for a non-zero exit (callers assert on `code`). */
export function run(command: string, args: readonly string[], input?: string, env?: NodeJS.ProcessEnv, cwd?: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: env ?? process.env, ...(cwd ? { cwd } : {}) });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.once('error', reject);
    child.once('close', (code, signal) =>
      resolve({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') }),
    );
    if (input !== undefined) {
      // A command may exit before reading its input; that is its answer, not an error of ours.
      child.stdin!.on('error', () => {});
      child.stdin!.end(input);
    }
  });
}

export class Kubectl {
  readonly binary: string;
  readonly kubeconfig: string;

  constructor(binary: string, kubeconfig: string) {
    this.binary = binary;
    this.kubeconfig = kubeconfig;
  }

  run(args: readonly string[], input?: string): Promise<CommandResult> {
    return run(this.binary, ['--kubeconfig', this.kubeconfig, ...args], input);
  }

  /** Like run, but a non-zero exit throws with kubectl's stderr. */
  async expect(args: readonly string[], input?: string): Promise<CommandResult> {
    const result = await this.run(args, input);
    if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${result.code}: ${result.stderr.trim()}`);
    return result;
  }

  /** `kubectl apply -f -` of JSON objects (a List when several), the way a user or a CD tool applies. */
  apply(objects: KubeObject | readonly KubeObject[], extraArgs: readonly string[] = []): Promise<CommandResult> {
    const list = Array.isArray(objects) ? objects : [objects];
    const input = list.length === 1 ? list[0] : { apiVersion: 'v1', kind: 'List', items: list };
    return this.expect(['apply', '-f', '-', ...extraArgs], JSON.stringify(input));
  }
}

/** Splits kubectl's `-o json` output for several objects (concatenated documents, not a List). */
export function parseJsonStream(text: string): KubeObject[] {
  const objects: KubeObject[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let index = 0; index < text.length; index++) {
    const char = text[index];
    if (inString) {
      if (char === '\\') index++;
      else if (char === '"') inString = false;
      continue;
    }
    if (char === '"') inString = true;
    else if (char === '{') {
      if (depth === 0) start = index;
      depth++;
    } else if (char === '}') {
      depth--;
      if (depth === 0) objects.push(JSON.parse(text.slice(start, index + 1)) as KubeObject);
    }
  }
  const flattened: KubeObject[] = [];
  for (const object of objects) {
    if (object['kind'] === 'List' && Array.isArray(object['items'])) flattened.push(...(object['items'] as KubeObject[]));
    else flattened.push(object);
  }
  return flattened;
}

export interface WaitOptions {
  readonly timeoutMs?: number;
  readonly intervalMs?: number;
}

/** Thrown by a waitFor probe when waiting longer cannot help (the process it waits for has died). */
export class GiveUp extends Error {
  override readonly name = 'GiveUp';
}

/**
 * Polls `probe` until it returns something other than undefined/false and returns that. Errors count as
 * "not yet", except GiveUp. On timeout, throws with the description and the last value or error seen,
 * which is what a failing e2e test needs to show.
 */
export async function waitFor<T>(description: string, probe: () => Promise<T | undefined | false>, options: WaitOptions = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let last = '';
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      last = `probe returned ${String(value)}`;
    } catch (error) {
      if (error instanceof GiveUp) throw error;
      last = (error as Error).message;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${options.timeoutMs ?? 60_000} ms waiting for ${description} (${last})`);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 250));
  }
}

/** A DNS-label name unique to this run: `<prefix>-<8 hex>`. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}
