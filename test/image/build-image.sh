#!/usr/bin/env bash
# Builds the project's image from its Dockerfile, unchanged, with buildah (no Docker daemon, no registry
# to pull base images from), and prints the image name on its last line of stdout:
#
#   test/image/build-image.sh          ->  localhost/config-checksum-webhook:<version>-<content hash>
#
# THE BASE IMAGES ARE LOCAL STAND-INS, NOT THE UPSTREAM node:24-bookworm AND node:24-bookworm-slim.
# The Dockerfile's FROM lines name the official Node images; this script makes local images of those
# names (localhost/node:24-bookworm, localhost/node:24-bookworm-slim) and builds with --pull=never:
#   - a Debian root filesystem made with debootstrap from the Debian mirror this machine's apt uses:
#     the base system (debootstrap's default variant) for the build stage, and for the run stage a slim
#     one (minbase, without documentation, manual pages and locales, as Debian's slim images);
#   - the Node binary of the project's own `node` package (the one every npm script runs), so the Node
#     version is exactly the project's;
#   - the npm release that this Node version bundles (read from that release's changelog), from the npm
#     registry, in /usr/local as the upstream images have it;
#   - the user and group `node` (uid and gid 1000); like the upstream images they run as root by default.
# Everything else (package set, Yarn, corepack, the upstream entrypoint script) differs from upstream.
# The images carry a label saying so (config-checksum-webhook.stand-in), which the built image inherits.
#
# Cache: ${CONFIG_CHECKSUM_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/config-checksum-webhook/images}
# holds the lock, the downloaded Debian packages and the npm tarball. The images themselves live in the
# default containers storage (/var/lib/containers/storage for root), so that plain `podman run <image>`
# finds the result with no extra flags, and containers/storage's own locking lets builds and runs share
# it. Base images are keyed by Debian suite (debian-<suite>, debian-<suite>-slim) and by Node version and
# binary (node-<version>-<suite>[-slim]) and are made only when missing; the project image is tagged
# with a hash of everything the Dockerfile copies plus the base images, and is built only when that tag
# does not exist yet (FORCE_BUILD=1 builds anyway). Two clones running this at once are safe: one holds
# a lock on the cache while the other waits, and every build works in temporary names of its own.
#
# Needs root (debootstrap, the default storage) and buildah, podman and debootstrap:
#   DEBIAN_FRONTEND=noninteractive apt-get install -y buildah podman debootstrap
# Exit status 3 means this machine cannot build images (one of them missing, or not root); anything
# else non-zero is a failed build.
#
# Settings (environment): DEBIAN_MIRROR (default: the first Debian mirror in /etc/apt/sources*),
# NPM_VERSION (default: the npm bundled with the Node version), SOURCE_URL (the label
# org.opencontainers.image.source; default: the git remote "origin", as https), IMAGE_REPOSITORY
# (default localhost/config-checksum-webhook), FORCE_BUILD=1.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
say() { echo "[image] $*" >&2; }
fail() { echo "[image] FAILED at step '$1': $2" >&2; exit "${3:-1}"; }

# ---------------------------------------------------------------------------------------------------
# What this needs, checked before anything is written.

missing=()
for tool in buildah podman debootstrap flock tar sha256sum; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  fail "check tools" "not installed: ${missing[*]}. Install them (as root, Debian/Ubuntu): DEBIAN_FRONTEND=noninteractive apt-get install -y buildah podman debootstrap" 3
fi
[ "$(id -u)" = 0 ] || fail "check user" "run as root: debootstrap needs it, and the image goes to the root containers storage that the e2e run uses" 3
export BUILDAH_ISOLATION=chroot

node_bin=$(readlink -f "$root/node_modules/.bin/node" 2>/dev/null || true)
[ -n "$node_bin" ] && [ "$(head -c 4 "$node_bin" 2>/dev/null | tr -d '\0' | tail -c 3)" = ELF ] ||
  fail "find Node" "no Node binary at $root/node_modules/.bin/node (the project's \`node\` package); run npm ci first"
