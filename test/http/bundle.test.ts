// The image's program itself: the bundle src/build.ts makes (what the Dockerfile copies), run with the
// image's ENTRYPOINT flags against a fake API server over TLS. Every other suite runs the TypeScript
// sources, so a bundling mistake (a module left out, a stub that turns out to be reached) would otherwise
// show only in a cluster. Checked here: the kubeconfig's credentials reach the API server, an admission
// reads its ConfigMap and answers with a patch, and the watcher lists, watches, takes the Lease and asks
// for a rollout when a ConfigMap change arrives on its watch stream.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { bundleWebhook } from '../../src/build.ts';
import { admissionRequest, NAMESPACE, reviewBody, workload } from '../support/fakes.ts';
import { postJson } from '../support/https.ts';
import { writeTls, type TlsMaterial } from '../support/tls.ts';

const TOKEN = 'bundle-test-token';
const ENTRYPOINT_FLAGS = entrypointFlags();

/** The node flags of the Dockerfile's ENTRYPOINT, so the program runs here as it runs in the image. */
function entrypointFlags(): string[] {
  const dockerfile = readFileSync(path.join(import.meta.dirname, '..', '..', 'Dockerfile'), 'utf8');
  const entrypoint = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(dockerfile)?.[1];
  assert.ok(entrypoint, 'the Dockerfile has an exec-form ENTRYPOINT');
  const [node, ...rest] = JSON.parse(entrypoint) as string[];
  assert.equal(node, 'node');
  return rest.filter((argument) => argument.startsWith('--'));
}

interface Recorded {
  readonly method: string;
  readonly path: string;
  readonly authorization: string | undefined;
  readonly body: string;
}

/** Just enough of an API server: one opted-in namespace, one ConfigMap, one Deployment consuming it. */
class FakeApiServer {
  readonly requests: Recorded[] = [];
  readonly #server: https.Server;
  readonly #watchers = new Set<(event: unknown) => void>();
  configMapData: Record<string, string> = FIRST_DATA;

  constructor(tls: TlsMaterial) {
    this.#server = https.createServer({ cert: tls.serving.certificate, key: tls.serving.privateKey }, (request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        const url = new URL(request.url ?? '/', 'https://127.0.0.1');
        this.requests.push({ method: request.method ?? '', path: url.pathname, authorization: request.headers.authorization, body });
        this.#answer(request.method ?? '', url, body, response);
      });
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return (this.#server.address() as AddressInfo).port;
  }

  close(): void {
    this.#server.closeAllConnections();
    this.#server.close();
  }

  /** Changes the ConfigMap and tells every open ConfigMap watch. */
  changeConfigMap(data: Record<string, string>): void {
    this.configMapData = data;
    for (const send of this.#watchers) send({ type: 'MODIFIED', object: this.#configMap('2') });
  }

  #configMap(resourceVersion = '1'): object {
    return { metadata: { name: 'app', namespace: NAMESPACE, resourceVersion }, data: this.configMapData };
  }

  #deployment(): Record<string, unknown> {
    return workload({
      metadata: { resourceVersion: '1', uid: 'uid-web' },
      template: { metadata: { annotations: { 'checksum/config': 'an-old-checksum' } }, spec: CONSUMES_APP },
    });
  }

  #answer(method: string, url: URL, body: string, response: ServerResponse): void {
    const json = (status: number, value: unknown): void => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(value));
    };
    const route = `${method} ${url.pathname}`;
    if (url.searchParams.get('watch') === '1') return this.#watch(url.pathname, response);
    if (route === 'GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/config-checksum-webhook') {
      return json(200, { metadata: { name: 'config-checksum-webhook' }, webhooks: [{ name: 'w', namespaceSelector: { matchLabels: { 'config-checksum.io/inject': 'enabled' } } }] });
    }
    if (route === 'GET /api/v1/namespaces') return json(200, list([{ metadata: { name: NAMESPACE, labels: { 'config-checksum.io/inject': 'enabled' } } }]));
    // Lists always show the first data: a change can only reach the watcher on its watch stream.
    if (route === 'GET /api/v1/configmaps') return json(200, list([{ ...this.#configMap(), data: FIRST_DATA }]));
    if (route === `GET /api/v1/namespaces/${NAMESPACE}/configmaps/app`) return json(200, this.#configMap());
    if (route === 'GET /apis/apps/v1/deployments') return json(200, list([this.#deployment()]));
    if (route === 'GET /apis/apps/v1/statefulsets' || route === 'GET /apis/apps/v1/daemonsets') return json(200, list([]));
    if (route === `GET /apis/apps/v1/namespaces/${NAMESPACE}/deployments/web`) return json(200, this.#deployment());
    if (route === `PATCH /apis/apps/v1/namespaces/${NAMESPACE}/deployments/web`) return json(200, this.#deployment());
    if (method === 'GET' && url.pathname.includes('/leases/')) return json(404, { kind: 'Status', code: 404 });
    if (method === 'POST' && url.pathname.endsWith('/leases')) return json(201, JSON.parse(body));
    if (method === 'PUT' && url.pathname.includes('/leases/')) return json(200, JSON.parse(body));
    if (method === 'POST' && url.pathname.endsWith('/events')) return json(201, JSON.parse(body));
    return json(404, { kind: 'Status', code: 404 });
  }

  #watch(pathname: string, response: ServerResponse): void {
    response.writeHead(200, { 'content-type': 'application/json' });
    if (pathname !== '/api/v1/configmaps') return; // open and quiet
    const send = (event: unknown): void => void response.write(`${JSON.stringify(event)}\n`);
    this.#watchers.add(send);
    response.on('close', () => this.#watchers.delete(send));
  }
}

const FIRST_DATA = { level: 'info' };

/** A pod spec that mounts the ConfigMap `app`. */
const CONSUMES_APP = { containers: [{ name: 'app', image: 'app:1' }], volumes: [{ name: 'app', configMap: { name: 'app' } }] };

function list(items: unknown[]): object {
  return { kind: 'List', metadata: { resourceVersion: '1' }, items };
}

let dir: string;
let tls: TlsMaterial;
let api: FakeApiServer;
let child: ChildProcess;
let output = '';

/** The program's JSON log lines so far. */
function logLines(): Array<Record<string, unknown>> {
  return output.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const found = probe();
    if (found !== undefined && found !== false) return found;
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}; the program's output:\n${output.slice(-4000)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'config-checksum-bundle-'));
  const bundle = path.join(dir, 'main.mjs');
  await bundleWebhook(bundle);
  tls = writeTls();
  api = new FakeApiServer(tls);
  const port = await api.listen();
  const kubeconfig = path.join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'fake', cluster: { server: `https://127.0.0.1:${port}`, 'certificate-authority-data': Buffer.from(tls.ca.certificate).toString('base64') } }],
    users: [{ name: 'webhook', user: { token: TOKEN } }],
    contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'webhook' } }],
    'current-context': 'fake',
  }));
  child = spawn(process.execPath, [...ENTRYPOINT_FLAGS, bundle,
    '--host', '127.0.0.1', '--port', '0', '--kubeconfig', kubeconfig, '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile,
    '--drain-seconds', '0', '--identity', 'bundle-test', '--coalesce-window-ms', '100'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
});

