// The image built from the Dockerfile (test/image/build-image.sh; named by E2E_WEBHOOK_IMAGE), as a
// registry or a cluster would get it: its configuration is the Dockerfile's (user 1000:1000, WORKDIR,
// ENV, ENTRYPOINT, the OCI labels), its run stage holds the bundle and the licences of every package in
// it and nothing else of the project (no node_modules, no dev dependency), and its size is reported.
// Runs in npm test's container-mode invocation only, beside the installation and admission suites
// that run the webhook as this image (test/run.ts). Built on local stand-ins for the Node base images,
// so its size is not the size of an image built on the upstream ones.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { IMAGE_ENV, prepareContainerRuntime, shellInImage, type ContainerRuntime } from '../../src/local/container.ts';
import { readImageRecipe } from '../../src/local/image.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const image = process.env[IMAGE_ENV];
if (!image) throw new Error(`${IMAGE_ENV} is not set: test/run.ts runs this file with the image test/image/build-image.sh built`);
const runtime: ContainerRuntime = prepareContainerRuntime(image, undefined);
const recipe = readImageRecipe();
const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  license: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };

interface ImageConfig {
  User?: string;
  WorkingDir?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[] | null;
  Labels?: Record<string, string>;
}

function inspect(): { config: ImageConfig; size: number } {
  const result = spawnSync('podman', ['image', 'inspect', '--format', '{{json .Config}}\t{{.Size}}', runtime.image], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  const [config, size] = result.stdout.trim().split('\t');
  return { config: JSON.parse(config ?? '{}') as ImageConfig, size: Number(size) };
}

function sh(script: string): string {
  const result = shellInImage(runtime, script);
  assert.equal(result.code, 0, `in the image: ${script}\n${result.stderr}`);
  return result.stdout;
}

test('the image configuration is the Dockerfile\'s run stage: user 1000:1000, WORKDIR, ENV, ENTRYPOINT, no CMD', () => {
  const { config } = inspect();
  assert.equal(config.User, '1000:1000');
  assert.equal(config.WorkingDir, recipe.run.workdir);
  for (const [name, value] of Object.entries(recipe.run.env)) assert.ok(config.Env?.includes(`${name}=${value}`), `ENV ${name}=${value}`);
  assert.deepEqual(config.Entrypoint, recipe.run.entrypoint);
  // The base's CMD ["node"] must not follow the ENTRYPOINT: main.mjs refuses positional arguments.
  assert.ok(!config.Cmd || config.Cmd.length === 0, `no CMD after the ENTRYPOINT, got ${JSON.stringify(config.Cmd)}`);
});

test('its processes run as uid 1000 and gid 1000, not root, without being told', () => {
  assert.deepEqual(sh('id -u; id -g').trim().split('\n'), ['1000', '1000']);
});

test('the OCI labels: title, description, version, licences and source as the Dockerfile sets them', (t) => {
  const labels = inspect().config.Labels ?? {};
  for (const key of ['title', 'description', 'version', 'licenses']) {
    const name = `org.opencontainers.image.${key}`;
    assert.equal(labels[name], recipe.run.labels[name], name);
  }
  assert.equal(labels['org.opencontainers.image.version'], manifest.version);
  assert.ok('org.opencontainers.image.source' in labels, 'org.opencontainers.image.source is set (from --build-arg SOURCE_URL)');
  t.diagnostic(`source: ${labels['org.opencontainers.image.source'] || '(empty: no SOURCE_URL and no git remote at build time)'}; revision: ${labels['org.opencontainers.image.revision'] ?? '(none)'}`);
  const standIn = labels['config-checksum-webhook.stand-in'];
  if (standIn) t.diagnostic(`built on a local stand-in base: ${standIn}`);
});

test('the run stage holds the bundle and its licences only: no node_modules, no dev dependency', (t) => {
  const files = sh(`ls -A ${recipe.run.workdir}`).trim().split('\n').sort();
  assert.deepEqual(files, ['main.LICENSES.txt', 'main.mjs']);
  // The base's own npm is the only node_modules in the image.
  const nodeModules = sh('find / -xdev -name node_modules -type d -prune 2>/dev/null || true').trim().split('\n').filter(Boolean);
  assert.deepEqual(nodeModules.filter((dir) => dir !== '/usr/local/lib/node_modules'), [], 'no node_modules but the base image\'s npm');
  const licences = sh(`cat ${recipe.run.workdir}/main.LICENSES.txt`);
  const bundled = [...licences.matchAll(/^(@?[^@\s]+)@(\S+) \((.*)\)$/gm)].map((match) => ({ name: match[1]!, version: match[2]!, licence: match[3]! }));
  const devOnly = Object.keys(manifest.devDependencies).filter((name) => bundled.some((entry) => entry.name === name));
  assert.deepEqual(devOnly, [], 'no dev dependency is in the bundle');
  t.diagnostic(`bundle: ${bundled.length} packages, ${sh(`du -k ${recipe.run.workdir}/main.mjs`).split('\t')[0]} KiB`);
});

test('the licences of the bundled packages travel with it: every runtime dependency, its version, its licence', (t) => {
  const licences = sh(`cat ${recipe.run.workdir}/main.LICENSES.txt`);
  for (const name of Object.keys(manifest.dependencies)) {
    const version = lock.packages[`node_modules/${name}`]?.version;
    assert.ok(version, `${name} is in package-lock.json`);
    assert.ok(licences.includes(`${name}@${version} (`), `${name}@${version} and its licence are in main.LICENSES.txt`);
  }
  const sections = licences.split(/^-{72}$/m);
  const undeclared = sections.filter((section) => /licence not stated/.test(section));
  assert.deepEqual(undeclared, [], 'every bundled package states its licence');
  const withoutText = sections.filter((section) => /no licence file in the package/.test(section)).map((section) => section.trim().split('\n')[0]);
  if (withoutText.length > 0) t.diagnostic(`packages that ship no licence text (their package.json's licence is given): ${withoutText.join(', ')}`);
});

test('size of the image', (t) => {
  const { size } = inspect();
  assert.ok(size > 0);
  const node = sh('du -k /usr/local/bin/node').split('\t')[0];
  t.diagnostic(`${runtime.image}: ${(size / 1024 / 1024).toFixed(0)} MiB (Node binary ${Math.round(Number(node) / 1024)} MiB; on the stand-in base, so not the size on the upstream node image)`);
});
