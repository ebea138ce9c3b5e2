// The webhook as users run it: its own process (the image's program: the bundle of src/main.ts with the
// ENTRYPOINT's node flags, see image.ts; or, in container mode, the image itself under podman, see
// container.ts), the ServiceAccount, RBAC and
// MutatingWebhookConfiguration from the shipped manifests, its ServiceAccount's token as its only
// credential. The one deviation from a cluster install: clientConfig.service becomes a url on 127.0.0.1,
// because nothing here routes Service traffic.

import { createHash } from 'node:crypto';
import { mkdirSync, statSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { createCertificateAuthority, issueCertificate, serviceDnsNames, DAY_MS } from '../tls/certs.ts';
import { freePort, kubeconfigYaml, type ControlPlane } from './control-plane.ts';
import { isAlive, registered, spawnLogged, stopGroup, tail, unregister, type LoggedProcess, type Registry } from './process.ts';
import { buildImageProgram, readImageRecipe } from './image.ts';
import { containerName, containerOfProcess, podmanRunArgs, prepareContainerRuntime, removeContainer, removeStaleContainers, shellInImage, type ContainerRuntime } from './container.ts';
import { GiveUp, Kubectl, KubeClient, parseJsonStream, resourcePath, waitFor, type KubeObject } from './kube.ts';

export const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..');
export const DEFAULT_OVERLAY = path.join(REPO_ROOT, 'manifests', 'overlays', 'namespace-opt-in');
export const SERVICE_ACCOUNT = { namespace: 'config-checksum', name: 'config-checksum-webhook' } as const;
export const WEBHOOK_CONFIGURATION = 'config-checksum-webhook';
export const OPT_IN_LABEL = { 'config-checksum.io/inject': 'enabled' } as const;
export const CANARY_NAMESPACE = 'config-checksum-canary';
// The API server reads webhook configurations through an informer; a new one takes a moment to apply.
const CANARY_TIMEOUT_MS = 60_000;
// The kinds of the shipped manifests the webhook needs to exist before it runs. Everything else the base
// may hold (its Deployment, Service, ...) is meaningless without a kubelet and Service routing.
const IDENTITY_KINDS = new Set(['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding']);

export interface WebhookFiles {
  readonly dir: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** Kubeconfig with the ServiceAccount token (never the admin certificate). */
  readonly kubeconfig: string;
  readonly logFile: string;
  /** What follows `node` to run the image's program: the ENTRYPOINT's node flags and the bundle (image.ts). */
  readonly program: readonly string[];
  /** When set, every start runs this image under podman instead of `node <program>` (container.ts). */
  readonly container?: ContainerRuntime;
}

export interface WebhookProcessOptions {
  readonly files: WebhookFiles;
  readonly registry: Registry;
  /** 0: any free port (read back from the "listening" log line). */
  readonly port: number;
  readonly logLevel?: string;
  /** More flags of src/main.ts (e.g. --watch=false); the defaults are what the shipped Deployment runs. */
  readonly extraArgs?: readonly string[];
  /** Keep running after the starting process exits (a test file that restarts the webhook). */
  readonly outliveParent?: boolean;
  readonly startTimeoutMs?: number;
  /** A command that runs before node and execs it (e.g. entering a memory cgroup); node's path and args follow it. Not with files.container. */
  readonly launcher?: readonly string[];
}

export interface WebhookProcess {
  readonly pid: number;
  readonly port: number;
  readonly logFile: string;
  stop(): Promise<void>;
}

/**
 * Starts the image's program (files.program; with files.container, the image under podman) and waits until
 * it listens and answers /readyz over TLS.
 */
export async function startWebhookProcess(options: WebhookProcessOptions): Promise<WebhookProcess> {
  const { files } = options;
  // The log is shared by every start of this run; only what this start writes counts.
  const offset = fileSize(files.logFile);
  const child = spawnWebhook(options, [
    '--host', '127.0.0.1',
    '--port', String(options.port),
    '--tls-cert-file', files.certFile,
    '--tls-key-file', files.keyFile,
    '--kubeconfig', files.kubeconfig,
    '--drain-seconds', '0',
    '--log-level', options.logLevel ?? 'info',
    ...(options.extraArgs ?? []),
  ]);
  const failure = (why: string): Error => new Error(`webhook ${why}; log: ${files.logFile}\n${tail(files.logFile)}`);
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  try {
    const port = await waitFor('the webhook to log "listening"', async () => {
      const status = child.exitStatus();
      if (status !== undefined) throw new GiveUp(`exited (${status}) during start-up`);
      return listeningPort(files.logFile, offset);
    }, { timeoutMs: deadline - Date.now(), intervalMs: 100 });
    const ca = readFileSync(files.caFile);
    await waitFor('the webhook to answer /readyz with 200', async () => {
      const status = child.exitStatus();
      if (status !== undefined) throw new GiveUp(`exited (${status}) during start-up`);
      return (await httpsStatus(port, '/readyz', ca)) === 200;
    }, {
      timeoutMs: Math.max(1_000, deadline - Date.now()),
      intervalMs: 100,
    });
    return { pid: child.pid, port, logFile: files.logFile, stop: () => stopWebhookProcess(child.pid, options.registry) };
  } catch (error) {
    const container = containerOfProcess(child.pid);
    await stopGroup(child.pid, 1_000);
    if (container) removeContainer(container);
    throw failure((error as Error).message);
  }
}

/** `node <program> <args>` (behind the launcher, if any), or `podman run <image> <args>` with files.container. */
function spawnWebhook(options: WebhookProcessOptions, args: readonly string[]): LoggedProcess {
  const { files } = options;
  const common = { logFile: files.logFile, registry: options.registry, outliveParent: options.outliveParent ?? false };
  if (files.container) {
    if (options.launcher) throw new Error('a launcher cannot wrap the webhook container (files.container)');
    const name = containerName();
    // The registry names the container, so that the run's watchdog removes it too (process.ts).
    return spawnLogged({ name: `webhook container=${name}`, command: 'podman', args: podmanRunArgs(files.container, name, args, process.env), ...common });
  }
  const launcher = options.launcher ?? [];
  return spawnLogged({
    name: 'webhook',
    command: launcher[0] ?? process.execPath,
    args: [...launcher.slice(1), ...(launcher.length > 0 ? [process.execPath] : []), ...files.program, ...args],
    cwd: REPO_ROOT,
    ...common,
  });
}

/**
 * SIGTERM (the drain window is 0 here), SIGKILL if it lingers. Works from any process of the run. With a
 * registry, also waits until the process that started the webhook has unregistered it, so that a restart
 * registering right after cannot race that process rewriting the registry file. A container (podman
 * forwards the SIGTERM to it and removes it when it ends) is removed also when podman had to be killed.
 */
export async function stopWebhookProcess(pid: number, registry?: Registry): Promise<void> {
  const container = containerOfProcess(pid);
  await stopGroup(pid, 10_000);
  if (container) removeContainer(container);
  if (isAlive(pid)) throw new Error(`webhook process ${pid} did not stop`);
  if (!registry) return;
  const unregistered = async (): Promise<boolean> => !registered(registry).some((entry) => entry.pgid === pid);
  const byStarter = await waitFor(`webhook ${pid} unregistered`, unregistered, { timeoutMs: 2_000, intervalMs: 50 }).then(() => true, () => false);
  // The process that started it may be gone already (an earlier test file restarted the webhook): then
  // nobody else will remove the entry.
  if (!byStarter) unregister(registry, pid);
}

function listeningPort(logFile: string, offset: number): number | undefined {
  const port = logEntries(logFile, offset).find((entry) => entry['msg'] === 'listening' && typeof entry['port'] === 'number')?.['port'];
  return port as number | undefined;
}

/** The JSON lines (pino) of a log file from byte `offset` on, skipping anything else; none when it does not exist. */
export function logEntries(logFile: string, offset = 0): KubeObject[] {
  let text: string;
  try {
    text = readFileSync(logFile).subarray(offset).toString('utf8');
  } catch {
    return [];
  }
  const entries: KubeObject[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      entries.push(JSON.parse(line) as KubeObject);
    } catch {
      // A line still being written.
    }
  }
  return entries;
}

