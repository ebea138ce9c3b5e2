// The Secrets option (DESIGN section 4) on the run's webhook, as an install turns it on: the flag and the
// RBAC of manifests/components/secrets, rendered by kubectl's kustomize, never written out by hand here.
// The run's webhook starts without the option; a file that turns it on turns it off again in its after(),
// so the other test files are unaffected whatever the order.

import path from 'node:path';
import { CONTRACT } from '../../../src/config.ts';
import { HASH_KEY_SECRET_NAME } from '../../../src/secrets/hash-key.ts';
import { waitFor, type KubeClient, type KubeObject } from '../../../src/local/kube.ts';
import { renderOverlay, REPO_ROOT, SERVICE_ACCOUNT } from '../../../src/local/webhook.ts';
import { kubeconfigToken, tokenRequest } from './install.ts';
import type { Scenario } from './scenario.ts';

export const SECRET_ANNOTATION = CONTRACT.defaultSecretChecksumAnnotation;
const OVERLAYS_DIR = path.join(REPO_ROOT, 'manifests', 'overlays');

export function secretPath(namespace: string, name?: string): string {
  return `/api/v1/namespaces/${namespace}/secrets${name === undefined ? '' : `/${name}`}`;
}

/** The hash key Secret of the webhook's own namespace. */
export const KEY_PATH = secretPath(SERVICE_ACCOUNT.namespace, HASH_KEY_SECRET_NAME);

export function secretChecksum(object: KubeObject): string | undefined {
  return object['spec']?.['template']?.['metadata']?.['annotations']?.[SECRET_ANNOTATION];
}

/** What the component adds to an overlay. */
export interface SecretsComponent {
  /** The objects it adds (RBAC only). */
  readonly objects: KubeObject[];
  /** The flags it adds to the webhook container. */
  readonly flags: string[];
}

export function identity(object: KubeObject): string {
  return `${object['kind']}/${object['metadata']?.['namespace'] ?? ''}/${object['metadata']?.['name']}`;
}

/** overlays/secrets minus overlays/namespace-opt-in, both rendered by kubectl's kustomize. */
export async function renderSecretsComponent(scenario: Scenario): Promise<SecretsComponent> {
  const [plain, withSecrets] = await Promise.all(['namespace-opt-in', 'secrets'].map((overlay) => renderOverlay(scenario.kubectl, path.join(OVERLAYS_DIR, overlay))));
  const args = (objects: KubeObject[]): string[] => objects.find((object) => object['kind'] === 'Deployment')!['spec']['template']['spec']['containers'][0]['args'];
  const known = new Set(plain!.map(identity));
  const baseArgs = new Set(args(plain!));
  return { objects: withSecrets!.filter((object) => !known.has(identity(object))), flags: args(withSecrets!).filter((arg) => !baseArgs.has(arg)) };
}

export async function deleteKeySecret(client: KubeClient): Promise<void> {
  await client.request('DELETE', KEY_PATH);
  await waitFor(`Secret ${HASH_KEY_SECRET_NAME} gone`, async () => (await client.find(KEY_PATH)) === undefined, { timeoutMs: 30_000, intervalMs: 100 });
}

/**
 * The option on the run's webhook, and off again. It remembers what it changed (RBAC applied, flags
 * changed), so that off() undoes exactly that from any point a test failed at.
 */
export class SecretsOption {
  readonly #scenario: Scenario;
  readonly #component: SecretsComponent;
  /** The run's own flags, as the file found them. */
  readonly runFlags: readonly string[];
  readonly #token: string;
  #rbacApplied = false;
  #flagsChanged = false;

  constructor(scenario: Scenario, component: SecretsComponent) {
    this.#scenario = scenario;
    this.#component = component;
    this.runFlags = scenario.state.webhook.extraArgs;
    this.#token = kubeconfigToken(scenario.state.webhook.files.kubeconfig);
  }

  get component(): SecretsComponent {
    return this.#component;
  }

  /** The run's flags and the component's. */
  get flags(): string[] {
    return [...this.runFlags, ...this.#component.flags];
  }

  /** A request with the webhook's own credential: its ServiceAccount token. */
  asWebhook(method: string, urlPath: string, body?: unknown, contentType?: string): Promise<{ status: number; body: KubeObject }> {
    return tokenRequest(this.#scenario.state, this.#token, method, urlPath, body, contentType);
  }

  /**
   * Applies the component's RBAC and waits until the authorizer lets the webhook's token list Secrets
   * cluster-wide (what its watcher does first): a watcher started before that would back off for seconds.
   */
  async applyRbac(): Promise<void> {
    this.#rbacApplied = true;
    await this.#scenario.kubectl.apply(this.#component.objects);
    await waitFor('the authorizer to see the new bindings', async () => (await this.asWebhook('GET', '/api/v1/secrets?limit=1')).status === 200, { timeoutMs: 30_000, intervalMs: 100 });
  }

  /** Marks the run's webhook as running with other flags, for a file that restarts it itself. */
  flagsChanged(): void {
    this.#flagsChanged = true;
  }

  /** Restarts the run's webhook with the option on (and `extra` flags). */
  async restartWithOption(extra: readonly string[] = []): Promise<void> {
    await this.#scenario.stopWebhook();
    this.#flagsChanged = true;
    await this.#scenario.restartWebhook([...this.flags, ...extra]);
  }

  /** The run's webhook with its own flags and the shipped RBAC only; the hash key Secret gone. */
  async off(): Promise<void> {
    if (this.#flagsChanged) {
      await this.#scenario.stopWebhook();
      await this.#scenario.restartWebhook(this.runFlags);
      this.#flagsChanged = false;
    }
    if (this.#rbacApplied) {
      await this.#scenario.kubectl.run(['delete', '--ignore-not-found', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: this.#component.objects }));
      this.#rbacApplied = false;
    }
    await deleteKeySecret(this.#scenario.client);
  }
}
