import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoalescingQueue, TokenBucket, type PendingChange } from '../../../src/watch/queue.ts';

test('changes to one key within the window are handled once, merged', async () => {
  const handled: Array<PendingChange<string[]>> = [];
  const queue = new CoalescingQueue<string[]>(60, 1000, (a, b) => [...a, ...b], (change) => handled.push(change));
  queue.add('w', ['cm-a']);
  await sleep(20);
  queue.add('w', ['cm-b']);
  queue.add('other', ['cm-c']);
  await sleep(20);
  queue.add('w', ['cm-c']);
  await sleep(150);
  assert.equal(handled.length, 2);
  assert.deepEqual(handled.find((change) => change.key === 'w')?.value, ['cm-a', 'cm-b', 'cm-c']);
});

test('a burst is handled one quiet period after its last change, and a lone change one quiet period after itself', async () => {
  const handledAt = new Map<string, number>();
  const started = performance.now();
  const queue = new CoalescingQueue<number>(60, 2000, (a, b) => a + b, (change) => handledAt.set(change.key, performance.now() - started));
  queue.add('lone', 1);
  for (let i = 0; i < 4; i++) {
    queue.add('burst', 1);
    await sleep(30);
  }
  await sleep(200);
  // The lone change waited one quiet period, not the maximum; the burst's last change came at about
  // 90 ms, so it was handled at about 150 ms: after the lone one, long before the maximum.
  assert.ok(handledAt.get('lone')! >= 55 && handledAt.get('lone')! < handledAt.get('burst')!, `lone change handled at ${handledAt.get('lone')} ms, burst at ${handledAt.get('burst')} ms`);
  assert.ok(handledAt.get('burst')! >= 140, `burst handled at ${handledAt.get('burst')} ms, before its last change's quiet period ended`);
});

test('a steady trickle of changes cannot postpone handling past the maximum delay', async () => {
  const handledAt: number[] = [];
  const started = performance.now();
  const queue = new CoalescingQueue<number>(40, 120, (a, b) => a + b, () => handledAt.push(performance.now() - started));
  for (let i = 0; i < 10; i++) {
    queue.add('w', 1);
    await sleep(25);
  }
  await sleep(100);
  assert.ok(handledAt.length >= 2, `expected the trickle to be cut into batches, got ${handledAt.length}`);
  assert.ok(handledAt[0]! < 200, `first batch handled after ${handledAt[0]} ms, the maximum delay is 120 ms`);
});

test('changes spread beyond the window are handled separately', async () => {
  let count = 0;
  const queue = new CoalescingQueue<number>(20, 1000, (a, b) => a + b, () => count++);
  queue.add('w', 1);
  await sleep(80);
  queue.add('w', 1);
  await sleep(80);
  assert.equal(count, 2);
});

test('clear() drops pending work', async () => {
  let count = 0;
  const queue = new CoalescingQueue<number>(20, 1000, (a, b) => a + b, () => count++);
  queue.add('w', 1);
  queue.clear();
  await sleep(60);
  assert.equal(count, 0);
});

test('the token bucket allows a burst, then holds the rate', async () => {
  const bucket = new TokenBucket(20, 3);
  const started = performance.now();
  for (let i = 0; i < 3; i++) await bucket.take();
  const burstMs = performance.now() - started;
  for (let i = 0; i < 4; i++) await bucket.take();
  const totalMs = performance.now() - started;
  assert.ok(burstMs < 30, `burst of 3 took ${burstMs} ms`);
  // 4 more tokens at 20/s need about 200 ms.
  assert.ok(totalMs >= 180, `7 tokens with burst 3 at 20/s took only ${totalMs} ms`);
});
