// `npm start`: run it. With a cluster configured (--kubeconfig, $KUBECONFIG, ~/.kube/config, or inside a
// pod), this is the webhook process of src/main.ts against that cluster. Without one, it starts a
// throwaway control plane on 127.0.0.1 (src/local/, the one the e2e tests use; never part of the bundle
// or the image), installs the webhook on it from the
// shipped manifests, prepares an opted-in namespace "demo", prints how to try it, and stays in the
// foreground until Ctrl-C, when everything is torn down.

import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runFromCommandLine } from '../main.ts';
import { controlPlaneBinaries } from './binaries.ts';

const DEMO_NAMESPACE = 'demo';
// The demo outlives a working day; the token is minted per run and dies with the control plane anyway.
const LOCAL_TOKEN_DURATION = '168h';

/** Where client-node's default chain (and kubectl) would find a cluster. */
export function clusterConfigured(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, home = os.homedir()): boolean {
  if (argv.some((arg) => arg === '--kubeconfig' || arg.startsWith('--kubeconfig='))) return true;
  if (env['KUBECONFIG']) return true;
  if (env['KUBERNETES_SERVICE_HOST']) return true;
  return existsSync(path.join(home, '.kube', 'config'));
}

async function runLocally(webhookArgs: readonly string[]): Promise<void> {
  const say = (line: string): void => {
    process.stderr.write(`[local] ${line}\n`);
  };
  say('no cluster configured (no --kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster service account): starting a local control plane');
  const binDir = controlPlaneBinaries(say);
  // The local control plane's harness, loaded only here: a start against a configured cluster never loads it.
  const { startEnvironment } = await import('./environment.ts');
  const { Kubectl } = await import('./kube.ts');
  const { OPT_IN_LABEL } = await import('./webhook.ts');

  const environment = await startEnvironment({ binDir, log: say, webhookArgs, tokenDuration: LOCAL_TOKEN_DURATION, handleSignals: false });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      say(`${signal} again: killing everything now`);
      process.exit(130); // the control plane's exit handler kills every process synchronously
    }
    stopping = true;
    say(`${signal}: stopping the webhook and the control plane (Ctrl-C again to kill at once)`);
    environment.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        say(`stop failed: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  const { state } = environment;
  const kubectl = new Kubectl(state.kubectl, state.kubeconfig);
  await kubectl.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: DEMO_NAMESPACE, labels: { ...OPT_IN_LABEL } } });
  process.stdout.write(instructions(state.kubeconfig, state.kubectl, state.webhook.files.logFile, state.runDir, state.webhook.coalesceWindowMs));
}


function instructions(kubeconfig: string, kubectl: string, webhookLog: string, runDir: string, quietMs: number): string {
  const ns = DEMO_NAMESPACE;
  return `
config-checksum-webhook is running against a local control plane (etcd, kube-apiserver and
kube-controller-manager on 127.0.0.1). There are no nodes: pods stay Pending, but every rollout shows
as a new ReplicaSet. Namespace "${ns}" is opted in (label config-checksum.io/inject=enabled).

In another shell:

  export KUBECONFIG=${kubeconfig}
  alias kubectl=${kubectl}

  kubectl -n ${ns} create configmap app-config --from-literal=greeting=hello
  kubectl -n ${ns} create deployment web --image=nginx
  kubectl -n ${ns} set env deployment/web --from=configmap/app-config
  kubectl -n ${ns} get deployment web -o yaml | grep -E 'checksum/config|config-checksum.io/sources'

  # Change the config: the watcher rolls the Deployment once the config has been quiet for ${quietMs} ms.
  kubectl -n ${ns} patch configmap app-config -p '{"data":{"greeting":"bonjour"}}'
  kubectl -n ${ns} get replicasets

Webhook log: ${webhookLog}
All logs:    ${runDir}/logs
Press Ctrl-C to stop and remove everything.
`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (clusterConfigured(argv, process.env)) await runFromCommandLine(argv, process.env);
  else await runLocally(argv);
}

if (import.meta.main) await main();
