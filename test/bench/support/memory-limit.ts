// The shipped Deployment's memory limit, applied to a benchmark process as a container runtime applies it:
// a memory cgroup with that limit, entered by a shell that then execs node. Node sizes its heap from the
// cgroup (process.constrainedMemory()), so the image's --max-old-space-size-percentage gives the same heap
// limit as in the pod, and going over the limit is an OOM kill, as in the pod.
// Needs root and a writable memory controller (cgroup v1 memory.limit_in_bytes, or v2 memory.max);
// elsewhere the caller is told why not and runs without it.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const DEPLOYMENT = path.resolve(import.meta.dirname, '..', '..', '..', 'manifests', 'base', 'deployment.yaml');

export interface MemoryLimit {
  readonly bytes: number;
  readonly cgroupDir: string;
  /** Prefix of a spawn: the process enters the cgroup, then execs the command given after it. */
  readonly launcher: readonly string[];
  /** Processes the kernel killed in this cgroup for going over the limit, so far. */
  oomKills(): number;
  /** Removes the cgroup (once every process in it has exited). */
  remove(): void;
}

/** resources.limits.memory of the webhook container in manifests/base/deployment.yaml, in bytes. */
export function shippedMemoryLimitBytes(): number {
  const match = /limits:\s*\{\s*memory:\s*(\d+)(Mi|Gi)\s*\}/.exec(readFileSync(DEPLOYMENT, 'utf8'));
  if (!match) throw new Error(`no "limits: {memory: <n>Mi}" in ${DEPLOYMENT}`);
  return Number(match[1]) * 2 ** (match[2] === 'Gi' ? 30 : 20);
}

/** A fresh memory cgroup limited to `bytes`, below this process's own; or why one cannot be made here. */
export function createMemoryLimit(bytes: number, name: string): MemoryLimit | { readonly unavailable: string } {
  let cgroupDir: string | undefined;
  const unavailable = (why: string): { unavailable: string } => {
    if (cgroupDir) removeCgroup(cgroupDir);
    return { unavailable: why };
  };
  try {
    const lines = readFileSync('/proc/self/cgroup', 'utf8').split('\n');
    const v1 = lines.map((line) => /^\d+:memory:(.*)$/.exec(line)?.[1]).find((found) => found !== undefined);
    const v2 = lines.map((line) => /^0::(.*)$/.exec(line)?.[1]).find((found) => found !== undefined);
    let limitFile: string;
    // Where the kernel counts OOM kills: an "oom_kill N" line in both hierarchies.
    let eventsFile: string;
    if (v1 !== undefined && existsSync('/sys/fs/cgroup/memory')) {
      cgroupDir = path.join('/sys/fs/cgroup/memory', v1, name);
      limitFile = 'memory.limit_in_bytes';
      eventsFile = 'memory.oom_control';
    } else if (v2 !== undefined && readFileSync(path.join('/sys/fs/cgroup', v2, 'cgroup.subtree_control'), 'utf8').includes('memory')) {
      cgroupDir = path.join('/sys/fs/cgroup', v2, name);
      limitFile = 'memory.max';
      eventsFile = 'memory.events';
    } else {
      return unavailable('no memory cgroup controller available to this process');
    }
    mkdirSync(cgroupDir);
    writeFileSync(path.join(cgroupDir, limitFile), String(bytes));
    const written = Number(readFileSync(path.join(cgroupDir, limitFile), 'utf8').trim());
    if (written !== bytes) return unavailable(`${limitFile} reads ${written} after writing ${bytes}`);
    // The path travels as an argument, not inside the script, so no quoting can break it.
    const launcher = ['sh', '-c', 'echo $$ > "$1" && shift && exec "$@"', 'sh', path.join(cgroupDir, 'cgroup.procs')];
    // Entering must work before a webhook depends on it (a v2 hierarchy can refuse a process here).
    const probe = spawnSync(launcher[0]!, [...launcher.slice(1), 'true'], { encoding: 'utf8' });
    if (probe.status !== 0) return unavailable(`entering the cgroup failed: ${probe.stderr.trim() || `exit ${probe.status}`}`);
    const dir = cgroupDir;
    const oomKills = (): number => Number(/^oom_kill (\d+)$/m.exec(readFileSync(path.join(dir, eventsFile), 'utf8'))?.[1] ?? Number.NaN);
    return { bytes, cgroupDir: dir, launcher, oomKills, remove: () => removeCgroup(dir) };
  } catch (error) {
    return unavailable((error as Error).message);
  }
}

function removeCgroup(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // still in use or already gone: the kernel keeps an empty cgroup harmlessly
  }
}
