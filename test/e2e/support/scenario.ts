// Building blocks of the e2e scenarios: manifests, the checksum a test expects (computed here with the
// pure core, independently of the webhook's HTTP path), and what the controller manager did about it.

import { computeChecksum, computeChecksums, planChecksum, type SourceLookup } from '../../../src/checksum/compute.ts';
import { SECRET_SOURCE } from '../../../src/checksum/references.ts';
import { workloadParts } from '../../../src/workload/kinds.ts';
import { CONTRACT, loadConfig } from '../../../src/config.ts';
import { connect, loadState, writeState, type E2EState } from '../../../src/local/environment.ts';
import { Kubectl, KubeClient, objectPath, resourcePath, uniqueName, waitFor, type KubeObject, type KubeResponse } from '../../../src/local/kube.ts';
import { OPT_IN_LABEL, startWebhookProcess, stopWebhookProcess, waitForWebhook } from '../../../src/local/webhook.ts';

export const CHECKSUM_ANNOTATION = CONTRACT.defaultChecksumAnnotation;
export const SOURCES_ANNOTATION = CONTRACT.sourcesAnnotation;
export const OPT_OUT_ANNOTATION = CONTRACT.optOutAnnotation;
// Long enough for the controller manager to react to a write it was going to react to (it does within
// a second or two on 2 busy cores), short enough to keep the run quick.
export const SETTLE_MS = 4_000;

export type WorkloadKind = 'Deployment' | 'StatefulSet' | 'DaemonSet';

export interface PodTemplateOptions {
  /** Mounted as a volume (all keys). */
  readonly volumeConfigMap?: string;
  /** Read through envFrom (all keys). */
  readonly envFromConfigMap?: string;
  readonly env?: Readonly<Record<string, string>>;
  readonly image?: string;
  readonly templateLabels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

export function configMap(namespace: string, name: string, data: Record<string, string>, binaryData?: Record<string, string>): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data, ...(binaryData ? { binaryData } : {}) };
}

/** An apps/v1 workload whose pods never run (no kubelet): only the controllers' bookkeeping matters. */
export function workload(kind: WorkloadKind, namespace: string, name: string, options: PodTemplateOptions = {}): KubeObject {
  const container: KubeObject = { name: 'app', image: options.image ?? 'registry.invalid/app:1' };
  if (options.env) container['env'] = Object.entries(options.env).map(([envName, value]) => ({ name: envName, value }));
  if (options.envFromConfigMap) container['envFrom'] = [{ configMapRef: { name: options.envFromConfigMap } }];
  const podSpec: KubeObject = { containers: [container] };
  if (options.volumeConfigMap) {
    container['volumeMounts'] = [{ name: 'config', mountPath: '/etc/app' }];
    podSpec['volumes'] = [{ name: 'config', configMap: { name: options.volumeConfigMap } }];
  }
  const labels = { app: name };
  const spec: KubeObject = {
    selector: { matchLabels: labels },
    template: { metadata: { labels: { ...labels, ...options.templateLabels } }, spec: podSpec },
  };
  if (kind !== 'DaemonSet') spec['replicas'] = 1;
  if (kind === 'StatefulSet') spec['serviceName'] = name;
  return {
    apiVersion: 'apps/v1',
    kind,
    metadata: { name, namespace, ...(options.annotations ? { annotations: { ...options.annotations } } : {}) },
    spec,
  };
}

/** The checksum and sources the webhook must write, from the ConfigMaps as the test wrote them. */
export function expectedChecksum(object: KubeObject, configMaps: readonly KubeObject[]): { checksum: string; sources: string } {
  const parts = workloadParts(object);
  if (!parts) throw new Error('not a workload with a pod template');
  const plan = planChecksum(parts.template, parts.annotations, CONTRACT.extraConfigMapsAnnotation);
  const outcome = computeChecksum(plan, (name) => {
    const found = configMaps.find((cm) => cm['metadata']?.['name'] === name);
    return found ? { state: 'found', data: found['data'], binaryData: found['binaryData'] } : { state: 'missing' };
  });
  if (outcome.kind !== 'computed') throw new Error('expected checksum could not be computed');
  return { checksum: outcome.checksum, sources: outcome.sources };
}

/** A Secret as the API server keeps it: every value base64 in `data`. */
export function secret(namespace: string, name: string, values: Record<string, string>): KubeObject {
  const data = Object.fromEntries(Object.entries(values).map(([key, value]) => [key, Buffer.from(value).toString('base64')]));
  return { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name, namespace }, data };
}

/**
 * With --secrets: both checksums and the sources the webhook must write, from the ConfigMaps and Secrets
 * as the test wrote them and the install's HMAC key (as read from its Secret).
 */
