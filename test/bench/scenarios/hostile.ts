// Hostile inputs (the security review, issue 14), measured on two commits of the product with one driver:
// each commit's program runs as a child process from a clean worktree (`node <tree>/src/main.ts`, files
// TLS, --drain-seconds 0), reached only over HTTPS (POST /mutate, GET /metrics, GET /healthz) and read
// only through /proc, against a fake API server (support/fake-api.ts) that reads paths as kube-apiserver
// does and counts every request. A fresh process and a fresh fake for every input and commit, so nothing
// one input leaves behind (a label set, a grown heap) shows in the next. Inputs:
//
//   invalidNames     a Deployment whose volumes and projected sources name strings no ConfigMap can have,
//                    in a namespace of 200 ConfigMaps of 16 KiB, admitted again and again: the requests it
//                    makes the API server answer, its latency, the process's peak memory
//   forgedKinds      reviews whose kind.kind is 64 KiB of random letters: /metrics and memory afterwards
//   extraNames       a 250 KB extra-configmaps annotation of distinct valid names: admission latency and
//                    the event-loop stall kubelet's /healthz probes see meanwhile
//   extraInvalid     the same 250 KB, of one invalid entry repeated: the warnings and size of the answer
//   watcherOutside   the watcher with 20 Deployments carrying that annotation outside its scope, then
//   watcherInside    inside it: memory once synced, and memory and CPU for 50 status-only updates of each
//   protoKey         a `__proto__` key in a CSI volume's volumeAttributes: the answer's status and patch
//
// Not part of the default run: it checks out worktrees and runs two versions of the product (see run.ts).

import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { ProbeJob, ProbeSamples } from '../load/health-probe.ts';
import { writeTls, type TlsMaterial } from '../../support/tls.ts';
import { say, sleep } from '../support/cluster.ts';
import { FakeApiServer, type KubeObject } from '../support/fake-api.ts';
import {
  admissionReview,
  CHECKSUM_ANNOTATION,
  configMap,
  deployment,
  EXTRA_CONFIGMAPS,
  extraConfigMapNames,
  invalidConfigMapNames,
  invalidExtraConfigMaps,
  namespaceConfigMaps,
  protoKeyVolume,
  randomLetters,
  volumesNaming,
} from '../support/hostile-objects.ts';
import { cpuSeconds, procMemory } from '../support/proc.ts';
import { assertFlags, checkOutTree, Program, type SourceTree } from '../support/program.ts';
import { distribution, round } from '../support/stats.ts';

export interface HostilePlan {
  /** The commits compared, as git revisions. */
  readonly before: string;
  readonly after: string;
  readonly invalidNames: { readonly names: number; readonly configMaps: number; readonly configMapBytes: number; readonly admissions: number };
  readonly forgedKinds: { readonly reviews: number; readonly kindBytes: number; readonly concurrency: number; readonly pauseSeconds: number };
  readonly extraNames: { readonly names: number; readonly invalidEntries: number; readonly admissions: number; readonly probeIntervalMs: number };
  readonly watcher: { readonly deployments: number; readonly updatesPerDeployment: number; readonly names: number };
}

export interface HostileOptions extends HostilePlan {
  readonly repoRoot: string;
  /** Worktrees, kubeconfigs and the programs' logs go here. */
  readonly runDir: string;
  /** Some of the inputs only (all when absent). */
  readonly inputs?: ReadonlyArray<keyof TreeFigures>;
}

/** What a caller sees of one answer. */
export interface AnswerShape {
  readonly status: number;
  readonly allowed: boolean | undefined;
  readonly patchOperations: number;
  /** The patch sets the checksum annotation of the pod template. */
  readonly checksumPatched: boolean;
  readonly warnings: number;
  readonly bytes: number;
}

export interface InvalidNamesFigures {
  readonly names: number;
  /** Of those, runs of slashes: the names the API server reads as the collection. */
  readonly slashOnlyNames: number;
  readonly admissions: number;
  readonly configMapLists: number;
  readonly configMapGets: number;
  readonly latencyP50Ms: number;
  readonly latencyMaxMs: number;
  readonly rssAtStartMiB: number;
  readonly peakRssMiB: number;
  readonly firstAnswer: AnswerShape;
}

