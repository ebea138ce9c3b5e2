{{/*
Names. The binary's defaults (src/config.ts) are the kustomize names; a flag is passed only where the chart's
name differs from that default, so a default install runs the same command line as the kustomize Deployment.
*/}}

{{- define "ccw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ccw.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secret of the self-managed CA and serving certificate (--tls-secret-name). */}}
{{- define "ccw.tlsSecretName" -}}
{{- printf "%s-tls" (include "ccw.fullname" .) -}}
{{- end -}}

{{/* The Secret cert-manager issues into (certificates.mode=cert-manager). */}}
{{- define "ccw.certSecretName" -}}
{{- printf "%s-cert" (include "ccw.fullname" .) -}}
{{- end -}}

{{- define "ccw.selfSignedIssuerName" -}}
{{- printf "%s-selfsigned" (include "ccw.fullname" . | trimSuffix "-webhook") -}}
{{- end -}}

{{/*
The leader Lease is named in the binary (src/watch/watcher.ts), not by a flag: one release per namespace.
*/}}
{{- define "ccw.leaseName" -}}
config-checksum-webhook-leader
{{- end -}}

{{/*
The Secret holding the HMAC key of checksum/secret (secrets.enabled) is named in the binary
(src/secrets/hash-key.ts), not by a flag: like the Lease, one per namespace.
*/}}
{{- define "ccw.hashKeySecretName" -}}
config-checksum-webhook-hash-key
{{- end -}}

{{/*
Labels. Pod-template labels and selectors are the name label only, as in the kustomize base, so that the
Deployment's selector (immutable) is the same whichever way the webhook was installed.
*/}}
{{- define "ccw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ccw.name" . }}
{{- end -}}

{{- define "ccw.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ccw.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ccw.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "ccw.validate" -}}
{{- if not (has .Values.mode (list "namespace-opt-in" "cluster-wide")) -}}
{{- fail (printf "mode must be namespace-opt-in or cluster-wide, got %q" .Values.mode) -}}
{{- end -}}
{{- if not (has .Values.certificates.mode (list "self-managed" "cert-manager")) -}}
{{- fail (printf "certificates.mode must be self-managed or cert-manager, got %q" .Values.certificates.mode) -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled -}}
{{- fail "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled are both true: enable one (each scrapes every replica, and Prometheus would hold every series twice)" -}}
{{- end -}}
{{- if and .Values.secrets.enabled (eq .Values.checksumAnnotation "checksum/secret") -}}
{{- fail "checksumAnnotation must not be checksum/secret when secrets.enabled is true: that annotation carries the Secrets' checksum (the webhook would refuse to start)" -}}
{{- end -}}
{{- end -}}

{{/*
The scope (DESIGN section 3), a LabelSelector: namespaceSelector.override if set, else the mode's
expressions followed by namespaceSelector.extraExpressions.
*/}}
{{- define "ccw.namespaceSelector" -}}
{{- include "ccw.validate" . -}}
{{- if .Values.namespaceSelector.override -}}
{{- toYaml .Values.namespaceSelector.override -}}
{{- else -}}
{{- $expressions := list -}}
{{- if eq .Values.mode "namespace-opt-in" -}}
{{- $expressions = append $expressions (dict "key" "config-checksum.io/inject" "operator" "In" "values" (list "enabled")) -}}
{{- else -}}
{{- $expressions = append $expressions (dict "key" "config-checksum.io/inject" "operator" "NotIn" "values" (list "disabled")) -}}
{{- $system := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace -}}
{{- $expressions = append $expressions (dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" $system) -}}
{{- end -}}
{{- $expressions = concat $expressions (default (list) .Values.namespaceSelector.extraExpressions) -}}
{{- toYaml (dict "matchExpressions" $expressions) -}}
{{- end -}}
{{- end -}}

{{/* The webhook's command line: the kustomize base's flags, then those that differ from the binary's defaults. */}}
{{- define "ccw.args" -}}
{{- $fullname := include "ccw.fullname" . -}}
{{- if eq .Values.certificates.mode "cert-manager" }}
- --tls-mode=files
- --tls-cert-file=/tls/tls.crt
- --tls-key-file=/tls/tls.key
{{- else }}
- --tls-mode=self-managed
{{- end }}
- --drain-seconds=15
{{- if ne $fullname "config-checksum-webhook" }}
- --service-name={{ $fullname }}
- --webhook-configuration-name={{ $fullname }}
{{- if eq .Values.certificates.mode "self-managed" }}
- --tls-secret-name={{ include "ccw.tlsSecretName" . }}
{{- end }}
{{- end }}
{{- if ne .Values.checksumAnnotation "checksum/config" }}
- --checksum-annotation={{ .Values.checksumAnnotation }}
{{- end }}
{{- if .Values.clientCertificates.enabled }}
- --client-ca-file=/client-ca/ca.crt
- --health-port=8081
{{- end }}
{{- if .Values.secrets.enabled }}
- --secrets=true
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The Secret holding the CA of client certificates (clientCertificates.enabled). */}}
{{- define "ccw.clientCaSecretName" -}}
{{- .Values.clientCertificates.caSecretName | default (printf "%s-client-ca" (include "ccw.fullname" .)) -}}
{{- end -}}

{{/* The port the probes use: the health port when the admission port requires client certificates. */}}
{{- define "ccw.probePort" -}}
{{- if .Values.clientCertificates.enabled }}health{{ else }}https{{ end -}}
{{- end -}}

{{/*
How Prometheus verifies the webhook's serving certificate: the CA from the Secret that holds it, and the
Service's DNS name (a SAN of both the self-managed and the cert-manager certificate). Self-managed:
ca-bundle.crt, the bundle the API server trusts, which holds the old CA beside the new one through a CA
rotation, so scrapes keep verifying while the serving certificate moves to the new CA.
*/}}
{{- define "ccw.metricsTlsConfig" -}}
{{- if eq .Values.certificates.mode "cert-manager" -}}
ca:
  secret: {name: {{ include "ccw.certSecretName" . }}, key: ca.crt}
{{- else -}}
ca:
  secret: {name: {{ include "ccw.tlsSecretName" . }}, key: ca-bundle.crt}
{{- end }}
serverName: {{ printf "%s.%s.svc" (include "ccw.fullname" .) .Release.Namespace }}
{{- end -}}

{{/*
One scrape endpoint of a ServiceMonitor or PodMonitor: dict "root" (the chart's context) "monitor" (its
values). The port is the probes' port: the one that asks for no client certificate.
*/}}
{{- define "ccw.metricsEndpoint" -}}
{{- $monitor := .monitor -}}
- port: {{ include "ccw.probePort" .root }}
  scheme: https
  path: /metrics
  {{- with $monitor.interval }}
  interval: {{ . }}
  {{- end }}
  {{- with $monitor.scrapeTimeout }}
  scrapeTimeout: {{ . }}
  {{- end }}
  tlsConfig:
    {{- if $monitor.tlsConfig }}
    {{- toYaml $monitor.tlsConfig | nindent 4 }}
    {{- else }}
    {{- include "ccw.metricsTlsConfig" .root | nindent 4 }}
    {{- end }}
  {{- with $monitor.relabelings }}
  relabelings:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $monitor.metricRelabelings }}
  metricRelabelings:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Where a monitor looks for the Service or the pods: its namespaceSelector value, else the release namespace. */}}
{{- define "ccw.monitorNamespaceSelector" -}}
{{- if .monitor.namespaceSelector -}}
{{- toYaml .monitor.namespaceSelector -}}
{{- else -}}
matchNames: [{{ .root.Release.Namespace }}]
{{- end -}}
{{- end -}}

{{/* Metadata of the monitoring objects: dict "root" "name" "values" (with namespace, labels, annotations). */}}
{{- define "ccw.monitoringMetadata" -}}
name: {{ .name }}
namespace: {{ .values.namespace | default .root.Release.Namespace }}
labels:
  {{- include "ccw.labels" .root | nindent 2 }}
  {{- with .values.labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .values.annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* An alert's labels: its severity, then metrics.prometheusRule.alertLabels. dict "alert" "rule". */}}
{{- define "ccw.alertLabels" -}}
severity: {{ .alert.severity }}
{{- with .rule.alertLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