after(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  api?.close();
  tls?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

test('the bundle admits: the kubeconfig\'s token reaches the API server, the ConfigMap is read, the answer carries the checksum', async () => {
  const listening = await until('the "listening" line', () => logLines().find((line) => line['msg'] === 'listening'));
  const port = listening['port'] as number;
  const object = workload({ template: { metadata: { labels: { app: 'web' } }, spec: CONSUMES_APP } });
  const answer = await postJson(port, tls.ca.certificate, reviewBody(admissionRequest(object)));
  assert.equal(answer.status, 200, answer.text);
  const response = (answer.json as { response: { allowed: boolean; patch?: string } }).response;
  assert.equal(response.allowed, true);
  const patch = Buffer.from(response.patch ?? '', 'base64').toString();
  assert.match(patch, /"checksum\/config":"[0-9a-f]{64}"/, 'the answer sets the checksum');
  const read = api.requests.find((request) => request.path === `/api/v1/namespaces/${NAMESPACE}/configmaps/app`);
  assert.ok(read, 'the ConfigMap was read from the API server');
  assert.equal(read.authorization, `Bearer ${TOKEN}`);
});

test('the bundle watches: lists and watches, leads, and asks for a rollout when a ConfigMap change arrives on the watch stream', async () => {
  await until('"watches synced"', () => logLines().find((line) => line['msg'] === 'watches synced'));
  await until('the watcher to lead', () => logLines().find((line) => line['msg'] === 'became leader'));
  const watched = await until('a ConfigMap watch', () => api.requests.find((request) => request.path === '/api/v1/configmaps' && request.method === 'GET' && api.requests.indexOf(request) > 0));
  assert.equal(watched.authorization, `Bearer ${TOKEN}`);
  api.changeConfigMap({ level: 'debug' });
  const patch = await until('a rollout request', () => api.requests.find((request) => request.method === 'PATCH' && request.path.endsWith('/deployments/web')));
  assert.match(patch.body, /"config-checksum\.io\/requested":"[0-9a-f]{64}"/, 'the watcher asked the webhook through the request annotation');
  // (The fake answers the request without the webhook's checksum, so the rollout stays pending: not counted here.)
  const errors = logLines().filter((line) => line['msg'] === 'watcher error' && String(line['operation']).startsWith('watch-'));
  assert.deepEqual(errors, [], 'no list or watch failed');
});
