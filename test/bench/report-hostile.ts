// The report's section on the hostile inputs of the security review (scenarios/hostile.ts): each input's
// figures on the commit before the fixes and on the commit after, beside the figures the review quoted
// (measured on the old code with the real kube-apiserver), so a reader sees at once whether the run
// reproduced the input and what the fixes changed.

import { failed, type AnswerShape, type ExtraNamesFigures, type Failed, type HostileResult, type TreeFigures, type WatcherFigures } from './scenarios/hostile.ts';

type Line = (text?: string) => void;
type Seconds = { seconds?: number; failed?: string };
type Side = 'before' | 'after';

export function renderHostile(line: Line, result: HostileResult & Seconds): void {
  line('## Hostile inputs (issue review), before and after');
  line();
  if (result.failed) return void line(`Failed: ${result.failed}\n`);
  const { trees } = result;
  const subject = (text: string): string => (text.length > 100 ? `${text.slice(0, 97)}...` : text).replace(/\|/g, '/');
  const commit = (side: Side): string => `\`${trees[side].commit.slice(0, 7)}\` (\`${trees[side].rev}\`: "${subject(trees[side].subject)}")`;
  line(`The inputs of the security and correctness review (issue 14), each sent to two commits of the product: **before** is ${commit('before')}, the parent of the first of the review's fixes; **after** is ${commit('after')}. Each commit's program ran from a clean git worktree as \`node <worktree>/src/main.ts ${result.programFlags.join(' ')}\` with \`--watch false\` (\`--watch true --identity bench-hostile\` for the watcher), a fresh process per input, against a fake API server on 127.0.0.1 (\`support/fake-api.ts\`) that reads a path as kube-apiserver does (percent-decoded once, slashes trimmed at both ends, split on \`/\`) and counts every request by verb. The program was reached over HTTPS only; memory (VmRSS, VmHWM) and CPU (utime + stime) are read from \`/proc/<pid>\`. Node's TypeScript stripper, which the image never loads, is in every resident figure here (about 20 MiB), alike on both sides. One run per input and commit${result.seconds === undefined ? '' : `, ${Math.round(result.seconds / 60)} min in all`}. The last column quotes the review, measured on the old code against the real kube-apiserver, with the 256Mi memory limit of the shipped Deployment; the runs here have no memory limit, so where the old code would be OOM-killed in the pod it shows its peak instead. Without a limit V8 also grows its heap before it collects: a resident figure holds garbage not yet collected and the high-water marks of the heap and of malloc, on both sides alike; it is what the kernel counts, and what a memory limit is enforced on.`);
  line();
  renderInvalidNames(line, result);
  renderForgedKinds(line, result);
  renderExtra(line, result);
  renderWatcher(line, result);
  renderProtoKey(line, result);
}

/** One table row: a label, each side's value (or why there is none), the review's figure. */
function row<F extends object>(label: string, figures: ReadonlyArray<F | Failed | undefined>, value: (figures: F) => string, review = ''): string {
  const cells = figures.map((set) => (set === undefined ? 'not run' : failed(set) ? `failed: ${set.failed.replace(/\|/g, '/').slice(0, 120)}` : value(set)));
  return `| ${label} | ${cells.join(' | ')} | ${review} |`;
}

function pick<K extends keyof TreeFigures>(result: HostileResult, key: K): [TreeFigures[K], TreeFigures[K]] {
  return [result.figures.before[key], result.figures.after[key]];
}

