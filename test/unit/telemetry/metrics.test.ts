// The metrics the alerts of the PrometheusRule need beyond the counters of each path: the age of the oldest
// rollout on its way, the rollout rate limit's waits, and whether the watcher runs at all.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMetrics, PendingRollouts, rateLimited } from '../../../src/telemetry/metrics.ts';

function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

test('PendingRollouts: the oldest begun key gives the age; a key begun again keeps its first time; end and clear forget', () => {
  let now = 10_000;
  const pending = new PendingRollouts(() => now);
  assert.equal(pending.oldestAgeSeconds(), 0, 'none pending');
  pending.begin('Deployment/a/web', 4_000);
  pending.begin('StatefulSet/a/db', 7_000);
  assert.equal(pending.oldestAgeSeconds(), 6);
  // A retry of the same workload, merged with a newer change, still counts from the first change.
  pending.begin('Deployment/a/web', 9_000);
  now = 12_000;
  assert.equal(pending.oldestAgeSeconds(), 8);
  pending.end('Deployment/a/web');
  assert.equal(pending.oldestAgeSeconds(), 5);
  assert.equal(pending.size, 1);
  pending.clear();
  assert.equal(pending.oldestAgeSeconds(), 0);
  assert.equal(pending.size, 0);
});

test('the oldest pending rollout is computed at each scrape', async () => {
  const metrics = createMetrics();
  const name = 'config_checksum_watch_oldest_pending_rollout_seconds';
  assert.equal(sample(await metrics.registry.metrics(), name), 0);
  metrics.pendingRollouts.begin('Deployment/a/web', performance.now() - 90_000);
  const first = sample(await metrics.registry.metrics(), name) ?? 0;
  assert.ok(first >= 90 && first < 100, `about 90 s (${first})`);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok((sample(await metrics.registry.metrics(), name) ?? 0) > first, 'grows between scrapes with nothing set');
  metrics.pendingRollouts.end('Deployment/a/web');
  assert.equal(sample(await metrics.registry.metrics(), name), 0);
});

test('rateLimited: counts writes waiting while they wait, and the seconds they waited', async () => {
  const metrics = createMetrics();
  let release: () => void = () => {};
  const taken = rateLimited(metrics, () => new Promise<void>((resolve) => (release = resolve)));
  assert.equal(sample(await metrics.registry.metrics(), 'config_checksum_watch_rate_limit_waiting'), 1);
  await new Promise((resolve) => setTimeout(resolve, 120));
  release();
  await taken;
  const text = await metrics.registry.metrics();
  assert.equal(sample(text, 'config_checksum_watch_rate_limit_waiting'), 0);
  const waited = sample(text, 'config_checksum_watch_rate_limit_wait_seconds_total') ?? 0;
  assert.ok(waited >= 0.1 && waited < 1, `about 0.12 s waited (${waited})`);
  // A token refused (the watcher stopped) still leaves the count right.
  await assert.rejects(rateLimited(metrics, () => Promise.reject(new Error('stopped'))), /stopped/);
  assert.equal(sample(await metrics.registry.metrics(), 'config_checksum_watch_rate_limit_waiting'), 0);
});

test('watch_enabled and the certificate expiry gauge are exported (0, and no sample until a certificate is loaded)', async () => {
  const text = await createMetrics().registry.metrics();
  assert.equal(sample(text, 'config_checksum_watch_enabled'), 0);
  assert.match(text, /# TYPE config_checksum_certificate_expiration_timestamp_seconds gauge/);
  assert.doesNotMatch(text, /^config_checksum_certificate_expiration_timestamp_seconds\{/m);
});