/** Size of a file in bytes; 0 when it does not exist yet. */
export function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

export function httpsStatus(port: number, urlPath: string, ca: Buffer | string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = https.get({ host: '127.0.0.1', port, path: urlPath, ca, agent: false, timeout: 3_000 }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${urlPath} timed out`)));
    request.on('error', reject);
  });
}

/** The shipped overlay rendered by kubectl's built-in kustomize, as JSON objects. */
export async function renderOverlay(kubectl: Kubectl, overlay: string): Promise<KubeObject[]> {
  // `create --dry-run=client -o json` turns kustomize's YAML into JSON without a YAML parser here.
  const rendered = await kubectl.expect(['create', '-k', overlay, '--dry-run=client', '-o', 'json']);
  return parseJsonStream(rendered.stdout);
}

/**
 * The shipped MutatingWebhookConfiguration with clientConfig.service replaced by a loopback url and the
 * caBundle set. Every other field stays as shipped.
 */
export function localWebhookConfiguration(shipped: KubeObject, port: number, caPem: string): KubeObject {
  const configuration = structuredClone(shipped);
  for (const webhook of configuration['webhooks'] as KubeObject[]) {
    const service = webhook['clientConfig']?.['service'] as KubeObject | undefined;
    const urlPath = typeof service?.['path'] === 'string' ? service['path'] : '/mutate';
    webhook['clientConfig'] = { url: `https://127.0.0.1:${port}${urlPath}`, caBundle: Buffer.from(caPem).toString('base64') };
  }
  return configuration;
}