export function expectedChecksums(object: KubeObject, sources: { configMaps: readonly KubeObject[]; secrets: readonly KubeObject[]; key: Uint8Array }): { checksum: string | undefined; secretChecksum: string | undefined; sources: string } {
  const parts = workloadParts(object);
  if (!parts) throw new Error('not a workload with a pod template');
  const lookupIn = (objects: readonly KubeObject[]) => (name: string): SourceLookup => {
    const found = objects.find((candidate) => candidate['metadata']?.['name'] === name);
    return found ? { state: 'found', data: found['data'], binaryData: found['binaryData'] } : { state: 'missing' };
  };
  const outcome = computeChecksums(
    { plan: planChecksum(parts.template, parts.annotations, CONTRACT.extraConfigMapsAnnotation), lookup: lookupIn(sources.configMaps) },
    { plan: planChecksum(parts.template, parts.annotations, CONTRACT.extraSecretsAnnotation, SECRET_SOURCE), lookup: lookupIn(sources.secrets), key: sources.key },
  );
  if (outcome.kind !== 'computed') throw new Error('expected checksums could not be computed');
  return { checksum: outcome.checksum, secretChecksum: outcome.secretChecksum, sources: outcome.sources };
}

export function templateChecksum(object: KubeObject): string | undefined {
  return object['spec']?.['template']?.['metadata']?.['annotations']?.[CHECKSUM_ANNOTATION];
}

export function sourcesAnnotation(object: KubeObject): string | undefined {
  return object['metadata']?.['annotations']?.[SOURCES_ANNOTATION];
}

/** One e2e test file's handle on the environment; namespaces it creates are deleted by close(). */
export class Scenario {
  #state: E2EState;
  readonly statePath: string;
  readonly client: KubeClient;
  readonly kubectl: Kubectl;
  readonly #namespaces: string[] = [];

  constructor() {
    const { state, statePath } = loadState();
    this.#state = state;
    this.statePath = statePath;
    ({ client: this.client, kubectl: this.kubectl } = connect(state));
  }

  /** The run's environment; `webhook` changes when this file restarts the webhook process. */
  get state(): E2EState {
    return this.#state;
  }

  /** Stops the run's webhook process (SIGTERM; it releases the leader Lease). Restart it with restartWebhook(). */
  async stopWebhook(): Promise<void> {
    await stopWebhookProcess(this.#state.webhook.pid, { file: this.#state.registryFile });
  }

  /**
   * Starts the run's webhook again on its port with its flags, records the new pid in the state file (so
   * the teardown stops it, whichever file runs next), and waits until the API server calls it again.
   * `extraArgs` replaces the run's flags from then on (restore them with another restart).
   */
  async restartWebhook(extraArgs: readonly string[] = this.#state.webhook.extraArgs): Promise<void> {
    const { webhook } = this.#state;
    const restarted = await startWebhookProcess({
      files: webhook.files,
      registry: { file: this.#state.registryFile },
      port: webhook.port,
      logLevel: webhook.logLevel,
      extraArgs: [...extraArgs],
      outliveParent: true,
    });
    const effective = loadConfig([...extraArgs], process.env);
    this.#state = { ...this.#state, webhook: { ...webhook, pid: restarted.pid, extraArgs: [...extraArgs], watch: effective.watch, coalesceWindowMs: effective.coalesceWindowMs } };
    writeState(this.statePath, this.#state);
    await waitForWebhook(this.client);
  }

  /**
   * How long to keep watching for a rollout that must not come after a ConfigMap change: past the
   * watcher's coalescing window (when it runs), which is when its own reaction would show.
   */
  get configChangeSettleMs(): number {
    return SETTLE_MS + (this.state.webhook.watch ? this.state.webhook.coalesceWindowMs : 0);
  }

  /** A fresh namespace, opted in (labelled) or not. */
  async namespace(prefix: string, { optIn }: { optIn: boolean }): Promise<string> {
    const name = uniqueName(prefix);
    await this.client.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, ...(optIn ? { labels: { ...OPT_IN_LABEL } } : {}) } });
    this.#namespaces.push(name);
    return name;
  }

  async read(object: KubeObject): Promise<KubeObject> {
    return this.client.get(objectPath(object));
  }

