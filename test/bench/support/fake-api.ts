// A fake API server for benchmarks that run the webhook's program against hostile objects: enough of
// kube-apiserver for the admission reads and the watcher (ConfigMaps by name and by LIST, the workload
// LIST and WATCH, namespaces, the webhook configuration, Leases, Events), on 127.0.0.1 over TLS. Every
// request is counted by verb and resource, as the API server's own request info classifies it, and by
// method and decoded path.
//
// Paths are read the way kube-apiserver reads them, because that is where a name that no ConfigMap can
// have turns into a different request: the path is percent-decoded once (so `%2F` is a `/`), trimmed of
// slashes at both ends and split on `/`. A name of slashes alone therefore names no object and the GET
// becomes a LIST of the namespace's ConfigMaps; `app/` reads `app`; `.`, `..` and names holding `%`
// are refused with 400 (IsValidPathSegmentName); a path with more segments than a name is 404.

import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

export type KubeObject = Record<string, any>;

export interface FakeApiTls {
  readonly certificate: string;
  readonly privateKey: string;
}

/** The webhook configuration's namespaceSelector: namespaces labelled so are in the watcher's scope. */
export const SCOPE_LABEL = { key: 'config-checksum.io/inject', value: 'enabled' } as const;
export const WEBHOOK_CONFIGURATION = 'config-checksum-webhook';

interface RequestInfo {
  readonly verb: string;
  /** e.g. "configmaps", "deployments", "leases"; "" when the path names no resource. */
  readonly resource: string;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  /** Segments after the name (a subresource, or what a name with slashes left behind). */
  readonly rest: readonly string[];
}

// kube-apiserver ends a watch after its timeoutSeconds; the callers ask for minutes.
const MAX_WATCH_SECONDS = 1800;

export class FakeApiServer {
  /** Requests by `<verb> <resource>` (e.g. "list configmaps", "get configmaps", "watch deployments"). */
  readonly byVerb = new Map<string, number>();
  /** Requests by `<METHOD> <decoded path>`, without the query. */
  readonly byPath = new Map<string, number>();
  readonly #server: https.Server;
  readonly #namespaces = new Map<string, Record<string, string>>();
  readonly #configMaps = new Map<string, Map<string, Buffer>>();
  readonly #configMapLists = new Map<string, Buffer>();
  readonly #deployments = new Map<string, KubeObject>();
  #deploymentList: Buffer | undefined;
  readonly #leases = new Map<string, KubeObject>();
  readonly #watches = new Map<string, Set<ServerResponse>>();
  #resourceVersion = 1000;

