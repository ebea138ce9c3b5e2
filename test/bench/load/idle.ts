// The memory floor of scenario 5: a process that loads the webhook's whole module graph (src/main.ts and
// everything it imports, @kubernetes/client-node included) and does nothing. Whatever the watcher holds
// above this is its own data. Answers { rssBytes, vmHwmBytes, loadMs } over IPC after a moment at rest.

import { readFileSync } from 'node:fs';

const started = performance.now();
if (JSON.parse(process.argv[2] ?? '"modules"') !== 'bare') await import('../../../src/main.ts');
const loadMs = performance.now() - started;
await new Promise((resolve) => setTimeout(resolve, 1_000));
const status = readFileSync('/proc/self/status', 'utf8');
const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
process.send?.({ rssBytes: kib('VmRSS'), vmHwmBytes: kib('VmHWM'), loadMs }, () => process.exit(0));