  /**
   * GET, optionally change, PUT: a re-apply of the object as stored. The controllers write status all the
   * time, so a 409 (someone wrote in between) is answered by reading again, as kubectl edit would.
   */
  async putAsRead(object: KubeObject, options: { change?: (current: KubeObject) => void; query?: Record<string, string> } = {}): Promise<{ read: KubeObject; response: KubeResponse }> {
    return waitFor(`PUT of ${object['kind']} ${object['metadata']?.['name']} without a conflict`, async () => {
      const read = await this.read(object);
      const body = structuredClone(read);
      options.change?.(body);
      const response = await this.client.request('PUT', objectPath(object), { body, ...(options.query ? { query: options.query } : {}) });
      if (response.status === 409) return undefined;
      if (response.status !== 200) throw new Error(`PUT answered ${response.status}: ${String(response.body['message'])}`);
      return { read, response };
    }, { timeoutMs: 30_000, intervalMs: 100 });
  }

  /** Children of `owner` of the given kind (ReplicaSets of a Deployment, ControllerRevisions of a StatefulSet). */
  async owned(kind: 'ReplicaSet' | 'ControllerRevision', owner: KubeObject): Promise<KubeObject[]> {
    const uid = owner['metadata']?.['uid'];
    if (typeof uid !== 'string') throw new Error('owner has no uid (pass the object as read from the API server)');
    const items = await this.client.list(resourcePath(kind, owner['metadata']['namespace']));
    return items.filter((item) => (item['metadata']?.['ownerReferences'] ?? []).some((ref: KubeObject) => ref['uid'] === uid));
  }

  /** Waits until `owner` has exactly `count` children of `kind`, and returns them. */
  async waitForOwned(kind: 'ReplicaSet' | 'ControllerRevision', owner: KubeObject, count: number): Promise<KubeObject[]> {
    return waitFor(`${count} ${kind}(s) of ${owner['kind']} ${owner['metadata']?.['name']}`, async () => {
      const items = await this.owned(kind, owner);
      return items.length === count ? items : undefined;
    });
  }

  /** Waits until the workload's controller has seen its latest spec (status.observedGeneration). */
  async waitForObserved(object: KubeObject): Promise<KubeObject> {
    return waitFor(`${object['kind']} ${object['metadata']?.['name']} observed by its controller`, async () => {
      const current = await this.read(object);
      return (current['status']?.['observedGeneration'] ?? 0) >= current['metadata']['generation'] ? current : undefined;
    });
  }

  /** Deletes this file's namespaces (the namespace controller empties them; nobody waits for it). */
  async close(): Promise<void> {
    for (const name of this.#namespaces) {
      await this.client.request('DELETE', resourcePath('Namespace', undefined, name)).catch(() => undefined);
    }
    this.client.close();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The product's field manager, as the API server records its writes in managedFields. */
export const FIELD_MANAGER = 'config-checksum-webhook';
export const REQUESTED_ANNOTATION = CONTRACT.requestedAnnotation;

/**
 * Every field path (`f:spec/f:template/...`) the managedFields of `object` give to `manager`, leaves
 * only, each entry's operation in front (`Apply f:spec/...`, `Update f:metadata/...`).
 */
export function ownedFields(object: KubeObject, manager: string): string[] {
  const paths: string[] = [];
  const walk = (node: KubeObject, prefix: string): void => {
    const children = Object.entries(node).filter(([key]) => key !== '.');
    if (children.length === 0) paths.push(prefix);
    for (const [key, child] of children) walk(child as KubeObject, prefix === '' ? key : `${prefix}/${key}`);
  };
  for (const entry of (object['metadata']?.['managedFields'] ?? []) as KubeObject[]) {
    if (entry['manager'] !== manager) continue;
    const before = paths.length;
    walk(entry['fieldsV1'] ?? {}, '');
    for (let index = before; index < paths.length; index++) paths[index] = `${entry['operation']} ${paths[index]}`;
  }
  return paths.sort();
}

/** The managers whose managedFields entries hold the pod template's checksum annotation. */
export function checksumOwners(object: KubeObject): string[] {
  const field = `f:${CHECKSUM_ANNOTATION}`;
  return ((object['metadata']?.['managedFields'] ?? []) as KubeObject[])
    .filter((entry) => entry['fieldsV1']?.['f:spec']?.['f:template']?.['f:metadata']?.['f:annotations']?.[field] !== undefined)
    .map((entry) => `${entry['manager']} (${entry['operation']})`)
    .sort();
}

/** What the single-writer rule allows the product to own: the request annotation on the workload's metadata. */
export function assertOwnsOnlyTheRequest(object: KubeObject): void {
  const owned = ownedFields(object, FIELD_MANAGER);
  const allowed = `Update f:metadata/f:annotations/f:${REQUESTED_ANNOTATION}`;
  if (owned.length === 0 || owned.some((field) => field !== allowed)) {
    throw new Error(`${FIELD_MANAGER} must own exactly ${allowed}; managedFields give it: ${owned.join(', ') || 'nothing'}`);
  }
}
