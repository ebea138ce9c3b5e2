// A real control plane on 127.0.0.1: etcd, kube-apiserver and kube-controller-manager, started from the
// binaries build-control-plane.sh makes, with a fresh PKI per run. Used by the e2e tests (once per run,
// from their global setup) and by the local run (src/local/main.ts).
//
// Layout of one run:
//   <runDir>/pki/...              CA, serving and client certificates, service-account keys
//   <runDir>/admin.kubeconfig     system:masters client certificate, for tests and for people
//   <runDir>/logs/<component>.log stdout and stderr of each process; kept when the run fails
//   <runDir>/processes            the process-group registry (see ./process.ts)
//   <dataDir>                     etcd data, on tmpfs (/dev/shm), always removed

import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createCertificateAuthority, issueCertificate, DAY_MS, type KeyPairPem } from '../tls/certs.ts';
import {
  registered,
  signalGroup,
  sleep,
  spawnLogged,
  startWatchdog,
  stopGroup,
  tail,
  type LoggedProcess,
  type Registry,
} from './process.ts';

export interface ControlPlaneOptions {
  /** Directory holding etcd, kube-apiserver, kube-controller-manager and kubectl. */
  readonly binDir: string;
  /** Where PKI, kubeconfigs and logs go; created if missing. Default: a new directory under the OS temp dir. */
  readonly runDir?: string;
  /** Parent of the etcd data directory; default /dev/shm (tmpfs: no disk I/O, nothing left on disk). */
  readonly dataRoot?: string;
  /** Whole start-up budget. 90 s: kube-apiserver's post-start hooks take 20-40 s on 2 busy cores. */
  readonly startTimeoutMs?: number;
  /** Progress lines (component started, ready after N ms); default: none. */
  readonly log?: (line: string) => void;
  /**
   * Kill everything at once on SIGINT/SIGTERM (default true). False: the caller handles the signals (and
   * stops gracefully). Either way everything is killed when the process exits, uncaught errors included.
   */
  readonly handleSignals?: boolean;
}

export interface ControlPlane {
  readonly binDir: string;
  readonly runDir: string;
  readonly dataDir: string;
  /** https://127.0.0.1:<port> */
  readonly server: string;
  readonly apiServerPort: number;
  readonly etcdUrl: string;
  /** Admin kubeconfig (client certificate in group system:masters). */
  readonly kubeconfig: string;
  readonly kubectl: string;
  /** PEM of the cluster CA (signs the API server's serving certificate and all client certificates). */
  readonly caCertificate: string;
  /** Admin client credentials as files, for raw HTTPS clients. */
  readonly admin: { readonly certFile: string; readonly keyFile: string; readonly caFile: string };
  readonly registry: Registry;
  /** Milliseconds from the call to a working control plane. */
  readonly startedInMs: number;
  /** Kills every registered process group and removes the etcd data; removes runDir unless keepRunDir. */
  stop(options?: { keepRunDir?: boolean }): Promise<void>;
}

export class ControlPlaneError extends Error {
  override readonly name = 'ControlPlaneError';
}