export interface InstallOptions {
  readonly controlPlane: ControlPlane;
  readonly overlay?: string;
  readonly logLevel?: string;
  readonly extraArgs?: readonly string[];
  /** Lifetime of the ServiceAccount token given to the webhook. */
  readonly tokenDuration?: string;
  readonly log?: (line: string) => void;
  /** Run this image under podman instead of the bundle under node (container.ts). */
  readonly containerImage?: string;
}

export interface InstalledWebhook {
  readonly files: WebhookFiles;
  readonly process: WebhookProcess;
  /** The configuration as registered (with url and caBundle). */
  readonly configuration: KubeObject;
  /** The configuration as shipped (rendered from the overlay). */
  readonly shippedConfiguration: KubeObject;
  readonly startedInMs: number;
}

/**
 * Applies the shipped identity objects, gives the webhook its ServiceAccount's token, starts it, registers
 * the shipped MutatingWebhookConfiguration pointing at it, and returns once the API server calls it.
 */
export async function installWebhook(options: InstallOptions): Promise<InstalledWebhook> {
  const started = Date.now();
  const { controlPlane } = options;
  const log = options.log ?? (() => {});
  const kubectl = new Kubectl(controlPlane.kubectl, controlPlane.kubeconfig);
  const objects = await renderOverlay(kubectl, options.overlay ?? DEFAULT_OVERLAY);
  const shippedConfiguration = objects.find((o) => o['kind'] === 'MutatingWebhookConfiguration' && o['metadata']?.['name'] === WEBHOOK_CONFIGURATION);
  if (!shippedConfiguration) throw new Error(`the overlay ${options.overlay ?? DEFAULT_OVERLAY} renders no MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION}`);
  await kubectl.apply(objects.filter((o) => IDENTITY_KINDS.has(String(o['kind']))));

  const dir = path.join(controlPlane.runDir, 'webhook');
  mkdirSync(dir, { recursive: true });
  const token = (
    await kubectl.expect(['create', 'token', SERVICE_ACCOUNT.name, '-n', SERVICE_ACCOUNT.namespace, `--duration=${options.tokenDuration ?? '24h'}`])
  ).stdout.trim();
  const ca = createCertificateAuthority('config-checksum-webhook-ca', 2 * DAY_MS);
  const serving = issueCertificate(ca, {
    commonName: 'config-checksum-webhook',
    dnsNames: ['localhost', ...serviceDnsNames(SERVICE_ACCOUNT.name, SERVICE_ACCOUNT.namespace)],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
    validityMs: 2 * DAY_MS,
  });
  const write = (name: string, content: string): string => {
    const file = path.join(dir, name);
    writeFileSync(file, content, { mode: 0o600 });
    return file;
  };
  const files: WebhookFiles = {
    dir,
    caFile: write('ca.crt', ca.certificate),
    certFile: write('tls.crt', serving.certificate),
    keyFile: write('tls.key', serving.privateKey),
    kubeconfig: write(
      'kubeconfig',
      kubeconfigYaml(controlPlane.server, controlPlane.caCertificate, `system:serviceaccount:${SERVICE_ACCOUNT.namespace}:${SERVICE_ACCOUNT.name}`, { token }),
    ),
    logFile: path.join(controlPlane.runDir, 'logs', 'webhook.log'),
    program: await buildImageProgram(dir),
    ...(options.containerImage ? { container: containerRuntime(options.containerImage, objects, log) } : {}),
  };
  if (files.container) checkImageProgram(files.container, files.program, log);

  // As in a cluster install, the configuration exists before the webhook starts: the watcher reads its
  // scope from it at start-up. So the port is chosen first, and chosen again if it was taken meanwhile.
  let webhookProcess: WebhookProcess | undefined;
  let configuration: KubeObject = {};
  for (let attempt = 1; webhookProcess === undefined; attempt++) {
    const port = await freePort();
    configuration = localWebhookConfiguration(shippedConfiguration, port, ca.certificate);
    await kubectl.apply(configuration);
    try {
      webhookProcess = await startWebhookProcess({
        files,
        registry: controlPlane.registry,
        port,
        ...(options.logLevel ? { logLevel: options.logLevel } : {}),
        ...(options.extraArgs ? { extraArgs: options.extraArgs } : {}),
      });
    } catch (error) {
      if (attempt >= 3 || !/EADDRINUSE/.test((error as Error).message)) throw error;
    }
  }
  log(`webhook listening on 127.0.0.1:${webhookProcess.port} (${files.container ? `container of image ${files.container.image}, podman pid` : 'pid'} ${webhookProcess.pid})`);
  const client = new KubeClient({ server: controlPlane.server, ...controlPlane.admin });
  try {
    await waitForWebhook(client);
  } finally {
    client.close();
  }
  log(`webhook configuration effective after ${Date.now() - started} ms`);
  return { files, process: webhookProcess, configuration, shippedConfiguration, startedInMs: Date.now() - started };
}

