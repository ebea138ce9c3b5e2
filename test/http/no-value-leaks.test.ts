// No leaks of config. Every ConfigMap value here carries a canary; servers run at every log
// level (trace included) with all output captured: log lines, answers (bodies and headers), warnings and
// /metrics. The canary must appear nowhere, whatever the outcome (patched, unchanged, missing key or
// ConfigMap, unreadable, over the limit, dry run, malformed request).

import assert from 'node:assert/strict';
import https from 'node:https';
import { test } from 'node:test';
import { startServer } from '../../src/server/https.ts';
import type { ConfigMapLookup } from '../../src/checksum/compute.ts';
import { CONTRACT } from '../../src/config.ts';
import { admissionRequest, reviewBody } from '../support/fakes.ts';
import { CANARY, RecordingReader, traceParts } from '../support/observation.ts';
import { httpsCall } from '../support/https.ts';
import { writeTls } from '../support/tls.ts';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

const CONFIG_MAPS = {
  app: { data: { 'app.yaml': `password: ${CANARY}`, LOG_LEVEL: CANARY }, binaryData: { 'key.bin': Buffer.from(`${CANARY}\u0000\u00ff`).toString('base64') } },
  env: { data: { A: CANARY, B: `${CANARY}${CANARY}` } },
};

function deploymentUsing(options: { env?: Array<[string, string, boolean?]>; volumes?: string[]; extra?: string; templateAnnotations?: Record<string, string> } = {}): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'shop', ...(options.extra ? { annotations: { [CONTRACT.extraConfigMapsAnnotation]: options.extra } } : {}) },
    spec: {
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' }, ...(options.templateAnnotations ? { annotations: options.templateAnnotations } : {}) },
        spec: {
          containers: [{ name: 'app', image: 'registry.invalid/app:1', env: (options.env ?? []).map(([cm, key, optional], i) => ({ name: `V${i}`, valueFrom: { configMapKeyRef: { name: cm, key, ...(optional === undefined ? {} : { optional }) } } })) }],
          volumes: (options.volumes ?? []).map((name) => ({ name, configMap: { name } })),
        },
      },
    },
  };
}

/** A reader that throws with the data in its message: a broken reader must still not make the server log values. */
class QuotingReader extends RecordingReader {
  override async read(namespace: string, name: string, signal: AbortSignal): Promise<ConfigMapLookup> {
    if (name === 'explodes') throw new Error(`cannot decode ConfigMap body {"data":{"x":"${CANARY}"}}`);
    return super.read(namespace, name, signal);
  }
}

const CASES: Array<{ label: string; object: Record<string, unknown>; operation?: string; dryRun?: boolean; old?: Record<string, unknown> }> = [
  { label: 'patched (env, volume, binaryData)', object: deploymentUsing({ env: [['env', 'A'], ['app', 'LOG_LEVEL']], volumes: ['app'] }) },
  { label: 'dry run', object: deploymentUsing({ volumes: ['app', 'env'] }), dryRun: true },
  { label: 'missing key and missing ConfigMap', object: deploymentUsing({ env: [['env', 'NOPE'], ['gone', 'X'], ['gone-optional', 'X', true]] }) },
  { label: 'unreadable (fail-open)', object: deploymentUsing({ volumes: ['app', 'broken'] }) },
  { label: 'unreadable on UPDATE that dropped the checksum', object: deploymentUsing({ volumes: ['broken'] }), operation: 'UPDATE', old: deploymentUsing({ volumes: ['broken'], templateAnnotations: { 'checksum/config': 'a'.repeat(64) } }) },
  { label: 'extra-configmaps annotation, one invalid name', object: deploymentUsing({ extra: 'env, Not_Valid' }) },
  { label: 'over --max-configmaps', object: deploymentUsing({ volumes: Array.from({ length: 70 }, (_, i) => `cm-${i}`) }) },
];

