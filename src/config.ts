// Flags and environment -> one frozen Config, validated once at start with errors that name the setting.
// Precedence: command-line flag, then environment variable, then default. Nothing else reads process.env.

import { hostname } from 'node:os';
import { parseArgs } from 'node:util';

/** The label and annotation contract (DESIGN section 3 and 5). */
export const CONTRACT = Object.freeze({
  namespaceLabel: 'config-checksum.io/inject',
  optOutAnnotation: 'config-checksum.io/inject',
  extraConfigMapsAnnotation: 'config-checksum.io/extra-configmaps',
  /** With --secrets: Secrets of the workload's namespace read through the API, hashed like extra-configmaps. */
  extraSecretsAnnotation: 'config-checksum.io/extra-secrets',
  sourcesAnnotation: 'config-checksum.io/sources',
  /** Written by the watcher on a workload's own metadata to ask the webhook for a recomputation (DESIGN section 2). */
  requestedAnnotation: 'config-checksum.io/requested',
  defaultChecksumAnnotation: 'checksum/config',
  defaultSecretChecksumAnnotation: 'checksum/secret',
});

export interface Config {
  readonly host: string;
  readonly port: number;
  /** files: certificate files (reloaded on change); self-managed: CA and certificate in a Secret, caBundle patched. */
  readonly tlsMode: 'files' | 'self-managed';
  readonly tlsCertFile: string;
  readonly tlsKeyFile: string;
  /** When set, callers must present a client certificate signed by this CA. */
  readonly clientCaFile: string | undefined;
  /** With a client CA: the port that serves /healthz, /readyz and /metrics without a client certificate. */
  readonly healthPort: number;
  /** Service in front of the webhook: the self-managed certificate's DNS names derive from it. */
  readonly serviceName: string;
  readonly tlsSecretName: string;
  readonly caValiditySeconds: number;
  readonly certValiditySeconds: number;
  /** How long a caBundle or certificate change is given to reach the API server and every replica. */
  readonly certPropagationSeconds: number;
  readonly certPollSeconds: number;
  /** Extra SANs of the self-managed certificate (local runs and tests reach the webhook by IP). */
  readonly certExtraSans: readonly string[];
  /** Optional path to a kubeconfig; unset means in-cluster, then $KUBECONFIG, then ~/.kube/config. */
  readonly kubeconfig: string | undefined;
  readonly checksumAnnotation: string;
  /** Upper bound for one ConfigMap read during admission. */
  readonly configMapReadTimeoutMs: number;
  /** More distinct ConfigMaps (with --secrets: ConfigMaps and Secrets together) than this in one pod template: allow, change nothing, warn. */
  readonly maxConfigMaps: number;
  /** Also hash the Secrets a pod template consumes (keyed) into secretChecksumAnnotation; off: no Secret is ever read. */
  readonly secrets: boolean;
  /** Pod-template annotation that carries the keyed checksum of the consumed Secrets. */
  readonly secretChecksumAnnotation: string;
  /** After SIGTERM: unready and still serving for this long, then close. */
  readonly drainSeconds: number;
  readonly logLevel: string;
  /** Run the watch path (ConfigMap-only changes roll their workloads) in this process. */
  readonly watch: boolean;
  /** The MutatingWebhookConfiguration whose namespaceSelector is the scope of the watcher. */
  readonly webhookConfigurationName: string;
  /** The webhook's own namespace (leader Lease, certificate Secret). */
  readonly namespace: string;
  /** This replica's name in the leader Lease. */
  readonly identity: string;
  /** Quiet period: a workload is handled once no further change to its ConfigMaps came for this long. */
  readonly coalesceWindowMs: number;
  /** The longest a workload waits after the first change of a burst, however long the burst lasts. */
  readonly coalesceMaxMs: number;
  readonly rolloutRatePerSecond: number;
  readonly rolloutBurst: number;
  readonly leaseDurationSeconds: number;
  /** Minutes between level-based passes over every annotated workload (0: none); the leader only. */
  readonly resyncMinutes: number;
  /** Longest hold of a rollout for the workload's Flux Kustomization to apply the revision that changed its config (0: never hold). */
  readonly gitopsMaxWaitSeconds: number;
}

