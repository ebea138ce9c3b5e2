// Shared test doubles and builders for the unit and http tests. No I/O beyond what a test asks for.

import type https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node/dist/config.js';
import type { ConfigMapLookup } from '../../src/checksum/compute.ts';
import type { ConfigMapReader } from '../../src/kube/configmaps.ts';
import type { MutateSettings } from '../../src/admission/mutate.ts';
import type { AdmissionRequest } from '../../src/admission/review.ts';
import type { SecretSource } from '../../src/workload/decision.ts';

/** The data part of a ConfigMap as the API server returns it (metadata is ignored by the product). */
export interface ConfigMapData {
  readonly data?: Record<string, string>;
  readonly binaryData?: Record<string, string>;
}

export interface ReadCall {
  readonly namespace: string;
  readonly name: string;
}

/**
 * A ConfigMapReader over an in-memory namespace. Names not in `configMaps` read as missing; names in
 * `unreadable` read as unreadable with that reason. Every call is recorded.
 */
export class FakeReader implements ConfigMapReader {
  readonly calls: ReadCall[] = [];
  readonly #configMaps: Map<string, ConfigMapData>;
  readonly #unreadable: Map<string, string>;

  constructor(configMaps: Record<string, ConfigMapData> = {}, unreadable: Record<string, string> = {}) {
    this.#configMaps = new Map(Object.entries(configMaps));
    this.#unreadable = new Map(Object.entries(unreadable));
  }