const BINARIES = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl'] as const;
const DEFAULT_START_TIMEOUT_MS = 90_000;
// How often a port race (another process took a port between our probe and the bind) is retried.
const PORT_ATTEMPTS = 3;
const CONTROLLERS = [
  'deployment-controller',
  'replicaset-controller',
  'statefulset-controller',
  'daemonset-controller',
  'namespace-controller',
  'garbage-collector-controller',
  'serviceaccount-controller',
  'serviceaccount-token-controller',
];

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const started = Date.now();
  const deadline = started + (options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
  const log = options.log ?? (() => {});
  const binDir = path.resolve(options.binDir);
  const missing = BINARIES.filter((name) => !existsSync(path.join(binDir, name)));
  if (missing.length > 0) {
    throw new ControlPlaneError(`control-plane binaries missing in ${binDir}: ${missing.join(', ')}. Build them with: bash src/local/build-control-plane.sh`);
  }

  const runDir = options.runDir ?? mkdtempSync(path.join(os.tmpdir(), 'config-checksum-run-'));
  mkdirSync(path.join(runDir, 'logs'), { recursive: true });
  mkdirSync(path.join(runDir, 'pki'), { recursive: true });
  const dataDir = mkdtempSync(path.join(options.dataRoot ?? '/dev/shm', 'config-checksum-etcd-'));
  const registry: Registry = { file: path.join(runDir, 'processes') };
  writeFileSync(registry.file, '');
  const watchdog = startWatchdog(process.pid, registry, dataDir);

  const processes: LoggedProcess[] = [];
  let stopped = false;
  const killAllNow = (): void => {
    if (stopped) return;
    stopped = true;
    for (const { pgid } of registered(registry)) signalGroup(pgid, 'SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
    if (watchdog.pid !== undefined) signalGroup(watchdog.pid, 'SIGKILL');
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    killAllNow();
    process.stderr.write(`control plane killed on ${signal}; logs kept in ${runDir}/logs\n`);
    // Someone else (the test runner) handles this signal too and will end the process; otherwise, die of it.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  const onExit = (): void => killAllNow();
  const handleSignals = options.handleSignals ?? true;
  if (handleSignals) {
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }
  process.once('exit', onExit);

  const stop = async ({ keepRunDir = false }: { keepRunDir?: boolean } = {}): Promise<void> => {
    if (!stopped) {
      // Dependents first (webhook, controller manager), etcd last, so nothing logs a storm of errors.
      // The handlers stay installed meanwhile: an exit in the middle of this still kills the rest.
      const order = registered(registry).reverse();
      for (const { pgid } of order) {
        const own = processes.find((p) => p.pid === pgid);
        await stopGroup(pgid, 5_000);
        if (own) await Promise.race([own.exited, sleep(2_000)]);
      }
      killAllNow();
    }
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('exit', onExit);
    if (!keepRunDir) rmSync(runDir, { recursive: true, force: true });
  };

  try {
    const pki = writePki(runDir);
    const kubectl = path.join(binDir, 'kubectl');

    const etcd = await startWithPortRetry('etcd', async () => {
      const [clientPort, peerPort] = [await freePort(), await freePort()];
      const process_ = spawnLogged({
        name: 'etcd',
        command: path.join(binDir, 'etcd'),
        args: [
          '--name=e2e',
          `--data-dir=${path.join(dataDir, 'etcd')}`,
          `--listen-client-urls=http://127.0.0.1:${clientPort}`,
          `--advertise-client-urls=http://127.0.0.1:${clientPort}`,
          `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
          `--initial-cluster=e2e=http://127.0.0.1:${peerPort}`,
          // tmpfs data that is thrown away: fsync buys nothing and costs seconds per test on a slow disk.
          '--unsafe-no-fsync',
          '--log-level=warn',
        ],
        logFile: path.join(runDir, 'logs', 'etcd.log'),
        registry,
      });
      processes.push(process_);
      const url = `http://127.0.0.1:${clientPort}`;
      await waitUntil(process_, deadline, async () => (await get(`${url}/health`)).body.includes('"health":"true"'));
      return { url };
    });
    log(`etcd ready at ${etcd.url} after ${Date.now() - started} ms`);

    const apiServer = await startWithPortRetry('kube-apiserver', async () => {
      const port = await freePort();
      const server = `https://127.0.0.1:${port}`;
      const process_ = spawnLogged({
        name: 'kube-apiserver',
        command: path.join(binDir, 'kube-apiserver'),
        args: [
          `--etcd-servers=${etcd.url}`,
          '--bind-address=127.0.0.1',
          // Only loopback exists here; with "none", kube-apiserver accepts a loopback advertise address
          // (the kubernetes Service simply has no endpoints, which nothing here needs).
          '--advertise-address=127.0.0.1',
          '--endpoint-reconciler-type=none',
          `--secure-port=${port}`,
          `--cert-dir=${path.join(runDir, 'pki', 'apiserver-generated')}`,
          `--tls-cert-file=${pki.files.apiServerCert}`,
          `--tls-private-key-file=${pki.files.apiServerKey}`,
          `--client-ca-file=${pki.files.caCert}`,
          `--service-account-issuer=${server}`,
          `--service-account-key-file=${pki.files.serviceAccountPublicKey}`,
          `--service-account-signing-key-file=${pki.files.serviceAccountPrivateKey}`,
          '--authorization-mode=RBAC',
          '--service-cluster-ip-range=10.0.0.0/24',
          '--allow-privileged=true',
          // No controller creates "default" ServiceAccounts before the first Pod of a namespace arrives.
          '--disable-admission-plugins=ServiceAccount',
          '--profiling=false',
        ],
        logFile: path.join(runDir, 'logs', 'kube-apiserver.log'),
        registry,
      });
      processes.push(process_);
      await waitUntil(process_, deadline, async () => {
        const response = await get(`${server}/readyz`, { ca: pki.pem.ca.certificate });
        return response.status === 200;
      });
      return { port, server };
    });
    log(`kube-apiserver ready at ${apiServer.server} after ${Date.now() - started} ms`);

    const kubeconfig = path.join(runDir, 'admin.kubeconfig');
    writeFileSync(kubeconfig, kubeconfigYaml(apiServer.server, pki.pem.ca.certificate, 'admin', { cert: pki.pem.admin }), { mode: 0o600 });
    const controllerManagerKubeconfig = path.join(runDir, 'kube-controller-manager.kubeconfig');
    writeFileSync(
      controllerManagerKubeconfig,
      kubeconfigYaml(apiServer.server, pki.pem.ca.certificate, 'kube-controller-manager', { cert: pki.pem.controllerManager }),
      { mode: 0o600 },
    );

    const controllerManager = spawnLogged({
      name: 'kube-controller-manager',
      command: path.join(binDir, 'kube-controller-manager'),
      args: [
        `--kubeconfig=${controllerManagerKubeconfig}`,
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        // No HTTPS endpoint: readiness is judged by its work (a "default" ServiceAccount appears).
        '--secure-port=0',
        `--controllers=${CONTROLLERS.join(',')}`,
        `--service-account-private-key-file=${pki.files.serviceAccountPrivateKey}`,
        `--root-ca-file=${pki.files.caCert}`,
        // Its own system:masters identity instead of one token per controller: fewer moving parts.
        '--use-service-account-credentials=false',
        '--profiling=false',
      ],
      logFile: path.join(runDir, 'logs', 'kube-controller-manager.log'),
      registry,
    });
    processes.push(controllerManager);
    const adminTls = { ca: pki.pem.ca.certificate, cert: pki.pem.admin.certificate, key: pki.pem.admin.privateKey };
    await waitUntil(controllerManager, deadline, async () => {
      const response = await get(`${apiServer.server}/api/v1/namespaces/default/serviceaccounts/default`, adminTls);
      return response.status === 200;
    });
    log(`kube-controller-manager working after ${Date.now() - started} ms`);

    return {
      binDir,
      runDir,
      dataDir,
      server: apiServer.server,
      apiServerPort: apiServer.port,
      etcdUrl: etcd.url,
      kubeconfig,
      kubectl,
      caCertificate: pki.pem.ca.certificate,
      admin: { certFile: pki.files.adminCert, keyFile: pki.files.adminKey, caFile: pki.files.caCert },
      registry,
      startedInMs: Date.now() - started,
      stop,
    };
  } catch (error) {
    await stop({ keepRunDir: true });
    if (error instanceof ControlPlaneError) throw error;
    throw new ControlPlaneError(`control plane did not start: ${(error as Error).message} (run directory kept: ${runDir})`, { cause: error });
  }
}

interface Pki {
  readonly pem: { ca: KeyPairPem; admin: KeyPairPem; controllerManager: KeyPairPem };
  readonly files: {
    caCert: string;
    apiServerCert: string;
    apiServerKey: string;
    adminCert: string;
    adminKey: string;
    serviceAccountPrivateKey: string;
    serviceAccountPublicKey: string;
  };
}

function writePki(runDir: string): Pki {
  const dir = path.join(runDir, 'pki');
  // Two days: far longer than any run, short enough that a leaked key is worthless soon.
  const validityMs = 2 * DAY_MS;
  const ca = createCertificateAuthority('config-checksum-e2e-ca', validityMs);
  const apiServer = issueCertificate(ca, {
    commonName: 'kube-apiserver',
    dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'],
    ipAddresses: ['127.0.0.1', '10.0.0.1'],
    usage: 'server',
    validityMs,
  });
  const admin = issueCertificate(ca, { commonName: 'e2e-admin', organizations: ['system:masters'], usage: 'client', validityMs });
  const controllerManager = issueCertificate(ca, {
    commonName: 'kube-controller-manager',
    organizations: ['system:masters'],
    usage: 'client',
    validityMs,
  });
  const serviceAccount = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const write = (name: string, content: string): string => {
    const file = path.join(dir, name);
    writeFileSync(file, content, { mode: 0o600 });
    return file;
  };
  return {
    pem: { ca, admin, controllerManager },
    files: {
      caCert: write('ca.crt', ca.certificate),
      apiServerCert: write('apiserver.crt', apiServer.certificate),
      apiServerKey: write('apiserver.key', apiServer.privateKey),
      adminCert: write('admin.crt', admin.certificate),
      adminKey: write('admin.key', admin.privateKey),
      serviceAccountPrivateKey: write('sa.key', serviceAccount.privateKey),
      serviceAccountPublicKey: write('sa.pub', serviceAccount.publicKey),
    },
  };
}

export type KubeconfigCredentials = { readonly cert: KeyPairPem } | { readonly token: string };

/** A self-contained kubeconfig (certificates embedded), so it can be copied or used from any directory. */
export function kubeconfigYaml(server: string, caPem: string, user: string, credentials: KubeconfigCredentials): string {
  const b64 = (text: string): string => Buffer.from(text).toString('base64');
  const userLines =
    'token' in credentials
      ? [`    token: ${credentials.token}`]
      : [`    client-certificate-data: ${b64(credentials.cert.certificate)}`, `    client-key-data: ${b64(credentials.cert.privateKey)}`];
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: config-checksum-local',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(caPem)}`,
    'users:',
    `- name: ${user}`,
    '  user:',
    ...userLines,
    'contexts:',
    '- name: config-checksum-local',
    '  context:',
    '    cluster: config-checksum-local',
    `    user: ${user}`,
    'current-context: config-checksum-local',
    '',
  ].join('\n');
}

/** A port that was free a moment ago. Another process can take it before we bind: see startWithPortRetry. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

class PortTaken extends Error {}

/** Runs `start`; when the process died because a chosen port was taken meanwhile, tries again with new ports. */
async function startWithPortRetry<T>(component: string, start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (error) {
      if (!(error instanceof PortTaken) || attempt >= PORT_ATTEMPTS) {
        throw error instanceof PortTaken ? new ControlPlaneError(`${component}: a chosen port was taken ${attempt} times in a row. ${error.message}`) : error;
      }
    }
  }
}