node_version=$("$node_bin" --version) || fail "find Node" "$node_bin does not run"
node_version=${node_version#v}
node_major=${node_version%%.*}
node_platform=$("$node_bin" -p 'process.platform + "-" + process.arch')
node_sha=$(sha256sum "$node_bin" | cut -c1-16)

# The two bases as the Dockerfile names them: node:<major>-<suite> (build stage) and node:<major>-<suite>-slim.
mapfile -t bases < <(awk '$1 == "FROM" { print $2 }' "$root/Dockerfile")
[ ${#bases[@]} = 2 ] || fail "read Dockerfile" "expected two FROM lines (build and run stage), found ${#bases[@]}"
full_base=${bases[0]}
slim_base=${bases[1]}
[[ $full_base =~ ^node:([0-9]+)-([a-z]+)$ ]] || fail "read Dockerfile" "the build stage's base $full_base is not node:<major>-<suite>"
base_major=${BASH_REMATCH[1]}
suite=${BASH_REMATCH[2]}
[ "$slim_base" = "$full_base-slim" ] || fail "read Dockerfile" "the run stage's base is $slim_base, expected $full_base-slim"
[ "$base_major" = "$node_major" ] ||
  fail "read Dockerfile" "the Dockerfile builds on Node $base_major, the project's Node is $node_version: a stand-in would not be one"

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # The mirror apt uses here, deb822 (URIs:) or one-line (deb URL suite ...) format; not the security archive.
  mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "URIs:" { print $2 } $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; break } }' |
    grep -v -- '-security' | grep -m1 '/debian/\?$' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

cache=${CONFIG_CHECKSUM_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/config-checksum-webhook/images}
mkdir -p "$cache" || fail "create cache" "cannot create $cache"
exec 9>"$cache/.lock"
if ! flock -n 9; then
  say "another image build holds $cache/.lock; waiting for it"
  flock 9 || fail "lock cache" "cannot lock $cache/.lock"
fi

# What a build that was killed left behind (no other build runs while this one holds the lock).
rm -rf "$cache"/tmp.*
buildah containers --format '{{.ContainerName}}' 2>/dev/null | grep '^config-checksum-image-build-' | xargs -r buildah rm >/dev/null 2>&1 || true
work=$(mktemp -d "$cache/tmp.XXXXXX")
containers=()
cleanup() {
  for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

say "STAND-IN BASES: $full_base and $slim_base are built here from Debian $suite (debootstrap, $mirror) and the"
say "project's own Node $node_version; they are NOT the upstream Node images (only the Node version is the same)."

image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }
image_label() { buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }
timed() { local started=$SECONDS; "$@"; say "  ($((SECONDS - started)) s)"; }

# ---------------------------------------------------------------------------------------------------
# Debian root filesystems, one image each: <repo>-base:debian-<suite> and debian-<suite>-slim.

base_repo=localhost/config-checksum-webhook-base
stand_in_label=config-checksum-webhook.stand-in

debian_image() { # $1: full | slim
  local variant=$1 name="$base_repo:debian-$suite" rootfs="$work/rootfs-$1" args=()
  [ "$variant" = slim ] && name="$name-slim"
  if image_exists "$name"; then say "$name: present"; return; fi
  say "$name: debootstrap $suite ($variant) from $mirror"
  mkdir -p "$cache/debs-$suite"
  if [ "$variant" = slim ]; then args=(--variant=minbase); else args=(--include=ca-certificates); fi
  debootstrap "${args[@]}" --cache-dir="$cache/debs-$suite" "$suite" "$rootfs" "$mirror" >"$work/debootstrap-$variant.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap-$variant.log" >&2; fail "debootstrap $suite" "see the lines above (mirror $mirror; set DEBIAN_MIRROR to use another)"; }
  if [ "$variant" = slim ]; then
    # As Debian's slim images: dpkg keeps documentation, manual pages and locales out from now on, and
    # what the bootstrap installed of them goes (copyright files stay).
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{man,groff,info,lintian}/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  fi
  # What a container image does not carry: package caches and lists, this host's name and resolver.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
    "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf"
  tar -C "$rootfs" --numeric-owner --xattrs --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' \
    -cf "$work/rootfs-$variant.tar" . || fail "pack $name" "tar of $rootfs failed"
  local ctr
  ctr=$(buildah from --name "config-checksum-image-build-debian-$variant-$$" scratch) || fail "make $name" "buildah from scratch failed"
  containers+=("$ctr")
  buildah add --quiet "$ctr" "$work/rootfs-$variant.tar" / >/dev/null || fail "make $name" "buildah add of the root filesystem failed"
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
    --label "$stand_in_label=Debian $suite ($variant) made with debootstrap from $mirror; not an upstream image" "$ctr"
  buildah commit --quiet --rm "$ctr" "$name" >/dev/null || fail "make $name" "buildah commit failed"
  rm -rf "$rootfs" "$work/rootfs-$variant.tar"
}

