#!/usr/bin/env bash
# Builds prometheus and promtool for the monitoring tests (the PrometheusRule checked and unit-tested with
# promtool, a real Prometheus scraping the e2e webhook), from the Go module proxy at the version pinned in
# test/monitoring/go/prometheus/go.mod, and copies the Prometheus Operator's CustomResourceDefinitions of
# ServiceMonitor, PodMonitor and PrometheusRule out of its module (the version pinned in
# test/monitoring/go/prometheus-operator/go.mod), so that the API server can validate what the chart and
# the kustomize components render.
# Binaries go to a cache outside the repository, keyed by the Prometheus and Go versions:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/config-checksum-webhook/prometheus-<version>-<go version>/
# (MONITORING_CACHE replaces the part before prometheus-...). A warm cache makes this a no-op. Safe to run
# from two clones at once: one build holds a lock on the cache while the other waits, and every build writes
# its own temporary files.
# Built with -tags remove_all_sd: every service discovery but static, file and HTTP is left out (the tests
# give Prometheus static targets), which spares downloading and compiling the cloud SDKs. Without the
# builtinassets tag the web UI is not embedded; the HTTP API, which the tests use, is all there.
# Prints the binary directory (prometheus, promtool, and monitoring-crds: a link to the directory of the
# CRDs) on its last line of stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mod="$here/go/prometheus"
operator_mod="$here/go/prometheus-operator"

fail() { echo "prometheus build FAILED at step '$1': $2" >&2; exit 1; }

command -v go >/dev/null || fail "find go" "no 'go' on PATH; install Go >= 1.26 (the Prometheus version pinned here needs it)"
[ -f "$mod/go.mod" ] || fail "read versions" "$mod/go.mod is missing"
version=$(awk '($1 == "github.com/prometheus/prometheus") { print $2; exit } ($1 == "require" && $2 == "github.com/prometheus/prometheus") { print $3; exit }' "$mod/go.mod")
[ -n "$version" ] || fail "read versions" "$mod/go.mod does not require github.com/prometheus/prometheus"
operator_version=$(awk '($1 == "require" && $2 == "github.com/prometheus-operator/prometheus-operator") { print $3; exit }' "$operator_mod/go.mod")
[ -n "$operator_version" ] || fail "read versions" "$operator_mod/go.mod does not require github.com/prometheus-operator/prometheus-operator"
go_version=$(go env GOVERSION)

cache_root=${MONITORING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/config-checksum-webhook}
bin="$cache_root/prometheus-$version-$go_version"
crds_dir="$cache_root/prometheus-operator-$operator_version-crds"
binaries=(prometheus promtool)
crds=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_podmonitors.yaml monitoring.coreos.com_prometheusrules.yaml)

all_present() {
  for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
  for c in "${crds[@]}"; do [ -f "$bin/monitoring-crds/$c" ] || return 1; done
}
if all_present; then echo "$bin"; exit 0; fi

mkdir -p "$bin" || fail "create cache" "cannot create $bin"
# One build at a time per cache: a second run waits here, then finds the binaries the first one built.
command -v flock >/dev/null || fail "lock cache" "flock (util-linux) is not installed"
exec 9>"$cache_root/.prometheus-build.lock"
if ! flock -n 9; then
  echo "another prometheus build holds $cache_root/.prometheus-build.lock; waiting for it" >&2
  flock 9 || fail "lock cache" "cannot lock $cache_root/.prometheus-build.lock"
fi
if all_present; then echo "$bin"; exit 0; fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
# Below other work on the machine: the build is long and nothing waits for it interactively.
niced=()
command -v nice >/dev/null && niced=(nice -n 10)
# What `prometheus --version` and `promtool --version` print, as the project's own release builds set it.
version_flags="-s -w"
for field in "Version=${version#v}" "Branch=HEAD" "Revision=$version" "BuildUser=config-checksum-webhook" "BuildDate=19700101-00:00:00"; do
  version_flags+=" -X github.com/prometheus/common/version.$field"
done

build() { # name, package
  local name=$1 pkg=$2
  [ -x "$bin/$name" ] && return 0
  echo "building $name ($pkg@$version, -tags remove_all_sd) ..." >&2
  # Temporary output and log of this build only, renamed into place when complete.
  local started=$SECONDS log="$bin/$name.build.$$.log" tmp="$bin/$name.tmp.$$"
  if ! (cd "$mod" && "${niced[@]}" go build -trimpath -tags remove_all_sd -ldflags "$version_flags" -o "$tmp" "$pkg") >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$tmp"
    fail "build $name" "go build $pkg failed (full log: $log)"
  fi
  mv "$tmp" "$bin/$name"
  mv "$log" "$bin/$name.build.log"
  echo "built $name in $((SECONDS - started)) s" >&2
}

build prometheus github.com/prometheus/prometheus/cmd/prometheus
build promtool github.com/prometheus/prometheus/cmd/promtool

crds_present() { for c in "${crds[@]}"; do [ -f "$crds_dir/$c" ] || return 1; done; }
if ! crds_present; then
  # The CRDs as the operator's module ships them (its release installs the same files), copied from the
  # module cache into a temporary directory renamed into place when complete.
  mkdir -p "$cache_root" && crds_tmp="$crds_dir.tmp.$$"
  rm -rf "$crds_tmp" && mkdir -p "$crds_tmp" || fail "copy CRDs" "cannot create $crds_tmp"
  operator="github.com/prometheus-operator/prometheus-operator@$operator_version"
  # Outside any module, so that the download never touches a go.mod or go.sum.
  operator_dir=$(cd "$crds_tmp" && GOFLAGS= GO111MODULE=on go mod download -json "$operator" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$operator_dir/example/prometheus-operator-crd" ] || fail "download $operator" "the Go module proxy did not serve $operator, or its zip has no example/prometheus-operator-crd"
  for c in "${crds[@]}"; do
    install -m 0644 "$operator_dir/example/prometheus-operator-crd/$c" "$crds_tmp/" || fail "copy CRDs" "cannot copy $c of $operator"
  done
  rm -rf "$crds_dir" && mv "$crds_tmp" "$crds_dir" || fail "copy CRDs" "cannot move $crds_tmp to $crds_dir"
  crds_present || fail "copy CRDs" "$crds_dir lacks one of: ${crds[*]}"
fi
ln -sfn "$crds_dir" "$bin/monitoring-crds" || fail "link CRDs" "cannot link $crds_dir into $bin"

"$bin/prometheus" --version >&2 || fail "check prometheus" "the built binary does not run ($bin/prometheus --version failed)"
"$bin/promtool" --version >&2 || fail "check promtool" "the built binary does not run ($bin/promtool --version failed)"
echo "$bin"
