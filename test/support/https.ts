// The one HTTPS client of the test suites: a request to a server on loopback (the webhook, a fake API
// server, the real kube-apiserver), the answer in full, and what the TLS layer saw.

import https from 'node:https';
import type { TLSSocket } from 'node:tls';

export interface HttpsCall {
  readonly port: number;
  readonly ca: string | Buffer;
  readonly path: string;
  /** GET without a body, POST with one, unless given. */
  readonly method?: string;
  readonly host?: string;
  readonly headers?: Readonly<Record<string, string | number>>;
  readonly body?: string | Buffer;
  readonly contentType?: string | undefined;
  /** Defaults to a fresh connection (false). */
  readonly agent?: https.Agent | false;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** No answer within this: the call fails (15 s unless given). */
  readonly timeoutMs?: number;
}

export interface HttpsAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  readonly json: unknown;
  /** SHA-256 fingerprint of the certificate the server presented. */
  readonly fingerprint256: string;
  readonly reusedSocket: boolean;
}

export function httpsCall(call: HttpsCall): Promise<HttpsAnswer> {
  const timeoutMs = call.timeoutMs ?? 15_000;
  const headers: Record<string, string | number> = { ...call.headers };
  if (call.body !== undefined) headers['content-length'] = Buffer.byteLength(call.body);
  if (call.contentType !== undefined) headers['content-type'] = call.contentType;
  return new Promise((resolve, reject) => {
    const request = https.request(
      {
        host: call.host ?? '127.0.0.1',
        port: call.port,
        method: call.method ?? (call.body === undefined ? 'GET' : 'POST'),
        path: call.path,
        ca: call.ca,
        agent: call.agent ?? false,
        headers,
        ...(call.cert ? { cert: call.cert, key: call.key } : {}),
        ...(call.maxVersion ? { maxVersion: call.maxVersion } : {}),
      },
      (response) => {
        const fingerprint256 = (response.socket as TLSSocket).getPeerCertificate().fingerprint256;
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: response.statusCode ?? 0, headers: response.headers, text, json: parseOrUndefined(text), fingerprint256, reusedSocket: request.reusedSocket });
        });
      },
    );
    request.setTimeout(timeoutMs, () => request.destroy(new Error(`${call.path}: no answer within ${timeoutMs} ms`)));
    request.on('error', reject);
    request.end(call.body);
  });
}

/** POST of a JSON body to /mutate (an AdmissionReview, or what a test sends in its place). */
export function postJson(port: number, ca: string, body: unknown, extra: Partial<HttpsCall> = {}): Promise<HttpsAnswer> {
  return httpsCall({ port, ca, method: 'POST', path: '/mutate', contentType: 'application/json', body: JSON.stringify(body), ...extra });
}

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
