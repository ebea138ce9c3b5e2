// Event-loop stalls of a webhook process seen from outside, as kubelet's probes see them: GET /healthz
// every `intervalMs` on warm keep-alive connections, each timed from its send to the end of its answer.
// In its own process (forked by scenarios/hostile.ts), so the bench's own work (a fake API server, big
// request bodies) cannot delay a probe. The argument is a ProbeJob as JSON; the child answers
// { ready: true } once its connections are open, and the samples when the parent sends 'stop'.

import https from 'node:https';

export interface ProbeJob {
  readonly port: number;
  readonly ca: string;
  readonly intervalMs: number;
  /** Keep-alive connections: enough that a stall of a few hundred ms queues no probe behind another's socket. */
  readonly connections: number;
}

export interface ProbeSamples {
  /** Milliseconds, send to end of answer, in the order sent. */
  readonly latenciesMs: number[];
  readonly failures: number;
}

function probe(job: ProbeJob, agent: https.Agent): Promise<number> {
  const sent = performance.now();
  return new Promise((resolve, reject) => {
    const request = https.get({ host: '127.0.0.1', port: job.port, path: '/healthz', ca: job.ca, agent }, (response) => {
      response.resume();
      response.on('end', () => resolve(performance.now() - sent));
      response.on('error', reject);
    });
    request.setTimeout(30_000, () => request.destroy(new Error('no answer within 30 s')));
    request.on('error', reject);
  });
}

async function run(job: ProbeJob): Promise<void> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: job.connections, maxFreeSockets: job.connections });
  // The TLS handshakes happen here, not in the measured probes.
  await Promise.all(Array.from({ length: job.connections }, () => probe(job, agent)));
  const samples = { latenciesMs: [] as number[], failures: 0 };
  const pending = new Set<Promise<void>>();
  let stopping = false;
  const started = performance.now();
  let next = 0;
  const tick = (): void => {
    if (stopping) return;
    const index = next++;
    const sending = probe(job, agent).then(
      (ms) => void (samples.latenciesMs[index] = ms),
      () => void samples.failures++,
    );
    pending.add(sending);
    void sending.finally(() => pending.delete(sending));
    // Due times on a fixed grid: a late timer does not shift the probes after it.
    setTimeout(tick, Math.max(0, started + next * job.intervalMs - performance.now()));
  };
  process.on('message', (message) => {
    if (message !== 'stop') return;
    stopping = true;
    void Promise.all(pending).then(() => {
      agent.destroy();
      process.send?.({ latenciesMs: samples.latenciesMs.filter((ms) => ms !== undefined), failures: samples.failures } satisfies ProbeSamples, () => process.exit(0));
    });
  });
  process.send?.({ ready: true });
  tick();
}

if (import.meta.main) await run(JSON.parse(process.argv[2] ?? '{}') as ProbeJob);