# ---------------------------------------------------------------------------------------------------
# npm: the release this Node version bundles, read from the changelog in the Node release's npm package
# (node-<platform>, what the `node` package installs), newest entry at or below this version.

npm_version=${NPM_VERSION:-}
if [ -z "$npm_version" ] && [ -s "$cache/npm-version-of-node-$node_version" ]; then npm_version=$(cat "$cache/npm-version-of-node-$node_version"); fi
if [ -z "$npm_version" ]; then
  say "finding the npm version Node $node_version bundles (changelog of node-$node_platform@$node_version from the npm registry)"
  (cd "$work" && npm pack --silent "node-$node_platform@$node_version" >/dev/null) ||
    fail "find npm version" "npm pack node-$node_platform@$node_version failed; set NPM_VERSION to the npm version Node $node_version bundles"
  tar -xzf "$work/node-$node_platform-$node_version.tgz" -C "$work" package/CHANGELOG.md ||
    fail "find npm version" "no CHANGELOG.md in node-$node_platform@$node_version; set NPM_VERSION"
  npm_version=$(awk -v anchor="<a id=\"$node_version\"></a>" '
    index($0, anchor) { on = 1 }
    on && match($0, /(upgrade|update) npm to [0-9]+\.[0-9]+\.[0-9]+/) { found = substr($0, RSTART, RLENGTH); sub(/.* to /, "", found); print found; exit }
  ' "$work/package/CHANGELOG.md")
  rm -rf "$work/package" "$work/node-$node_platform-$node_version.tgz"
  [ -n "$npm_version" ] || fail "find npm version" "the changelog of Node $node_version names no npm upgrade at or below it; set NPM_VERSION"
  echo "$npm_version" >"$cache/npm-version-of-node-$node_version"
fi
npm_tarball="$cache/npm-$npm_version.tgz"
if [ ! -s "$npm_tarball" ]; then
  (cd "$work" && npm pack --silent "npm@$npm_version" >/dev/null) || fail "download npm" "npm pack npm@$npm_version failed"
  mv "$work/npm-$npm_version.tgz" "$npm_tarball"
fi

# ---------------------------------------------------------------------------------------------------
# Node on each Debian image: <repo>-base:node-<version>-<suite>[-slim], the key label naming the Node
# binary's hash and the npm version.

node_image() { # $1: full | slim
  local variant=$1 from="$base_repo:debian-$suite" name="$base_repo:node-$node_version-$suite"
  [ "$variant" = slim ] && from="$from-slim" && name="$name-slim"
  local key="node $node_version (sha256 $node_sha...), npm $npm_version, on $from"
  if image_exists "$name" && [ "$(image_label "$name" "$stand_in_label.node")" = "$key" ]; then say "$name: present"; return; fi
  say "$name: Node $node_version and npm $npm_version on $from"
  local staging="$work/node-$variant"
  mkdir -p "$staging/usr/local/bin" "$staging/usr/local/lib/node_modules/npm"
  cp "$node_bin" "$staging/usr/local/bin/node"
  tar -xzf "$npm_tarball" -C "$staging/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$staging/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$staging/usr/local/bin/npx"
  tar -C "$staging" --owner=0 --group=0 --numeric-owner -cf "$work/node-$variant.tar" usr
  local ctr
  ctr=$(buildah from --pull=never --name "config-checksum-image-build-node-$variant-$$" "$from") || fail "make $name" "buildah from $from failed"
  containers+=("$ctr")
  buildah add --quiet "$ctr" "$work/node-$variant.tar" / >/dev/null || fail "make $name" "buildah add of Node failed"
  buildah run --isolation chroot "$ctr" -- sh -ec '
    groupadd --gid 1000 node
    useradd --uid 1000 --gid node --shell /bin/bash --create-home node
    echo "node $(node --version), npm $(npm --version)"' >&2 || fail "make $name" "adding the user node or running node/npm in the image failed"
  buildah config --env "NODE_VERSION=$node_version" --cmd '["node"]' \
    --label "$stand_in_label=node $node_version from the project's node package and npm $npm_version on $from; not the upstream node image" \
    --label "$stand_in_label.node=$key" "$ctr"
  buildah commit --quiet --rm "$ctr" "$name" >/dev/null || fail "make $name" "buildah commit failed"
  rm -rf "$staging" "$work/node-$variant.tar"
}

started=$SECONDS
timed debian_image full
timed debian_image slim
timed node_image full
timed node_image slim
# The names the Dockerfile asks for. Re-pointed under the lock, so a clone with another Node version
# cannot change them in the middle of this build.
buildah tag "$base_repo:node-$node_version-$suite" "localhost/$full_base"
buildah tag "$base_repo:node-$node_version-$suite-slim" "localhost/$slim_base"
say "bases ready in $((SECONDS - started)) s: localhost/$full_base, localhost/$slim_base (stand-ins, Node $node_version, npm $npm_version)"

# ---------------------------------------------------------------------------------------------------
# The project image, tagged <version>-<hash of the build inputs and the two bases>.

version=$("$node_bin" -p "require(process.argv[1]).version" "$root/package.json")
inputs_hash=$(
  cd "$root"
  {
    find Dockerfile .dockerignore package.json package-lock.json src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    for base in "localhost/$full_base" "localhost/$slim_base"; do buildah inspect --type image --format '{{.FromImageID}}' "$base"; done
  } | sha256sum | cut -c1-12
)
repository=${IMAGE_REPOSITORY:-localhost/config-checksum-webhook}
image="$repository:$version-$inputs_hash"

if image_exists "$image" && [ "${FORCE_BUILD:-}" != 1 ]; then
  say "$image: present (same Dockerfile, sources, lockfile and bases)"
else
  source_url=${SOURCE_URL:-}
  if [ -z "$source_url" ]; then
    source_url=$(git -C "$root" remote get-url origin 2>/dev/null | sed -E 's#^git@([^:]+):#https://\1/#; s#\.git$##' || true)
  fi
  [ -n "$source_url" ] || say "no SOURCE_URL and no git remote \"origin\": the label org.opencontainers.image.source is empty"
  revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
  [ -z "$(git -C "$root" status --porcelain -- Dockerfile package.json package-lock.json src 2>/dev/null)" ] || revision="$revision-modified"
  # The build stage's `npm ci` trusts what this machine's npm trusts (its cafile, or Node's roots plus
  # NODE_EXTRA_CA_CERTS), e.g. the CA of a TLS-inspecting proxy: a global npmrc and the CA file are bind
  # mounted for RUN steps only, so neither is in any layer and the Dockerfile stays as it is.
  trust=()
  host_cafile=$(npm config get cafile 2>/dev/null || true)
  if [ -n "$host_cafile" ] && [ "$host_cafile" != null ] && [ "$host_cafile" != undefined ] && [ -r "$host_cafile" ]; then
    cp "$host_cafile" "$work/build-ca.crt"
  elif [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r "$NODE_EXTRA_CA_CERTS" ]; then
    { "$node_bin" -p 'require("node:tls").rootCertificates.join("\n")'; cat "$NODE_EXTRA_CA_CERTS"; } >"$work/build-ca.crt"
  fi
  if [ -s "$work/build-ca.crt" ]; then
    echo "cafile=/usr/local/etc/build-ca.crt" >"$work/build-npmrc"
    trust=(--volume "$work/build-ca.crt:/usr/local/etc/build-ca.crt:ro" --volume "$work/build-npmrc:/usr/local/etc/npmrc:ro")
    say "the build stage's npm trusts this machine's CA file for the registry (mounted, not in the image)"
  fi
  say "building $image from $root/Dockerfile (buildah bud --pull=never --layers)"
  build_started=$SECONDS
  buildah bud --pull=never --layers --force-rm --isolation chroot --file "$root/Dockerfile" --tag "$image" --tag "$repository:$version" \
    ${source_url:+--build-arg "SOURCE_URL=$source_url"} "${trust[@]}" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "$root" >&2 || fail "build $image" "buildah bud failed (output above)"
  say "built $image in $((SECONDS - build_started)) s"
  # Older builds of this version from earlier sources: keep the three newest, drop the rest (an image a
  # container still uses is refused and stays).
  buildah images --noheading --format '{{.Name}}:{{.Tag}} {{.CreatedAtRaw}}' |
    awk -v prefix="$repository:$version-" 'index($1, prefix) == 1' | sort -b -k2 -r | tail -n +4 | awk '{ print $1 }' |
    while read -r old; do buildah rmi "$old" >/dev/null 2>&1 && say "removed the older build $old" || true; done
fi

size=$(podman image inspect --format '{{.Size}}' "$image")
say "$image: $((size / 1024 / 1024)) MiB (on the stand-in $slim_base, not the upstream image: an upstream-based build differs in size)"
echo "$image"
