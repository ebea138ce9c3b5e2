#!/usr/bin/env bash
# Builds the real control plane used by the e2e tests and the local run: etcd, kube-apiserver,
# kube-controller-manager and kubectl, plus the clients helm (Helm 3), helm4 (Helm 4, server-side apply by
# default) and helmfile, and Flux's kustomize-controller with the CustomResourceDefinitions it needs
# (its own Kustomization and source-controller's source kinds, copied from the two modules' config/crd/bases),
# from the Go module proxy at the versions pinned in src/local/go/*/go.mod.
# Binaries go to a cache outside the repository, keyed by versions (the clients in directories of their
# own, linked into the control plane's, so that pinning a new helm never rebuilds kube-apiserver), and a
# warm cache makes this a no-op. Safe to run from two clones at once: one build holds a lock on the cache
# while the other waits, and every build writes its own temporary files.
# Prints the control-plane directory (which holds all eight, and flux-crds: a link to the directory of
# Flux CRDs) on its last line of stdout.
#
# Why wrapper modules: k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them
# with local paths, which a dependent module cannot see; the wrapper replaces each with v0.Y.Z.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
k8s_mod="$here/go/kubernetes"
etcd_mod="$here/go/etcd"
helm_mod="$here/go/helm"
helm4_mod="$here/go/helm4"
helmfile_mod="$here/go/helmfile"
kustomize_controller_mod="$here/go/kustomize-controller"

fail() { echo "control-plane build FAILED at step '$1': $2" >&2; exit 1; }

command -v go >/dev/null || fail "find go" "no 'go' on PATH; install Go >= 1.26 (the Kubernetes version pinned here needs it)"

# The version a module requires, from go.mod (either "require m v" or a line inside a require block).
required_version() { awk -v m="$1" '($1 == m || ($1 == "require" && $2 == m)) { print ($1 == m ? $2 : $3); exit }' "$2"; }
k8s_version=$(required_version k8s.io/kubernetes "$k8s_mod/go.mod")
etcd_version=$(required_version go.etcd.io/etcd/server/v3 "$etcd_mod/go.mod")
[ -n "$k8s_version" ] || fail "read versions" "$k8s_mod/go.mod does not require k8s.io/kubernetes"
[ -n "$etcd_version" ] || fail "read versions" "$etcd_mod/go.mod does not require go.etcd.io/etcd/server/v3"
helm_version=$(required_version helm.sh/helm/v3 "$helm_mod/go.mod")
helm4_version=$(required_version helm.sh/helm/v4 "$helm4_mod/go.mod")
helmfile_version=$(required_version github.com/helmfile/helmfile "$helmfile_mod/go.mod")
[ -n "$helm_version" ] || fail "read versions" "$helm_mod/go.mod does not require helm.sh/helm/v3"
[ -n "$helm4_version" ] || fail "read versions" "$helm4_mod/go.mod does not require helm.sh/helm/v4"
[ -n "$helmfile_version" ] || fail "read versions" "$helmfile_mod/go.mod does not require github.com/helmfile/helmfile"
kustomize_controller_version=$(required_version github.com/fluxcd/kustomize-controller "$kustomize_controller_mod/go.mod")
# The source CRDs come from source-controller at the version of the API kustomize-controller is built against.
source_controller_version=$(required_version github.com/fluxcd/source-controller/api "$kustomize_controller_mod/go.mod")
[ -n "$kustomize_controller_version" ] || fail "read versions" "$kustomize_controller_mod/go.mod does not require github.com/fluxcd/kustomize-controller"
[ -n "$source_controller_version" ] || fail "read versions" "$kustomize_controller_mod/go.mod does not require github.com/fluxcd/source-controller/api"
go_version=$(go env GOVERSION)

cache_root=${CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/config-checksum-webhook}
bin="$cache_root/k8s-$k8s_version-etcd-$etcd_version-$go_version"
clients="$cache_root/helm-$helm_version-helmfile-$helmfile_version-$go_version"
helm4_dir="$cache_root/helm-$helm4_version-$go_version"
flux_dir="$cache_root/kustomize-controller-$kustomize_controller_version-$go_version"
binaries=(etcd kube-apiserver kube-controller-manager kubectl helm helm4 helmfile kustomize-controller)
flux_crds=(kustomize.toolkit.fluxcd.io_kustomizations.yaml source.toolkit.fluxcd.io_externalartifacts.yaml
  source.toolkit.fluxcd.io_gitrepositories.yaml source.toolkit.fluxcd.io_ocirepositories.yaml source.toolkit.fluxcd.io_buckets.yaml)

all_present() {
  for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
  for c in "${flux_crds[@]}"; do [ -f "$bin/flux-crds/$c" ] || return 1; done
}
if all_present; then echo "$bin"; exit 0; fi

mkdir -p "$bin" "$clients" "$helm4_dir" "$flux_dir" || fail "create cache" "cannot create $bin, $clients, $helm4_dir and $flux_dir"
# One build at a time per cache: a second run (another clone, another test command) waits here, then
# finds the binaries the first one built.
command -v flock >/dev/null || fail "lock cache" "flock (util-linux) is not installed"
exec 9>"$cache_root/.build.lock"
if ! flock -n 9; then
  echo "another control-plane build holds $cache_root/.build.lock; waiting for it" >&2
  flock 9 || fail "lock cache" "cannot lock $cache_root/.build.lock"
