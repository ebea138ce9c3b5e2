// Forking the bench's own helper processes (a server under load, a load generator) and talking to them
// over IPC. Each child is stopped by its pid, never by name.

import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';

const HERE = path.resolve(import.meta.dirname, '..');

export interface Child<M> {
  readonly process: ChildProcess;
  readonly pid: number;
  /** The first IPC message. */
  readonly message: Promise<M>;
  stop(): Promise<void>;
}

/**
 * Forks test/bench/<module> with one JSON argument. stdout goes to `logFile` (or nowhere), stderr to ours.
 * `nodeArgs` are node flags for the child (e.g. --cpu-prof).
 */
export function forkChild<M>(module: string, argument: unknown, options: { logFile?: string; nodeArgs?: readonly string[] } = {}): Child<M> {
  const out = options.logFile ? openSync(options.logFile, 'a') : 'ignore';
  let child: ChildProcess;
  try {
    child = fork(path.join(HERE, module), [JSON.stringify(argument)], {
      execPath: process.execPath,
      execArgv: [...(options.nodeArgs ?? [])],
      stdio: ['ignore', out, 'inherit', 'ipc'],
    });
  } finally {
    if (typeof out === 'number') closeSync(out);
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const message = new Promise<M>((resolve, reject) => {
    child.once('message', (value) => resolve(value as M));
    child.once('exit', (code, signal) => reject(new Error(`${module} exited (${code ?? signal}) before answering`)));
    child.once('error', reject);
  });
  message.catch(() => {});
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not fork ${module}`);
  return {
    process: child,
    pid,
    message,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killed = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killed);
    },
  };
}
