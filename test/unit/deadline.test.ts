// startDeadline (src/kube/deadline.ts): fires as a TimeoutError, follows an outer signal, leaves
// nothing behind once cleared, and restarts its full time on demand (an inactivity timeout).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDeadline } from '../../src/kube/deadline.ts';

describe('startDeadline', () => {
  test('aborts with a TimeoutError once the time has passed', async () => {
    const deadline = startDeadline(20);
    assert.equal(deadline.signal.aborted, false);
    await sleep(60);
    assert.equal(deadline.signal.aborted, true);
    assert.equal((deadline.signal.reason as Error).name, 'TimeoutError');
  });

  test('a cleared deadline never fires', async () => {
    const deadline = startDeadline(20);
    deadline.clear();
    await sleep(60);
    assert.equal(deadline.signal.aborted, false);
  });

  test('follows the outer signal, with its reason, until cleared', () => {
    const outer = new AbortController();
    const followed = startDeadline(10_000, outer.signal);
    const detached = startDeadline(10_000, outer.signal);
    detached.clear();
    outer.abort(new Error('caller gave up'));
    assert.equal(followed.signal.aborted, true);
    assert.equal((followed.signal.reason as Error).message, 'caller gave up');
    assert.equal(detached.signal.aborted, false);
    followed.clear();
  });

  test('an outer signal that has already aborted aborts at once', () => {
    const deadline = startDeadline(10_000, AbortSignal.abort(new Error('already')));
    assert.equal(deadline.signal.aborted, true);
    deadline.clear();
  });

  test('restart() gives the full time again from now: restarted more often than the time, it never fires', async () => {
    const deadline = startDeadline(60);
    for (let step = 0; step < 6; step++) {
      await sleep(25);
      deadline.restart();
    }
    assert.equal(deadline.signal.aborted, false, '150 ms with a restart every 25 ms');
    await sleep(120);
    assert.equal(deadline.signal.aborted, true, 'without restarts it fires');
    assert.equal((deadline.signal.reason as Error).name, 'TimeoutError');
  });
});
