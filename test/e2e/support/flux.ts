// Flux as its users run it, for the GitOps e2e scenarios (test/e2e/flux.test.ts): the real
// kustomize-controller from the control-plane build (src/local/build-control-plane.sh), started against the
// run's API server with the admin kubeconfig, and the CRDs Flux installs (its Kustomization and
// source-controller's source kinds, from the same build). What source-controller would do is done here:
// sources are ExternalArtifact objects whose status this harness writes, pointing at gzipped tarballs of
// YAML served over loopback HTTP, each publication a new revision that kustomize-controller fetches,
// verifies (sha256 digest of the tarball), builds with kustomize and applies server-side.
// Every address is on 127.0.0.1; nothing is downloaded.

import { createHash } from 'node:crypto';
import { mkdirSync, realpathSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { freePort } from '../../../src/local/control-plane.ts';
import { connect, type E2EState } from '../../../src/local/environment.ts';
import { GiveUp, waitFor, type KubeClient, type Kubectl, type KubeObject } from '../../../src/local/kube.ts';
import { spawnLogged, stopGroup, tail, type LoggedProcess } from '../../../src/local/process.ts';
import { logEntries } from '../../../src/local/webhook.ts';

/** The directory of Flux CRDs the control-plane build links into its binary directory. */
export const FLUX_CRDS_DIR = 'flux-crds';
export const KUSTOMIZATION_CRD = 'kustomizations.kustomize.toolkit.fluxcd.io';
export const EXTERNAL_ARTIFACT_CRD = 'externalartifacts.source.toolkit.fluxcd.io';
const CRD_PATH = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
const KUSTOMIZATIONS = (namespace: string) => `/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/${encodeURIComponent(namespace)}/kustomizations`;
const EXTERNAL_ARTIFACTS = (namespace: string) => `/apis/source.toolkit.fluxcd.io/v1/namespaces/${encodeURIComponent(namespace)}/externalartifacts`;

/** The labels kustomize-controller puts on every object it applies, naming the Kustomization. */
export const FLUX_NAME_LABEL = 'kustomize.toolkit.fluxcd.io/name';
export const FLUX_NAMESPACE_LABEL = 'kustomize.toolkit.fluxcd.io/namespace';
/** What `flux reconcile kustomization` sets to make the controller reconcile now. */
export const RECONCILE_REQUESTED_ANNOTATION = 'reconcile.fluxcd.io/requestedAt';
/** kustomize-controller's default; how long a Kustomization whose dependencies are not ready waits. */
export const DEFAULT_REQUEUE_DEPENDENCY = '30s';

export interface FluxOptions {
  /** --requeue-dependency of kustomize-controller (a Go duration); its default of 30 s when absent. */
  readonly requeueDependency?: string;
  readonly logLevel?: 'debug' | 'info' | 'error';
  readonly startTimeoutMs?: number;
}

/** An ExternalArtifact in the cluster and the revisions published for it, newest last. */
export interface ArtifactSource {
  readonly namespace: string;
  readonly name: string;
  readonly revisions: string[];
}

export interface KustomizationOptions {
  readonly namespace: string;
  readonly name: string;
  /** The directory of the artifact to build, e.g. `./config`. */
  readonly path: string;
  readonly source: ArtifactSource;
  readonly dependsOn?: readonly string[];
  /** A Go duration; 10m by default, so that only new revisions and requests make it reconcile. */
  readonly interval?: string;
  readonly prune?: boolean;
  /** Wait for the applied objects to become ready (kstatus); pods never run here, so false by default. */
  readonly wait?: boolean;
  readonly targetNamespace?: string;
  readonly timeout?: string;
}

/** The Flux fixture of one test file: CRDs installed, kustomize-controller running, the artifact server up. */
export class Flux {
  readonly client: KubeClient;
  readonly kubectl: Kubectl;
  readonly controller: LoggedProcess;
  readonly artifacts: ArtifactServer;
  readonly requeueDependency: string;
  /** The Kustomizations applied through this fixture, deleted by stop(). */
  readonly #applied = new Map<string, { namespace: string; name: string }>();

  private constructor(parts: { client: KubeClient; kubectl: Kubectl; controller: LoggedProcess; artifacts: ArtifactServer; requeueDependency: string }) {
    this.client = parts.client;
    this.kubectl = parts.kubectl;
    this.controller = parts.controller;
    this.artifacts = parts.artifacts;
    this.requeueDependency = parts.requeueDependency;
  }

  /** Installs the CRDs, starts the artifact server and kustomize-controller, and waits until it is ready. */
  static async start(state: E2EState, options: FluxOptions = {}): Promise<Flux> {
    const { client, kubectl } = connect(state);
    await installFluxCrds(state, client, kubectl);
    const artifacts = await ArtifactServer.start();
    try {
      const requeueDependency = options.requeueDependency ?? DEFAULT_REQUEUE_DEPENDENCY;
      const controller = await startKustomizeController(state, { ...options, requeueDependency });
      return new Flux({ client, kubectl, controller, artifacts, requeueDependency });
    } catch (error) {
      await artifacts.close();
      client.close();
      throw error;
    }
  }

  get logFile(): string {
    return this.controller.logFile;
  }

  /**
   * Deletes the Kustomizations applied through this fixture while kustomize-controller still runs (it
   * prunes what they applied and removes its finalizer, so their namespaces can go), then stops it
   * (SIGTERM, SIGKILL after 10 s) and the artifact server. The CRDs stay installed.
   */
  async stop(): Promise<void> {
    const paths = [...this.#applied.values()].map(({ namespace, name }) => `${KUSTOMIZATIONS(namespace)}/${encodeURIComponent(name)}`);
    const running = this.controller.exitStatus() === undefined;
    for (const objectPath of paths) {
      // Without the controller nobody would remove the finalizer: the namespace would stay Terminating.
      if (!running) await this.client.request('PATCH', objectPath, { body: { metadata: { finalizers: null } }, contentType: 'application/merge-patch+json' });
      await this.client.request('DELETE', objectPath);
    }
    await waitFor('the Kustomizations to be deleted', async () => {
      for (const objectPath of paths) if (await this.client.find(objectPath)) return false;
      return true;
    }, { timeoutMs: 30_000, intervalMs: 200 }).catch(() => undefined);
    if (running) {
      await stopGroup(this.controller.pid, 10_000);
      await this.controller.exited;
    }
    await this.artifacts.close();
    this.client.close();
  }

  /** Creates an ExternalArtifact with no artifact yet (kustomize-controller waits for the first one). */
  async createSource(namespace: string, name: string): Promise<ArtifactSource> {
    await this.client.expect('POST', EXTERNAL_ARTIFACTS(namespace), {
      body: {
        apiVersion: 'source.toolkit.fluxcd.io/v1',
        kind: 'ExternalArtifact',
        metadata: { name, namespace },
        // The producer an ExternalArtifact names is a custom resource of whoever generates the artifact.
        spec: { sourceRef: { apiVersion: 'e2e.config-checksum.io/v1', kind: 'ArtifactGenerator', name } },
      },
    });
    return { namespace, name, revisions: [] };
  }

  /**
   * Publishes `files` (paths relative to the artifact root, e.g. `config/configmap.yaml`) as the source's
   * next revision, the way source-controller does: the tarball is served first, then the status names its
   * URL, digest and revision, with Ready=True. Returns the revision (`main@sha1:<40 hex>`, as for Git).
   */
  async publish(source: ArtifactSource, files: Readonly<Record<string, string>>): Promise<string> {
    const tarball = gzipSync(tar(files));
    const digest = `sha256:${createHash('sha256').update(tarball).digest('hex')}`;
    // A commit-like chain: every publication is a new revision, even of identical files.
    const parent = source.revisions.at(-1) ?? '';
    const revision = `main@sha1:${createHash('sha1').update(`${parent}\n${digest}`).digest('hex')}`;
    const artifactPath = `externalartifact/${source.namespace}/${source.name}/${digest.slice('sha256:'.length)}.tar.gz`;
    const url = this.artifacts.serve(artifactPath, tarball);
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const current = await this.client.get(`${EXTERNAL_ARTIFACTS(source.namespace)}/${encodeURIComponent(source.name)}`);
    const ready = ((current['status']?.['conditions'] ?? []) as KubeObject[]).find((condition) => condition['type'] === 'Ready');
    const status = {
      artifact: { url, revision, digest, path: artifactPath, size: tarball.length, lastUpdateTime: now },
      conditions: [{
        type: 'Ready',
        status: 'True',
        reason: 'Succeeded',
        message: `stored artifact for revision '${revision}'`,
        observedGeneration: current['metadata']['generation'],
        lastTransitionTime: ready?.['status'] === 'True' ? ready['lastTransitionTime'] : now,
      }],
    };
    await this.client.expect('PATCH', `${EXTERNAL_ARTIFACTS(source.namespace)}/${encodeURIComponent(source.name)}/status`, {
      body: { status },
      contentType: 'application/merge-patch+json',
    });
    source.revisions.push(revision);
    return revision;
  }

  /** The Kustomization object these options describe. */
  static kustomization(options: KustomizationOptions): KubeObject {
    const spec: KubeObject = {
      interval: options.interval ?? '10m',
      path: options.path,
      prune: options.prune ?? true,
      wait: options.wait ?? false,
      timeout: options.timeout ?? '1m',
      sourceRef: { kind: 'ExternalArtifact', name: options.source.name, namespace: options.source.namespace },
    };
    if (options.dependsOn) spec['dependsOn'] = options.dependsOn.map((name) => ({ name }));
    if (options.targetNamespace) spec['targetNamespace'] = options.targetNamespace;
    return {
      apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
      kind: 'Kustomization',
      metadata: { name: options.name, namespace: options.namespace },
      spec,
    };
  }

  /** `kubectl apply` of a Kustomization, as a Flux user commits and applies one. */
  async applyKustomization(options: KustomizationOptions): Promise<KubeObject> {
    const object = Flux.kustomization(options);
    await this.kubectl.apply(object);
    this.#applied.set(`${options.namespace}/${options.name}`, { namespace: options.namespace, name: options.name });
    return object;
  }

  async readKustomization(namespace: string, name: string): Promise<KubeObject> {
    return this.client.get(`${KUSTOMIZATIONS(namespace)}/${encodeURIComponent(name)}`);
  }

  /**
   * Waits until the Kustomization has applied `revision` and is Ready (its status written for its latest
   * generation); returns it. Fails at once when kustomize-controller has exited.
   */
  async waitForApplied(namespace: string, name: string, revision: string, timeoutMs = 90_000): Promise<KubeObject> {
    return waitFor(`Kustomization ${namespace}/${name} to apply ${revision} and be Ready`, async () => {
      this.#assertRunning();
      const current = await this.readKustomization(namespace, name);
      const status = current['status'] ?? {};
      const ready = readyCondition(current);
      const done = status['lastAppliedRevision'] === revision && ready?.['status'] === 'True' && status['observedGeneration'] === current['metadata']['generation'];
      if (done) return current;
      throw new Error(`lastAppliedRevision ${String(status['lastAppliedRevision'])}, Ready ${String(ready?.['status'])}: ${String(ready?.['message'] ?? '')}`);
    }, { timeoutMs, intervalMs: 200 });
  }

  /**
   * What `flux reconcile kustomization NAME` does: sets the request annotation and waits until the
   * controller has handled that request (status.lastHandledReconcileAt) and is Ready again.
   */
  async requestReconcile(namespace: string, name: string, timeoutMs = 60_000): Promise<KubeObject> {
    const requestedAt = new Date().toISOString();
    await this.client.expect('PATCH', `${KUSTOMIZATIONS(namespace)}/${encodeURIComponent(name)}`, {
      body: { metadata: { annotations: { [RECONCILE_REQUESTED_ANNOTATION]: requestedAt } } },
      contentType: 'application/merge-patch+json',
    });
    return waitFor(`Kustomization ${namespace}/${name} to handle the reconcile request ${requestedAt}`, async () => {
      this.#assertRunning();
      const current = await this.readKustomization(namespace, name);
      return current['status']?.['lastHandledReconcileAt'] === requestedAt && readyCondition(current)?.['status'] === 'True' ? current : undefined;
    }, { timeoutMs, intervalMs: 200 });
  }

  /** kustomize-controller's log lines (JSON) about one Kustomization. */
  logFor(namespace: string, name: string): KubeObject[] {
    return logEntries(this.logFile).filter((entry) => entry['name'] === name && entry['namespace'] === namespace);
  }

  #assertRunning(): void {
    const status = this.controller.exitStatus();
    if (status !== undefined) throw new GiveUp(`kustomize-controller exited (${status}); log ${this.logFile}:\n${tail(this.logFile)}`);
  }
}

export function readyCondition(object: KubeObject): KubeObject | undefined {
  return ((object['status']?.['conditions'] ?? []) as KubeObject[]).find((condition) => condition['type'] === 'Ready');
}

/** The labels kustomize-controller must have put on an object applied by the Kustomization namespace/name. */
export function fluxLabels(namespace: string, name: string): Record<string, string> {
  return { [FLUX_NAME_LABEL]: name, [FLUX_NAMESPACE_LABEL]: namespace };
}

/** Whether the Flux Kustomization API is served (its CRD exists). */
export async function fluxApiInstalled(client: KubeClient): Promise<boolean> {
  return (await client.find(`${CRD_PATH}/${KUSTOMIZATION_CRD}`)) !== undefined;
}

/** `kubectl apply --server-side` of the build's Flux CRDs, then waits until every one is Established. */
async function installFluxCrds(state: E2EState, client: KubeClient, kubectl: Kubectl): Promise<void> {
  // The build links the directory; kubectl reads a directory given as a link as if it were a file.
  const dir = realpathSync(path.join(state.binDir, FLUX_CRDS_DIR));
  const applied = await kubectl.expect(['apply', '--server-side', '--field-manager=flux-install', '-f', dir, '-o', 'name']);
  const names = applied.stdout.split('\n').map((line) => line.trim().replace(/^customresourcedefinition\.apiextensions\.k8s\.io\//, '')).filter(Boolean);
  if (!names.includes(KUSTOMIZATION_CRD) || !names.includes(EXTERNAL_ARTIFACT_CRD)) {
    throw new Error(`${dir} lacks the Kustomization or ExternalArtifact CRD (applied: ${names.join(', ')}); rebuild with src/local/build-control-plane.sh`);
  }
  for (const name of names) {
    await waitFor(`CRD ${name} Established`, async () => {
      const crd = await client.get(`${CRD_PATH}/${name}`);
      return ((crd['status']?.['conditions'] ?? []) as KubeObject[]).some((condition) => condition['type'] === 'Established' && condition['status'] === 'True');
    }, { timeoutMs: 30_000, intervalMs: 100 });
  }
}

/** Variables of the test's environment that would change where kustomize-controller connects or fetches. */
const CONTROLLER_ENV_DROPPED = ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'SOURCE_CONTROLLER_LOCALHOST', 'SOURCE_WATCHER_LOCALHOST', 'RUNTIME_NAMESPACE'];

async function startKustomizeController(state: E2EState, options: FluxOptions & { requeueDependency: string }): Promise<LoggedProcess> {
  const logFile = path.join(state.runDir, 'logs', 'kustomize-controller.log');
  // Its temporary build directories go with the run's files, not the machine's temp directory.
  const tmpDir = path.join(state.runDir, 'kustomize-controller-tmp');
  mkdirSync(tmpDir, { recursive: true });
  // It has no --kubeconfig flag: controller-runtime reads KUBECONFIG (before any in-cluster configuration).
  const env: NodeJS.ProcessEnv = { ...process.env, KUBECONFIG: state.kubeconfig, TMPDIR: tmpDir };
  for (const name of CONTROLLER_ENV_DROPPED) delete env[name];
  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  // A port chosen free can be taken before the controller binds it: start again with new ports then.
  for (let attempt = 1; ; attempt++) {
    const [metricsPort, healthPort] = [await freePort(), await freePort()];
    const controller = spawnLogged({
      name: 'kustomize-controller',
      command: path.join(state.binDir, 'kustomize-controller'),
      args: [
        `--metrics-addr=127.0.0.1:${metricsPort}`,
        `--health-addr=127.0.0.1:${healthPort}`,
        '--events-addr=',
        '--enable-leader-election=false',
        '--feature-gates=ExternalArtifact=true',
        `--requeue-dependency=${options.requeueDependency}`,
        '--watch-all-namespaces=true',
        '--log-encoding=json',
        `--log-level=${options.logLevel ?? 'info'}`,
      ],
      env,
      logFile,
      registry: { file: state.registryFile },
    });
    try {
      await waitFor('kustomize-controller to answer /readyz with 200', async () => {
        const status = controller.exitStatus();
        if (status !== undefined) throw new GiveUp(`exited (${status}) during start-up`);
        return (await httpStatus(healthPort, '/readyz')) === 200;
      }, { timeoutMs: Math.max(1_000, deadline - Date.now()), intervalMs: 200 });
      return controller;
    } catch (error) {
      await stopGroup(controller.pid, 2_000);
      const portTaken = /address already in use/.test(tail(logFile, 30));
      if (portTaken && attempt < 3) continue;
      throw new Error(`kustomize-controller did not start: ${(error as Error).message}; log ${logFile}:\n${tail(logFile)}`, { cause: error });
    }
  }
}

function httpStatus(port: number, urlPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: 2_000 }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${urlPath} timed out`)));
    request.on('error', reject);
  });
}

/** Loopback HTTP server of artifact tarballs, as source-controller serves its storage. */
export class ArtifactServer {
  readonly #server: http.Server;
  readonly #files = new Map<string, Buffer>();
  readonly port: number;
  /** Every GET, in order: the path and when it came. */
  readonly requests: Array<{ path: string; status: number; at: number }> = [];

  private constructor(server: http.Server, port: number) {
    this.#server = server;
    this.port = port;
    server.on('request', (request: http.IncomingMessage, response: http.ServerResponse) => {
      const requestPath = decodeURIComponent(new URL(request.url ?? '/', 'http://artifacts').pathname).replace(/^\//, '');
      const body = request.method === 'GET' ? this.#files.get(requestPath) : undefined;
      this.requests.push({ path: requestPath, status: body ? 200 : 404, at: Date.now() });
      if (!body) {
        response.writeHead(request.method === 'GET' ? 404 : 405).end();
        return;
      }
      response.writeHead(200, { 'content-type': 'application/gzip', 'content-length': body.length }).end(body);
    });
  }

  static async start(): Promise<ArtifactServer> {
    const server = http.createServer({ keepAliveTimeout: 5_000 });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (typeof address !== 'object' || !address) throw new Error('artifact server has no address');
    return new ArtifactServer(server, address.port);
  }

  /** Serves `body` at `artifactPath` from now on; returns its URL. */
  serve(artifactPath: string, body: Buffer): string {
    this.#files.set(artifactPath, body);
    return `http://127.0.0.1:${this.port}/${artifactPath}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.closeAllConnections();
      this.#server.close(() => resolve());
    });
  }
}

