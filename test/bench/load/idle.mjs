// The memory floors: a node process that loads something and does nothing, to show what Node itself
// costs before the webhook holds anything. The argument is JSON { load, restMs }: load "bare" loads
// nothing (node running an empty file), "builtins" only node:https and node:crypto (what any HTTPS
// server with TLS needs), anything else is the path of the webhook's whole program (the image's bundle
// of src/main.ts; importing it starts nothing). Answers { rssBytes, rssAnonBytes, rssFileBytes,
// vmHwmBytes, loadMs } over IPC after restMs at rest. Plain JavaScript, so that the floor does not
// include Node's TypeScript stripper (about 20 MiB), which the image never loads.

import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const { load, restMs } = JSON.parse(process.argv[2] ?? '{"load":"bare","restMs":1000}');
const started = performance.now();
if (load === 'builtins') {
  await import('node:https');
  await import('node:crypto');
} else if (load !== 'bare') {
  await import(pathToFileURL(load).href);
}
const loadMs = performance.now() - started;
await new Promise((resolve) => setTimeout(resolve, restMs));
const status = readFileSync('/proc/self/status', 'utf8');
const kib = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
process.send?.({ rssBytes: kib('VmRSS'), rssAnonBytes: kib('RssAnon'), rssFileBytes: kib('RssFile'), vmHwmBytes: kib('VmHWM'), loadMs }, () => process.exit(0));
