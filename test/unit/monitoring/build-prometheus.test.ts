// test/monitoring/build-prometheus.sh run twice at once against one empty cache, as two clones' test runs
// would: one builds, the other waits, both print the same directory; a warm cache builds nothing; a failed
// build says where it failed. `go` is a stand-in on PATH that records each build and writes a small
// executable, so this takes seconds and builds nothing real.

import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { runScript, type ScriptRun } from '../../support/scripts.ts';

const SCRIPT = path.resolve(import.meta.dirname, '..', '..', 'monitoring', 'build-prometheus.sh');

const FAKE_GO = `#!/bin/bash
# Stand-in for go: "env GOVERSION", "mod download -json MODULE" and "build ... -o OUT PKG" only. The module
# asked for by name (the Prometheus Operator, for its CRDs) is a directory holding the files the script copies.
case "$1" in
  env) echo go1.99.0-stand-in ;;
  mod)
    dir="$FAKE_GO_MODULES/$(echo "$4" | tr '/@' '__')"
    mkdir -p "$dir/example/prometheus-operator-crd"
    for crd in servicemonitors podmonitors prometheusrules probes; do
      echo "kind: CustomResourceDefinition" > "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml"
    done
    printf '{\\n\\t"Path": "%s",\\n\\t"Dir": "%s",\\n}\\n' "$4" "$dir" ;;
  build)
    args="$*"; out=""; pkg=""
    while [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then out=$2; shift; fi; pkg=$1; shift; done
    echo "built $(basename "$out" | cut -d. -f1) from $pkg: go $args" >> "$FAKE_GO_LOG"
    [ -n "$FAKE_GO_FAIL" ] && { echo "compile error in $pkg" >&2; exit 1; }
    sleep 0.3
    printf '#!/bin/sh\\necho stand-in 1.0\\n' > "$out"
    chmod +x "$out" ;;
  *) echo "unexpected: go $*" >&2; exit 2 ;;
esac
`;

function runBuild(env: NodeJS.ProcessEnv): Promise<ScriptRun> {
  return runScript(SCRIPT, env);
}

function fakeGo(dir: string, extra: NodeJS.ProcessEnv = {}): { env: NodeJS.ProcessEnv; log: string } {
  const log = path.join(dir, 'go.log');
  writeFileSync(log, '');
  writeFileSync(path.join(dir, 'go'), FAKE_GO);
  chmodSync(path.join(dir, 'go'), 0o755);
  return { log, env: { ...process.env, PATH: `${dir}:${process.env['PATH'] ?? ''}`, MONITORING_CACHE: path.join(dir, 'cache'), FAKE_GO_LOG: log, FAKE_GO_MODULES: path.join(dir, 'modules'), ...extra } };
}

test('two builds started together against an empty cache: both succeed, each binary is built once, the CRDs copied', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'config-checksum-prometheus-build-'));
  try {
    const { env, log } = fakeGo(dir);
    const [first, second] = await Promise.all([runBuild(env), runBuild(env)]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(second.code, 0, second.stderr);
    const printed = [first, second].map((run) => run.stdout.trim().split('\n').at(-1) ?? '');
    assert.equal(printed[0], printed[1], 'both print the same binary directory');
    assert.match(printed[0]!, /\/cache\/prometheus-v\d+\.\d+\.\d+-go1\.99\.0-stand-in$/, 'keyed by the pinned Prometheus and the Go version');
    const builds = readFileSync(log, 'utf8').trim().split('\n');
    t.diagnostic(builds.join('; '));
    assert.deepEqual(builds.map((line) => line.split(' from ')[0]), ['built prometheus', 'built promtool'], 'prometheus and promtool, once each');
    for (const line of builds) {
      assert.match(line, / from github\.com\/prometheus\/prometheus\/cmd\/(prometheus|promtool): go build -trimpath -tags remove_all_sd /, 'every service discovery but static, file and HTTP left out');
      assert.match(line, /-X github\.com\/prometheus\/common\/version\.Version=\d+\.\d+\.\d+/, 'the version --version prints');
    }
    assert.ok([first, second].some((run) => run.stderr.includes('another prometheus build holds')), 'one of them waited for the other');
    assert.deepEqual(readdirSync(path.join(printed[0]!, 'monitoring-crds')).sort(), [
      'monitoring.coreos.com_podmonitors.yaml',
      'monitoring.coreos.com_prometheusrules.yaml',
      'monitoring.coreos.com_servicemonitors.yaml',
    ]);

    const warm = await runBuild(env);
    assert.equal(warm.code, 0);
    assert.equal(warm.stdout.trim(), printed[0], 'a warm cache prints the directory and nothing else');
    assert.equal(readFileSync(log, 'utf8').trim().split('\n').length, 2, 'and builds nothing');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a build that fails says which step, shows the compiler\'s output, and leaves no binary behind', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'config-checksum-prometheus-build-'));
  try {
    const { env } = fakeGo(dir, { FAKE_GO_FAIL: '1' });
    const failed = await runBuild(env);
    assert.notEqual(failed.code, 0);
    assert.match(failed.stderr, /prometheus build FAILED at step 'build prometheus': go build github\.com\/prometheus\/prometheus\/cmd\/prometheus failed \(full log: /);
    assert.match(failed.stderr, /compile error in github\.com\/prometheus\/prometheus\/cmd\/prometheus/);
    assert.equal(failed.stdout, '', 'no directory printed');
    const cache = path.join(dir, 'cache');
    const binDir = readdirSync(cache).find((entry) => entry.startsWith('prometheus-v'));
    assert.ok(binDir);
    assert.ok(!existsSync(path.join(cache, binDir, 'prometheus')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without go on PATH it fails at once and says so', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'config-checksum-prometheus-build-'));
  try {
    const withoutGo = (process.env['PATH'] ?? '').split(':').filter((entry) => entry !== '' && !existsSync(path.join(entry, 'go'))).join(':');
    const failed = await runBuild({ ...process.env, PATH: withoutGo, MONITORING_CACHE: path.join(dir, 'cache') });
    assert.notEqual(failed.code, 0);
    assert.match(failed.stderr, /prometheus build FAILED at step 'find go': no 'go' on PATH/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
