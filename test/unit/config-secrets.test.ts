// The settings of Secrets (src/config.ts): off by default, the annotation key and its checks.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig, SETTINGS } from '../../src/config.ts';

test('Secrets are off by default; their annotation defaults to checksum/secret', () => {
  const config = loadConfig([], {});
  assert.equal(config.secrets, false);
  assert.equal(config.secretChecksumAnnotation, 'checksum/secret');
});

test('--secrets and --secret-checksum-annotation: flag and environment', () => {
  assert.equal(loadConfig(['--secrets', 'true'], {}).secrets, true);
  assert.equal(loadConfig([], { CONFIG_CHECKSUM_SECRETS: 'true' }).secrets, true);
  assert.equal(loadConfig(['--secrets=false'], { CONFIG_CHECKSUM_SECRETS: 'true' }).secrets, false);
  assert.equal(loadConfig(['--secret-checksum-annotation', 'example.com/secret-hash'], {}).secretChecksumAnnotation, 'example.com/secret-hash');
  assert.equal(loadConfig([], { CONFIG_CHECKSUM_SECRET_ANNOTATION: 'a.b/c' }).secretChecksumAnnotation, 'a.b/c');
  assert.equal(SETTINGS.secrets.env, 'CONFIG_CHECKSUM_SECRETS');
  assert.equal(SETTINGS.secretChecksumAnnotation.env, 'CONFIG_CHECKSUM_SECRET_ANNOTATION');
  assert.match(SETTINGS.maxConfigMaps.help, /ConfigMaps and Secrets together/);
});

test('invalid: not a boolean, not an annotation key, the same key as checksum/config', () => {
  const refused: Array<[string[], Record<string, string>, RegExp]> = [
    [['--secrets', 'yes'], {}, /--secrets \(CONFIG_CHECKSUM_SECRETS\) must be true or false, got "yes"/],
    [['--secret-checksum-annotation', 'Bad Key!'], {}, /--secret-checksum-annotation must be a valid annotation key/],
    [['--secrets', 'true', '--secret-checksum-annotation', 'checksum/config'], {}, /--secret-checksum-annotation must differ from --checksum-annotation \("checksum\/config"\)/],
    [['--secrets', 'true', '--checksum-annotation', 'x/y'], { CONFIG_CHECKSUM_SECRET_ANNOTATION: 'x/y' }, /must differ/],
  ];
  for (const [argv, env, message] of refused) {
    assert.throws(() => loadConfig(argv, env), (error: unknown) => error instanceof ConfigError && message.test(error.message), argv.join(' '));
  }
});
