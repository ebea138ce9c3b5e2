// The memory floor of scenario 5: a process that loads the webhook's whole program (the image's bundle of
// src/main.ts and everything it imports, whose path is the argument; importing it starts nothing) and
// does nothing. Whatever the watcher holds above this is its own data. With "bare", it loads nothing.
// Answers { rssBytes, vmHwmBytes, loadMs } over IPC after a moment at rest. Plain JavaScript, so that
// the floor does not include Node's TypeScript stripper (about 20 MiB), which the image never loads.

import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const started = performance.now();
const load = JSON.parse(process.argv[2] ?? '"bare"');
if (load !== 'bare') await import(pathToFileURL(load).href);
const loadMs = performance.now() - started;
await new Promise((resolve) => setTimeout(resolve, 1_000));
const status = readFileSync('/proc/self/status', 'utf8');
const kib = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
process.send?.({ rssBytes: kib('VmRSS'), vmHwmBytes: kib('VmHWM'), loadMs }, () => process.exit(0));
