// No leaks of config. Every ConfigMap value (and, with --secrets, every Secret value) here carries a canary; servers run at every log
// level (trace included) with all output captured: log lines, answers (bodies and headers), warnings and
// /metrics. The canary must appear nowhere, whatever the outcome (patched, unchanged, missing key or
// ConfigMap, unreadable, over the limit, dry run, malformed request).

import assert from 'node:assert/strict';
import https from 'node:https';
import { LogLines } from './support.ts';
import { test } from 'node:test';
import { startServer } from '../../src/server/https.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { registerSecretMetrics } from '../../src/telemetry/metrics.ts';
import type { ConfigMapLookup } from '../../src/checksum/compute.ts';
import { CONTRACT } from '../../src/config.ts';
import { admissionRequest, FakeReader, reviewBody, secretData } from '../support/fakes.ts';
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

// ---- Secrets (--secrets on) ----------------------------------------------------------------------------------
// Every Secret value carries its own canary, and Secrets reach the webhook base64-encoded: neither the
// canary nor any stored base64 value nor the HMAC key may appear in an answer (body, headers, decoded
// patch, warnings), a log line at any level, or /metrics, whatever the outcome.

const SECRET_CANARY = 'secret-canary-8d1e4a70-leak';
const SECRET_VALUES: Record<string, Record<string, string>> = {
  db: { password: SECRET_CANARY, user: `${SECRET_CANARY}-user` },
  tls: { 'tls.key': `-----BEGIN PRIVATE KEY-----\n${SECRET_CANARY}\n`, 'tls.crt': `${SECRET_CANARY}\u0000\u00ff` },
};
const HASH_KEY = Buffer.from(Array.from({ length: 32 }, (_, index) => 0xa0 + index));

/** The strings that must never leave: the canary, each stored (base64) value, and the key in its encodings. */
function secretNeedles(): string[] {
  const stored = Object.values(secretData(SECRET_VALUES.db!).data ?? {}).concat(Object.values(secretData(SECRET_VALUES.tls!).data ?? {}));
  return [SECRET_CANARY, ...stored, HASH_KEY.toString('base64'), HASH_KEY.toString('hex'), HASH_KEY.toString('base64url')];
}

/** A Secret reader that throws with the Secret's data in its message, as a broken one might. */
class QuotingSecretReader extends FakeReader {
  override async read(namespace: string, name: string, signal: AbortSignal): Promise<ConfigMapLookup> {
    if (name === 'explodes') throw new Error(`cannot decode Secret body {"data":{"password":"${secretData(SECRET_VALUES.db!).data!['password']}"}}`);
    return super.read(namespace, name, signal);
  }
}

function secretDeployment(options: { env?: Array<[string, string, boolean?]>; envFrom?: string[]; volumes?: string[]; projected?: string[]; extra?: string; configMap?: boolean; templateAnnotations?: Record<string, string> } = {}): Record<string, unknown> {
  const base = deploymentUsing({ volumes: options.configMap === false ? [] : ['app'], ...(options.templateAnnotations ? { templateAnnotations: options.templateAnnotations } : {}) }) as { metadata: Record<string, unknown>; spec: { template: { spec: { containers: Array<Record<string, unknown>>; volumes: unknown[] } } } };
  if (options.extra) base.metadata['annotations'] = { [CONTRACT.extraSecretsAnnotation]: options.extra };
  const container = base.spec.template.spec.containers[0]!;
  container['env'] = (options.env ?? []).map(([secret, key, optional], i) => ({ name: `S${i}`, valueFrom: { secretKeyRef: { name: secret, key, ...(optional === undefined ? {} : { optional }) } } }));
  container['envFrom'] = (options.envFrom ?? []).map((name) => ({ secretRef: { name } }));
  base.spec.template.spec.volumes.push(...(options.volumes ?? []).map((name) => ({ name: `s-${name}`, secret: { secretName: name } })));
  if (options.projected) base.spec.template.spec.volumes.push({ name: 'projected', projected: { sources: options.projected.map((name) => ({ secret: { name } })) } });
  return base;
}

