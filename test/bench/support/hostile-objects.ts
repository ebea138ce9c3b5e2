// The hostile objects of the security review (issue 14) as the API server stores them and sends them to
// the webhook: names no ConfigMap can have, a forged review kind, an extra-configmaps annotation of
// 250 KB, a `__proto__` key in CSI volumeAttributes. Each is something anyone allowed to create a
// Deployment in scope (or to reach the webhook's port) can send; none needs a privilege.

import { randomBytes } from 'node:crypto';
import type { KubeObject } from './fake-api.ts';

export const EXTRA_CONFIGMAPS = 'config-checksum.io/extra-configmaps';
export const CHECKSUM_ANNOTATION = 'checksum/config';

/**
 * `count` distinct strings that the API server stores as a ConfigMap name in a volume or a projected
 * source, and that no ConfigMap can have. All but 14 are runs of slashes (1, 2, 3, ...): encoded as
 * `%2F...` in a GET's path, decoded and trimmed by the API server, they name the namespace's collection,
 * so each is a LIST. The 14 others are the other shapes users and attackers write: a trailing slash (reads
 * another ConfigMap), an encoded slash, dot segments, upper case, characters outside DNS names.
 */
export function invalidConfigMapNames(count: number): string[] {
  const shapes = ['app/', 'a%2Fb', '..', '.', 'APP', 'x/../y', 'a/b', '/app', 'app//', 'Bad_Name', '-app', 'app-', '%', 'a b'];
  const slashes = Math.max(0, count - shapes.length);
  return [...Array.from({ length: slashes }, (_, index) => '/'.repeat(index + 1)), ...shapes].slice(0, count);
}

/** ConfigMap `name` holding one key of `bytes` bytes of YAML-ish text. */
export function configMap(namespace: string, name: string, bytes: number): KubeObject {
  const line = `# ${name}: generated settings, one line of a larger file\n`;
  const text = line.repeat(Math.ceil(bytes / line.length)).slice(0, bytes);
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, uid: `uid-${namespace}-${name}` }, data: { 'config.yaml': text } };
}

/** The 200 ConfigMaps of a busy namespace: `app` (consumed by the workload) and others of the same size. */
export function namespaceConfigMaps(namespace: string, count: number, bytes: number): KubeObject[] {
  return Array.from({ length: count }, (_, index) => configMap(namespace, index === 0 ? 'app' : `settings-${String(index).padStart(3, '0')}`, bytes));
}

export interface DeploymentOptions {
  readonly namespace: string;
  readonly name: string;
  readonly annotations?: Record<string, string>;
  readonly volumes?: readonly KubeObject[];
  readonly templateAnnotations?: Record<string, string>;
  /** Consume the ConfigMap `app` through envFrom (true unless told). */
  readonly consumesApp?: boolean;
}

/** A Deployment as the API server stores it: consumes `app` through envFrom, plus whatever `volumes` say. */
export function deployment(options: DeploymentOptions): KubeObject {
  const labels = { app: options.name };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: options.name,
      namespace: options.namespace,
      uid: `uid-${options.namespace}-${options.name}`,
      generation: 1,
      creationTimestamp: '2026-11-20T10:00:00Z',
      labels,
      ...(options.annotations ? { annotations: options.annotations } : {}),
    },
    spec: {
      replicas: 2,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels, ...(options.templateAnnotations ? { annotations: options.templateAnnotations } : {}) },
        spec: {
          containers: [{ name: 'app', image: 'registry.example/app:1.4.2', ...(options.consumesApp === false ? {} : { envFrom: [{ configMapRef: { name: 'app' } }] }) }],
          ...(options.volumes ? { volumes: options.volumes } : {}),
        },
      },
    },
    status: { observedGeneration: 1, replicas: 2, readyReplicas: 2, updatedReplicas: 2, availableReplicas: 2 },
  };
}

/** Half the names as configMap volumes, half as the sources of one projected volume. */
export function volumesNaming(names: readonly string[]): KubeObject[] {
  const half = Math.ceil(names.length / 2);
  const plain = names.slice(0, half).map((name, index) => ({ name: `cfg-${index}`, configMap: { name } }));
  const projected = { name: 'bundle', projected: { sources: names.slice(half).map((name) => ({ configMap: { name } })) } };
  return [...plain, projected];
}

/**
 * `count` distinct valid ConfigMap names, shortest first (a, b, ..., 0a, ...: base 36 of length 1, 2, 3,
 * 4), joined as a user writes the annotation ("a, b, c"). 49,665 of them make 248,632 bytes: what fits
 * under the API server's 256 KiB limit on a workload's annotations.
 */
export function extraConfigMapNames(count: number): string {
  const names: string[] = [];
  for (let length = 1; names.length < count; length++) {
    for (let value = 0; value < 36 ** length && names.length < count; value++) names.push(value.toString(36).padStart(length, '0'));
  }
  return names.join(', ');
}

/** `count` invalid entries ("A,A,..."): each a problem the old code warned about once per entry. */
export function invalidExtraConfigMaps(count: number): string {
  return Array.from({ length: count }, () => 'A').join(',');
}

/** CSI volumeAttributes with a `__proto__` key, as JSON.parse gives it (an own key, sent as written). */
export function protoKeyVolume(): KubeObject {
  return { name: 'secrets', csi: { driver: 'secrets-store.csi.k8s.io', readOnly: true, volumeAttributes: JSON.parse('{"__proto__":"x","secretProviderClass":"app-secrets"}') as KubeObject } };
}

/** `bytes` random ASCII letters. */
export function randomLetters(bytes: number): string {
  const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  const random = randomBytes(bytes);
  for (let index = 0; index < bytes; index++) random[index] = letters.charCodeAt(random[index]! % letters.length);
  return random.toString('latin1');
}

/** The AdmissionReview the API server POSTs for `object` (CREATE unless told), `kind` as given. */
export function admissionReview(object: KubeObject, uid: string, kind = String(object['kind'])): string {
  const group = 'apps';
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group, version: 'v1', kind },
      resource: { group, version: 'v1', resource: 'deployments' },
      requestKind: { group, version: 'v1', kind },
      requestResource: { group, version: 'v1', resource: 'deployments' },
      name: object['metadata']['name'],
      namespace: object['metadata']['namespace'],
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:team-a:deployer', groups: ['system:serviceaccounts', 'system:authenticated'] },
      object,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  });
}