test('the canary never appears in logs, answers, warnings or /metrics, at any log level', { timeout: 60_000 }, async (t) => {
  const tls = writeTls();
  const agent = new https.Agent({ keepAlive: true });
  let answers = 0;
  let lines = 0;
  const warnings = new Set<string>();
  try {
    for (const level of LEVELS) {
      const reader = new RecordingReader(CONFIG_MAPS, { broken: 'HTTP 500' });
      const parts = traceParts(reader, {}, level);
      const server = await startServer(parts, { host: '127.0.0.1', port: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, drainSeconds: 0 });
      try {
        for (const [index, c] of CASES.entries()) {
          const body = JSON.stringify(reviewBody(admissionRequest(c.object, { uid: `leak-${level}-${index}`, operation: c.operation ?? 'CREATE', oldObject: c.old ?? null, dryRun: c.dryRun ?? false })));
          const answer = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/mutate?timeout=5s', body, contentType: 'application/json', agent });
          answers++;
          assert.equal(answer.status, 200, c.label);
          const response = (JSON.parse(answer.text) as { response: { warnings?: string[]; patch?: string } }).response;
          for (const warning of response.warnings ?? []) warnings.add(warning);
          const decodedPatch = response.patch ? Buffer.from(response.patch, 'base64').toString('utf8') : '';
          for (const [what, text] of [['body', answer.text], ['headers', JSON.stringify(answer.headers)], ['patch', decodedPatch]] as const) {
            assert.ok(!text.includes(CANARY), `${level} / ${c.label}: canary in the ${what}`);
          }
        }
        // Malformed requests quoting the canary in the body: the 400 message may echo the body (it is the
        // caller's own), but nothing of it may reach a log line.
        const malformed = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/mutate', body: `{"oops": ${CANARY}}`, contentType: 'application/json', agent });
        assert.equal(malformed.status, 400);
        for (const path of ['/metrics', '/healthz', '/readyz']) {
          const answer = await httpsCall({ port: server.port, ca: tls.ca.certificate, path, agent });
          assert.ok(!answer.text.includes(CANARY), `${level}: canary in ${path}`);
        }
      } finally {
        await server.stop();
      }
      lines += parts.log.lines;
      assert.deepEqual(parts.log.leaks, [], `${level}: canary in a log line`);
      if (level === 'trace') assert.ok(parts.log.lines >= CASES.length, 'the admissions were logged');
    }
    t.diagnostic(`${answers} admissions at ${LEVELS.length} log levels; ${lines} log lines scanned; ${warnings.size} distinct warnings: ${[...warnings].join(' | ')}`);
  } finally {
    agent.destroy();
    tls.cleanup();
  }
});

// Defence in depth: errors are logged through loggableError (src/telemetry/logger.ts), which keeps a
// message only when this project wrote it from names and status codes; a reader that throws with data in
// its message (the shipped one never throws) must not get that data into a log line.

test('a reader that throws with config data in its error: answered fail-open, and the data is not logged', { timeout: 30_000 }, async (t) => {
  const tls = writeTls();
  const reader = new QuotingReader(CONFIG_MAPS);
  const parts = traceParts(reader);
  const server = await startServer(parts, { host: '127.0.0.1', port: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, drainSeconds: 0 });
  try {
    const body = JSON.stringify(reviewBody(admissionRequest(deploymentUsing({ volumes: ['app', 'explodes'] }), { uid: 'explodes' })));
    const answer = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/mutate', body, contentType: 'application/json' });
    assert.equal(answer.status, 200);
    const response = (JSON.parse(answer.text) as { response: { allowed: boolean; patch?: string; warnings?: string[] } }).response;
    assert.equal(response.allowed, true);
    assert.equal(response.patch, undefined);
    assert.deepEqual(response.warnings, ['config-checksum: internal error; checksum left unchanged']);
    assert.ok(!answer.text.includes(CANARY));
    t.diagnostic(`log lines: ${parts.log.lines}; lines quoting the error: ${parts.log.leaks.length}`);
  } finally {
    await server.stop();
    tls.cleanup();
  }
  assert.deepEqual(parts.log.leaks, [], 'mutate() failures are logged with the error message and stack verbatim');
});
