// Self-managed certificates in a cluster: the CA and serving certificate live in a Secret of the webhook's
// own namespace (the one source of truth), the CA bundle is written into the caBundle of the webhook's own
// MutatingWebhookConfiguration, and the serving certificate is served from memory. Every replica runs
// this loop; writes carry the object's resourceVersion, so replicas starting together agree on one
// Secret (the loser of a create or update race re-reads and adopts the winner's).

import { asArray, asObject, asString, type JsonObject } from '../util/json.ts';
import type { CertificatesApi } from '../kube/certificates-api.ts';
import type { SecretName } from '../kube/secrets.ts';
import { loggableError, type Logger } from '../telemetry/logger.ts';
import { OperationalError } from '../util/errors.ts';
import type { KeyPairPem } from './certs.ts';
import { nextCertificateState, type AuthoritySettings, type CertificateState } from './authority.ts';

export interface SelfManagedOptions {
  readonly namespace: string;
  readonly secretName: string;
  readonly webhookConfigurationName: string;
  readonly authority: AuthoritySettings;
  /** How often the Secret is re-read (rotation steps, other replicas' changes). */
  readonly pollMs: number;
}

const CHANGED_AT = 'config-checksum.io/bundle-changed-at';
const ISSUED_AT = 'config-checksum.io/leaf-issued-at';

export class SelfManagedCertificates {
  readonly #api: CertificatesApi;
  readonly #options: SelfManagedOptions;
  readonly #log: Logger;
  readonly #serve: (leaf: KeyPairPem, bundle: string) => void;
  #served: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  /**
   * `serve` is called with every new leaf, before any caller relies on it, and the CA bundle published with
   * it (which holds the leaf's issuer, for the expiry metric of the CA).
   */
  constructor(api: CertificatesApi, options: SelfManagedOptions, logger: Logger, serve: (leaf: KeyPairPem, bundle: string) => void) {
    this.#api = api;
    this.#options = options;
    this.#log = logger.child({ component: 'certificates' });
    this.#serve = serve;
  }

  /** Runs until a leaf is available (retrying API errors), then keeps reconciling in the background. */
  async start(): Promise<KeyPairPem> {
    for (let attempt = 1; ; attempt++) {
      try {
        const state = await this.reconcile();
        this.#schedule();
        return state.leaf;
      } catch (error) {
        this.#log.warn({ attempt, err: loggableError(error) }, 'certificate bootstrap failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, 250 * 2 ** attempt)));
      }
    }
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** One pass: read, maybe advance one rotation step, publish the bundle, serve the leaf. */
  async reconcile(): Promise<CertificateState> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const secret = await this.#readSecret();
      const configuration = await this.#readConfiguration();
      const current = secret.state;
      const { state, step } = nextCertificateState(current, Date.now(), this.#options.authority, current !== undefined && bundleOf(configuration) === current.bundle);
      if (step !== 'none') {
        const written = await this.#writeSecret(state, secret.object);
        if (!written) {
          this.#log.info({ step }, 'another replica wrote the certificate Secret first; adopting it');
          continue;
        }
        this.#log.info({ step }, 'certificate rotation step');
      }
      await this.#publish(configuration, state.bundle);
      if (this.#served !== state.leaf.certificate) {
        this.#serve(state.leaf, state.bundle);
        this.#served = state.leaf.certificate;
      }
      return state;
    }
    throw new OperationalError(`Secret ${this.#options.namespace}/${this.#options.secretName} kept changing under us`);
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.reconcile()
        .catch((error: unknown) => this.#log.warn({ err: loggableError(error) }, 'certificate reconcile failed'))
        .finally(() => this.#schedule());
    }, this.#options.pollMs);
  }

  async #readSecret(): Promise<{ object: JsonObject | undefined; state: CertificateState | undefined }> {
    const object = await this.#api.getSecret(this.#secretName());
    if (!object) return { object: undefined, state: undefined };
    const data = asObject(object?.['data']);
    const annotations = asObject(asObject(object?.['metadata'])?.['annotations']);
    const text = (key: string): string => Buffer.from(asString(data?.[key]) ?? '', 'base64').toString('utf8');
    const time = (key: string): number => Date.parse(asString(annotations?.[key]) ?? '') || 0;
    if (!text('tls.crt') || !text('ca.crt')) return { object, state: undefined };
    return {
      object,
      state: {
        ca: { certificate: text('ca.crt'), privateKey: text('ca.key') },
        bundle: text('ca-bundle.crt'),
        leaf: { certificate: text('tls.crt'), privateKey: text('tls.key') },
        bundleChangedAt: time(CHANGED_AT),
        leafIssuedAt: time(ISSUED_AT),
      },
    };
  }

  /** Creates or updates the Secret under optimistic concurrency; false when another replica won. */
  async #writeSecret(state: CertificateState, existing: JsonObject | undefined): Promise<boolean> {
    const metadata = asObject(existing?.['metadata']);
    const body = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name: this.#options.secretName,
        namespace: this.#options.namespace,
        ...(metadata?.['resourceVersion'] ? { resourceVersion: metadata['resourceVersion'] } : {}),
        labels: { 'app.kubernetes.io/name': 'config-checksum-webhook' },
        annotations: { [CHANGED_AT]: new Date(state.bundleChangedAt).toISOString(), [ISSUED_AT]: new Date(state.leafIssuedAt).toISOString() },
      },
      data: Object.fromEntries(
        Object.entries({ 'ca.crt': state.ca.certificate, 'ca.key': state.ca.privateKey, 'ca-bundle.crt': state.bundle, 'tls.crt': state.leaf.certificate, 'tls.key': state.leaf.privateKey })
          .map(([key, value]) => [key, Buffer.from(value).toString('base64')]),
      ),
    };
    return this.#api.writeSecret(this.#secretName(), body, existing !== undefined);
  }

  #secretName(): SecretName {
    return { namespace: this.#options.namespace, name: this.#options.secretName };
  }

  async #readConfiguration(): Promise<JsonObject> {
    const configuration = await this.#api.getWebhookConfiguration(this.#options.webhookConfigurationName);
    if (!configuration) throw new OperationalError(`MutatingWebhookConfiguration ${this.#options.webhookConfigurationName} not found`);
    return configuration;
  }

  /** Writes the bundle into every webhook's caBundle, only when it differs. */
  async #publish(configuration: JsonObject, bundle: string): Promise<void> {
    const encoded = Buffer.from(bundle).toString('base64');
    const webhooks = asArray(configuration['webhooks']);
    const stale = webhooks.flatMap((webhook, index) => (asString(asObject(asObject(webhook)?.['clientConfig'])?.['caBundle']) === encoded ? [] : [index]));
    if (stale.length > 0) {
      const resourceVersion = asString(asObject(configuration['metadata'])?.['resourceVersion']);
      await this.#api.patchCaBundles({ name: this.#options.webhookConfigurationName, resourceVersion }, stale, encoded);
      this.#log.info({ webhooks: stale.length }, 'caBundle published');
    }
  }
}

function bundleOf(configuration: JsonObject): string | undefined {
  const bundles = asArray(configuration['webhooks']).map((webhook) => asString(asObject(asObject(webhook)?.['clientConfig'])?.['caBundle']) ?? '');
  if (bundles.length === 0 || bundles.some((bundle) => bundle !== bundles[0])) return undefined;
  return Buffer.from(bundles[0]!, 'base64').toString('utf8');
}