  async read(namespace: string, name: string, _signal: AbortSignal): Promise<ConfigMapLookup> {
    this.calls.push({ namespace, name });
    return lookupIn(this.#configMaps, this.#unreadable, name);
  }
}

export function lookupIn(configMaps: ReadonlyMap<string, ConfigMapData>, unreadable: ReadonlyMap<string, string>, name: string): ConfigMapLookup {
  const reason = unreadable.get(name);
  if (reason !== undefined) return { state: 'unreadable', reason };
  const found = configMaps.get(name);
  if (!found) return { state: 'missing' };
  return { state: 'found', data: found.data, binaryData: found.binaryData };
}

/** Never answers until the shared deadline aborts; then answers "unreadable" as ApiConfigMapReader does. */
export class HangingReader implements ConfigMapReader {
  calls = 0;
  async read(_namespace: string, _name: string, signal: AbortSignal): Promise<ConfigMapLookup> {
    this.calls++;
    return new Promise((resolve) => {
      const done = (): void => resolve({ state: 'unreadable', reason: 'timeout' });
      if (signal.aborted) done();
      else signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** Answers after `delayMs`; records how many reads were in flight at once. */
export class SlowReader implements ConfigMapReader {
  inFlight = 0;
  maxInFlight = 0;
  readonly #inner: FakeReader;
  readonly #delayMs: number;

  constructor(delayMs: number, configMaps: Record<string, ConfigMapData> = {}) {
    this.#inner = new FakeReader(configMaps);
    this.#delayMs = delayMs;
  }

  async read(namespace: string, name: string, signal: AbortSignal): Promise<ConfigMapLookup> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise((resolve) => setTimeout(resolve, this.#delayMs));
      return await this.#inner.read(namespace, name, signal);
    } finally {
      this.inFlight--;
    }
  }
}

/** A fixed HMAC key for tests (bytes 0x00..0x1f), the one the keyed golden vectors use. */
export const TEST_HASH_KEY = Uint8Array.from({ length: 32 }, (_, index) => index);

/** A Secret as the API server returns it: `data` values base64 (given here in plain text, encoded once). */
export function secretData(plain: Record<string, string>): ConfigMapData {
  return { data: Object.fromEntries(Object.entries(plain).map(([key, value]) => [key, Buffer.from(value, 'utf8').toString('base64')])) };
}

/**
 * Secrets of a namespace for the decision (--secrets on): a FakeReader over `secrets` (as secretData
 * gives them) that records every read, the key (TEST_HASH_KEY unless given; `null`: not loaded yet), and
 * the annotation checksum/secret.
 */
export function fakeSecrets(
  secrets: Record<string, ConfigMapData> = {},
  options: { unreadable?: Record<string, string>; key?: Uint8Array | null; annotation?: string } = {},
): SecretSource & { readonly reader: FakeReader } {
  const reader = new FakeReader(secrets, options.unreadable);
  const key = options.key === null ? undefined : (options.key ?? TEST_HASH_KEY);
  return { reader, key: () => key, annotation: options.annotation ?? 'checksum/secret' };
}

export const SETTINGS: MutateSettings = Object.freeze({ checksumAnnotation: 'checksum/config', maxConfigMaps: 64, configMapReadTimeoutMs: 2000 });

export const NAMESPACE = 'shop';

export interface WorkloadOptions {
  readonly kind?: string;
  readonly name?: string;
  readonly namespace?: string;
  readonly annotations?: Record<string, string>;
  /** The pod template; defaults to one container reading `app-config` through envFrom. */
  readonly template?: Record<string, unknown>;
  readonly metadata?: Record<string, unknown>;
}

export function workload(options: WorkloadOptions = {}): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: options.kind ?? 'Deployment',
    metadata: {
      name: options.name ?? 'web',
      namespace: options.namespace ?? NAMESPACE,
      ...(options.annotations ? { annotations: options.annotations } : {}),
      ...options.metadata,
    },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: options.template ?? {
        metadata: { labels: { app: 'web' } },
        spec: { containers: [{ name: 'app', image: 'nginx:1.27', envFrom: [{ configMapRef: { name: 'app-config' } }] }] },
      },
    },
  };
}

export interface RequestOptions {
  readonly uid?: string;
  readonly kind?: { group: string; version: string; kind: string };
  readonly subResource?: string;
  readonly operation?: string;
  readonly namespace?: string;
  readonly oldObject?: unknown;
  readonly dryRun?: boolean;
  readonly user?: string;
}

export function admissionRequest(object: unknown, options: RequestOptions = {}): AdmissionRequest {
  const metadata = (object as { metadata?: { name?: string } } | null)?.metadata;
  return {
    uid: options.uid ?? '705ab4f5-6393-11e8-b7cc-42010a800002',
    kind: options.kind ?? { group: 'apps', version: 'v1', kind: (object as { kind?: string } | null)?.kind ?? 'Deployment' },
    subResource: options.subResource ?? '',
    name: metadata?.name ?? '',
    namespace: options.namespace ?? NAMESPACE,
    operation: options.operation ?? 'CREATE',
    object,
    oldObject: options.oldObject ?? null,
    dryRun: options.dryRun ?? false,
    user: options.user ?? 'alice',
  };
}

/** The AdmissionReview body the API server would POST for `request`. */
export function reviewBody(request: AdmissionRequest): Record<string, unknown> {
  const resource = `${request.kind.kind.toLowerCase()}s`;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: request.uid,
      kind: request.kind,
      resource: { group: request.kind.group, version: request.kind.version, resource },
      requestKind: request.kind,
      requestResource: { group: request.kind.group, version: request.kind.version, resource },
      ...(request.subResource ? { subResource: request.subResource, requestSubResource: request.subResource } : {}),
      name: request.name,
      namespace: request.namespace,
      operation: request.operation,
      userInfo: { username: request.user, groups: ['system:authenticated'] },
      object: request.object,
      oldObject: request.oldObject,
      dryRun: request.dryRun,
      options: { apiVersion: 'meta.k8s.io/v1', kind: request.operation === 'UPDATE' ? 'UpdateOptions' : 'CreateOptions' },
    },
  };
}

/** Decodes the base64 JSON Patch of an AdmissionReview response. */
export function decodePatch(patch: string | undefined): unknown[] {
  if (patch === undefined) return [];
  return JSON.parse(Buffer.from(patch, 'base64').toString('utf8')) as unknown[];
}

export function utf8Base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

/** Listens on 127.0.0.1 and returns a kubeconfig for it: a token user trusting `caPem` (a fake API server). */
export async function listenAsApiServer(server: https.Server, caPem: string): Promise<KubeConfig> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'fake', server: `https://127.0.0.1:${port}`, caData: Buffer.from(caPem).toString('base64') }],
    users: [{ name: 'sa', token: 'token' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'sa' }],
    currentContext: 'fake',
  });
  return kubeConfig;
}
