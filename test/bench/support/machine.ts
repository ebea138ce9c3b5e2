// What the figures were measured on, and how busy the machine was meanwhile: other engineers' control
// planes on the same two cores would show up in every figure, so they are counted, not guessed.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly kubernetes: string;
  readonly etcd: string;
  readonly packages: Readonly<Record<string, string>>;
}

export function machineInfo(binDir: string | undefined): MachineInfo {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const version = (binary: string, args: string[]): string => {
    if (!binDir) return 'not used';
    try {
      return execFileSync(path.join(binDir, binary), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n')[0] ?? 'unknown';
    } catch {
      return 'unknown';
    }
  };
  const require = createRequire(import.meta.url);
  const packageVersion = (name: string): string => {
    try {
      return (require(`${name}/package.json`) as { version: string }).version;
    } catch {
      return 'unknown';
    }
  };
  return {
    cpuModel: model,
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    kubernetes: version('kube-apiserver', ['--version']),
    etcd: version('etcd', ['--version']),
    packages: Object.fromEntries(['fastify', 'autocannon', 'pino', 'prom-client', '@kubernetes/client-node'].map((name) => [name, packageVersion(name)])),
  };
}

/** Pids of running kube-apiserver processes (argv[0] named kube-apiserver), as `pgrep -x` finds them. */
export function kubeApiServerPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv0 = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')[0] ?? '';
      if (path.basename(argv0) === 'kube-apiserver') pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

export interface BusySample {
  readonly at: string;
  readonly label: string;
  /** kube-apiserver processes that are not this run's. */
  readonly foreignApiServers: number;
  readonly loadAverage1m: number;
}

export function busySample(label: string, ownPids: readonly number[]): BusySample {
  return {
    at: new Date().toISOString(),
    label,
    foreignApiServers: kubeApiServerPids().filter((pid) => !ownPids.includes(pid)).length,
    loadAverage1m: Math.round(os.loadavg()[0]! * 100) / 100,
  };
}

export interface QuietWait {
  readonly waitedSeconds: number;
  readonly quiet: boolean;
  readonly foreignApiServersAtStart: number;
}

/** Polls every `intervalMs` until no kube-apiserver runs, for at most `maxMs`. */
export async function waitForQuiet(maxMs: number, intervalMs: number, say: (line: string) => void): Promise<QuietWait> {
  const started = Date.now();
  for (;;) {
    const count = kubeApiServerPids().length;
    if (count === 0) return { waitedSeconds: Math.round((Date.now() - started) / 1000), quiet: true, foreignApiServersAtStart: 0 };
    if (Date.now() - started >= maxMs) {
      say(`still ${count} other kube-apiserver process(es) after ${Math.round(maxMs / 60_000)} min: running anyway`);
      return { waitedSeconds: Math.round((Date.now() - started) / 1000), quiet: false, foreignApiServersAtStart: count };
    }
    say(`${count} other kube-apiserver process(es) running; waiting for a quiet machine (checked every ${intervalMs / 1000} s)`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