export interface ForgedKindsFigures {
  readonly reviews: number;
  readonly kindBytes: number;
  readonly non200: number;
  readonly seconds: number;
  readonly rssAtStartMiB: number;
  readonly rssAfterMiB: number;
  readonly rssAfterPauseMiB: number;
  readonly pauseSeconds: number;
  readonly metricsBytes: number;
  readonly peakRssMiB: number;
}

export interface ExtraNamesFigures {
  readonly entries: number;
  readonly annotationBytes: number;
  readonly admissions: number;
  readonly latencyP50Ms: number;
  readonly latencyMaxMs: number;
  readonly probes: number;
  readonly probeFailures: number;
  readonly healthzP50Ms: number;
  readonly healthzP99Ms: number;
  readonly healthzMaxMs: number;
  readonly answer: AnswerShape;
}

export interface WatcherFigures {
  readonly inScope: boolean;
  readonly deployments: number;
  readonly annotationBytes: number;
  readonly spawnToSyncedMs: number;
  /** Workloads the watcher said it indexed when synced. */
  readonly syncedWorkloads: number;
  readonly rssAtSyncMiB: number;
  readonly updates: number;
  readonly sendSeconds: number;
  readonly updatesCpuSeconds: number;
  readonly cpuPerUpdateMs: number;
  readonly rssAfterUpdatesMiB: number;
  readonly peakRssMiB: number;
  /** Every request the fake API server answered over the run, by `<verb> <resource>`. */
  readonly apiRequests: Readonly<Record<string, number>>;
}

export type ProtoKeyFigures = AnswerShape;

export type Failed = { readonly failed: string };

export interface TreeFigures {
  invalidNames?: InvalidNamesFigures | Failed;
  forgedKinds?: ForgedKindsFigures | Failed;
  extraNames?: ExtraNamesFigures | Failed;
  extraInvalid?: ExtraNamesFigures | Failed;
  watcherOutside?: WatcherFigures | Failed;
  watcherInside?: WatcherFigures | Failed;
  protoKey?: ProtoKeyFigures | Failed;
}

export interface TreeInfo {
  readonly rev: string;
  readonly commit: string;
  readonly subject: string;
}

export interface HostileResult {
  readonly options: HostilePlan;
  readonly trees: { readonly before: TreeInfo; readonly after: TreeInfo };
  readonly figures: { readonly before: TreeFigures; readonly after: TreeFigures };
  /** The flags every program ran with (plus --watch, and --identity for the watcher). */
  readonly programFlags: readonly string[];
}

type Side = 'before' | 'after';

interface TreeContext {
  readonly side: Side;
  readonly tree: SourceTree;
  readonly tls: TlsMaterial;
  readonly runDir: string;
}

// The flags passed to every version: the listening address, the API server, files TLS, no drain.
const FLAGS = ['host', 'port', 'kubeconfig', 'tls-cert-file', 'tls-key-file', 'drain-seconds', 'watch', 'identity'] as const;
const MiB = 2 ** 20;

export async function runHostile(options: HostileOptions): Promise<HostileResult> {
  const { repoRoot, runDir, inputs: only, ...plan } = options;
  const tls = writeTls();
  const trees: Partial<Record<Side, SourceTree>> = {};
  try {
    trees.before = checkOutTree(repoRoot, plan.before, path.join(runDir, 'tree-before'));
    trees.after = checkOutTree(repoRoot, plan.after, path.join(runDir, 'tree-after'));
    for (const tree of [trees.before, trees.after]) assertFlags(tree.dir, FLAGS);
    const contexts: Record<Side, TreeContext> = {
      before: { side: 'before', tree: trees.before, tls, runDir },
      after: { side: 'after', tree: trees.after, tls, runDir },
    };
    say(`hostile inputs: before ${trees.before.commit.slice(0, 7)} (${plan.before}), after ${trees.after.commit.slice(0, 7)} (${plan.after})`);
    const figures: Record<Side, TreeFigures> = { before: {}, after: {} };
    const inputs: Array<[keyof TreeFigures, (context: TreeContext) => Promise<TreeFigures[keyof TreeFigures]>]> = [
      ['protoKey', (context) => protoKey(context)],
      ['invalidNames', (context) => invalidNames(context, plan.invalidNames)],
      ['forgedKinds', (context) => forgedKinds(context, plan.forgedKinds)],
      ['extraNames', (context) => extraAnnotation(context, plan.extraNames, 'distinct')],
      ['extraInvalid', (context) => extraAnnotation(context, plan.extraNames, 'invalid')],
      ['watcherOutside', (context) => watcher(context, plan.watcher, false)],
      ['watcherInside', (context) => watcher(context, plan.watcher, true)],
    ];
    // Input by input, the two commits one after the other: drift of the machine meanwhile hits both alike.
    for (const [name, measure] of inputs) {
      if (only && !only.includes(name)) continue;
      for (const side of ['before', 'after'] as const) {
        say(`hostile ${name}: ${side}`);
        try {
          (figures[side] as Record<string, unknown>)[name] = await measure(contexts[side]);
        } catch (error) {
          say(`hostile ${name} (${side}) FAILED: ${(error as Error).stack ?? String(error)}`);
          (figures[side] as Record<string, unknown>)[name] = { failed: (error as Error).message };
        }
      }
    }
    const info = (tree: SourceTree): TreeInfo => ({ rev: tree.rev, commit: tree.commit, subject: tree.subject });
    return { options: plan, trees: { before: info(trees.before), after: info(trees.after) }, figures, programFlags: programArgs('<kubeconfig>', { certFile: '<tls.crt>', keyFile: '<tls.key>' }, false).slice(0, -2) };
  } finally {
    trees.before?.remove();
    trees.after?.remove();
    tls.cleanup();
  }
}