/** Polls `ready` until it says yes; fails fast, naming the component and its log, when the process dies. */
async function waitUntil(component: LoggedProcess, deadline: number, ready: () => Promise<boolean>): Promise<void> {
  let lastError = '';
  while (Date.now() < deadline) {
    const status = component.exitStatus();
    if (status !== undefined) {
      const log = tail(component.logFile);
      const message = `${component.name} exited (${status}) during start-up; log: ${component.logFile}\n${log}`;
      if (/address already in use/i.test(log)) {
        // Its log is appended to by the next attempt; the message above keeps this attempt's lines.
        throw new PortTaken(message);
      }
      throw new ControlPlaneError(message);
    }
    try {
      if (await ready()) return;
      lastError = '';
    } catch (error) {
      lastError = (error as Error).message;
    }
    await sleep(250);
  }
  throw new ControlPlaneError(
    `${component.name} not ready within the start-up budget${lastError ? ` (last error: ${lastError})` : ''}; log: ${component.logFile}\n${tail(component.logFile)}`,
  );
}

interface TlsMaterial {
  readonly ca: string;
  readonly cert?: string;
  readonly key?: string;
}

function get(url: string, tls?: TlsMaterial): Promise<{ status: number; body: string }> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const callback = (response: http.IncomingMessage): void => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    };
    const request =
      target.protocol === 'https:'
        ? https.get(target, { ca: tls?.ca, cert: tls?.cert, key: tls?.key, timeout: 5_000, agent: false }, callback)
        : http.get(target, { timeout: 5_000, agent: false }, callback);
    request.on('timeout', () => request.destroy(new Error(`GET ${url} timed out`)));
    request.on('error', reject);
  });
}

