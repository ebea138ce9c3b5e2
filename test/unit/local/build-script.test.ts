// The control-plane build script (src/local/build-control-plane.sh) run twice at once against one empty
// cache, as two clones' `npm test` would: one builds, the other waits for it, and both end with the same
// binaries. `go` is a stand-in on PATH that records each build and writes a small executable, so this
// takes seconds and builds nothing real.

import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { runScript, type ScriptRun } from '../../support/scripts.ts';
import { BUILD_SCRIPT } from '../../../src/local/binaries.ts';

const FAKE_GO = `#!/bin/bash
# Stand-in for go: "env GOVERSION", "mod download [-json MODULE]" and "build ... -o OUT PKG" only. A module
# asked for by name (the Flux CRDs' sources) is a directory holding the CRD files the script copies.
case "$1" in
  env) echo go1.99.0-stand-in ;;
  mod)
    [ "$3" = "-json" ] || exit 0
    dir="$FAKE_GO_MODULES/$(echo "$4" | tr '/@' '__')"
    mkdir -p "$dir/config/crd/bases"
    for crd in kustomize.toolkit.fluxcd.io_kustomizations source.toolkit.fluxcd.io_externalartifacts source.toolkit.fluxcd.io_gitrepositories source.toolkit.fluxcd.io_ocirepositories source.toolkit.fluxcd.io_buckets; do
      echo "kind: CustomResourceDefinition" > "$dir/config/crd/bases/$crd.yaml"
    done
    printf '{\n\t"Path": "%s",\n\t"Dir": "%s",\n}\n' "$4" "$dir" ;;
  build)
    out=""
    while [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then out=$2; shift; fi; shift; done
    echo "built $out" >> "$FAKE_GO_LOG"
    sleep 0.3
    printf '#!/bin/sh\\necho stand-in 1.0\\n' > "$out"
    chmod +x "$out" ;;
  *) echo "unexpected: go $*" >&2; exit 2 ;;
esac
`;

function runBuild(env: NodeJS.ProcessEnv): Promise<ScriptRun> {
  return runScript(BUILD_SCRIPT, env);
}

test('two builds started together against an empty cache: both succeed, each binary is built once', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'config-checksum-build-'));
  try {
    const log = path.join(dir, 'go.log');
    writeFileSync(log, '');
    writeFileSync(path.join(dir, 'go'), FAKE_GO);
    chmodSync(path.join(dir, 'go'), 0o755);
    const env = { ...process.env, PATH: `${dir}:${process.env['PATH'] ?? ''}`, CONTROL_PLANE_CACHE: path.join(dir, 'cache'), FAKE_GO_LOG: log, FAKE_GO_MODULES: path.join(dir, 'modules') };

    const [first, second] = await Promise.all([runBuild(env), runBuild(env)]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(second.code, 0, second.stderr);
    const printed = [first, second].map((run) => run.stdout.trim().split('\n').at(-1));
    assert.equal(printed[0], printed[1], 'both print the same binary directory');
    const builds = readFileSync(log, 'utf8').trim().split('\n');
    t.diagnostic(builds.join('; '));
    assert.equal(builds.length, 8, 'etcd, kube-apiserver, kube-controller-manager, kubectl, helm, helm4, helmfile and kustomize-controller, once each');
    assert.ok([first, second].some((run) => run.stderr.includes('another control-plane build holds')), 'one of them waited for the other');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
