// Self-managed certificates (src/tls/self-managed.ts) on a fake of their API: replicas that start together
// agree on one Secret through optimistic concurrency, serve its certificate and publish its CA in every
// webhook's caBundle; a deleted Secret is made again; API errors at start are retried.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CertificatesApi } from '../../../src/kube/certificates-api.ts';
import type { SecretName } from '../../../src/kube/secrets.ts';
import { createLogger } from '../../../src/telemetry/logger.ts';
import type { KeyPairPem } from '../../../src/tls/certs.ts';
import { certificateExpiry } from '../../../src/tls/expiry.ts';
import { SelfManagedCertificates } from '../../../src/tls/self-managed.ts';
import type { JsonObject } from '../../../src/util/json.ts';

const DAY = 86_400_000;
const OPTIONS = {
  namespace: 'config-checksum',
  secretName: 'config-checksum-webhook-tls',
  webhookConfigurationName: 'config-checksum-webhook',
  pollMs: 60_000,
  authority: { caValidityMs: 365 * DAY, leafValidityMs: 30 * DAY, propagationMs: 120_000, dnsNames: ['config-checksum-webhook.config-checksum.svc'] },
};

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The Secret and the configuration as the API server would keep them, resourceVersions included. */
class FakeApi implements CertificatesApi {
  secret: Record<string, any> | undefined;
  configuration: Record<string, any> = { metadata: { resourceVersion: '1' }, webhooks: [{ clientConfig: {} }, { clientConfig: {} }] };
  creates = 0;
  conflicts = 0;
  failuresToAnswer = 0;
  #version = 10;

  async getSecret(_name: SecretName): Promise<JsonObject | undefined> {
    if (this.failuresToAnswer > 0) {
      this.failuresToAnswer--;
      throw new Error('injected: connection refused');
    }
    // The answer is what was stored when the request arrived: replicas that read together all see no
    // Secret, the race the optimistic concurrency settles.
    const answer = this.secret && structuredClone(this.secret);
    await sleep(5);
    return answer;
  }

  async writeSecret(_name: SecretName, body: JsonObject, replace: boolean): Promise<boolean> {
    const sent = structuredClone(body) as Record<string, any>;
    const current = this.secret?.['metadata']['resourceVersion'];
    if (replace ? sent['metadata']['resourceVersion'] !== current : this.secret !== undefined) {
      this.conflicts++;
      return false;
    }
    if (!replace) this.creates++;
    sent['metadata']['resourceVersion'] = String(this.#version++);
    this.secret = sent;
    return true;
  }

  async getWebhookConfiguration(): Promise<JsonObject | undefined> {
    return structuredClone(this.configuration);
  }

  async patchCaBundles(read: { name: string; resourceVersion: string | undefined }, indexes: readonly number[], encodedBundle: string): Promise<void> {
    if (read.resourceVersion !== this.configuration['metadata']['resourceVersion']) throw new Error('conflict');
    for (const index of indexes) this.configuration['webhooks'][index]['clientConfig']['caBundle'] = encodedBundle;
    this.configuration['metadata']['resourceVersion'] = String(this.#version++);
  }

  secretText(key: string): string {
    return Buffer.from(String(this.secret?.['data'][key] ?? ''), 'base64').toString('utf8');
  }

  publishedBundles(): string[] {
    return (this.configuration['webhooks'] as Array<Record<string, any>>).map((webhook) => Buffer.from(String(webhook['clientConfig']['caBundle'] ?? ''), 'base64').toString('utf8'));
  }
}

function replica(api: FakeApi): { certificates: SelfManagedCertificates; served: KeyPairPem[]; bundles: string[] } {
  const served: KeyPairPem[] = [];
  const bundles: string[] = [];
  const certificates = new SelfManagedCertificates(api, OPTIONS, createLogger('silent'), (leaf, bundle) => {
    served.push(leaf);
    bundles.push(bundle);
  });
  return { certificates, served, bundles };
}

describe('self-managed certificates', () => {
  test('two replicas starting together: one Secret, the same certificate served by both, its CA in every caBundle', async () => {
    const api = new FakeApi();
    const [a, b] = [replica(api), replica(api)];
    try {
      const [leafA, leafB] = await Promise.all([a.certificates.start(), b.certificates.start()]);
      assert.equal(api.creates, 1, 'one Secret created');
      assert.ok(api.conflicts >= 1, 'the other replica lost the race and adopted the winner');
      assert.equal(leafA.certificate, leafB.certificate, 'both serve the same certificate');
      assert.equal(leafA.certificate, api.secretText('tls.crt'));
      assert.deepEqual(api.publishedBundles(), [api.secretText('ca-bundle.crt'), api.secretText('ca-bundle.crt')]);
      assert.equal(a.served.length, 1);
      assert.equal(b.served.length, 1);
      // Each leaf comes with the bundle it was published with, which holds its issuer (the CA's expiry metric).
      assert.deepEqual(a.bundles, [api.secretText('ca-bundle.crt')]);
      assert.equal(certificateExpiry(leafA.certificate, a.bundles[0]).ca, certificateExpiry(api.secretText('ca.crt')).serving);
    } finally {
      a.certificates.stop();
      b.certificates.stop();
    }
  });

  test('the Secret deleted: the next pass makes a new one, and the other replica adopts it', async () => {
    const api = new FakeApi();
    const [a, b] = [replica(api), replica(api)];
    try {
      await a.certificates.start();
      await b.certificates.start();
      const before = api.secretText('tls.crt');
      api.secret = undefined;
      await a.certificates.reconcile();
      await b.certificates.reconcile();
      assert.equal(api.creates, 2);
      assert.notEqual(api.secretText('tls.crt'), before);
      assert.equal(a.served.at(-1)!.certificate, api.secretText('tls.crt'));
      assert.equal(b.served.at(-1)!.certificate, api.secretText('tls.crt'));
      assert.deepEqual(api.publishedBundles(), [api.secretText('ca-bundle.crt'), api.secretText('ca-bundle.crt')]);
    } finally {
      a.certificates.stop();
      b.certificates.stop();
    }
  });

  test('API errors at start are retried until a certificate is served', async () => {
    const api = new FakeApi();
    api.failuresToAnswer = 2;
    const { certificates, served } = replica(api);
    try {
      const leaf = await certificates.start();
      assert.equal(api.failuresToAnswer, 0);
      assert.equal(leaf.certificate, api.secretText('tls.crt'));
      assert.equal(served.length, 1);
    } finally {
      certificates.stop();
    }
  });
});