interface Setting {
  readonly flag: string;
  readonly env: string;
  readonly default: string | undefined;
  readonly help: string;
}

/** Every setting, with its flag and environment variable; README's configuration table mirrors this. */
export const SETTINGS = {
  host: { flag: 'host', env: 'CONFIG_CHECKSUM_HOST', default: '0.0.0.0', help: 'address the HTTPS server listens on' },
  port: { flag: 'port', env: 'CONFIG_CHECKSUM_PORT', default: '8443', help: 'HTTPS port (/mutate, /healthz, /readyz, /metrics)' },
  tlsMode: { flag: 'tls-mode', env: 'CONFIG_CHECKSUM_TLS_MODE', default: 'files', help: 'files: serve --tls-cert-file/--tls-key-file; self-managed: CA and certificate in a Secret, caBundle patched, rotated' },
  tlsCertFile: { flag: 'tls-cert-file', env: 'CONFIG_CHECKSUM_TLS_CERT_FILE', default: 'certs/tls.crt', help: 'PEM serving certificate (reloaded when it changes)' },
  tlsKeyFile: { flag: 'tls-key-file', env: 'CONFIG_CHECKSUM_TLS_KEY_FILE', default: 'certs/tls.key', help: 'PEM private key of the serving certificate' },
  clientCaFile: { flag: 'client-ca-file', env: 'CONFIG_CHECKSUM_CLIENT_CA_FILE', default: undefined, help: 'PEM CA; when set, only callers with a client certificate it signed are served (the API server with --admission-control-config-file kubeConfig credentials)' },
  healthPort: { flag: 'health-port', env: 'CONFIG_CHECKSUM_HEALTH_PORT', default: '8081', help: 'with --client-ca-file: HTTPS port for /healthz, /readyz and /metrics without a client certificate (kubelet probes, Prometheus); unused otherwise' },
  serviceName: { flag: 'service-name', env: 'CONFIG_CHECKSUM_SERVICE_NAME', default: 'config-checksum-webhook', help: 'Service name; the self-managed certificate is valid for name, name.ns, name.ns.svc' },
  tlsSecretName: { flag: 'tls-secret-name', env: 'CONFIG_CHECKSUM_TLS_SECRET_NAME', default: 'config-checksum-webhook-tls', help: 'Secret holding the self-managed CA and certificate' },
  caValiditySeconds: { flag: 'ca-validity-seconds', env: 'CONFIG_CHECKSUM_CA_VALIDITY_SECONDS', default: String(365 * 86_400), help: 'self-managed CA lifetime; rotated at 2/3 with an overlap' },
  certValiditySeconds: { flag: 'cert-validity-seconds', env: 'CONFIG_CHECKSUM_CERT_VALIDITY_SECONDS', default: String(30 * 86_400), help: 'self-managed serving certificate lifetime; renewed at 2/3' },
  certPropagationSeconds: { flag: 'cert-propagation-seconds', env: 'CONFIG_CHECKSUM_CERT_PROPAGATION_SECONDS', default: '120', help: 'wait between the rotation steps (new CA trusted, certificate switched, old CA removed)' },
  certExtraSans: { flag: 'cert-extra-sans', env: 'CONFIG_CHECKSUM_CERT_EXTRA_SANS', default: '', help: 'comma-separated extra DNS names or IP addresses for the self-managed certificate' },
  certPollSeconds: { flag: 'cert-poll-seconds', env: 'CONFIG_CHECKSUM_CERT_POLL_SECONDS', default: '30', help: 'how often each replica re-reads the certificate Secret' },
  kubeconfig: { flag: 'kubeconfig', env: 'KUBECONFIG', default: undefined, help: 'kubeconfig file; unset: in-cluster service account, then ~/.kube/config' },
  checksumAnnotation: { flag: 'checksum-annotation', env: 'CONFIG_CHECKSUM_ANNOTATION', default: CONTRACT.defaultChecksumAnnotation, help: 'pod-template annotation that carries the checksum' },
  configMapReadTimeoutMs: { flag: 'configmap-read-timeout-ms', env: 'CONFIG_CHECKSUM_CONFIGMAP_READ_TIMEOUT_MS', default: '2000', help: 'deadline of one ConfigMap read during admission (the webhook timeout is 5 s)' },
  maxConfigMaps: { flag: 'max-configmaps', env: 'CONFIG_CHECKSUM_MAX_CONFIGMAPS', default: '64', help: 'most distinct ConfigMaps one workload may consume before the checksum is left alone; with --secrets, ConfigMaps and Secrets together' },
  secrets: { flag: 'secrets', env: 'CONFIG_CHECKSUM_SECRETS', default: 'false', help: 'true: also hash the Secrets a pod template consumes (HMAC-SHA256 with a key kept in the Secret config-checksum-webhook-hash-key) into --secret-checksum-annotation; needs RBAC to read Secrets. false: no Secret is ever read' },
  secretChecksumAnnotation: { flag: 'secret-checksum-annotation', env: 'CONFIG_CHECKSUM_SECRET_ANNOTATION', default: CONTRACT.defaultSecretChecksumAnnotation, help: 'with --secrets: pod-template annotation that carries the keyed checksum of the Secrets' },
  drainSeconds: { flag: 'drain-seconds', env: 'CONFIG_CHECKSUM_DRAIN_SECONDS', default: '15', help: 'seconds to keep serving, unready, after SIGTERM' },
  logLevel: { flag: 'log-level', env: 'CONFIG_CHECKSUM_LOG_LEVEL', default: 'info', help: 'pino level: fatal, error, warn, info, debug, trace' },
  watch: { flag: 'watch', env: 'CONFIG_CHECKSUM_WATCH', default: 'true', help: 'true: also run the watcher that rolls workloads when only a ConfigMap changes' },
  webhookConfigurationName: { flag: 'webhook-configuration-name', env: 'CONFIG_CHECKSUM_WEBHOOK_CONFIGURATION', default: 'config-checksum-webhook', help: 'MutatingWebhookConfiguration whose namespaceSelector defines the scope' },
  namespace: { flag: 'namespace', env: 'CONFIG_CHECKSUM_NAMESPACE', default: 'config-checksum', help: "the webhook's own namespace (leader Lease, certificate Secret)" },
  identity: { flag: 'identity', env: 'CONFIG_CHECKSUM_IDENTITY', default: undefined, help: 'replica name in the leader Lease (default: hostname-pid; the manifests use the pod name)' },
  coalesceWindowMs: { flag: 'coalesce-window-ms', env: 'CONFIG_CHECKSUM_COALESCE_WINDOW_MS', default: '1000', help: 'quiet period: a workload rolls once no further change to its ConfigMaps came for this long (several ConfigMaps written together give one rollout)' },
  coalesceMaxMs: { flag: 'coalesce-max-ms', env: 'CONFIG_CHECKSUM_COALESCE_MAX_MS', default: undefined, help: 'the longest a workload waits after the first change of a burst, however long the burst lasts (default: 10000, or the quiet period if longer)' },
  rolloutRatePerSecond: { flag: 'rollout-rate', env: 'CONFIG_CHECKSUM_ROLLOUT_RATE', default: '5', help: 'most workload patches per second by the watcher (token bucket rate)' },
  rolloutBurst: { flag: 'rollout-burst', env: 'CONFIG_CHECKSUM_ROLLOUT_BURST', default: '10', help: 'token bucket size of the rollout rate limit' },
  leaseDurationSeconds: { flag: 'lease-duration-seconds', env: 'CONFIG_CHECKSUM_LEASE_DURATION_SECONDS', default: '15', help: 'leader Lease duration; a dead leader is replaced after about this long' },
  gitopsMaxWaitSeconds: { flag: 'gitops-max-wait-seconds', env: 'CONFIG_CHECKSUM_GITOPS_MAX_WAIT_SECONDS', default: '90', help: "when a changed ConfigMap and its workload were applied by two Flux Kustomizations of one source, hold the workload's rollout until its Kustomization applies the same revision (one rollout with both changes), at most this long (0: never hold). The default covers kustomize-controller's 30 s --requeue-dependency twice, plus an apply" },
  resyncMinutes: { flag: 'resync-minutes', env: 'CONFIG_CHECKSUM_RESYNC_MINUTES', default: '30', help: 'minutes between passes that check every annotated workload against its live config and roll what an event missed (0: only at start and on a leader change)' },
} as const satisfies Record<keyof Config, Setting>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Reads settings from flags, then environment, then defaults, with errors that name the setting. */
interface SettingsReader {
  raw(setting: Setting): string | undefined;
  required(setting: Setting): string;
  integer(setting: Setting, min: number, max: number): number;
  boolean(setting: Setting): boolean;
}

