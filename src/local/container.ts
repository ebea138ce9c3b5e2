// The webhook as its container image, for the e2e run's container mode: instead of `node <bundle>`, the
// image built from the Dockerfile (test/image/build-image.sh) runs under `podman run` with what the
// shipped Deployment asks of a pod: user 1000:1000, read-only root filesystem (and no writable /tmp),
// no capabilities, no privilege escalation, the container's memory limit, and its hostname as the pod
// name. It shares the host's network, so it listens on 127.0.0.1 and reaches the API server there, and
// it gets the same flags and CONFIG_CHECKSUM_* environment as the bare process; the files those flags
// name are mounted read-only at the same paths.
//
// Life cycle: `podman run --rm` is the registered process (./process.ts): SIGTERM to it reaches the
// container (podman forwards signals) and the container is removed when it ends. A podman process that
// was killed outright leaves its container running; such containers (no podman process attached any
// more) are removed by the next start of this mode, by the run's teardown and by the run's watchdog.
//
//   E2E_WEBHOOK_RUNTIME=container E2E_WEBHOOK_IMAGE=<image> node --test ... (test/run.ts sets both)

import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { KubeObject } from './kube.ts';

/** Selects how the e2e run starts its webhook: `process` (default) or `container`. */
export const RUNTIME_ENV = 'E2E_WEBHOOK_RUNTIME';
/** With E2E_WEBHOOK_RUNTIME=container: the image to run (the last line of test/image/build-image.sh). */
export const IMAGE_ENV = 'E2E_WEBHOOK_IMAGE';
/** Every container of this mode is named <prefix><starting pid>-<random> and carries this label. */
export const CONTAINER_PREFIX = 'config-checksum-e2e-';
export const CONTAINER_LABEL = 'config-checksum-webhook.e2e';
/** The user the image and the Deployment (runAsUser, runAsGroup) run the webhook as. */
const IMAGE_USER = '1000:1000';
// RLIMIT_NPROC counts the processes of uid 1000 on the whole host; the webhook needs a few threads.
const NPROC_LIMIT = 4096;

export interface ContainerRuntime {
  readonly image: string;
  /** The Deployment's memory limit in bytes (--memory), when this machine's cgroups can apply one. */
  readonly memoryBytes?: number;
  /** What became of the memory limit, for the run's log. */
  readonly memoryNote: string;
  /** podman's --runtime when its default cannot run containers here; undefined: podman's default. */
  readonly ociRuntime?: string;
}

/** The container mode asked for in `env`, or undefined for the bare process; throws on a half-given mode. */
export function requestedImage(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const runtime = env[RUNTIME_ENV] ?? 'process';
  if (runtime === 'process' || runtime === '') return undefined;
  if (runtime !== 'container') throw new Error(`${RUNTIME_ENV}=${runtime}: expected "process" or "container"`);
  const image = env[IMAGE_ENV];
  if (!image) throw new Error(`${RUNTIME_ENV}=container needs ${IMAGE_ENV}=<image> (build it with: bash test/image/build-image.sh)`);
  return image;
}