/** The container mode's settings for `image`, after removing what killed runs left behind. */
function containerRuntime(image: string, objects: readonly KubeObject[], log: (line: string) => void): ContainerRuntime {
  const stale = removeStaleContainers();
  if (stale.length > 0) log(`removed ${stale.length} container(s) left by killed runs: ${stale.join(', ')}`);
  const deployment = objects.find((o) => o['kind'] === 'Deployment');
  const runtime = prepareContainerRuntime(image, deployment);
  log(`webhook runs as the container image ${image} (podman${runtime.ociRuntime ? ` --runtime ${runtime.ociRuntime}` : ''}; ${runtime.memoryNote})`);
  return runtime;
}

/**
 * Says loudly when the image's program is not the bundle of this tree (esbuild's output is the same for
 * the same sources and lockfile): the image was built from other sources, so the run tests those.
 */
function checkImageProgram(runtime: ContainerRuntime, program: readonly string[], log: (line: string) => void): void {
  const bundle = program.at(-1) ?? '';
  const inImage = path.posix.join(readImageRecipe().run.workdir, path.basename(bundle));
  const answer = shellInImage(runtime, `sha256sum ${inImage}`);
  if (answer.code !== 0) throw new Error(`cannot read ${inImage} in ${runtime.image}: ${answer.stderr.trim()}`);
  const imageDigest = answer.stdout.split(/\s+/)[0];
  const treeDigest = createHash('sha256').update(readFileSync(bundle)).digest('hex');
  if (imageDigest === treeDigest) log(`the image's ${inImage} is this tree's bundle (sha256 ${treeDigest.slice(0, 12)})`);
  else log(`WARNING: the image's ${inImage} is not this tree's bundle: ${runtime.image} was built from other sources, and this run tests those (rebuild: bash test/image/build-image.sh)`);
}

/**
 * Returns once the API server calls the webhook: a server-side dry-run create of a Deployment in an
 * opted-in namespace comes back with the checksum. Dry run: the canary never exists, nothing rolls.
 */
export async function waitForWebhook(client: KubeClient, timeoutMs = CANARY_TIMEOUT_MS): Promise<void> {
  if (!(await client.find(resourcePath('Namespace', undefined, CANARY_NAMESPACE)))) {
    await client.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: CANARY_NAMESPACE, labels: { ...OPT_IN_LABEL } } });
  }
  if (!(await client.find(resourcePath('ConfigMap', CANARY_NAMESPACE, 'canary')))) {
    await client.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'canary', namespace: CANARY_NAMESPACE }, data: { canary: 'true' } });
  }
  const canary = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'canary', namespace: CANARY_NAMESPACE },
    spec: {
      selector: { matchLabels: { app: 'canary' } },
      template: {
        metadata: { labels: { app: 'canary' } },
        spec: { containers: [{ name: 'canary', image: 'registry.invalid/canary:1', envFrom: [{ configMapRef: { name: 'canary' } }] }] },
      },
    },
  };
  await waitFor(
    'the API server to call the webhook (dry-run canary Deployment annotated)',
    async () => {
      const response = await client.create(canary, { dryRun: 'All' });
      return response.body['spec']?.['template']?.['metadata']?.['annotations']?.['checksum/config'] !== undefined;
    },
    { timeoutMs, intervalMs: 250 },
  );
}