/** How many inputs failed on either commit. */
export function failedInputs(result: HostileResult): number {
  return [result.figures.before, result.figures.after].flatMap((figures) => Object.values(figures)).filter((figures) => failed(figures)).length;
}

/** Whether a figure set is a failure. */
export function failed(figures: object | undefined): figures is Failed {
  return figures !== undefined && 'failed' in figures;
}

function programArgs(kubeconfig: string, tls: Pick<TlsMaterial, 'certFile' | 'keyFile'>, watch: boolean): string[] {
  return [
    '--host', '127.0.0.1', '--port', '0', '--kubeconfig', kubeconfig,
    '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile,
    '--drain-seconds', '0', '--watch', String(watch),
    ...(watch ? ['--identity', 'bench-hostile'] : []),
  ];
}

interface Running {
  readonly program: Program;
  readonly fake: FakeApiServer;
  readonly ca: string;
  /** performance.now() just before the spawn. */
  readonly spawnedAt: number;
}

/** A fresh fake API server set up by `setup`, this commit's program against it, `body`, then both stopped. */
async function withProgram<T>(context: TreeContext, label: string, watch: boolean, setup: (fake: FakeApiServer) => void, body: (running: Running) => Promise<T>): Promise<T> {
  const { tls } = context;
  const fake = new FakeApiServer({ certificate: tls.serving.certificate, privateKey: tls.serving.privateKey });
  setup(fake);
  const apiPort = await fake.listen();
  const kubeconfig = path.join(context.runDir, `kubeconfig-${label}-${context.side}`);
  writeFileSync(kubeconfig, JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'fake', cluster: { server: `https://127.0.0.1:${apiPort}`, 'certificate-authority-data': Buffer.from(tls.ca.certificate).toString('base64') } }],
    users: [{ name: 'webhook', user: { token: 'hostile-bench-token' } }],
    contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'webhook' } }],
    'current-context': 'fake',
  }));
  const spawnedAt = performance.now();
  let program: Program | undefined;
  try {
    program = await Program.start(context.tree.dir, programArgs(kubeconfig, tls, watch), path.join(context.runDir, `${label}-${context.side}.log`));
    return await body({ program, fake, ca: tls.ca.certificate, spawnedAt });
  } finally {
    await program?.stop();
    fake.close();
  }
}

interface Answer {
  readonly status: number;
  readonly bytes: number;
  readonly ms: number;
  readonly body: Buffer | undefined;
}

