// What the kernel says about a process, read from /proc without touching the process itself: a scrape
// of its /metrics would cost it CPU and allocations, and so move the very figures being read.

import { readFileSync } from 'node:fs';

export interface ProcMemory {
  /** Resident set (VmRSS): what a container's working set and `kubectl top` are built from. */
  readonly rssBytes: number;
  /** Anonymous resident memory (RssAnon): the heap, stacks and native allocations. */
  readonly rssAnonBytes: number;
  /** File-backed resident memory (RssFile): the node binary's pages and other mapped files. */
  readonly rssFileBytes: number;
  /** Peak resident set (VmHWM). */
  readonly vmHwmBytes: number;
}

export function procMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const bytes = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
  return { rssBytes: bytes('VmRSS'), rssAnonBytes: bytes('RssAnon'), rssFileBytes: bytes('RssFile'), vmHwmBytes: bytes('VmHWM') };
}

/** utime + stime of a process since it started, in seconds (10 ms resolution). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: the fields start after its last ")".
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of proc_pid_stat(5), counted here from the state field (3); clock ticks of 1/100 s
  // on Linux (USER_HZ, fixed at 100 for user space whatever the kernel's own tick).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
