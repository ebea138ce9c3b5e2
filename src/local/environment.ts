// One control plane with the webhook installed, as the e2e run and the local run (src/local/main.ts) both use
// it, and the state file through which test files (separate processes) find it.

import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../config.ts';
import { startControlPlane, type ControlPlane } from './control-plane.ts';
import { removeStaleContainers } from './container.ts';
import { Kubectl, KubeClient } from './kube.ts';
import { installWebhook, SERVICE_ACCOUNT, WEBHOOK_CONFIGURATION, type InstalledWebhook, type WebhookFiles } from './webhook.ts';

/** Environment variable holding the path of the state file. */
export const STATE_ENV = 'CONFIG_CHECKSUM_E2E_STATE';

export interface E2EState {
  readonly binDir: string;
  readonly runDir: string;
  readonly server: string;
  readonly kubectl: string;
  /** Admin kubeconfig. */
  readonly kubeconfig: string;
  readonly admin: { readonly certFile: string; readonly keyFile: string; readonly caFile: string };
  readonly registryFile: string;
  readonly serviceAccount: { readonly namespace: string; readonly name: string };
  readonly webhookConfiguration: string;
  readonly webhook: {
    /** Process-group id of the running webhook; rewritten when a test restarts it. */
    readonly pid: number;
    readonly port: number;
    readonly files: WebhookFiles;
    readonly logLevel: string;
    readonly extraArgs: readonly string[];
    /** Whether the watch path runs, and its coalescing window, as the webhook process reads its flags. */
    readonly watch: boolean;
    readonly coalesceWindowMs: number;
  };
  /** The MutatingWebhookConfiguration as rendered from the shipped overlay. */
  readonly shippedConfiguration: Record<string, unknown>;
  readonly timings: { readonly controlPlaneMs: number; readonly webhookMs: number };
}

export interface Environment {
  readonly controlPlane: ControlPlane;
  readonly webhook: InstalledWebhook;
  readonly state: E2EState;
  readonly statePath: string;
  stop(options?: { keepRunDir?: boolean }): Promise<void>;
}

export interface EnvironmentOptions {
  readonly binDir: string;
  readonly webhookLogLevel?: string;
  /** More flags for src/main.ts; none by default, so the webhook runs with the shipped defaults. */
  readonly webhookArgs?: readonly string[];
  readonly tokenDuration?: string;
  readonly log?: (line: string) => void;
  /** See ControlPlaneOptions.handleSignals. */
  readonly handleSignals?: boolean;
  /** Run the webhook as this container image under podman (container.ts) instead of the bundle under node. */
  readonly containerImage?: string;
}

export async function startEnvironment(options: EnvironmentOptions): Promise<Environment> {
  const log = options.log ?? (() => {});
  const controlPlane = await startControlPlane({ binDir: options.binDir, log, handleSignals: options.handleSignals ?? true });
  let webhook: InstalledWebhook;
  try {
    webhook = await installWebhook({
      controlPlane,
      log,
      ...(options.webhookLogLevel ? { logLevel: options.webhookLogLevel } : {}),
      ...(options.webhookArgs ? { extraArgs: options.webhookArgs } : {}),
      ...(options.tokenDuration ? { tokenDuration: options.tokenDuration } : {}),
      ...(options.containerImage ? { containerImage: options.containerImage } : {}),
    });
  } catch (error) {
    await controlPlane.stop({ keepRunDir: true });
    throw new Error(`webhook installation failed: ${(error as Error).message} (run directory kept: ${controlPlane.runDir})`, { cause: error });
  }
  // The product's own parser over the flags the process got, with the environment it inherited.
  const effective = loadConfig([...(options.webhookArgs ?? [])], process.env);
  const state: E2EState = {
    binDir: controlPlane.binDir,
    runDir: controlPlane.runDir,
    server: controlPlane.server,
    kubectl: controlPlane.kubectl,
    kubeconfig: controlPlane.kubeconfig,
    admin: controlPlane.admin,
    registryFile: controlPlane.registry.file,
    serviceAccount: SERVICE_ACCOUNT,
    webhookConfiguration: WEBHOOK_CONFIGURATION,
    webhook: {
      pid: webhook.process.pid,
      port: webhook.process.port,
      files: webhook.files,
      logLevel: options.webhookLogLevel ?? 'info',
      extraArgs: options.webhookArgs ?? [],
      watch: effective.watch,
      coalesceWindowMs: effective.coalesceWindowMs,
    },
    shippedConfiguration: webhook.shippedConfiguration,
    timings: { controlPlaneMs: controlPlane.startedInMs, webhookMs: webhook.startedInMs },
  };
  const statePath = path.join(controlPlane.runDir, 'state.json');
  writeState(statePath, state);
  const stop = async (stopOptions?: { keepRunDir?: boolean }): Promise<void> => {
    await controlPlane.stop(stopOptions);
    // A container whose podman process had to be killed outlives it; the stop above ended every process.
    if (options.containerImage) removeStaleContainers();
  };
  return { controlPlane, webhook, state, statePath, stop };
}

export function writeState(statePath: string, state: E2EState): void {
  writeFileSync(statePath, `${JSON.stringify(state, null, 2)}\n`);
}

/** The state of the running e2e environment; throws when the run was started without the global setup. */
export function loadState(): { state: E2EState; statePath: string } {
  const statePath = process.env[STATE_ENV];
  if (!statePath) {
    throw new Error(`${STATE_ENV} is not set: run the e2e tests through npm test or npm run test:e2e, whose global setup starts the environment`);
  }
  return { state: JSON.parse(readFileSync(statePath, 'utf8')) as E2EState, statePath };
}

/** What a test file needs: the admin client and kubectl of the running environment. */
export function connect(state: E2EState): { client: KubeClient; kubectl: Kubectl } {
  return {
    client: new KubeClient({ server: state.server, ...state.admin }),
    kubectl: new Kubectl(state.kubectl, state.kubeconfig),
  };
}