  constructor(tls: FakeApiTls) {
    this.#server = https.createServer({ cert: tls.certificate, key: tls.privateKey }, (request, response) => {
      this.#handle(request, response).catch((error: unknown) => {
        if (!response.headersSent) json(response, 500, status(500, (error as Error).message));
        else response.destroy();
      });
    });
    // Watches stay open for minutes and LIST answers are megabytes: no server-side timeouts.
    this.#server.requestTimeout = 0;
    this.#server.keepAliveTimeout = 90_000;
  }

  async listen(): Promise<number> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    return (this.#server.address() as AddressInfo).port;
  }

  close(): void {
    for (const streams of this.#watches.values()) for (const response of streams) response.destroy();
    this.#server.closeAllConnections();
    this.#server.close();
  }

  /** A namespace; labelled in scope when `inScope`. */
  addNamespace(name: string, inScope: boolean): void {
    this.#namespaces.set(name, inScope ? { [SCOPE_LABEL.key]: SCOPE_LABEL.value, 'kubernetes.io/metadata.name': name } : { 'kubernetes.io/metadata.name': name });
  }

  /** Replaces the ConfigMaps of `namespace`; each is serialized once, as it is served. */
  setConfigMaps(namespace: string, objects: readonly KubeObject[]): void {
    const byName = new Map<string, Buffer>();
    for (const object of objects) byName.set(String(object['metadata']['name']), Buffer.from(JSON.stringify(this.#stamped(object))));
    this.#configMaps.set(namespace, byName);
    this.#configMapLists.set(namespace, listBody('ConfigMapList', [...byName.values()], this.#resourceVersion));
  }

  /** Replaces every Deployment (the only workload kind served with objects). */
  setDeployments(objects: readonly KubeObject[]): void {
    this.#deployments.clear();
    for (const object of objects) this.#deployments.set(objectKey(object), this.#stamped(object));
    this.#deploymentList = undefined;
  }

  /** Open watch streams of a resource (all namespaces). */
  openWatches(resource: string): number {
    return this.#watches.get(resource)?.size ?? 0;
  }

  /**
   * Sends a MODIFIED event for `object` (stored as the Deployment's new state, with a fresh resourceVersion)
   * on every open watch of its resource; resolves once each stream took it (backpressure: a client that
   * reads slowly slows the sender down, as the API server's watch cache buffer would).
   */
  async modified(resource: string, object: KubeObject): Promise<void> {
    const stored = this.#stamped(object);
    if (resource === 'deployments') {
      this.#deployments.set(objectKey(stored), stored);
      this.#deploymentList = undefined;
    }
    const line = Buffer.from(`${JSON.stringify({ type: 'MODIFIED', object: stored })}\n`);
    for (const response of this.#watches.get(resource) ?? []) {
      if (!response.write(line)) await drained(response);
    }
  }

  /** Counts so far, for a before/after difference. */
  counts(): Record<string, number> {
    return Object.fromEntries(this.byVerb);
  }

  #stamped(object: KubeObject): KubeObject {
    this.#resourceVersion++;
    return { ...object, metadata: { ...object['metadata'], resourceVersion: String(this.#resourceVersion) } };
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const raw = request.url ?? '/';
    const query = new URLSearchParams(raw.includes('?') ? raw.slice(raw.indexOf('?') + 1) : '');
    let decoded: string;
    try {
      decoded = decodeURIComponent(raw.split('?')[0]!);
    } catch {
      return json(response, 400, status(400, 'malformed path'));
    }
    const method = request.method ?? 'GET';
    const info = requestInfo(method, decoded, query);
    bump(this.byVerb, `${info.verb} ${info.resource}`);
    bump(this.byPath, `${method} ${decoded}`);
    if (info.name !== undefined && (info.name === '.' || info.name === '..' || info.name.includes('%'))) {
      return json(response, 400, status(400, `name may not be "${info.name}" or contain "%"`));
    }
    this.#route(info, query, body, response);
  }

  #route(info: RequestInfo, query: URLSearchParams, body: string, response: ServerResponse): void {
    if (info.verb === 'watch') return this.#watch(info.resource, query, response);
    if (info.rest.length > 0) return json(response, 404, status(404, 'not found'));
    switch (info.resource) {
      case 'configmaps':
        return this.#configMap(info, response);
      case 'namespaces':
        return this.#namespaceList(info, query, response);
      case 'deployments':
      case 'statefulsets':
      case 'daemonsets':
        return this.#workload(info, response);
      case 'mutatingwebhookconfigurations':
        return this.#webhookConfiguration(info, response);
      case 'leases':
        return this.#lease(info, body, response);
      case 'events':
        return info.verb === 'create' ? json(response, 201, { ...(JSON.parse(body) as object), metadata: { name: `event.${this.#resourceVersion++}` } }) : json(response, 404, status(404, 'not found'));
      default:
        return json(response, 404, status(404, 'not found'));
    }
  }

  #configMap(info: RequestInfo, response: ServerResponse): void {
    if (info.verb === 'list') {
      if (info.namespace !== undefined) return raw(response, 200, this.#configMapLists.get(info.namespace) ?? listBody('ConfigMapList', [], this.#resourceVersion));
      return raw(response, 200, listBody('ConfigMapList', [...this.#configMaps.values()].flatMap((byName) => [...byName.values()]), this.#resourceVersion));
    }
    const found = info.verb === 'get' ? this.#configMaps.get(info.namespace ?? '')?.get(info.name ?? '') : undefined;
    if (found) return raw(response, 200, found);
    return json(response, 404, status(404, `configmaps "${info.name ?? ''}" not found`));
  }

  #namespaceList(info: RequestInfo, query: URLSearchParams, response: ServerResponse): void {
    if (info.verb !== 'list') return json(response, 404, status(404, 'not found'));
    const matches = labelMatcher(query.get('labelSelector') ?? '');
    const items = [...this.#namespaces].filter(([, labels]) => matches(labels)).map(([name, labels]) => Buffer.from(JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels, resourceVersion: '1' } })));
    raw(response, 200, listBody('NamespaceList', items, this.#resourceVersion));
  }

  #workload(info: RequestInfo, response: ServerResponse): void {
    const served = info.resource === 'deployments';
    if (info.verb === 'list') {
      if (!served) return raw(response, 200, listBody('List', [], this.#resourceVersion));
      const all = [...this.#deployments.values()].filter((object) => info.namespace === undefined || object['metadata']['namespace'] === info.namespace);
      if (info.namespace !== undefined) return raw(response, 200, listBody('DeploymentList', all.map((object) => Buffer.from(JSON.stringify(object))), this.#resourceVersion));
      this.#deploymentList ??= listBody('DeploymentList', all.map((object) => Buffer.from(JSON.stringify(object))), this.#resourceVersion);
      return raw(response, 200, this.#deploymentList);
    }
    const object = served ? this.#deployments.get(`${info.namespace ?? ''}/${info.name ?? ''}`) : undefined;
    if (!object) return json(response, 404, status(404, 'not found'));
    // A write is answered with the object as stored: the fake runs no admission and applies nothing, so
    // a rollout the watcher asks for stays pending (the benchmarks that use this count requests, not rollouts).
    if (info.verb === 'get' || info.verb === 'patch') return json(response, 200, object);
    return json(response, 405, status(405, 'method not allowed'));
  }

  #webhookConfiguration(info: RequestInfo, response: ServerResponse): void {
    if (info.verb !== 'get' || info.name !== WEBHOOK_CONFIGURATION) return json(response, 404, status(404, 'not found'));
    json(response, 200, {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: WEBHOOK_CONFIGURATION, resourceVersion: '1' },
      webhooks: [{ name: 'config-checksum.io', namespaceSelector: { matchLabels: { [SCOPE_LABEL.key]: SCOPE_LABEL.value } }, failurePolicy: 'Ignore', sideEffects: 'None', admissionReviewVersions: ['v1'] }],
    });
  }

  #lease(info: RequestInfo, body: string, response: ServerResponse): void {
    const key = `${info.namespace ?? ''}/${info.name ?? ''}`;
    if (info.verb === 'get') {
      const lease = this.#leases.get(key);
      return lease ? json(response, 200, lease) : json(response, 404, status(404, 'not found'));
    }
    if (info.verb === 'create' || info.verb === 'update') {
      const lease = JSON.parse(body) as KubeObject;
      const name = String(lease['metadata']?.['name'] ?? info.name ?? '');
      const stored = this.#stamped(lease);
      this.#leases.set(`${info.namespace ?? ''}/${name}`, stored);
      return json(response, info.verb === 'create' ? 201 : 200, stored);
    }
    json(response, 405, status(405, 'method not allowed'));
  }

  /** An open stream, quiet until modified() writes to it; ended after its timeoutSeconds like the API server's. */
  #watch(resource: string, query: URLSearchParams, response: ServerResponse): void {
    response.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    response.flushHeaders();
    let streams = this.#watches.get(resource);
    if (!streams) this.#watches.set(resource, (streams = new Set()));
    streams.add(response);
    const seconds = Math.min(MAX_WATCH_SECONDS, Number(query.get('timeoutSeconds')) || MAX_WATCH_SECONDS);
    const timer = setTimeout(() => response.end(), seconds * 1000);
    response.on('close', () => {
      clearTimeout(timer);
      streams.delete(response);
    });
  }
}

/** What kube-apiserver's RequestInfoFactory makes of a decoded path: verb, resource, namespace, name. */
function requestInfo(method: string, decodedPath: string, query: URLSearchParams): RequestInfo {
  const trimmed = decodedPath.replace(/^\/+|\/+$/g, '');
  const parts = trimmed === '' ? [] : trimmed.split('/');
  // /api/v1/... or /apis/<group>/<version>/...
  const afterVersion = parts[0] === 'api' ? parts.slice(2) : parts.slice(3);
  let namespace: string | undefined;
  let rest = afterVersion;
  if (afterVersion[0] === 'namespaces' && afterVersion.length >= 3) {
    namespace = afterVersion[1];
    rest = afterVersion.slice(2);
  }
  const [resource = '', name, ...after] = rest;
  const watching = method === 'GET' && (query.get('watch') === '1' || query.get('watch') === 'true');
  const verbs: Record<string, string> = { POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };
  // No name segment at all is the collection. An empty one (`configmaps//x`, what a name that starts
  // with a slash leaves) is a GET of a subresource of "", which routes nowhere.
  const verb = watching ? 'watch' : method === 'GET' ? (name === undefined ? 'list' : 'get') : (verbs[method] ?? method.toLowerCase());
  return { verb, resource, namespace, name, rest: after };
}

/** The `key=value,key2=value2` form of ?labelSelector= (what a matchLabels selector becomes); an empty one matches all. */
function labelMatcher(selector: string): (labels: Record<string, string>) => boolean {
  const terms = selector.split(',').filter(Boolean).map((term) => {
    const match = /^([^=!]+)==?(.*)$/.exec(term);
    if (!match) throw new Error(`the fake API server reads only key=value label selectors, not "${term}"`);
    return [match[1]!, match[2]!] as const;
  });
  return (labels) => terms.every(([key, value]) => labels[key] === value);
}

function listBody(kind: string, items: readonly Buffer[], resourceVersion: number): Buffer {
  const head = Buffer.from(`{"kind":"${kind}","apiVersion":"v1","metadata":{"resourceVersion":"${resourceVersion}"},"items":[`);
  const parts: Buffer[] = [head];
  items.forEach((item, index) => parts.push(index === 0 ? item : Buffer.concat([Buffer.from(','), item])));
  parts.push(Buffer.from(']}'));
  return Buffer.concat(parts);
}

/** Resolves when the stream can take more, or has closed (a watch the client ended). */
function drained(response: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      response.off('drain', done);
      response.off('close', done);
      resolve();
    };
    response.on('drain', done);
    response.on('close', done);
  });
}

function objectKey(object: KubeObject): string {
  return `${String(object['metadata']?.['namespace'] ?? '')}/${String(object['metadata']?.['name'] ?? '')}`;
}

function status(code: number, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', status: 'Failure', message, code };
}

function json(response: ServerResponse, code: number, value: unknown): void {
  raw(response, code, Buffer.from(JSON.stringify(value)));
}

function raw(response: ServerResponse, code: number, body: Buffer): void {
  response.writeHead(code, { 'content-type': 'application/json', 'content-length': body.length });
  response.end(body);
}

function bump(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}