function renderInvalidNames(line: Line, result: HostileResult): void {
  const o = result.options.invalidNames;
  const sets = pick(result, 'invalidNames');
  const measured = sets.find((set) => set !== undefined && !failed(set));
  const slashes = measured && !failed(measured) ? `${measured.slashOnlyNames} ` : '';
  line('### a. Names no ConfigMap can have');
  line();
  line(`One Deployment whose configMap volumes and projected sources name ${o.names} strings the API server stores but no ConfigMap can have (${slashes}runs of slashes, \`/\`, \`//\`, ..., each sent as \`%2F...\` and read by the API server as the namespace's collection; and \`app/\`, \`a%2Fb\`, \`..\`, \`.\`, \`APP\`, \`x/../y\`, \`a/b\`, \`/app\`, \`app//\`, \`Bad_Name\`, \`-app\`, \`app-\`, \`%\`, \`a b\`), in a namespace whose ${o.configMaps} ConfigMaps hold ${o.configMapBytes / 1024} KiB each (${((o.configMaps * o.configMapBytes) / 2 ** 20).toFixed(1)} MiB in a LIST), admitted ${o.admissions} times one after the other (CREATE). The fake answers a LIST from bytes serialized once; kube-apiserver builds each one, so on a real cluster the old code's latency would be longer still.`);
  line();
  line('| Figure | before | after | review (old code) |');
  line('|---|---|---|---|');
  line(row('ConfigMap LISTs the admissions caused', sets, (f) => `${f.configMapLists} (${fmt(f.configMapLists / f.admissions, 0)} per admission)`, '50 for one admission'));
  line(row('ConfigMap GETs the admissions caused', sets, (f) => `${f.configMapGets} (${fmt(f.configMapGets / f.admissions, 0)} per admission)`));
  line(row('admission latency p50 / max, ms', sets, (f) => `${fmt(f.latencyP50Ms)} / ${fmt(f.latencyMaxMs)}`));
  line(row('resident at start, MiB', sets, (f) => fmt(f.rssAtStartMiB, 0), '187'));
  line(row('peak resident (VmHWM) after the admissions, MiB', sets, (f) => fmt(f.peakRssMiB, 0), '525 (OOM kill under 256Mi)'));
  line(row('first answer', sets, (f) => answerText(f.firstAnswer)));
  line();
}

function renderForgedKinds(line: Line, result: HostileResult): void {
  const o = result.options.forgedKinds;
  const sets = pick(result, 'forgedKinds');
  line('### b. Forged review kinds');
  line();
  line(`${o.reviews.toLocaleString('en')} AdmissionReviews POSTed to /mutate (${o.concurrency} at a time, keep-alive), each with a \`request.kind.kind\` of ${o.kindBytes / 1024} KiB of random letters: anyone who reaches the port can send them. Then a pause of ${o.pauseSeconds} s, then one GET /metrics.`);
  line();
  line('| Figure | before | after | review (old code) |');
  line('|---|---|---|---|');
  line(row('answers other than 200', sets, (f) => String(f.non200)));
  line(row('resident at start / after the reviews / after the pause, MiB', sets, (f) => `${fmt(f.rssAtStartMiB, 0)} / ${fmt(f.rssAfterMiB, 0)} / ${fmt(f.rssAfterPauseMiB, 0)}`, '+504 MiB of heap'));
  line(row('/metrics answer afterwards', sets, (f) => bytesText(f.metricsBytes), '125 MiB'));
  line(row('peak resident (VmHWM), scrape included, MiB', sets, (f) => fmt(f.peakRssMiB, 0)));
  line();
}

function renderExtra(line: Line, result: HostileResult): void {
  const o = result.options.extraNames;
  const sets = [...pick(result, 'extraNames'), ...pick(result, 'extraInvalid')];
  const size = (figures: ExtraNamesFigures | Failed | undefined): string => (figures && !failed(figures) ? `${(figures.annotationBytes / 1000).toFixed(0)} KB, ` : '');
  line('### c. A 250 KB extra-configmaps annotation');
  line();
  line(`One Deployment whose \`config-checksum.io/extra-configmaps\` annotation holds ${o.names.toLocaleString('en')} distinct valid names (${size(sets[0])}"0, 1, ..., zz, 000, ...") or ${o.invalidEntries.toLocaleString('en')} invalid entries (${size(sets[2])}"A,A,..."), admitted ${o.admissions} times one after the other, while a separate process sent GET /healthz every ${o.probeIntervalMs} ms on warm keep-alive connections (the probe latency is the event-loop stall a kubelet probe would see).`);
  line();
  line('| Figure | distinct names, before | distinct names, after | invalid entries, before | invalid entries, after | review (old code) |');
  line('|---|---|---|---|---|---|');
  line(row('admission latency p50 / max, ms', sets, (f) => `${fmt(f.latencyP50Ms)} / ${fmt(f.latencyMaxMs)}`));
  line(row('/healthz during the admissions: max / p99 / p50, ms', sets, (f) => `${fmt(f.healthzMaxMs)} / ${fmt(f.healthzP99Ms)} / ${fmt(f.healthzP50Ms)} (${f.probes} probes${f.probeFailures > 0 ? `, ${f.probeFailures} failed` : ''})`, 'event loop blocked 78-160 ms per admission'));
  line(row('answer: size / warnings', sets, (f) => `${bytesText(f.answer.bytes)} / ${f.answer.warnings.toLocaleString('en')}`, '125,000 invalid names: 13.5 MiB, 125,000 warnings'));
  line(row('answer', sets, (f) => answerText(f.answer)));
  line();
}

