// A fault-injecting HTTPS proxy between one webhook process and the API server, on 127.0.0.1. It ends TLS
// with its own certificate (the webhook's kubeconfig trusts that CA and keeps its ServiceAccount token,
// which is passed through), forwards to the API server over TLS, and on demand:
//   delay    holds each request this long before forwarding (slower than the webhook's read deadline)
//   refuse   closes the listening socket (ECONNREFUSED) and every open connection
//   status   answers every request with a Kubernetes Status of that HTTP code (403, 500, ...); with
//            `paths`, only the requests whose path and query match, the others being forwarded
//   drop     destroys every open connection and every new one at once (a network cut)
//   gone     answers the first watch of each resource with an ERROR event, code 410 (resourceVersion
//            expired, as after etcd compaction), then forwards as usual
// Every request is recorded (method, path, what was done with it), so tests can also see what the
// webhook asked for.

import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { KeyPairPem } from '../../../src/tls/certs.ts';

export type FaultMode =
  | { readonly kind: 'pass' }
  | { readonly kind: 'delay'; readonly ms: number }
  | { readonly kind: 'refuse' }
  | { readonly kind: 'status'; readonly status: number; readonly paths?: RegExp }
  | { readonly kind: 'drop' }
  | { readonly kind: 'gone' };

export interface ProxiedRequest {
  readonly at: number;
  readonly method: string;
  readonly path: string;
  readonly mode: FaultMode['kind'];
  /** What the proxy did: forwarded, delayed, answered <status>, dropped, gone. */
  readonly outcome: string;
}

export interface FaultProxyOptions {
  readonly upstream: string;
  readonly upstreamCa: string | Buffer;
  readonly serving: KeyPairPem;
  /** 0: any free port (kept across refuse/pass, so the kubeconfig stays valid). */
  readonly port?: number;
}

export class FaultProxy {
  readonly requests: ProxiedRequest[] = [];
  /** Connections destroyed on arrival in 'drop' mode (a cut refuses them before any request). */
  droppedConnections = 0;
  readonly #upstream: URL;
  readonly #agent: https.Agent;
  readonly #server: https.Server;
  readonly #sockets = new Set<Socket>();
  readonly #upstreamSockets = new Set<Socket>();
  readonly #goneServed = new Set<string>();
  #mode: FaultMode = { kind: 'pass' };
  #port = 0;
  #listening = false;