fi
if all_present; then echo "$bin"; exit 0; fi
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
minor=$(echo "$k8s_version" | cut -d. -f2)
version_flags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  version_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build() { # output dir, name, module dir, package, extra flags...
  local out=$1 name=$2 dir=$3 pkg=$4; shift 4
  [ -x "$out/$name" ] && return 0
  echo "building $name ($pkg) ..." >&2
  # Temporary output and log of this build only, renamed into place when complete.
  local started=$SECONDS log="$out/$name.build.$$.log" tmp="$out/$name.tmp.$$"
  if ! (cd "$dir" && go build -trimpath "$@" -o "$tmp" "$pkg") >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$tmp"
    fail "build $name" "go build $pkg failed (full log: $log)"
  fi
  mv "$tmp" "$out/$name"
  mv "$log" "$out/$name.build.log"
  echo "built $name in $((SECONDS - started)) s" >&2
}

(cd "$etcd_mod" && go mod download) >&2 || fail "download etcd modules" "the Go module proxy did not serve the modules in $etcd_mod/go.sum"
(cd "$k8s_mod" && go mod download) >&2 || fail "download kubernetes modules" "the Go module proxy did not serve the modules in $k8s_mod/go.sum"
(cd "$helm_mod" && go mod download) >&2 || fail "download helm modules" "the Go module proxy did not serve the modules in $helm_mod/go.sum"
(cd "$helm4_mod" && go mod download) >&2 || fail "download helm4 modules" "the Go module proxy did not serve the modules in $helm4_mod/go.sum"
(cd "$helmfile_mod" && go mod download) >&2 || fail "download helmfile modules" "the Go module proxy did not serve the modules in $helmfile_mod/go.sum"
(cd "$kustomize_controller_mod" && go mod download) >&2 || fail "download kustomize-controller modules" "the Go module proxy did not serve the modules in $kustomize_controller_mod/go.sum"

build "$bin" etcd "$etcd_mod" go.etcd.io/etcd/server/v3
build "$bin" kube-apiserver "$k8s_mod" k8s.io/kubernetes/cmd/kube-apiserver -tags selinux,notest -ldflags "$version_flags"
build "$bin" kube-controller-manager "$k8s_mod" k8s.io/kubernetes/cmd/kube-controller-manager -tags selinux,notest -ldflags "$version_flags"
build "$bin" kubectl "$k8s_mod" k8s.io/kubernetes/cmd/kubectl -ldflags "$version_flags"
build "$clients" helm "$helm_mod" helm.sh/helm/v3/cmd/helm -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
build "$helm4_dir" helm "$helm4_mod" helm.sh/helm/v4/cmd/helm -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$helm4_version"
build "$clients" helmfile "$helmfile_mod" github.com/helmfile/helmfile -ldflags "-s -w -X go.szostok.io/version.version=$helmfile_version"
build "$flux_dir" kustomize-controller "$kustomize_controller_mod" github.com/fluxcd/kustomize-controller -ldflags "-s -w"
flux_crds_present() { for c in "${flux_crds[@]}"; do [ -f "$flux_dir/crds/$c" ] || return 1; done; }
if ! flux_crds_present; then
  # The CRDs as the two modules ship them (Flux installs the same files), copied from the module cache
  # into a temporary directory renamed into place when complete.
  crds_tmp="$flux_dir/crds.tmp.$$"
  rm -rf "$crds_tmp" && mkdir -p "$crds_tmp" || fail "copy Flux CRDs" "cannot create $crds_tmp"
  for mod in "github.com/fluxcd/kustomize-controller@$kustomize_controller_version" "github.com/fluxcd/source-controller@$source_controller_version"; do
    # Outside any module, so that the download never touches a go.mod or go.sum.
    mod_dir=$(cd "$flux_dir" && GOFLAGS= GO111MODULE=on go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -d "$mod_dir/config/crd/bases" ] || fail "download $mod" "the Go module proxy did not serve $mod, or its zip has no config/crd/bases"
    install -m 0644 "$mod_dir"/config/crd/bases/*.yaml "$crds_tmp/" || fail "copy Flux CRDs" "cannot copy the CRDs of $mod"
  done
  rm -rf "$flux_dir/crds" && mv "$crds_tmp" "$flux_dir/crds" || fail "copy Flux CRDs" "cannot move $crds_tmp to $flux_dir/crds"
  flux_crds_present || fail "copy Flux CRDs" "$flux_dir/crds lacks one of: ${flux_crds[*]}"
fi
ln -sf "$clients/helm" "$bin/helm" && ln -sf "$helm4_dir/helm" "$bin/helm4" && ln -sf "$clients/helmfile" "$bin/helmfile" \
  && ln -sf "$flux_dir/kustomize-controller" "$bin/kustomize-controller" && ln -sfn "$flux_dir/crds" "$bin/flux-crds" \
  || fail "link clients" "cannot link helm, helm4, helmfile, kustomize-controller and flux-crds into $bin"

"$bin/kube-apiserver" --version >&2 || fail "check kube-apiserver" "the built binary does not run"
"$bin/etcd" --version >&2 || fail "check etcd" "the built binary does not run"
"$bin/helm" version --short >&2 || fail "check helm" "the built binary does not run"
"$bin/helm4" version --short >&2 || fail "check helm4" "the built binary does not run"
"$bin/helmfile" --version >&2 || fail "check helmfile" "the built binary does not run"
# kustomize-controller has no version flag: its help must print and exit 0.
"$bin/kustomize-controller" -h >/dev/null 2>&1 || fail "check kustomize-controller" "the built binary does not run ($bin/kustomize-controller -h failed)"
echo "$bin"
