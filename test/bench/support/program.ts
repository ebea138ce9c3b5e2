// The webhook's program from a source tree of any commit: a clean git worktree of that commit (sharing
// this checkout's node_modules), run as `node <tree>/src/main.ts` with flags every version since the
// first release accepts, its JSON log in a file and its port from the "listening" line. What a benchmark
// that compares two commits needs: the same driver runs the old code and the new, and sees only what a
// caller sees (HTTPS, the log, /proc).

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { isRunning } from './proc.ts';

export interface SourceTree {
  /** The revision asked for (e.g. "HEAD", "e5dbe34^"). */
  readonly rev: string;
  readonly commit: string;
  readonly subject: string;
  readonly dir: string;
  remove(): void;
}

/** A detached worktree of `rev` at `dir`, with node_modules linked from `repoRoot`. */
export function checkOutTree(repoRoot: string, rev: string, dir: string): SourceTree {
  const git = (args: readonly string[]): string => execFileSync('git', ['-C', repoRoot, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  const commit = git(['rev-parse', '--verify', `${rev}^{commit}`]);
  const subject = git(['log', '-1', '--format=%s', commit]);
  git(['worktree', 'add', '--detach', dir, commit]);
  symlinkSync(path.join(repoRoot, 'node_modules'), path.join(dir, 'node_modules'));
  return {
    rev,
    commit,
    subject,
    dir,
    remove: () => {
      try {
        git(['worktree', 'remove', '--force', dir]);
      } catch {
        // already gone; prune forgets it
      }
      git(['worktree', 'prune']);
    },
  };
}

/** Throws unless every flag is a setting in the tree's src/config.ts (an old commit may lack a newer one). */
export function assertFlags(treeDir: string, flags: readonly string[]): void {
  const config = readFileSync(path.join(treeDir, 'src', 'config.ts'), 'utf8');
  const missing = flags.filter((flag) => !config.includes(`flag: '${flag}'`));
  if (missing.length > 0) throw new Error(`${treeDir}/src/config.ts has no --${missing.join(', --')}`);
}

// Log lines longer than this are kept as their message only (a forged review can make them 64 KiB each).
const KEPT_LINE_CHARS = 16_384;

export class Program {
  readonly #child: ChildProcess;
  readonly #logFile: string;
  readonly #exited: Promise<void>;
  readonly #lines: Array<Record<string, unknown>> = [];
  #offset = 0;
  #partial = '';
  readonly #decoder = new StringDecoder('utf8');
  #port = 0;

  private constructor(child: ChildProcess, logFile: string) {
    this.#child = child;
    this.#logFile = logFile;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /**
   * Spawns `node <treeDir>/src/main.ts <args>` (this process's node) with stdout and stderr in `logFile`,
   * and resolves once it logged "listening". Only PATH and HOME are passed on: no setting reaches the
   * program through the environment.
   */
  static async start(treeDir: string, args: readonly string[], logFile: string): Promise<Program> {
    const out = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [path.join(treeDir, 'src', 'main.ts'), ...args], {
        cwd: treeDir,
        stdio: ['ignore', out, out],
        env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? treeDir },
      });
    } finally {
      closeSync(out);
    }
    const program = new Program(child, logFile);
    try {
      const listening = await program.logLine('listening', 60_000);
      program.#port = Number(listening['port']);
    } catch (error) {
      await program.stop();
      throw error;
    }
    return program;
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  get port(): number {
    return this.#port;
  }

  get logFile(): string {
    return this.#logFile;
  }

  /** Log lines so far (long ones as their message only). */
  lines(): ReadonlyArray<Record<string, unknown>> {
    this.#read();
    return this.#lines;
  }

  /** The first line with this message; rejects after `timeoutMs`, or at once if the process is gone. */
  async logLine(message: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = this.lines().find((line) => line['msg'] === message);
      if (found) return found;
      if (!isRunning(this.pid) || this.#child.exitCode !== null) throw new Error(`the program exited before logging "${message}" (log: ${this.#logFile})`);
      if (performance.now() > deadline) throw new Error(`no "${message}" within ${timeoutMs} ms (log: ${this.#logFile})`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** SIGTERM (the program drains for --drain-seconds, here 0), SIGKILL after 15 s. */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.kill('SIGTERM');
    const killed = setTimeout(() => this.#child.kill('SIGKILL'), 15_000);
    await this.#exited;
    clearTimeout(killed);
  }

  #read(): void {
    if (!existsSync(this.#logFile)) return;
    const fd = openSync(this.#logFile, 'r');
    try {
      const buffer = Buffer.alloc(1 << 20);
      for (;;) {
        const read = readSync(fd, buffer, 0, buffer.length, this.#offset);
        if (read === 0) break;
        this.#offset += read;
        this.#partial += this.#decoder.write(buffer.subarray(0, read));
        const lines = this.#partial.split('\n');
        this.#partial = lines.pop() ?? '';
        for (const line of lines) this.#keep(line);
      }
    } finally {
      closeSync(fd);
    }
  }

  #keep(line: string): void {
    if (!line.startsWith('{')) return;
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      this.#lines.push(line.length <= KEPT_LINE_CHARS ? parsed : { msg: parsed['msg'], level: parsed['level'] });
    } catch {
      // a line cut short by a crash
    }
  }
}
