// The Dockerfile as src/local/image.ts reads it: the OCI labels registries and scanners show agree with
// package.json (one version, one licence, one description), and shapes the reader would misread are
// refused rather than followed.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { readImageRecipe } from '../../../src/local/image.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..', '..');
const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; license: string; description: string };

test('the run stage carries the OCI labels, with package.json\'s name, version, licence and description', () => {
  const { labels } = readImageRecipe().run;
  assert.equal(labels['org.opencontainers.image.title'], manifest.name);
  assert.equal(labels['org.opencontainers.image.version'], manifest.version, 'the image version moves with package.json');
  assert.equal(labels['org.opencontainers.image.licenses'], manifest.license);
  assert.equal(labels['org.opencontainers.image.description'], manifest.description);
  assert.match(labels['org.opencontainers.image.source'] ?? '', /^(\$\{SOURCE_URL\}|https:\/\/\S+)$/, 'the source is the SOURCE_URL build argument or a URL');
});

test('the run stage still reads as before: ENV, the copy of the bundle, the exec-form ENTRYPOINT', () => {
  const { run } = readImageRecipe();
  assert.deepEqual(run.env, { NODE_ENV: 'production' });
  assert.deepEqual(run.copies, [{ from: '/app/dist/', to: './' }]);
  assert.equal(run.entrypoint[0], 'node');
  assert.equal(run.entrypoint.at(-1), 'main.mjs');
});

test('a LABEL with several pairs or a continued line is refused, not half read', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'config-checksum-dockerfile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const original = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  const variant = (name: string, text: string): string => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };
  const twoPairs = original.replace(/^LABEL org\.opencontainers\.image\.title=.*$/m, 'LABEL org.opencontainers.image.title="a" org.opencontainers.image.vendor="b"');
  assert.throws(() => readImageRecipe(variant('two-pairs', twoPairs)), /one LABEL key=value/);
  const continued = original.replace(/^LABEL org\.opencontainers\.image\.title=.*$/m, 'LABEL org.opencontainers.image.title="a" \\\n  org.opencontainers.image.vendor="b"');
  assert.throws(() => readImageRecipe(variant('continued', continued)), /continues a line/);
});
