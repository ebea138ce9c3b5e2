// Resource limits. Pod templates with thousands of references, and ConfigMaps near the 1 MiB
// object limit, through startServer over TLS with a fake reader: every answer comes within a generous
// ceiling (the webhook's timeoutSeconds is 5), memory stays bounded, and a template over --max-configmaps
// gets a fail-open warning at once rather than thousands of reads.

import assert from 'node:assert/strict';
import https from 'node:https';
import { after, before, describe, test, type TestContext } from 'node:test';
import jsonpatch from 'fast-json-patch';
import { startServer, type RunningServer } from '../../src/server/https.ts';
import { computeChecksum, planChecksum } from '../../src/checksum/compute.ts';
import { workloadParts } from '../../src/workload/kinds.ts';
import { CONTRACT } from '../../src/config.ts';
import { admissionRequest, reviewBody } from '../support/fakes.ts';
import type { ConfigMapData } from '../support/fakes.ts';
import { CANARY, gcHandle, mib, MiB, RecordingReader, settledHeap, traceParts, usedMemory } from '../support/observation.ts';
import { httpsCall } from '../support/https.ts';
import { type TlsMaterial, writeTls } from '../support/tls.ts';

// Far above what these cases take on a busy 2-core machine, far below the API server's 5 s deadline.
const CEILING_MS = 3_000;
// Heap that one admission may add at its peak, beyond the ConfigMaps the fake reader already holds.
const PEAK_HEAP_LIMIT = 256 * MiB;
// What may remain after it and full collections.
const SETTLED_HEAP_LIMIT = 16 * MiB;
const ANNOTATION_LIMIT_BYTES = 256 * 1024;
// The API server refuses an object whose annotations exceed this; the sources annotation is capped well below.

/** A Deployment whose first container has `refs` env configMapKeyRefs spread over `configMaps` ConfigMaps. */
function manyRefs(refs: number, configMaps: number, prefix = 'cm'): Record<string, unknown> {
  const env = Array.from({ length: refs }, (_, i) => ({
    name: `VAR_${i}`,
    valueFrom: { configMapKeyRef: { name: `${prefix}-${i % configMaps}`, key: `key-${Math.floor(i / configMaps)}` } },
  }));
  return deployment([{ name: 'app', image: 'registry.invalid/app:1', env }], []);
}

function deployment(containers: unknown[], volumes: unknown[]): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'big', namespace: 'shop' },
    spec: { selector: { matchLabels: { app: 'big' } }, template: { metadata: { labels: { app: 'big' } }, spec: { containers, volumes } } },
  };
}

function configMapsFor(count: number, keys: number, prefix = 'cm'): Record<string, ConfigMapData> {
  return Object.fromEntries(
    Array.from({ length: count }, (_, i) => [`${prefix}-${i}`, { data: Object.fromEntries(Array.from({ length: keys }, (_, k) => [`key-${k}`, `${CANARY}-${i}-${k}`])) }]),
  );
}

interface Measured {
  readonly ms: number;
  readonly status: number;
  readonly response: { uid: string; allowed: boolean; patch?: string; patchType?: string; warnings?: string[] };
  readonly peakHeap: number;
  readonly bodyBytes: number;
}