/** One HTTPS call to the program; the body of the answer is kept only when asked (a /metrics may be 100+ MiB). */
function call(port: number, ca: string, request: { path: string; body?: string; agent?: https.Agent | false; keep?: boolean }): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const outgoing = https.request({
      host: '127.0.0.1',
      port,
      method: request.body === undefined ? 'GET' : 'POST',
      path: request.path,
      ca,
      agent: request.agent ?? false,
      headers: request.body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(request.body) },
    }, (response) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      response.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (request.keep) chunks.push(chunk);
      });
      response.on('error', reject);
      response.on('end', () => resolve({ status: response.statusCode ?? 0, bytes, ms: performance.now() - started, body: request.keep ? Buffer.concat(chunks) : undefined }));
    });
    outgoing.setTimeout(120_000, () => outgoing.destroy(new Error(`${request.path}: no answer within 120 s`)));
    outgoing.on('error', reject);
    outgoing.end(request.body);
  });
}

function shape(answer: Answer): AnswerShape {
  let response: { allowed?: boolean; patch?: string; warnings?: string[] } | undefined;
  try {
    response = (JSON.parse(answer.body?.toString('utf8') ?? '') as { response?: typeof response }).response;
  } catch {
    response = undefined;
  }
  const operations = response?.patch ? (JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as Array<{ path?: string }>) : [];
  const checksumPath = `/spec/template/metadata/annotations/${CHECKSUM_ANNOTATION.replace('/', '~1')}`;
  return {
    status: answer.status,
    allowed: response?.allowed,
    patchOperations: operations.length,
    checksumPatched: operations.some((operation) => operation.path === checksumPath || (operation.path === '/spec/template/metadata/annotations' && JSON.stringify(operation).includes(CHECKSUM_ANNOTATION))),
    warnings: response?.warnings?.length ?? 0,
    bytes: answer.bytes,
  };
}

function mib(bytes: number): number {
  return round(bytes / MiB, 1);
}

function delta(before: Record<string, number>, after: Record<string, number>, key: string): number {
  return (after[key] ?? 0) - (before[key] ?? 0);
}

async function protoKey(context: TreeContext): Promise<ProtoKeyFigures> {
  const namespace = 'team-e';
  const object = deployment({ namespace, name: 'web', volumes: [protoKeyVolume()] });
  const body = admissionReview(object, 'hostile-proto');
  if (!body.includes('"__proto__":"x"')) throw new Error('the review does not carry the "__proto__" key as written');
  return withProgram(context, 'proto-key', false, (fake) => fake.setConfigMaps(namespace, [configMap(namespace, 'app', 1024)]), async ({ program, ca }) => {
    return shape(await call(program.port, ca, { path: '/mutate?timeout=10s', body, keep: true }));
  });
}

async function invalidNames(context: TreeContext, plan: HostilePlan['invalidNames']): Promise<InvalidNamesFigures> {
  const namespace = 'team-a';
  const names = invalidConfigMapNames(plan.names);
  // Those names alone: one more reference would put the template over the default --max-configmaps
  // (64), and a template over it is answered without any read.
  const object = deployment({ namespace, name: 'web', volumes: volumesNaming(names), consumesApp: false });
  const configMaps = namespaceConfigMaps(namespace, plan.configMaps, plan.configMapBytes);
  return withProgram(context, 'invalid-names', false, (fake) => fake.setConfigMaps(namespace, configMaps), async ({ program, fake, ca }) => {
    const rssAtStart = procMemory(program.pid).rssBytes;
    const counted = fake.counts();
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const latencies: number[] = [];
    let firstAnswer: AnswerShape | undefined;
    try {
      for (let index = 0; index < plan.admissions; index++) {
        const answer = await call(program.port, ca, { path: '/mutate?timeout=10s', body: admissionReview(object, `hostile-names-${index}`), agent, keep: index === 0 });
        latencies.push(answer.ms);
        firstAnswer ??= shape(answer);
      }
    } finally {
      agent.destroy();
    }
    const counts = fake.counts();
    const latency = distribution(latencies);
    return {
      names: names.length,
      slashOnlyNames: names.filter((name) => /^\/+$/.test(name)).length,
      admissions: plan.admissions,
      configMapLists: delta(counted, counts, 'list configmaps'),
      configMapGets: delta(counted, counts, 'get configmaps'),
      latencyP50Ms: round(latency.p50, 1),
      latencyMaxMs: round(latency.max, 1),
      rssAtStartMiB: mib(rssAtStart),
      peakRssMiB: mib(procMemory(program.pid).vmHwmBytes),
      firstAnswer: firstAnswer!,
    };
  });
}

