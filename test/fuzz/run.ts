// The admission fuzz property of test/http/review-fuzz.test.ts, run for longer than CI allows:
//   node test/fuzz/run.ts [seconds=300] [seed]
// Prints the figures, and on a failure the counterexample with the seed and path to replay it
// (node test/fuzz/run.ts <seconds> <seed>). Exit code 0 when the property held for the whole time.

import fc from 'fast-check';
import { checkOne, describeTally, fuzzInput, newTally, oversize, startFuzzTarget, warmUpBaseline } from '../http/fuzz-properties.ts';
import { CANARY, gcHandle, mib, settledHeap, usedMemory } from '../support/observation.ts';
import { httpsCall } from '../support/https.ts';

const seconds = Number(process.argv[2] ?? 300);
const seed = process.argv[3] === undefined ? Date.now() % 2 ** 31 : Number(process.argv[3]);
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error('usage: node test/fuzz/run.ts [seconds] [seed]');
  process.exit(2);
}

const gc = gcHandle();
const target = await startFuzzTarget();
let failed = false;
try {
  const baseline = await warmUpBaseline(target, gc);
  const tally = newTally();
  let peak = 0;
  let lastReport = performance.now();
  const started = performance.now();
  console.log(`fuzzing POST /mutate on 127.0.0.1:${target.server.port} for ${seconds} s, seed ${seed}`);
  const details = await fc.check(
    fc.asyncProperty(fuzzInput, async (input) => {
      await checkOne(target, input, tally);
      if (!(await target.healthy())) throw new Error(`/healthz failed after ${input.category}`);
      peak = Math.max(peak, usedMemory());
      if (performance.now() - lastReport > 30_000) {
        lastReport = performance.now();
        console.log(`  ${((lastReport - started) / 1000).toFixed(0)} s: ${tally.inputs} inputs, heap ${mib(usedMemory())}`);
      }
    }),
    { seed, numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: seconds * 1000, markInterruptAsFailure: false, endOnFailure: true },
  );
  await checkOne(target, oversize(), tally);
  const elapsed = (performance.now() - started) / 1000;
  target.agent.destroy();
  const settled = await settledHeap(gc);
  const metrics = await httpsCall({ port: target.server.port, ca: target.tls.ca.certificate, path: '/metrics' });
  console.log(`figures: ${describeTally(tally)}; ${elapsed.toFixed(1)} s, ${(tally.inputs / elapsed).toFixed(0)} inputs/s`);
  console.log(`memory (heap + external): baseline ${mib(baseline)}, peak ${mib(peak)}, after GC ${mib(settled)} (growth ${mib(settled - baseline)})`);
  console.log(`logs: ${target.log.lines} lines at trace; canary in logs ${target.log.leaks.length}, in /metrics ${metrics.text.includes(CANARY) ? 'YES' : 'no'}`);
  if (details.failed) {
    failed = true;
    console.error(`PROPERTY FAILED after ${details.numRuns} runs (seed ${details.seed}, path ${details.counterexamplePath ?? '?'})`);
    console.error(String((details.errorInstance as Error | undefined)?.message ?? details.errorInstance));
    const input = details.counterexample?.[0];
    if (input) console.error(`counterexample: ${input.category}, ${input.body.length} bytes, content-type ${String(input.contentType)}: ${input.body.subarray(0, 500).toString('utf8')}`);
  }
  if (target.log.leaks.length > 0 || metrics.text.includes(CANARY)) {
    failed = true;
    console.error(`ConfigMap data leaked: ${target.log.leaks.slice(0, 3).join('\n')}`);
  }
  if (!(await target.healthy().catch(() => false))) {
    failed = true;
    console.error('/healthz no longer answers');
  }
} finally {
  await target.stop();
}
console.log(failed ? 'FAILED' : 'ok');
process.exit(failed ? 1 : 0);