function podman(args: readonly string[]): { ok: boolean; stdout: string; stderr: string } {
  const result = spawnSync('podman', [...args], { encoding: 'utf8', timeout: 60_000 });
  if (result.error) throw new Error(`podman ${args[0] ?? ''}: ${result.error.message} (install it: apt-get install -y podman)`);
  return { ok: result.status === 0, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Checks that podman has `image` and works out how to run it here: the memory limit of the shipped
 * Deployment (`deployment`, as rendered) and the OCI runtime.
 */
export function prepareContainerRuntime(image: string, deployment: KubeObject | undefined): ContainerRuntime {
  const inspected = podman(['image', 'inspect', '--format', '{{.Config.User}}', image]);
  if (!inspected.ok) throw new Error(`podman has no image ${image}: ${inspected.stderr.trim()} (build it with: bash test/image/build-image.sh)`);
  const limit = deploymentMemoryLimit(deployment);
  const controllers = podman(['info', '--format', '{{json .Host.CgroupControllers}}']);
  const memory = controllers.ok && /"memory"/.test(controllers.stdout);
  const ociRuntime = hybridCgroupsWithV2Controllers() ? 'runc' : undefined;
  if (ociRuntime && spawnSync('runc', ['--version']).status !== 0) {
    throw new Error('crun, podman\'s default runtime, cannot run containers with hybrid cgroups that give controllers to cgroup v2, and runc is not installed: apt-get install -y runc');
  }
  const note = limit === undefined
    ? 'no memory limit: the Deployment sets none'
    : memory ? `--memory ${limit} (the Deployment's limit)` : `no memory limit: podman reports no memory cgroup controller here (the Deployment's limit is ${limit} bytes)`;
  return { image, memoryNote: note, ...(limit !== undefined && memory ? { memoryBytes: limit } : {}), ...(ociRuntime ? { ociRuntime } : {}) };
}

/** resources.limits.memory of the webhook container of the shipped Deployment, in bytes. */
export function deploymentMemoryLimit(deployment: KubeObject | undefined): number | undefined {
  const containers = (deployment?.['spec']?.['template']?.['spec']?.['containers'] ?? []) as KubeObject[];
  const quantity = containers[0]?.['resources']?.['limits']?.['memory'];
  return typeof quantity === 'string' ? quantityBytes(quantity) : undefined;
}

const QUANTITY_FACTORS: Readonly<Record<string, number>> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };

/** A Kubernetes memory quantity ("256Mi", "1G", "1048576") in bytes. */
export function quantityBytes(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity.trim());
  if (!match) throw new Error(`memory quantity ${quantity}: expected a number with an optional Ki, Mi, Gi, Ti, k, M, G or T suffix`);
  return Math.round(Number(match[1]) * QUANTITY_FACTORS[match[2] ?? '']!);
}

/** crun refuses hybrid cgroups (v1 controllers plus a v2 hierarchy holding some); runc runs them. */
function hybridCgroupsWithV2Controllers(): boolean {
  try {
    return readFileSync('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').trim() !== '';
  } catch {
    return false;
  }
}