async function forgedKinds(context: TreeContext, plan: HostilePlan['forgedKinds']): Promise<ForgedKindsFigures> {
  const namespace = 'team-b';
  const object = deployment({ namespace, name: 'web' });
  return withProgram(context, 'forged-kinds', false, (fake) => fake.setConfigMaps(namespace, [configMap(namespace, 'app', 1024)]), async ({ program, ca }) => {
    const rssAtStart = procMemory(program.pid).rssBytes;
    const agent = new https.Agent({ keepAlive: true, maxSockets: plan.concurrency });
    let next = 0;
    let non200 = 0;
    const started = performance.now();
    const worker = async (): Promise<void> => {
      while (next < plan.reviews) {
        const index = next++;
        const answer = await call(program.port, ca, { path: '/mutate', body: admissionReview(object, `forged-${index}`, randomLetters(plan.kindBytes)), agent });
        if (answer.status !== 200) non200++;
      }
    };
    try {
      await Promise.all(Array.from({ length: plan.concurrency }, worker));
    } finally {
      agent.destroy();
    }
    const seconds = (performance.now() - started) / 1000;
    const rssAfter = procMemory(program.pid).rssBytes;
    await sleep(plan.pauseSeconds * 1000);
    const rssAfterPause = procMemory(program.pid).rssBytes;
    // Last: building a big /metrics answer itself takes memory.
    const metrics = await call(program.port, ca, { path: '/metrics' });
    return {
      reviews: plan.reviews,
      kindBytes: plan.kindBytes,
      non200,
      seconds: round(seconds, 1),
      rssAtStartMiB: mib(rssAtStart),
      rssAfterMiB: mib(rssAfter),
      rssAfterPauseMiB: mib(rssAfterPause),
      pauseSeconds: plan.pauseSeconds,
      metricsBytes: metrics.bytes,
      peakRssMiB: mib(procMemory(program.pid).vmHwmBytes),
    };
  });
}

interface Prober {
  stop(): Promise<ProbeSamples>;
}