function settingsReader(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): SettingsReader {
  const options = Object.fromEntries(Object.values(SETTINGS).map((s) => [s.flag, { type: 'string' as const }]));
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}. Known flags: ${Object.values(SETTINGS).map((s) => `--${s.flag}`).join(' ')}`);
  }
  const raw = (setting: Setting): string | undefined => {
    const flag = flags[setting.flag];
    if (typeof flag === 'string') return flag;
    const fromEnv = env[setting.env];
    return fromEnv !== undefined && fromEnv !== '' ? fromEnv : setting.default;
  };
  const required = (setting: Setting): string => {
    const value = raw(setting);
    if (value === undefined || value === '') throw new ConfigError(`--${setting.flag} (${setting.env}) must not be empty`);
    return value;
  };
  const integer = (setting: Setting, min: number, max: number): number => {
    const text = required(setting);
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new ConfigError(`--${setting.flag} (${setting.env}) must be an integer from ${min} to ${max}, got "${text}"`);
    }
    return value;
  };
  const boolean = (setting: Setting): boolean => {
    const text = required(setting);
    if (text !== 'true' && text !== 'false') throw new ConfigError(`--${setting.flag} (${setting.env}) must be true or false, got "${text}"`);
    return text === 'true';
  };
  return { raw, required, integer, boolean };
}

/** The TLS mode and the certificate timings, checked against each other. */
function certificateSettings(read: SettingsReader): Pick<Config, 'tlsMode' | 'certPollSeconds' | 'certPropagationSeconds' | 'caValiditySeconds' | 'certValiditySeconds'> {
  const tlsMode = read.required(SETTINGS.tlsMode);
  if (tlsMode !== 'files' && tlsMode !== 'self-managed') throw new ConfigError(`--${SETTINGS.tlsMode.flag} must be files or self-managed, got "${tlsMode}"`);
  const certPollSeconds = read.integer(SETTINGS.certPollSeconds, 1, 3600);
  const certPropagationSeconds = read.integer(SETTINGS.certPropagationSeconds, 1, 86_400);
  // Every replica must have re-read the Secret before the next rotation step relies on it.
  if (certPropagationSeconds <= certPollSeconds) {
    throw new ConfigError(`--${SETTINGS.certPropagationSeconds.flag} (${certPropagationSeconds}) must be longer than --${SETTINGS.certPollSeconds.flag} (${certPollSeconds})`);
  }
  const caValiditySeconds = read.integer(SETTINGS.caValiditySeconds, 60, 20 * 365 * 86_400);
  const certValiditySeconds = read.integer(SETTINGS.certValiditySeconds, 30, 20 * 365 * 86_400);
  // A rotation (three steps) must fit in the third of a lifetime left when it starts.
  if (certValiditySeconds / 3 <= 3 * certPropagationSeconds || caValiditySeconds / 3 <= 3 * certPropagationSeconds) {
    throw new ConfigError(`certificate lifetimes must exceed 9 x --${SETTINGS.certPropagationSeconds.flag}`);
  }
  return { tlsMode, certPollSeconds, certPropagationSeconds, caValiditySeconds, certValiditySeconds };
}

const DEFAULT_COALESCE_MAX_MS = 10_000;

/** The two checksum annotations: valid keys, and not the same key (one would overwrite the other). */
function annotationSettings(read: SettingsReader): Pick<Config, 'checksumAnnotation' | 'secrets' | 'secretChecksumAnnotation'> {
  const annotation = (setting: Setting): string => {
    const key = read.required(setting);
    if (!QUALIFIED_NAME.test(key)) throw new ConfigError(`--${setting.flag} must be a valid annotation key (prefix/name), got "${key}"`);
    return key;
  };
  const checksumAnnotation = annotation(SETTINGS.checksumAnnotation);
  const secretChecksumAnnotation = annotation(SETTINGS.secretChecksumAnnotation);
  const secrets = read.boolean(SETTINGS.secrets);
  if (secrets && secretChecksumAnnotation === checksumAnnotation) {
    throw new ConfigError(`--${SETTINGS.secretChecksumAnnotation.flag} must differ from --${SETTINGS.checksumAnnotation.flag} ("${checksumAnnotation}")`);
  }
  return { checksumAnnotation, secrets, secretChecksumAnnotation };
}

export function loadConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Config {
  const read = settingsReader(argv, env);
  const { raw, required, integer, boolean } = read;
  const annotations = annotationSettings(read);
  const logLevel = required(SETTINGS.logLevel);
  if (!LOG_LEVELS.has(logLevel)) throw new ConfigError(`--${SETTINGS.logLevel.flag} must be one of ${[...LOG_LEVELS].join(', ')}`);
  const certificates = certificateSettings(read);

  const coalesceWindowMs = integer(SETTINGS.coalesceWindowMs, 0, 600_000);
  const coalesceMaxMs = raw(SETTINGS.coalesceMaxMs) === undefined ? Math.max(DEFAULT_COALESCE_MAX_MS, coalesceWindowMs) : integer(SETTINGS.coalesceMaxMs, 0, 3_600_000);
  if (coalesceMaxMs < coalesceWindowMs) throw new ConfigError(`--${SETTINGS.coalesceMaxMs.flag} (${coalesceMaxMs}) must be at least --${SETTINGS.coalesceWindowMs.flag} (${coalesceWindowMs})`);
  return Object.freeze({
    host: required(SETTINGS.host),
    port: integer(SETTINGS.port, 0, 65535),
    ...certificates,
    tlsCertFile: required(SETTINGS.tlsCertFile),
    tlsKeyFile: required(SETTINGS.tlsKeyFile),
    clientCaFile: raw(SETTINGS.clientCaFile),
    healthPort: integer(SETTINGS.healthPort, 0, 65535),
    serviceName: required(SETTINGS.serviceName),
    tlsSecretName: required(SETTINGS.tlsSecretName),
    certExtraSans: (raw(SETTINGS.certExtraSans) ?? '').split(',').map((name) => name.trim()).filter((name) => name !== ''),
    kubeconfig: raw(SETTINGS.kubeconfig),
    ...annotations,
    // Under the webhook's 5 s timeoutSeconds, so a slow read still ends in a fail-open answer, not a timeout.
    configMapReadTimeoutMs: integer(SETTINGS.configMapReadTimeoutMs, 50, 4000),
    maxConfigMaps: integer(SETTINGS.maxConfigMaps, 1, 1000),
    drainSeconds: integer(SETTINGS.drainSeconds, 0, 600),
    logLevel,
    watch: boolean(SETTINGS.watch),
    webhookConfigurationName: required(SETTINGS.webhookConfigurationName),
    namespace: required(SETTINGS.namespace),
    identity: raw(SETTINGS.identity) ?? `${hostname()}-${process.pid}`,
    // Long enough that Helm's "ConfigMap, then Deployment" within one apply (or helmfile's next release,
    // measured 0.3-0.75 s later) is seen as one change; short enough that a lone change rolls in about a second.
    coalesceWindowMs,
    coalesceMaxMs,
    rolloutRatePerSecond: integer(SETTINGS.rolloutRatePerSecond, 1, 1000),
    rolloutBurst: integer(SETTINGS.rolloutBurst, 1, 10_000),
    leaseDurationSeconds: integer(SETTINGS.leaseDurationSeconds, 2, 300),
    resyncMinutes: integer(SETTINGS.resyncMinutes, 0, 1440),
    gitopsMaxWaitSeconds: integer(SETTINGS.gitopsMaxWaitSeconds, 0, 3600),
  });
}

// An annotation key: optional DNS-subdomain prefix and '/', then a name of at most 63 characters.
const QUALIFIED_NAME = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