describe('resource limits over TLS', () => {
  let tls: TlsMaterial;
  const gc = gcHandle();
  const servers: RunningServer[] = [];
  const agent = new https.Agent({ keepAlive: true });

  before(() => {
    tls = writeTls();
  });
  after(async () => {
    agent.destroy();
    for (const server of servers) await server.stop();
    tls.cleanup();
  });

  async function serve(configMaps: Record<string, ConfigMapData>, maxConfigMaps: number): Promise<{ server: RunningServer; reader: RecordingReader; parts: ReturnType<typeof traceParts> }> {
    const reader = new RecordingReader(configMaps);
    const parts = traceParts(reader, { maxConfigMaps, configMapReadTimeoutMs: 2_000 });
    const server = await startServer(parts, { host: '127.0.0.1', port: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, drainSeconds: 0 });
    servers.push(server);
    return { server, reader, parts };
  }

  /** One admission, timed, with the heap sampled every 5 ms while it runs (same process, so a coarse peak). */
  async function admit(server: RunningServer, object: unknown, uid: string): Promise<Measured> {
    const body = JSON.stringify(reviewBody(admissionRequest(object, { uid, operation: 'UPDATE', oldObject: object })));
    let peakHeap = usedMemory();
    const sampler = setInterval(() => (peakHeap = Math.max(peakHeap, usedMemory())), 5);
    const started = performance.now();
    try {
      const answer = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/mutate?timeout=5s', body, contentType: 'application/json', agent, timeoutMs: 30_000 });
      const ms = performance.now() - started;
      assert.ok(!answer.text.includes(CANARY), 'no ConfigMap value in the answer');
      const response = (JSON.parse(answer.text) as { response: Measured['response'] }).response;
      return { ms, status: answer.status, response, peakHeap: Math.max(peakHeap, usedMemory()), bodyBytes: body.length };
    } finally {
      clearInterval(sampler);
    }
  }

  function report(t: TestContext, label: string, measured: Measured, baseline: number, settled: number): void {
    t.diagnostic(`${label}: HTTP ${measured.status} in ${measured.ms.toFixed(0)} ms (ceiling ${CEILING_MS} ms), request ${mib(measured.bodyBytes)}; memory (heap + external) baseline ${mib(baseline)}, peak +${mib(measured.peakHeap - baseline)}, after GC +${mib(settled - baseline)}`);
  }

  test('5,000 configMapKeyRefs over 2,000 ConfigMaps, over --max-configmaps (64, and the maximum 1000): fail-open warning, no reads', { timeout: 60_000 }, async (t) => {
    const object = manyRefs(5_000, 2_000);
    for (const max of [64, 1000]) {
      const { server, reader, parts } = await serve(configMapsFor(2_000, 3), max);
      const baseline = await settledHeap(gc);
      const measured = await admit(server, object, `over-${max}`);
      const settled = await settledHeap(gc);
      report(t, `5,000 refs / 2,000 ConfigMaps, max ${max}`, measured, baseline, settled);
      assert.equal(measured.status, 200);
      assert.equal(measured.response.uid, `over-${max}`);
      assert.equal(measured.response.allowed, true);
      assert.equal(measured.response.patch, undefined, 'nothing changes');
      assert.deepEqual(measured.response.warnings, [`config-checksum: pod template consumes 2000 ConfigMaps, over the limit of ${max}; checksum left unchanged`]);
      assert.equal(reader.total, 0, 'not a single read for a template over the limit');
      assert.ok(measured.ms < CEILING_MS, `answered in ${measured.ms.toFixed(0)} ms`);
      assert.match(await parts.metrics.registry.metrics(), /config_checksum_admissions_total\{kind="Deployment",operation="UPDATE",outcome="fail-open",reason="too-many-configmaps"\} 1/);
      assert.deepEqual(parts.log.leaks, []);
    }
  });

  test('5,000 configMapKeyRefs over 1,000 ConfigMaps at --max-configmaps 1000: all read in parallel, checksum within the ceiling', { timeout: 60_000 }, async (t) => {
    const configMaps = configMapsFor(1_000, 6);
    const { server, reader, parts } = await serve(configMaps, 1000);
    const object = manyRefs(5_000, 1_000);
    const baseline = await settledHeap(gc);
    const measured = await admit(server, object, 'thousand');
    const settled = await settledHeap(gc);
    report(t, '5,000 refs / 1,000 ConfigMaps, max 1000', measured, baseline, settled);
    assert.equal(measured.status, 200);
    assert.equal(reader.total, 1_000, 'each ConfigMap read once');
    assert.equal(measured.response.patchType, 'JSONPatch');
    assert.equal(measured.response.warnings, undefined, 'every key exists');
    const operations = JSON.parse(Buffer.from(measured.response.patch!, 'base64').toString('utf8')) as jsonpatch.Operation[];
    const patched = jsonpatch.applyPatch(structuredClone(object), operations, true, false).newDocument as Record<string, any>;
    const parts2 = workloadParts(object)!;
    const expected = computeChecksum(planChecksum(parts2.template, parts2.annotations, CONTRACT.extraConfigMapsAnnotation), (name) => ({ state: 'found', data: configMaps[name]!.data, binaryData: undefined }));
    assert.equal(expected.kind, 'computed');
    assert.equal(patched['spec']['template']['metadata']['annotations']['checksum/config'], expected.kind === 'computed' ? expected.checksum : '');
    assert.ok(measured.ms < CEILING_MS, `answered in ${measured.ms.toFixed(0)} ms`);
    assert.ok(measured.peakHeap - baseline < PEAK_HEAP_LIMIT && settled - baseline < SETTLED_HEAP_LIMIT, 'memory bounded');
    t.diagnostic(`sources annotation: ${patched['metadata']['annotations'][CONTRACT.sourcesAnnotation].length} characters`);
    assert.deepEqual(parts.log.leaks, []);
  });

  test('60 ConfigMaps of ~1 MiB each (data and binaryData): checksum within the ceiling, memory bounded', { timeout: 60_000 }, async (t) => {
    // Just under the 1 MiB object limit each; half text, half binary (base64 in the API object).
    const size = 1024 * 1024 - 4 * 1024;
    const configMaps: Record<string, ConfigMapData> = {};
    for (let i = 0; i < 60; i++) {
      // Built from a Buffer so the string is flat from the start (a rope would be flattened, and so grow,
      // inside the first admission, and show up as heap the product kept).
      const bytes = Buffer.alloc(size, 97 + (i % 26));
      bytes.write(`${CANARY}-${i}-`);
      const filler = bytes.toString('latin1');
      configMaps[`big-${i}`] = i % 2 === 0 ? { data: { 'config.yaml': filler } } : { binaryData: { 'blob.bin': Buffer.from(filler.slice(0, Math.floor((size * 3) / 4))).toString('base64') } };
    }
    const { server, reader, parts } = await serve(configMaps, 64);
    const volumes = Array.from({ length: 60 }, (_, i) => ({ name: `v${i}`, configMap: { name: `big-${i}` } }));
    const object = deployment([{ name: 'app', image: 'registry.invalid/app:1' }], volumes);
    const baseline = await settledHeap(gc);
    const first = await admit(server, object, 'big-1');
    const settled = await settledHeap(gc);
    report(t, '60 ConfigMaps of ~1 MiB (60 MiB of config)', first, baseline, settled);
    assert.equal(first.status, 200);
    assert.equal(reader.total, 60);
    assert.equal(first.response.patchType, 'JSONPatch');
    assert.ok(first.ms < CEILING_MS, `answered in ${first.ms.toFixed(0)} ms`);
    assert.ok(first.peakHeap - baseline < PEAK_HEAP_LIMIT, `peak heap +${mib(first.peakHeap - baseline)}`);
    assert.ok(settled - baseline < SETTLED_HEAP_LIMIT, `heap after GC +${mib(settled - baseline)}`);

    // Ten more in a row: the time holds and nothing accumulates.
    const times: number[] = [];
    for (let i = 0; i < 10; i++) times.push((await admit(server, object, `big-again-${i}`)).ms);
    const again = await settledHeap(gc);
    t.diagnostic(`10 more: ${times.map((ms) => ms.toFixed(0)).join(', ')} ms; heap after GC +${mib(again - baseline)}`);
    assert.ok(Math.max(...times) < CEILING_MS);
    assert.ok(again - baseline < SETTLED_HEAP_LIMIT, 'no growth over repeated admissions');
    assert.deepEqual(parts.log.leaks, []);
  });

  // The API server refuses an object whose annotations total more than 256 KiB (keys plus values,
  // apimachinery TotalAnnotationSizeLimitB). A patch that crosses it turns an allowed write into a 422.
  test('many long consumed keys (default --max-configmaps): the patched object stays under the 256 KiB annotation limit', { timeout: 60_000 }, async (t) => {
    // 2,000 env vars, 150-character keys, over 10 ConfigMaps: a plausible generated config, far below every other limit.
    const keys = 2_000;
    const key = (i: number): string => `k${String(i).padStart(5, '0')}-`.padEnd(150, 'x');
    const configMaps = Object.fromEntries(Array.from({ length: 10 }, (_, c) => [`cm-${c}`, { data: Object.fromEntries(Array.from({ length: keys / 10 }, (_, k) => [key(c * (keys / 10) + k), `${CANARY}`])) }]));
    const env = Array.from({ length: keys }, (_, i) => ({ name: `V${i}`, valueFrom: { configMapKeyRef: { name: `cm-${Math.floor(i / (keys / 10))}`, key: key(i) } } }));
    const object = deployment([{ name: 'app', image: 'registry.invalid/app:1', env }], []);
    const { server } = await serve(configMaps, 64);
    const measured = await admit(server, object, 'long-keys');
    assert.equal(measured.status, 200);
    const operations = JSON.parse(Buffer.from(measured.response.patch ?? 'W10=', 'base64').toString('utf8')) as jsonpatch.Operation[];
    const patched = jsonpatch.applyPatch(structuredClone(object), operations, true, false).newDocument as { metadata: { annotations?: Record<string, string> } };
    const total = Object.entries(patched.metadata.annotations ?? {}).reduce((sum, [k, v]) => sum + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
    t.diagnostic(`workload annotations after the patch: ${total} bytes (limit ${ANNOTATION_LIMIT_BYTES}); answered in ${measured.ms.toFixed(0)} ms`);
    assert.ok(total <= ANNOTATION_LIMIT_BYTES, `the sources annotation alone makes the annotations ${total} bytes: the API server would refuse the write`);
  });

  test('a slow reader (every read answers after the deadline): fail-open by the deadline, not a stall', { timeout: 60_000 }, async (t) => {
    const reader = {
      total: 0,
      read: (_namespace: string, _name: string, _signal: AbortSignal) => {
        reader.total++;
        // Ignores the signal on purpose: the deadline must hold anyway.
        return new Promise<never>(() => {});
      },
    };
    const parts = traceParts(reader, { maxConfigMaps: 1000, configMapReadTimeoutMs: 500 });
    const server = await startServer(parts, { host: '127.0.0.1', port: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, drainSeconds: 0 });
    servers.push(server);
    const measured = await admit(server, manyRefs(5_000, 1_000), 'stalled');
    t.diagnostic(`1,000 reads that never answer, read timeout 500 ms: HTTP ${measured.status} in ${measured.ms.toFixed(0)} ms`);
    assert.equal(measured.status, 200);
    assert.equal(reader.total, 1_000);
    assert.equal(measured.response.patch, undefined);
    assert.match(measured.response.warnings?.[0] ?? '', /^config-checksum: could not read ConfigMap "cm-0" and 999 more \(timeout\); checksum left unchanged/);
    assert.ok(measured.ms >= 450 && measured.ms < 500 + CEILING_MS, `answered at the deadline (${measured.ms.toFixed(0)} ms)`);
  });
});