function renderWatcher(line: Line, result: HostileResult): void {
  const o = result.options.watcher;
  const sets = [...pick(result, 'watcherOutside'), ...pick(result, 'watcherInside')];
  const perUpdate = (f: WatcherFigures): string => `${fmt(f.updatesCpuSeconds)} s (${fmt(f.cpuPerUpdateMs)} ms per update)`;
  line('### d. The watcher and Deployments carrying that annotation');
  line();
  line(`The watcher (\`--watch true\`) with ${o.deployments} Deployments, each carrying the ${o.names.toLocaleString('en')}-name annotation of c and a checksum, served by the fake's Deployment LIST; in a namespace outside the webhook's namespaceSelector (one run), then inside it (another run). After "watches synced" and the start-up pass, the fake sends each Deployment's MODIFIED event ${o.updatesPerDeployment} times (status-only changes, as its controller writes them while pods come and go: ${(o.deployments * o.updatesPerDeployment).toLocaleString('en')} events of about 250 KB, each written once the watch stream took the one before). CPU counts from the first event until the process is quiet again (at most 40 ms of CPU in 2 s).`);
  line();
  line('| Figure | outside the scope, before | outside, after | inside the scope, before | inside, after | review (old code) |');
  line('|---|---|---|---|---|---|');
  line(row('workloads indexed when synced', sets, (f) => String(f.syncedWorkloads)));
  line(row('spawn to "watches synced", s', sets, (f) => fmt(f.spawnToSyncedMs / 1000, 1)));
  line(row('resident once synced and settled, MiB', sets, (f) => fmt(f.rssAtSyncMiB, 0), '7.5 MiB per such Deployment, in scope or not'));
  line(row(`CPU for the ${(o.deployments * o.updatesPerDeployment).toLocaleString('en')} updates`, sets, perUpdate, 'about 90 ms per watch event'));
  line(row('resident after the updates, MiB', sets, (f) => fmt(f.rssAfterUpdatesMiB, 0), 'about 20 of them push every replica over 256Mi'));
  line(row('peak resident (VmHWM), MiB', sets, (f) => fmt(f.peakRssMiB, 0)));
  line();
  const labels = ['outside, before', 'outside, after', 'inside, before', 'inside, after'];
  const requests = sets.map((f, index) => (f && !failed(f) && f.apiRequests ? `${labels[index]}: ${Object.entries(f.apiRequests).sort(([a], [b]) => a.localeCompare(b)).map(([key, count]) => `${count} ${key}`).join(', ')}` : undefined)).filter(Boolean);
  if (requests.length > 0) {
    line(`Requests the fake API server answered over each run (watches are re-opened every 30 s of quiet; the Lease is renewed every 2 s): ${requests.join('; ')}.`);
    line();
  }
}

function renderProtoKey(line: Line, result: HostileResult): void {
  const sets = pick(result, 'protoKey');
  line('### e. A `__proto__` key in CSI volumeAttributes');
  line();
  line('One Deployment that consumes a ConfigMap (envFrom) and mounts a CSI volume whose `volumeAttributes` hold a `"__proto__"` key, as the API server stores and sends it, admitted once (CREATE).');
  line();
  line('| Figure | before | after | review (old code) |');
  line('|---|---|---|---|');
  line(row('answer', sets, (f: AnswerShape) => answerText(f), 'HTTP 400 on every admission (fail-open: no checksum, ever)'));
  line(row('carries the checksum', sets, (f: AnswerShape) => (f.checksumPatched ? 'yes' : '**no**')));
  line();
}

function answerText(answer: AnswerShape): string {
  const allowed = answer.allowed === undefined ? 'no AdmissionReview' : answer.allowed ? 'allowed' : 'denied';
  const patch = answer.patchOperations === 0 ? 'no patch' : `${answer.patchOperations} patch operation(s)${answer.checksumPatched ? ', checksum set' : ''}`;
  return `HTTP ${answer.status}, ${allowed}, ${patch}, ${answer.warnings.toLocaleString('en')} warning(s), ${bytesText(answer.bytes)}`;
}

function bytesText(bytes: number): string {
  if (bytes >= 2 ** 20) return `${fmt(bytes / 2 ** 20, 1)} MiB`;
  if (bytes >= 10_240) return `${fmt(bytes / 1024, 0)} KiB`;
  return `${bytes} bytes`;
}

function fmt(value: number, digits?: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  const places = digits ?? (Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2);
  return value.toFixed(places);
}