  private constructor(options: FaultProxyOptions) {
    this.#upstream = new URL(options.upstream);
    this.#agent = new https.Agent({ keepAlive: true, ca: options.upstreamCa });
    this.#server = https.createServer({ cert: options.serving.certificate, key: options.serving.privateKey }, (request, response) => this.#handle(request, response));
    // Long watches: no server-side timeouts here, the webhook and the API server set their own.
    this.#server.requestTimeout = 0;
    this.#server.headersTimeout = 0;
    this.#server.keepAliveTimeout = 120_000;
    this.#server.on('connection', (socket: Socket) => {
      if (this.#mode.kind === 'drop') {
        this.droppedConnections++;
        socket.destroy();
        return;
      }
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    this.#server.on('tlsClientError', () => {});
  }

  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const proxy = new FaultProxy(options);
    proxy.#port = options.port ?? 0;
    await proxy.#listen();
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `https://127.0.0.1:${this.#port}`;
  }

  get mode(): FaultMode {
    return this.#mode;
  }

  /** Switches the fault; 'refuse' and 'drop' also cut every open connection (watches included). */
  async setMode(mode: FaultMode): Promise<void> {
    this.#mode = mode;
    if (mode.kind === 'gone') this.#goneServed.clear();
    if (mode.kind === 'refuse' || mode.kind === 'drop') this.cut();
    if (mode.kind === 'refuse' && this.#listening) {
      this.#listening = false;
      await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    }
    if (mode.kind !== 'refuse' && !this.#listening) await this.#listen();
  }

  /** Destroys every connection, both sides (the webhook's and the proxy's own to the API server). */
  cut(): void {
    for (const socket of this.#sockets) socket.destroy();
    for (const socket of this.#upstreamSockets) socket.destroy();
    this.#sockets.clear();
    this.#upstreamSockets.clear();
  }

  /** Requests recorded since `since` (performance.now()), optionally only those whose path matches. */
  since(since: number, path?: RegExp): ProxiedRequest[] {
    return this.requests.filter((r) => r.at >= since && (!path || path.test(r.path)));
  }

  async stop(): Promise<void> {
    this.cut();
    this.#agent.destroy();
    if (this.#listening) {
      this.#listening = false;
      await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    }
  }

  async #listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const address = this.#server.address();
    if (typeof address === 'object' && address) this.#port = address.port;
    this.#listening = true;
  }

  #record(request: IncomingMessage, outcome: string): void {
    if (this.requests.length > 20_000) this.requests.splice(0, 10_000);
    this.requests.push({ at: performance.now(), method: request.method ?? '', path: request.url ?? '', mode: this.#mode.kind, outcome });
  }

  #handle(request: IncomingMessage, response: ServerResponse): void {
    const mode = this.#mode;
    switch (mode.kind) {
      case 'drop':
      case 'refuse':
        this.#record(request, 'dropped');
        request.socket.destroy();
        return;
      case 'status': {
        if (mode.paths && !mode.paths.test(request.url ?? '')) {
          this.#record(request, 'forwarded');
          this.#forward(request, response);
          return;
        }
        this.#record(request, `answered ${mode.status}`);
        const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `injected by the fault proxy (${mode.status})`, reason: mode.status === 403 ? 'Forbidden' : 'InternalError', code: mode.status });
        response.writeHead(mode.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        response.end(body);
        return;
      }
      case 'delay': {
        this.#record(request, `delayed ${mode.ms} ms`);
        const timer = setTimeout(() => this.#forward(request, response), mode.ms);
        // A caller that gave up is not forwarded at all.
        response.once('close', () => clearTimeout(timer));
        return;
      }
      case 'gone': {
        const url = new URL(request.url ?? '/', 'https://proxy');
        const watching = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
        if (watching && !this.#goneServed.has(url.pathname)) {
          this.#goneServed.add(url.pathname);
          this.#record(request, 'gone');
          const event = { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'too old resource version (injected by the fault proxy)', reason: 'Expired', code: 410 } };
          response.writeHead(200, { 'content-type': 'application/json' });
          response.end(`${JSON.stringify(event)}\n`);
          return;
        }
        this.#forward(request, response);
        return;
      }
      case 'pass':
        this.#forward(request, response);
        return;
    }
  }

  #forward(request: IncomingMessage, response: ServerResponse): void {
    if (this.#mode.kind === 'drop' || this.#mode.kind === 'refuse') {
      request.socket.destroy();
      return;
    }
    if (this.#mode.kind === 'pass' || this.#mode.kind === 'gone') this.#record(request, 'forwarded');
    const headers: Record<string, string | string[] | undefined> = { ...request.headers, host: this.#upstream.host };
    delete headers['connection'];
    delete headers['keep-alive'];
    const upstream = https.request(
      { host: this.#upstream.hostname, port: this.#upstream.port || 443, method: request.method, path: request.url, headers, agent: this.#agent },
      (answer) => {
        const answerHeaders = { ...answer.headers };
        delete answerHeaders['connection'];
        delete answerHeaders['keep-alive'];
        delete answerHeaders['transfer-encoding'];
        response.writeHead(answer.statusCode ?? 502, answerHeaders);
        // Watches stream: flush every chunk as it comes.
        response.flushHeaders();
        answer.pipe(response);
        answer.on('error', () => response.destroy());
      },
    );
    upstream.on('socket', (socket: Socket) => {
      // A kept-alive socket comes back for many requests: one close listener per socket, not per request.
      if (this.#upstreamSockets.has(socket)) return;
      this.#upstreamSockets.add(socket);
      socket.once('close', () => this.#upstreamSockets.delete(socket));
    });
    upstream.on('error', () => response.destroy());
    response.once('close', () => {
      if (!response.writableFinished) upstream.destroy();
    });
    request.pipe(upstream);
  }
}

/** token, server and CA of a kubeconfig as written by src/local/control-plane.ts kubeconfigYaml(). */
export function readTokenKubeconfig(text: string): { server: string; caPem: string; token: string; user: string } {
  const field = (name: string): string => {
    const match = new RegExp(`^\\s*${name}: (.+)$`, 'm').exec(text);
    if (!match) throw new Error(`kubeconfig has no ${name}`);
    return match[1]!.trim();
  };
  return {
    server: field('server'),
    caPem: Buffer.from(field('certificate-authority-data'), 'base64').toString('utf8'),
    token: field('token'),
    user: /^- name: (.+)$/m.exec(text.slice(text.indexOf('users:')))?.[1]?.trim() ?? 'webhook',
  };
}