const SECRET_CASES: Array<{ label: string; object: Record<string, unknown>; operation?: string; dryRun?: boolean; old?: Record<string, unknown>; keyLoaded?: boolean }> = [
  { label: 'patched (env, envFrom, volume, projected)', object: secretDeployment({ env: [['db', 'password']], envFrom: ['db'], volumes: ['tls'], projected: ['tls', 'db'] }) },
  { label: 'Secrets only', object: secretDeployment({ envFrom: ['tls'], configMap: false }) },
  { label: 'dry run', object: secretDeployment({ volumes: ['tls', 'db'] }), dryRun: true },
  { label: 'missing key and missing Secret', object: secretDeployment({ env: [['db', 'NOPE'], ['gone', 'X'], ['gone-optional', 'X', true]] }) },
  { label: 'unreadable Secret (fail-open)', object: secretDeployment({ volumes: ['db', 'broken'] }) },
  { label: 'unreadable on UPDATE that dropped both checksums', object: secretDeployment({ volumes: ['broken'] }), operation: 'UPDATE', old: secretDeployment({ volumes: ['broken'], templateAnnotations: { 'checksum/config': 'a'.repeat(64), 'checksum/secret': 'b'.repeat(64) } }) },
  { label: 'extra-secrets annotation, one invalid name', object: secretDeployment({ extra: 'db, Not_Valid' }) },
  { label: 'over --max-configmaps with Secrets', object: secretDeployment({ volumes: Array.from({ length: 70 }, (_, i) => `s-${i}`) }) },
  { label: 'hash key not loaded', object: secretDeployment({ envFrom: ['db'] }), keyLoaded: false },
  { label: 'a reader that throws with Secret data in its error', object: secretDeployment({ envFrom: ['db', 'explodes'] }) },
];

test('with --secrets: no Secret value, stored value or hash key appears in logs, answers, warnings or /metrics, at any log level', { timeout: 60_000 }, async (t) => {
  const tls = writeTls();
  const agent = new https.Agent({ keepAlive: true });
  const needles = secretNeedles();
  const warnings = new Set<string>();
  let answers = 0;
  try {
    for (const level of LEVELS) {
      const log = new LogLines();
      const secrets = Object.fromEntries(Object.entries(SECRET_VALUES).map(([name, values]) => [name, secretData(values)]));
      const parts = { ...traceParts(new RecordingReader(CONFIG_MAPS), {}, level), logger: createLogger(level, log) };
      registerSecretMetrics(parts.metrics.registry);
      for (const c of SECRET_CASES) {
        const source = { reader: new QuotingSecretReader(secrets, { broken: 'HTTP 403' }), key: () => (c.keyLoaded === false ? undefined : HASH_KEY), annotation: 'checksum/secret' };
        const server = await startServer({ ...parts, secrets: source }, { host: '127.0.0.1', port: 0, tls: { certFile: tls.certFile, keyFile: tls.keyFile }, drainSeconds: 0 });
        try {
          const body = JSON.stringify(reviewBody(admissionRequest(c.object, { uid: `secret-leak-${level}-${answers}`, operation: c.operation ?? 'CREATE', oldObject: c.old ?? null, dryRun: c.dryRun ?? false })));
          const answer = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/mutate?timeout=5s', body, contentType: 'application/json', agent });
          answers++;
          assert.equal(answer.status, 200, c.label);
          const response = (JSON.parse(answer.text) as { response: { allowed: boolean; warnings?: string[]; patch?: string } }).response;
          assert.equal(response.allowed, true, c.label);
          for (const warning of response.warnings ?? []) warnings.add(warning);
          const decodedPatch = response.patch ? Buffer.from(response.patch, 'base64').toString('utf8') : '';
          if (c.label.startsWith('patched') || c.label === 'Secrets only') assert.match(decodedPatch, /checksum~1secret|"checksum\/secret":"[0-9a-f]{8}\.[0-9a-f]{64}"/, `${c.label}: hashed`);
          for (const [what, text] of [['body', answer.text], ['headers', JSON.stringify(answer.headers)], ['patch', decodedPatch]] as const) {
            for (const needle of needles) assert.ok(!text.includes(needle), `${level} / ${c.label}: "${needle.slice(0, 12)}…" in the ${what}`);
          }
          const metrics = await httpsCall({ port: server.port, ca: tls.ca.certificate, path: '/metrics', agent });
          for (const needle of needles) assert.ok(!metrics.text.includes(needle), `${level} / ${c.label}: in /metrics`);
        } finally {
          await server.stop();
        }
      }
      for (const needle of needles) assert.ok(!log.text.includes(needle), `${level}: "${needle.slice(0, 12)}…" in a log line`);
      if (level === 'trace') assert.ok(log.text.split('\n').length > SECRET_CASES.length, 'the admissions were logged');
    }
    t.diagnostic(`${answers} admissions with Secrets at ${LEVELS.length} log levels; ${warnings.size} distinct warnings: ${[...warnings].join(' | ')}`);
    // The cases reached what they are named after.
    assert.ok([...warnings].some((w) => w.includes('could not read Secret "broken"')));
    assert.ok([...warnings].some((w) => w.includes('key "NOPE" not found in Secret "db"')));
    assert.ok([...warnings].some((w) => w.includes('hash key for Secrets is not loaded')));
    assert.ok([...warnings].some((w) => w.includes('internal error')));
  } finally {
    agent.destroy();
    tls.cleanup();
  }
});