/** A fresh container name: the prefix, the starting process and a random part. */
export function containerName(): string {
  return `${CONTAINER_PREFIX}${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * The podman command (after `podman`) that runs the image as the Deployment runs it, with `args` after
 * the image's ENTRYPOINT. Files named by `args` are mounted read-only (their directories, so that a
 * rewritten file is seen as the bare process sees it) and made readable for the image's user.
 */
export function podmanRunArgs(runtime: ContainerRuntime, name: string, args: readonly string[], env: NodeJS.ProcessEnv): string[] {
  return [
    ...podmanRun(runtime),
    '--name', name, '--hostname', name, '--label', `${CONTAINER_LABEL}=1`,
    '--network=host',
    '--read-only', '--read-only-tmpfs=false',
    '--user', IMAGE_USER,
    '--cap-drop=ALL', '--security-opt', 'no-new-privileges',
    ...(runtime.memoryBytes !== undefined ? ['--memory', String(runtime.memoryBytes), '--memory-swap', String(runtime.memoryBytes)] : []),
    // The container's output goes straight to podman's stdout and stderr (the harness's log file), even
    // after podman itself is gone.
    '--log-driver=passthrough',
    ...mountsFor(args).flatMap((dir) => ['--volume', `${dir}:${dir}:ro`]),
    // Names only: podman passes the values from its own environment, so they appear in no command line.
    ...Object.keys(env).filter((key) => key.startsWith('CONFIG_CHECKSUM_') || /^no_proxy$/i.test(key)).flatMap((key) => ['--env', key]),
    runtime.image,
    ...args,
  ];
}

/** `podman [--runtime R] run --rm --pull=never` with the resource limits this machine lets podman set. */
export function podmanRun(runtime: Pick<ContainerRuntime, 'ociRuntime'>): string[] {
  return [
    ...(runtime.ociRuntime ? ['--runtime', runtime.ociRuntime] : []),
    'run', '--rm', '--pull=never',
    // podman asks for 1048576 open files and processes unless told; a root without CAP_SYS_RESOURCE (some
    // CI sandboxes) may not raise its limits, so the container gets this process's own open-files limit.
    '--ulimit', `nofile=${ownLimit('Max open files')}`, '--ulimit', `nproc=${NPROC_LIMIT}:${NPROC_LIMIT}`,
  ];
}

/** A shell command in `image` instead of its ENTRYPOINT, as the image's own user; never throws for a non-zero exit. */
export function shellInImage(runtime: Pick<ContainerRuntime, 'ociRuntime' | 'image'>, script: string): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync('podman', [...podmanRun(runtime), '--network=none', '--entrypoint', 'sh', runtime.image, '-c', script], { encoding: 'utf8', timeout: 120_000 });
  if (result.error) throw new Error(`podman run: ${result.error.message}`);
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** "soft:hard" of a limit of this process (/proc/self/limits), e.g. "Max open files". */
function ownLimit(label: string): string {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((candidate) => candidate.startsWith(label));
  const [soft, hard] = (line?.slice(label.length).trim().split(/\s+/) ?? []).map((value) => (value === 'unlimited' ? '-1' : value));
  if (!soft || !hard) throw new Error(`no "${label}" in /proc/self/limits`);
  return `${soft}:${hard}`;
}

/**
 * The directories of the absolute file paths among `args` (as "--flag value" or "--flag=value"), each made
 * readable for the image's user: o+x on the directory, o+r on the file, as a Secret volume's 0644 files
 * are. Only where no other host user can reach them anyway (under a directory that only its owner may
 * enter, such as the run directory); otherwise this throws rather than open them up.
 */
export function mountsFor(args: readonly string[]): string[] {
  const files = args.map((arg) => arg.replace(/^--[^=]+=/, '')).filter((value) => path.isAbsolute(value) && existsSync(value) && statSync(value).isFile());
  const dirs = [...new Set(files.map((file) => path.dirname(file)))];
  for (const dir of dirs) {
    if (!closedAncestor(dir)) throw new Error(`${dir} would be opened to the container's user 1000, but no directory above it keeps other users of this machine out`);
    chmodSync(dir, statSync(dir).mode | 0o011);
  }
  for (const file of files) chmodSync(file, statSync(file).mode | 0o044);
  return dirs;
}

function closedAncestor(dir: string): boolean {
  for (let current = path.dirname(dir); current !== path.dirname(current); current = path.dirname(current)) {
    if ((statSync(current).mode & 0o001) === 0) return true;
  }
  return false;
}

/** The container a podman process runs (its --name), read before that process ends; undefined for anything else. */
export function containerOfProcess(pid: number): string | undefined {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return undefined;
  }
  if (path.basename(argv[0] ?? '') !== 'podman') return undefined;
  const name = argv[argv.indexOf('--name') + 1];
  return argv.includes('--name') && name?.startsWith(CONTAINER_PREFIX) ? name : undefined;
}

/** Removes a container of this mode (stopping it at once); nothing when it is gone already. */
export function removeContainer(name: string): void {
  podman(['rm', '--force', '--ignore', '--time', '0', name]);
}

/**
 * Removes the containers of this mode that no podman process runs any more (left by a run that was
 * killed); those of runs still going, this machine's other clones included, are left alone. Returns
 * the names removed. Nothing happens where podman is not installed.
 */
export function removeStaleContainers(): string[] {
  const listed = spawnSync('podman', ['ps', '--all', '--filter', `label=${CONTAINER_LABEL}`, '--format', '{{.Names}}'], { encoding: 'utf8', timeout: 60_000 });
  if (listed.status !== 0) return [];
  const attached = new Set(podmanProcesses().map(containerOfProcess).filter((name) => name !== undefined));
  const stale = listed.stdout.split('\n').map((line) => line.trim()).filter((name) => name.startsWith(CONTAINER_PREFIX) && !attached.has(name));
  for (const name of stale) removeContainer(name);
  return stale;
}

function podmanProcesses(): number[] {
  return readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).map(Number).filter((pid) => {
    try {
      return path.basename(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '') === 'podman';
    } catch {
      return false;
    }
  });
}
