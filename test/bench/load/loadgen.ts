// The load generator, in its own process (forked by scenarios/webhook.ts; one process, one autocannon
// instance, no workers). It gets one job as JSON in argv, sends the result over IPC and exits.
//
//   autocannon  autocannon 9 on `connections` keep-alive connections; with `rate`, its overallRate. Latency
//               is taken from autocannon's per-request 'response' event (float ms, write of the request to
//               the end of the response): its own histogram keeps whole milliseconds, too coarse here.
//               Note how autocannon paces: each connection may send rate/connections requests per second,
//               and sends them back to back as soon as the second starts, then waits for the next second.
//               So a fixed rate arrives as bursts with `connections` requests in flight, not spread evenly.
//   paced       open loop, evenly spaced: request i is due at start + i/rate and goes out on a keep-alive
//               pool of `connections` sockets. Latency from the actual send (comparable to autocannon) and
//               from the due time (what a caller waiting since the due time saw; no coordinated omission).

import https from 'node:https';
import { createRequire } from 'node:module';
import { distribution, type Distribution } from '../support/stats.ts';

export interface LoadJob {
  readonly mode: 'autocannon' | 'paced';
  readonly port: number;
  readonly path: string;
  readonly body: string;
  readonly connections: number;
  /** Requests per second; none: as fast as the connections go (saturation). */
  readonly rate?: number;
  readonly durationSeconds: number;
  /**
   * Responses completing in this first part of the job are not counted: the job opens fresh connections,
   * and their TLS handshakes (a few ms each, serialised on the server's one thread) are not what a caller
   * on a warm keep-alive connection sees. The API server keeps its connections for 90 s.
   */
  readonly settleSeconds: number;
  /** PEM of the CA that signed the server's certificate (paced mode verifies it). */
  readonly ca?: string;
}

export interface LoadResult {
  readonly mode: LoadJob['mode'];
  readonly rate: number | null;
  readonly connections: number;
  readonly durationSeconds: number;
  readonly responses: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly achievedRate: number;
  /** Milliseconds. */
  readonly latency: Distribution;
  /** Paced only: milliseconds from the due time. */
  readonly latencyFromDue?: Distribution;
}

interface AutocannonInstance {
  on(event: 'response', listener: (client: unknown, statusCode: number, bytes: number, responseTimeMs: number) => void): void;
  on(event: 'reqError', listener: (error: Error) => void): void;
  on(event: 'done', listener: (result: { errors: number; timeouts: number; non2xx: number; duration: number }) => void): void;
}
type Autocannon = (options: Record<string, unknown>) => AutocannonInstance;

// autocannon ships no types; this is the part of its API used here.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

export function runAutocannon(job: LoadJob): Promise<LoadResult> {
  return new Promise((resolve) => {
    const latencies: number[] = [];
    let non2xx = 0;
    let errors = 0;
    const started = performance.now();
    const counted = started + job.settleSeconds * 1000;
    const instance = autocannon({
      url: `https://127.0.0.1:${job.port}${job.path}`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: job.body,
      connections: job.connections,
      pipelining: 1,
      duration: job.settleSeconds + job.durationSeconds,
      workers: 0,
      ...(job.rate ? { overallRate: job.rate } : {}),
      timeout: 10,
    });
    instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
      if (performance.now() < counted) return;
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTimeMs);
      else non2xx++;
    });
    instance.on('reqError', () => {
      if (performance.now() >= counted) errors++;
    });
    instance.on('done', () => {
      // Over the nominal measured time: autocannon's end also waits for the last answers, and with a rate
      // its per-second bursts would otherwise be spread over that longer time.
      const seconds = job.durationSeconds;
      resolve({
        mode: 'autocannon',
        rate: job.rate ?? null,
        connections: job.connections,
        durationSeconds: seconds,
        responses: latencies.length,
        non2xx,
        errors,
        achievedRate: latencies.length / seconds,
        latency: distribution(latencies),
      });
    });
  });
}

export async function runPaced(job: LoadJob): Promise<LoadResult> {
  if (!job.rate) throw new Error('paced needs a rate');
  const agent = new https.Agent({ keepAlive: true, maxSockets: job.connections, ca: job.ca });
  const body = Buffer.from(job.body);
  const total = Math.round(job.rate * (job.settleSeconds + job.durationSeconds));
  const fromSend: number[] = [];
  const fromDue: number[] = [];
  let non2xx = 0;
  let errors = 0;
  let outstanding = 0;
  let counted = Number.POSITIVE_INFINITY;
  const send = (due: number): void => {
    const sent = performance.now();
    outstanding++;
    const request = https.request(
      { agent, host: '127.0.0.1', port: job.port, method: 'POST', path: job.path, headers: { 'content-type': 'application/json', 'content-length': body.length } },
      (response) => {
        response.on('data', () => {});
        response.on('end', () => {
          const now = performance.now();
          outstanding--;
          if (due < counted) return;
          const status = response.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            fromSend.push(now - sent);
            fromDue.push(now - due);
          } else non2xx++;
        });
      },
    );
    request.on('error', () => {
      outstanding--;
      if (due >= counted) errors++;
    });
    request.end(body);
  };
  const intervalMs = 1000 / job.rate;
  const started = performance.now();
  counted = started + job.settleSeconds * 1000;
  let next = 0;
  // A 1 ms timer tick sends whatever is due: evenly spaced on average, within the timer's resolution.
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      while (next < total && started + next * intervalMs <= now) send(started + next++ * intervalMs);
      if (next < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  const deadline = performance.now() + 10_000;
  while (outstanding > 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  // Requests due in the counted part, over the time they were due in: the offered rate, when all answered.
  const seconds = job.durationSeconds;
  agent.destroy();
  return {
    mode: 'paced',
    rate: job.rate,
    connections: job.connections,
    durationSeconds: seconds,
    responses: fromSend.length,
    non2xx,
    errors,
    achievedRate: fromSend.length / seconds,
    latency: distribution(fromSend),
    latencyFromDue: distribution(fromDue),
  };
}

if (import.meta.main) {
  const job = JSON.parse(process.argv[2] ?? '{}') as LoadJob;
  const result = job.mode === 'paced' ? await runPaced(job) : await runAutocannon(job);
  process.send?.(result, () => process.exit(0));
}