// ---- tarballs ---------------------------------------------------------------------------------------------

const BLOCK = 512;
/** A fixed modification time: the same files give the same tarball, hence the same digest. */
const MTIME = 0;

/**
 * A POSIX ustar archive of `files` (relative paths, `/`-separated), with an entry for every directory
 * before its contents, as `tar` and source-controller write them. Names are limited to 100 bytes.
 */
export function tar(files: Readonly<Record<string, string>>): Buffer {
  const entries = new Map<string, Buffer | undefined>();
  for (const [name, content] of Object.entries(files)) {
    if (name.startsWith('/') || name.split('/').some((part) => part === '..' || part === '' || part === '.')) throw new Error(`not a plain relative path: ${name}`);
    const parts = name.split('/');
    for (let depth = 1; depth < parts.length; depth++) entries.set(`${parts.slice(0, depth).join('/')}/`, undefined);
    entries.set(name, Buffer.from(content, 'utf8'));
  }
  const blocks: Buffer[] = [];
  for (const name of [...entries.keys()].sort()) {
    const body = entries.get(name);
    blocks.push(tarHeader(name, body?.length ?? 0, body ? '0' : '5'));
    if (body) blocks.push(body, Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK));
  }
  blocks.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(blocks);
}

function tarHeader(name: string, size: number, type: '0' | '5'): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar entry name longer than 100 bytes: ${name}`);
  const header = Buffer.alloc(BLOCK);
  const octal = (value: number, width: number): string => `${value.toString(8).padStart(width - 1, '0')}\0`;
  header.write(name, 0, 100, 'utf8');
  header.write(octal(type === '5' ? 0o755 : 0o644, 8), 100, 'ascii');
  header.write(octal(0, 8), 108, 'ascii');
  header.write(octal(0, 8), 116, 'ascii');
  header.write(octal(size, 12), 124, 'ascii');
  header.write(octal(MTIME, 12), 136, 'ascii');
  header.write(' '.repeat(8), 148, 'ascii');
  header.write(type, 156, 'ascii');
  header.write('ustar\0', 257, 'ascii');
  header.write('00', 263, 'ascii');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return header;
}
