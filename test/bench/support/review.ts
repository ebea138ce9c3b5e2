// The AdmissionReview of scenario 1: a Deployment UPDATE as the API server sends it (about 10 KB, with
// oldObject), whose pod template consumes three ConfigMaps in three ways (a configMapKeyRef, an envFrom,
// a volume with items), and those three ConfigMaps. The update changes the image and carries a stale
// checksum, so the answer is a patch (the heavier of the two common answers).

import type { KubeObject } from '../../../src/local/kube.ts';

export const REVIEW_NAME = 'gateway';
export const CONFIGMAP_NAMES = ['gateway-env', 'gateway-flags', 'gateway-apis'] as const;
// A checksum that matches no config: the webhook answers with a patch.
const STALE_CHECKSUM = '0'.repeat(64);

export function benchConfigMaps(namespace: string): KubeObject[] {
  const routes = Array.from({ length: 24 }, (_, index) => `  - path: /api/v${index % 3}/resource-${index}\n    upstream: http://backend-${index % 5}.${namespace}.svc:8080\n    timeout: ${5 + (index % 4)}s\n`).join('');
  return [
    configMap(namespace, 'gateway-env', { LOG_LEVEL: 'info', UPSTREAM_TIMEOUT: '30s', REGION: 'eu-west-1', TRACING: 'otlp://collector:4317' }),
    configMap(namespace, 'gateway-flags', Object.fromEntries(Array.from({ length: 12 }, (_, index) => [`FEATURE_${index}`, index % 2 === 0 ? 'true' : 'false']))),
    configMap(namespace, 'gateway-apis', { 'routes.yaml': `routes:\n${routes}`, 'limits.yaml': 'rps: 100\nburst: 200\n' }),
  ];
}

function configMap(namespace: string, name: string, data: Record<string, string>): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'gateway' } }, data };
}

function deployment(namespace: string, image: string, generation: number): KubeObject {
  const container = (name: string, ports: number[]): KubeObject => ({
    name,
    image,
    ports: ports.map((port) => ({ name: `p${port}`, containerPort: port, protocol: 'TCP' })),
    env: [
      { name: 'LOG_LEVEL', valueFrom: { configMapKeyRef: { name: 'gateway-env', key: 'LOG_LEVEL' } } },
      { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
      { name: 'POD_IP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } } },
      { name: 'GOMAXPROCS', valueFrom: { resourceFieldRef: { resource: 'limits.cpu', divisor: '1' } } },
    ],
    envFrom: [{ configMapRef: { name: 'gateway-flags' } }],
    resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '512Mi' } },
    volumeMounts: [{ name: 'apis', mountPath: '/etc/gateway' }, { name: 'tmp', mountPath: '/tmp' }],
    livenessProbe: { httpGet: { path: '/healthz', port: ports[0], scheme: 'HTTP' }, initialDelaySeconds: 5, timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3 },
    readinessProbe: { httpGet: { path: '/ready', port: ports[0], scheme: 'HTTP' }, timeoutSeconds: 1, periodSeconds: 5, successThreshold: 1, failureThreshold: 3 },
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } },
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
    imagePullPolicy: 'IfNotPresent',
  });
  const labels = { app: REVIEW_NAME, 'app.kubernetes.io/name': REVIEW_NAME, 'app.kubernetes.io/instance': `${REVIEW_NAME}-prod`, 'app.kubernetes.io/version': image.split(':')[1] ?? '' };
  const spec: KubeObject = {
    replicas: 3,
    selector: { matchLabels: { app: REVIEW_NAME } },
    template: {
      metadata: { creationTimestamp: null, labels, annotations: { 'checksum/config': STALE_CHECKSUM, 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9901' } },
      spec: {
        volumes: [
          { name: 'apis', configMap: { name: 'gateway-apis', items: [{ key: 'routes.yaml', path: 'routes.yaml' }, { key: 'limits.yaml', path: 'limits.yaml' }], defaultMode: 420 } },
          { name: 'tmp', emptyDir: {} },
        ],
        containers: [container('gateway', [8080, 9901])],
        restartPolicy: 'Always',
        terminationGracePeriodSeconds: 30,
        dnsPolicy: 'ClusterFirst',
        serviceAccountName: REVIEW_NAME,
        securityContext: { fsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } },
        affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: { labelSelector: { matchLabels: { app: REVIEW_NAME } }, topologyKey: 'kubernetes.io/hostname' } }] } },
        schedulerName: 'default-scheduler',
      },
    },
    strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } },
    revisionHistoryLimit: 10,
    progressDeadlineSeconds: 600,
  };
  const applied = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { labels, name: REVIEW_NAME, namespace }, spec: { replicas: 3, selector: spec['selector'], template: { metadata: { labels }, spec: { containers: [{ name: 'gateway', image }] } } } };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: REVIEW_NAME,
      namespace,
      uid: '4b1a6f0c-2d3e-4f5a-9b8c-7d6e5f4a3b2c',
      resourceVersion: String(48_000 + generation),
      generation,
      creationTimestamp: '2025-03-02T10:14:09Z',
      labels,
      annotations: {
        'kubectl.kubernetes.io/last-applied-configuration': `${JSON.stringify(applied)}\n`,
        'deployment.kubernetes.io/revision': String(generation),
        'config-checksum.io/sources': 'configmap/gateway-apis[limits.yaml,routes.yaml], configmap/gateway-env[LOG_LEVEL], configmap/gateway-flags',
      },
      managedFields: [
        { manager: 'argocd-controller', operation: 'Update', apiVersion: 'apps/v1', time: '2025-03-02T10:14:09Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} } }, 'f:spec': { 'f:replicas': {}, 'f:template': { 'f:spec': { 'f:containers': { 'k:{"name":"gateway"}': { '.': {}, 'f:image': {}, 'f:name': {} } } } } } } },
        { manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'apps/v1', time: '2025-03-02T10:15:40Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:status': { 'f:availableReplicas': {}, 'f:conditions': {}, 'f:observedGeneration': {}, 'f:readyReplicas': {}, 'f:replicas': {}, 'f:updatedReplicas': {} } }, subresource: 'status' },
      ],
    },
    spec,
    status: {},
  };
}

/** The review the load generator sends, and the JSON body as bytes. */
export function benchReview(namespace: string): { review: KubeObject; body: string } {
  const review = {
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid: 'c0ffee00-1111-4222-8333-944455556666',
      kind: { group: 'apps', version: 'v1', kind: 'Deployment' },
      resource: { group: 'apps', version: 'v1', resource: 'deployments' },
      requestKind: { group: 'apps', version: 'v1', kind: 'Deployment' },
      requestResource: { group: 'apps', version: 'v1', resource: 'deployments' },
      name: REVIEW_NAME,
      namespace,
      operation: 'UPDATE',
      userInfo: { username: 'system:serviceaccount:argocd:argocd-application-controller', uid: '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d', groups: ['system:serviceaccounts', 'system:serviceaccounts:argocd', 'system:authenticated'] },
      object: deployment(namespace, 'envoyproxy/envoy:v1.31.3', 4),
      oldObject: deployment(namespace, 'envoyproxy/envoy:v1.31.2', 3),
      dryRun: false,
      options: { kind: 'UpdateOptions', apiVersion: 'meta.k8s.io/v1', fieldManager: 'argocd-controller' },
    },
  };
  return { review, body: JSON.stringify(review) };
}
