// The hash key's API calls (src/kube/hash-key-api.ts) through the real API-server client against a loopback
// HTTPS server with the API server's create semantics: two replicas starting together end up with one key,
// created by a POST that names the product's field manager, the other adopting it after its 409.

import assert from 'node:assert/strict';
import https from 'node:https';
import { test } from 'node:test';
import { hashKeyApi } from '../../src/kube/hash-key-api.ts';
import { KubeHttp } from '../../src/kube/http.ts';
import { HASH_KEY_FIELD, HASH_KEY_SECRET_NAME, HashKeyLoader } from '../../src/secrets/hash-key.ts';
import { createLogger } from '../../src/telemetry/logger.ts';
import { listenAsApiServer } from '../support/fakes.ts';
import { LogLines } from './support.ts';
import { servingPair } from '../support/tls.ts';

const SECRETS_PATH = '/api/v1/namespaces/config-checksum/secrets';

test('two replicas against one API server: one POST with fieldManager creates the key, the other gets 409 and adopts it', { timeout: 20_000 }, async () => {
  const { ca, serving } = servingPair();
  const stored = new Map<string, string>();
  const requests: string[] = [];
  let readsBeforeWrite = 0;
  let release: () => void = () => {};
  const bothRead = new Promise<void>((resolve) => (release = resolve));
  const server = https.createServer({ cert: serving.certificate, key: serving.privateKey }, (request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', async () => {
      requests.push(`${request.method} ${request.url}`);
      const reply = (status: number, body: unknown): void => void response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (request.method === 'GET' && request.url === `${SECRETS_PATH}/${HASH_KEY_SECRET_NAME}`) {
        // Both replicas read "absent" before either writes: the race the API server settles.
        if (stored.size === 0 && ++readsBeforeWrite <= 2) {
          if (readsBeforeWrite === 2) release();
          await bothRead;
        }
        const body = stored.get(HASH_KEY_SECRET_NAME);
        return body === undefined ? reply(404, { kind: 'Status', code: 404 }) : reply(200, JSON.parse(body));
      }
      if (request.method === 'POST' && request.url?.startsWith(SECRETS_PATH)) {
        if (stored.has(HASH_KEY_SECRET_NAME)) return reply(409, { kind: 'Status', code: 409, reason: 'AlreadyExists' });
        stored.set(HASH_KEY_SECRET_NAME, Buffer.concat(chunks).toString('utf8'));
        return reply(201, JSON.parse(stored.get(HASH_KEY_SECRET_NAME)!));
      }
      reply(404, {});
    });
  });
  const clients: KubeHttp[] = [];
  try {
    const kubeConfig = await listenAsApiServer(server, ca.certificate);
    const logs = [new LogLines(), new LogLines()];
    const loaders = logs.map((log, index) => {
      const http = new KubeHttp(kubeConfig);
      clients.push(http);
      return new HashKeyLoader(hashKeyApi(http), { namespace: 'config-checksum', random: (size) => Buffer.alloc(size, index + 1) }, createLogger('trace', log));
    });
    for (const loader of loaders) loader.start();
    await Promise.all(loaders.map((loader) => loader.loaded));
    for (const loader of loaders) loader.stop();

    const body = JSON.parse(stored.get(HASH_KEY_SECRET_NAME)!) as { immutable: boolean; metadata: { name: string; namespace: string }; data: Record<string, string> };
    const key = Buffer.from(body.data[HASH_KEY_FIELD]!, 'base64');
    assert.equal(key.length, 32);
    assert.deepEqual(body.metadata, { name: HASH_KEY_SECRET_NAME, namespace: 'config-checksum', labels: { 'app.kubernetes.io/name': 'config-checksum-webhook', 'app.kubernetes.io/component': 'hash-key' } });
    assert.equal(body.immutable, true);
    for (const loader of loaders) assert.deepEqual(Buffer.from(loader.current()!), key);
    const posts = requests.filter((line) => line.startsWith('POST'));
    assert.deepEqual(posts, [`POST ${SECRETS_PATH}?fieldManager=config-checksum-webhook`, `POST ${SECRETS_PATH}?fieldManager=config-checksum-webhook`]);
    assert.equal(requests.filter((line) => line.startsWith('GET')).length, 3, 'two reads that found nothing, and the loser\'s read of the winner\'s key');
    for (const log of logs) {
      assert.match(log.text, /hash key (created|loaded)/);
      for (const needle of [key.toString('base64'), key.toString('hex')]) assert.ok(!log.text.includes(needle), 'the key in a log line');
    }
  } finally {
    clients.forEach((client) => client.close());
    server.closeAllConnections();
    server.close();
  }
});
