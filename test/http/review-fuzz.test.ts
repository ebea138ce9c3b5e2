// Bad input never crashes or wedges the server. fast-check drives POST /mutate of a real
// startServer (TLS on 127.0.0.1, fake ConfigMapReader, log level trace) with random JSON, reviews with wrong
// types anywhere (the pod template above all), truncated bodies, deep nesting (to 100k levels), huge
// arrays (to 100k entries), Unicode everywhere, raw bytes, wrong content types and bodies over 7 MiB.
// The property itself is in fuzz-properties.ts; `node test/fuzz/run.ts <seconds>` runs it for longer.

import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { checkOne, describeTally, fuzzInput, newTally, oversize, startFuzzTarget, warmUpBaseline, type FuzzTarget } from './fuzz-properties.ts';
import { CANARY, gcHandle, mib, MiB, settledHeap, usedMemory } from '../support/observation.ts';
import { httpsCall } from '../support/https.ts';

// CI budget for the random inputs; the whole file stays well under a minute.
const FUZZ_SECONDS = Number(process.env['HARDENING_FUZZ_SECONDS'] ?? 20);
// Few enough to be reached on a busy 2-core machine in the budget, enough to mean something.
const MIN_INPUTS = 100;
// What may stay on the heap after the run and full collections: compiled code, metric series, pools.
const HEAP_GROWTH_LIMIT = 24 * MiB;

describe('fuzzing POST /mutate over TLS', () => {
  let target: FuzzTarget;
  const gc = gcHandle();

  before(async () => {
    target = await startFuzzTarget();
  });

  after(async () => {
    await target.stop();
  });

  test('every input gets an AdmissionReview or a 4xx with a message; the server stays healthy; the heap returns near baseline', { timeout: (FUZZ_SECONDS + 90) * 1000 }, async (t) => {
    const baseline = await warmUpBaseline(target, gc);

    const tally = newTally();
    let peak = 0;
    const started = performance.now();
    await fc.assert(
      fc.asyncProperty(fuzzInput, async (input) => {
        await checkOne(target, input, tally);
        assert.ok(await target.healthy(), `/healthz after ${input.category}`);
        peak = Math.max(peak, usedMemory());
      }),
      { numRuns: 1_000_000, interruptAfterTimeLimit: FUZZ_SECONDS * 1000, markInterruptAsFailure: false, endOnFailure: true },
    );
    const seconds = (performance.now() - started) / 1000;
    // The always-interesting cases, once each whatever the draw.
    await checkOne(target, oversize(), tally);
    for (const depth of [10_000, 100_000]) {
      await checkOne(target, { category: 'deep-nesting', body: Buffer.from(`${'['.repeat(depth)}${']'.repeat(depth)}`), contentType: 'application/json' }, tally);
    }
    assert.ok(await target.healthy(), '/healthz after the run');

    target.agent.destroy();
    const settled = await settledHeap(gc);
    t.diagnostic(`fuzz: ${describeTally(tally)}; ${seconds.toFixed(1)} s, ${(tally.inputs / seconds).toFixed(0)} inputs/s`);
    t.diagnostic(`fuzz memory (heap + external): baseline ${mib(baseline)}, peak ${mib(peak)}, after GC ${mib(settled)} (growth ${mib(settled - baseline)}, limit ${mib(HEAP_GROWTH_LIMIT)})`);
    t.diagnostic(`fuzz logs: ${target.log.lines} lines at trace, levels ${JSON.stringify(Object.fromEntries(target.log.levels))}; reads ${target.reader.total}`);
    assert.ok(tally.inputs >= MIN_INPUTS, `only ${tally.inputs} inputs in ${FUZZ_SECONDS} s`);
    for (const category of ['review', 'wrong-types', 'template-wrong-types', 'truncated', 'deep-nesting', 'random-json', 'oversize']) {
      assert.ok((tally.categories.get(category) ?? 0) > 0, `category ${category} was never drawn`);
    }
    assert.ok(tally.patched > 0 && tally.warned > 0, 'the generator reaches patched answers and warnings');
    assert.ok(settled - baseline < HEAP_GROWTH_LIMIT, `heap grew by ${mib(settled - baseline)}`);
    assert.deepEqual(target.log.leaks, [], 'no ConfigMap value in any log line');
    assert.deepEqual(target.log.notJson, [], 'every log line is one JSON object');
    const metrics = await httpsCall({ port: target.server.port, ca: target.tls.ca.certificate, path: '/metrics' });
    assert.equal(metrics.status, 200);
    assert.ok(!metrics.text.includes(CANARY), 'no ConfigMap value in /metrics');
  });

  test('bodies that never finish (slowloris) do not hold up other clients', { timeout: 60_000 }, async (t) => {
    const stuck: tls.TLSSocket[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const socket = tls.connect({ host: '127.0.0.1', port: target.server.port, ca: target.tls.ca.certificate });
        await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
        socket.on('error', () => {});
        // Announces 1 MiB and sends 10 bytes of it; headers of another one never end.
        socket.write(i % 2 === 0
          ? `POST /mutate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${MiB}\r\n\r\n{"apiVersi`
          : 'POST /mutate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-ty');
        stuck.push(socket);
      }
      const started = performance.now();
      for (let i = 0; i < 20; i++) {
        const answer = await httpsCall({ port: target.server.port, ca: target.tls.ca.certificate, path: '/healthz', timeoutMs: 5_000 });
        assert.equal(answer.status, 200);
      }
      const review = { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'after-stuck', kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, operation: 'CREATE', namespace: 'shop', object: {} } };
      const answer = await httpsCall({ port: target.server.port, ca: target.tls.ca.certificate, path: '/mutate', body: JSON.stringify(review), contentType: 'application/json', timeoutMs: 5_000 });
      assert.equal(answer.status, 200);
      assert.equal((JSON.parse(answer.text) as { response: { uid: string } }).response.uid, 'after-stuck');
      t.diagnostic(`with 20 stuck connections open: 20 /healthz and 1 admission in ${(performance.now() - started).toFixed(0)} ms`);
    } finally {
      for (const socket of stuck) socket.destroy();
    }
  });
});
