// The webhook process with --secrets (src/main.ts) against a fake API server over TLS: before it serves it
// creates the hash key in its own namespace (a POST naming the product's field manager), then admits a
// Deployment that reads a Secret with checksum/secret keyed by exactly that key; the Secret metrics are
// registered; neither the key nor the Secret's value reaches a log line or /metrics.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LogLines } from './support.ts';
import { test } from 'node:test';
import { secretChecksumValue } from '../../src/checksum/encode.ts';
import { loadConfig } from '../../src/config.ts';
import { startWebhook } from '../../src/main.ts';
import { HASH_KEY_FIELD, HASH_KEY_SECRET_NAME } from '../../src/secrets/hash-key.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { admissionRequest, NAMESPACE, reviewBody, workload } from '../support/fakes.ts';
import { httpsCall, postJson } from '../support/https.ts';
import { writeTls } from '../support/tls.ts';

const OWN_NAMESPACE = 'config-checksum';
const PASSWORD = 'secret-start-canary-3c9a';

test('--secrets: the hash key is created before serving, and admissions hash Secrets with it', { timeout: 30_000 }, async () => {
  const tls = writeTls();
  const dir = mkdtempSync(path.join(tmpdir(), 'config-checksum-secrets-start-'));
  const requests: string[] = [];
  const ownSecrets = new Map<string, string>();
  const api = https.createServer({ cert: tls.serving.certificate, key: tls.serving.privateKey }, (request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      const route = `${request.method} ${request.url}`;
      requests.push(route);
      const json = (status: number, value: unknown): void => void response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
      if (route === `GET /api/v1/namespaces/${OWN_NAMESPACE}/secrets/${HASH_KEY_SECRET_NAME}`) {
        const stored = ownSecrets.get(HASH_KEY_SECRET_NAME);
        return stored ? json(200, JSON.parse(stored)) : json(404, { kind: 'Status', code: 404 });
      }
      if (request.method === 'POST' && request.url?.startsWith(`/api/v1/namespaces/${OWN_NAMESPACE}/secrets?`)) {
        ownSecrets.set(HASH_KEY_SECRET_NAME, body);
        return json(201, JSON.parse(body));
      }
      if (route === `GET /api/v1/namespaces/${NAMESPACE}/configmaps/app`) return json(200, { metadata: { name: 'app' }, data: { level: 'info' } });
      if (route === `GET /api/v1/namespaces/${NAMESPACE}/secrets/db`) return json(200, { metadata: { name: 'db' }, type: 'Opaque', data: { password: Buffer.from(PASSWORD).toString('base64') } });
      json(404, { kind: 'Status', code: 404 });
    });
  });
  await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
  const kubeconfig = path.join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'fake', cluster: { server: `https://127.0.0.1:${(api.address() as AddressInfo).port}`, 'certificate-authority-data': Buffer.from(tls.ca.certificate).toString('base64') } }],
    users: [{ name: 'webhook', user: { token: 't' } }],
    contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'webhook' } }],
    'current-context': 'fake',
  }));
  const log = new LogLines();
  const config = loadConfig(['--host', '127.0.0.1', '--port', '0', '--kubeconfig', kubeconfig, '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile, '--drain-seconds', '0', '--watch', 'false', '--secrets', 'true', '--namespace', OWN_NAMESPACE], {});
  const webhook = await startWebhook(config, createLogger('trace', log));
  try {
    // Created before the server listened.
    assert.deepEqual(requests.slice(0, 2), [`GET /api/v1/namespaces/${OWN_NAMESPACE}/secrets/${HASH_KEY_SECRET_NAME}`, `POST /api/v1/namespaces/${OWN_NAMESPACE}/secrets?fieldManager=config-checksum-webhook`]);
    assert.ok(log.text.indexOf('hash key created') < log.text.indexOf('"msg":"listening"'));
    const key = Buffer.from((JSON.parse(ownSecrets.get(HASH_KEY_SECRET_NAME)!) as { data: Record<string, string> }).data[HASH_KEY_FIELD]!, 'base64');
    assert.equal(key.length, 32);

    const object = workload({ template: { spec: { containers: [{ name: 'app', image: 'app:1', envFrom: [{ configMapRef: { name: 'app' } }], env: [{ name: 'P', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }] }] } } });
    const answer = await postJson(webhook.server.port, tls.ca.certificate, reviewBody(admissionRequest(object)));
    assert.equal(answer.status, 200, answer.text);
    const patch = Buffer.from((answer.json as { response: { patch?: string } }).response.patch ?? '', 'base64').toString();
    const expected = secretChecksumValue(key, [{ name: 'db', content: { data: new Map(), binaryData: new Map([['password', Buffer.from(PASSWORD)]]) } }]);
    assert.ok(patch.includes(`"checksum/secret":"${expected}"`), patch);
    assert.match(patch, /"checksum\/config":"[0-9a-f]{64}"/);
    assert.ok(patch.includes('configmap/app, secret/db[password]'));

    const metrics = await httpsCall({ port: webhook.server.port, ca: tls.ca.certificate, path: '/metrics' });
    assert.match(metrics.text, /^config_checksum_secret_hash_key_loaded 1$/m);
    assert.match(metrics.text, /^config_checksum_secret_reads_total\{result="found"\} 1$/m);
    for (const needle of [PASSWORD, Buffer.from(PASSWORD).toString('base64'), key.toString('base64'), key.toString('hex')]) {
      assert.ok(!log.text.includes(needle), 'in a log line');
      assert.ok(!metrics.text.includes(needle), 'in /metrics');
      assert.ok(!answer.text.includes(needle), 'in the answer');
    }
    assert.match(log.text, /"msg":"webhook started"/);
    assert.match(log.text, /"secrets":true/);
  } finally {
    await webhook.stop();
    api.closeAllConnections();
    api.close();
    tls.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});
