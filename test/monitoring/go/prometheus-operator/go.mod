// The version of the Prometheus Operator whose CustomResourceDefinitions (ServiceMonitor, PodMonitor,
// PrometheusRule) the monitoring e2e test installs, to have the API server validate the rendered objects
// against them. Nothing is built from it: build-prometheus.sh copies the CRDs out of its module zip.
module config-checksum-webhook.local/monitoring/prometheus-operator

go 1.26.7

require github.com/prometheus-operator/prometheus-operator v0.85.0