/** The /healthz prober (load/health-probe.ts) in its own process, connections open. */
async function startProber(job: ProbeJob): Promise<Prober> {
  const child = fork(path.join(import.meta.dirname, '..', 'load', 'health-probe.ts'), [JSON.stringify(job)], { execPath: process.execPath, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const nextMessage = <M>(): Promise<M> => new Promise((resolve, reject) => {
    child.once('message', (message) => resolve(message as M));
    void exited.then(() => reject(new Error('the /healthz prober exited before answering')));
  });
  try {
    await nextMessage<{ ready: true }>();
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return {
    stop: async () => {
      const samples = nextMessage<ProbeSamples>();
      child.send('stop');
      try {
        return await samples;
      } finally {
        const killed = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(killed);
      }
    },
  };
}

async function extraAnnotation(context: TreeContext, plan: HostilePlan['extraNames'], variant: 'distinct' | 'invalid'): Promise<ExtraNamesFigures> {
  const namespace = 'team-c';
  const annotation = variant === 'distinct' ? extraConfigMapNames(plan.names) : invalidExtraConfigMaps(plan.invalidEntries);
  const object = deployment({ namespace, name: 'web', annotations: { [EXTRA_CONFIGMAPS]: annotation } });
  return withProgram(context, `extra-${variant}`, false, (fake) => fake.setConfigMaps(namespace, [configMap(namespace, 'app', 1024)]), async ({ program, ca }) => {
    // 16 connections: a stall of 160 ms still finds a free one for every probe due meanwhile.
    const prober = await startProber({ port: program.port, ca, intervalMs: plan.probeIntervalMs, connections: 16 });
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const latencies: number[] = [];
    let last: Answer | undefined;
    let samples: ProbeSamples;
    try {
      await sleep(200);
      for (let index = 0; index < plan.admissions; index++) {
        last = await call(program.port, ca, { path: '/mutate?timeout=10s', body: admissionReview(object, `extra-${variant}-${index}`), agent, keep: index === plan.admissions - 1 });
        latencies.push(last.ms);
      }
      await sleep(200);
    } finally {
      agent.destroy();
      samples = await prober.stop();
    }
    const latency = distribution(latencies);
    const healthz = distribution(samples.latenciesMs);
    return {
      entries: annotation.split(',').length,
      annotationBytes: Buffer.byteLength(annotation),
      admissions: plan.admissions,
      latencyP50Ms: round(latency.p50, 1),
      latencyMaxMs: round(latency.max, 1),
      probes: healthz.count,
      probeFailures: samples.failures,
      healthzP50Ms: round(healthz.p50, 1),
      healthzP99Ms: round(healthz.p99, 1),
      healthzMaxMs: round(healthz.max, 1),
      answer: shape(last!),
    };
  });
}

/**
 * Resolves once the process has used at most `quietCpuSeconds` of CPU over `windowMs` (its Lease renewals
 * and timers cost a few ms), with the CPU seconds it had used when that quiet window began.
 */
async function quietCpu(pid: number, timeoutMs: number, windowMs = 2_000, quietCpuSeconds = 0.04): Promise<number> {
  const samples: Array<{ at: number; cpu: number }> = [];
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const at = performance.now();
    samples.push({ at, cpu: cpuSeconds(pid) });
    const start = samples.findLast((sample) => sample.at <= at - windowMs);
    if (start && samples.at(-1)!.cpu - start.cpu <= quietCpuSeconds) return start.cpu;
    if (at > deadline) throw new Error(`the process did not go quiet within ${timeoutMs / 1000} s`);
    await sleep(250);
  }
}

/** A status-only update of a Deployment: what its controller writes as pods come and go. */
function statusUpdate(object: KubeObject, update: number): KubeObject {
  const ready = 2 - (update % 2);
  return { ...object, status: { observedGeneration: 1, replicas: 2, readyReplicas: ready, updatedReplicas: 2, availableReplicas: ready, unavailableReplicas: 2 - ready } };
}

async function watcher(context: TreeContext, plan: HostilePlan['watcher'], inScope: boolean): Promise<WatcherFigures> {
  const namespace = inScope ? 'team-d' : 'elsewhere';
  const annotation = extraConfigMapNames(plan.names);
  const deployments = Array.from({ length: plan.deployments }, (_, index) => deployment({
    namespace,
    name: `web-${index}`,
    annotations: { [EXTRA_CONFIGMAPS]: annotation },
    templateAnnotations: { [CHECKSUM_ANNOTATION]: '0'.repeat(64) },
  }));
  const setup = (fake: FakeApiServer): void => {
    fake.addNamespace(namespace, inScope);
    fake.addNamespace('config-checksum', false);
    fake.setConfigMaps(namespace, [configMap(namespace, 'app', 1024)]);
    fake.setDeployments(deployments);
  };
  return withProgram(context, inScope ? 'watch-inside' : 'watch-outside', true, setup, async ({ program, fake, spawnedAt }) => {
    const synced = await program.logLine('watches synced', 300_000);
    const spawnToSyncedMs = performance.now() - spawnedAt;
    // The start-up pass (in scope: a read of each annotated workload) is part of being synced.
    await quietCpu(program.pid, 300_000);
    const rssAtSync = procMemory(program.pid).rssBytes;
    const deadline = performance.now() + 60_000;
    while (fake.openWatches('deployments') === 0) {
      if (performance.now() > deadline) throw new Error('the watcher opened no Deployment watch');
      await sleep(50);
    }
    const cpuBefore = cpuSeconds(program.pid);
    const sendStarted = performance.now();
    for (let update = 1; update <= plan.updatesPerDeployment; update++) {
      for (const object of deployments) await fake.modified('deployments', statusUpdate(object, update));
    }
    const sendSeconds = (performance.now() - sendStarted) / 1000;
    const cpuAtQuiet = await quietCpu(program.pid, 900_000);
    const updates = plan.deployments * plan.updatesPerDeployment;
    const memory = procMemory(program.pid);
    return {
      inScope,
      deployments: plan.deployments,
      annotationBytes: Buffer.byteLength(annotation),
      spawnToSyncedMs: Math.round(spawnToSyncedMs),
      syncedWorkloads: Number(synced['workloads']),
      rssAtSyncMiB: mib(rssAtSync),
      updates,
      sendSeconds: round(sendSeconds, 1),
      updatesCpuSeconds: round(cpuAtQuiet - cpuBefore, 2),
      cpuPerUpdateMs: round(((cpuAtQuiet - cpuBefore) * 1000) / updates, 2),
      rssAfterUpdatesMiB: mib(memory.rssBytes),
      peakRssMiB: mib(memory.vmHwmBytes),
      apiRequests: fake.counts(),
    };
  });
}
