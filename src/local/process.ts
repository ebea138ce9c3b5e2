// Child processes of a run: each in its own process group (so a kill reaches whatever it forks), its
// output in a log file, and its group recorded in a registry file. The registry is what teardown, signal
// handlers and the orphan watchdog kill; any process of the run (the test runner, a test file that restarts
// the webhook) can add to it.

import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';

export interface Registry {
  /** A file with one line per live process group: "<pgid> <name>". */
  readonly file: string;
}

export interface LoggedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  readonly exited: Promise<number | string>;
  /** Set once the process has ended. */
  exitStatus(): number | string | undefined;
}

export interface SpawnOptions {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly logFile: string;
  readonly registry: Registry;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Let the process outlive this one (a test file that restarts the webhook ends before the run does). */
  readonly outliveParent?: boolean;
}

// Loopback only: no proxy must ever see a request to 127.0.0.1 (Go and Node honour these variables).
export const NO_PROXY_ENV = { NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost' } as const;

export function spawnLogged(options: SpawnOptions): LoggedProcess {
  const fd = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(options.command, [...options.args], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...(options.env ?? process.env), ...NO_PROXY_ENV },
      ...(options.cwd ? { cwd: options.cwd } : {}),
    });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${options.name}: could not start ${options.command} (see ${options.logFile})`);
  register(options.registry, pid, options.name);
  let status: number | string | undefined;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      status = code ?? signal ?? 'unknown';
      unregister(options.registry, pid);
      resolve(status);
    });
    child.once('error', (error) => {
      status = (error as NodeJS.ErrnoException).code ?? 'spawn-error';
      unregister(options.registry, pid);
      resolve(status);
    });
  });
  if (options.outliveParent) child.unref();
  return { name: options.name, pid, logFile: options.logFile, child, exited, exitStatus: () => status };
}

export function register(registry: Registry, pgid: number, name: string): void {
  appendFileSync(registry.file, `${pgid} ${name}\n`);
}

export function unregister(registry: Registry, pgid: number): void {
  const remaining = registered(registry).filter((entry) => entry.pgid !== pgid);
  writeFileSync(registry.file, remaining.map((entry) => `${entry.pgid} ${entry.name}\n`).join(''));
}

export function registered(registry: Registry): Array<{ pgid: number; name: string }> {
  if (!existsSync(registry.file)) return [];
  return readFileSync(registry.file, 'utf8')
    .split('\n')
    .map((line) => line.trim().split(' '))
    .filter((parts) => /^\d+$/.test(parts[0] ?? ''))
    .map((parts) => ({ pgid: Number(parts[0]), name: parts.slice(1).join(' ') }));
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Signals a whole process group; a group that is already gone is not an error. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/**
 * SIGTERM to the group, SIGKILL after `graceMs`. Works on any registered group, including ones this
 * process did not start (their exit cannot be awaited, so liveness is polled).
 */
export async function stopGroup(pgid: number, graceMs: number): Promise<void> {
  signalGroup(pgid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(pgid) && Date.now() < deadline) await sleep(50);
  signalGroup(pgid, 'SIGKILL');
  // A SIGKILLed child of this process stays a zombie (and "alive" to kill -0) until Node reaps it.
  const reaped = Date.now() + 2_000;
  while (isAlive(pgid) && Date.now() < reaped) await sleep(20);
}

/** The last lines of a log, for error messages that must say what went wrong without opening the file. */
export function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A detached shell that outlives this process: when `ownerPid` is gone (killed with SIGKILL, crashed
 * before any handler ran), it kills every group still in the registry, removes the containers named in it
 * ("<pgid> <name> container=<container>", see container.ts) and removes `removeDir`.
 */
export function startWatchdog(ownerPid: number, registry: Registry, removeDir: string): ChildProcess {
  const script = [
    'owner=$1; registry=$2; dir=$3',
    'while kill -0 "$owner" 2>/dev/null; do sleep 1; done',
    // "kill -SIG -pgid", without "--": dash (Debian's /bin/sh) takes "--" for a pid and gives up.
    'if [ -f "$registry" ]; then',
    '  while read -r pgid name; do kill -TERM "-$pgid" 2>/dev/null; done < "$registry"',
    '  sleep 2',
    '  while read -r pgid name; do kill -KILL "-$pgid" 2>/dev/null; done < "$registry"',
    '  while read -r pgid name; do',
    '    case "$name" in *container=*) podman rm --force --ignore --time 0 "${name##*container=}" >/dev/null 2>&1;; esac',
    '  done < "$registry"',
    'fi',
    'rm -rf -- "$dir"',
  ].join('\n');
  const watchdog = spawn('/bin/sh', ['-c', script, 'control-plane-watchdog', String(ownerPid), registry.file, removeDir], {
    detached: true,
    stdio: 'ignore',
  });
  watchdog.unref();
  return watchdog;
}
