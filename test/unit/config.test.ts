// Flags and environment -> Config (src/config.ts): precedence flag > env > default, and errors that name the flag.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig, SETTINGS } from '../../src/config.ts';

describe('loadConfig', () => {
  test('defaults', () => {
    const config = loadConfig([], {});
    // The settings of the admission path and the server (the watcher's own are checked below by name).
    const expected = {
      host: '0.0.0.0',
      port: 8443,
      tlsMode: 'files',
      tlsCertFile: 'certs/tls.crt',
      tlsKeyFile: 'certs/tls.key',
      kubeconfig: undefined,
      checksumAnnotation: 'checksum/config',
      configMapReadTimeoutMs: 2000,
      maxConfigMaps: 64,
      drainSeconds: 15,
      logLevel: 'info',
    };
    assert.deepEqual(Object.fromEntries(Object.keys(expected).map((key) => [key, (config as unknown as Record<string, unknown>)[key]])), expected);
    assert.ok(Object.isFrozen(config));
    // Every setting has a value after loading (no setting forgotten in loadConfig), except the optional ones.
    const optional = new Set(['kubeconfig', 'clientCaFile']);
    for (const name of Object.keys(SETTINGS)) {
      if (!optional.has(name)) assert.notEqual((config as unknown as Record<string, unknown>)[name], undefined, name);
    }
  });

  test('environment overrides defaults; an empty variable counts as unset', () => {
    const config = loadConfig([], {
      CONFIG_CHECKSUM_PORT: '9443',
      CONFIG_CHECKSUM_HOST: '',
      CONFIG_CHECKSUM_ANNOTATION: 'example.com/config-hash',
      CONFIG_CHECKSUM_MAX_CONFIGMAPS: '10',
      KUBECONFIG: '/tmp/kubeconfig',
    });
    assert.equal(config.port, 9443);
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.checksumAnnotation, 'example.com/config-hash');
    assert.equal(config.maxConfigMaps, 10);
    assert.equal(config.kubeconfig, '/tmp/kubeconfig');
  });

  test('coalescing: a quiet period of a second, at most 10 s; a longer quiet period alone raises the maximum', () => {
    const shipped = loadConfig([], {});
    assert.deepEqual([shipped.coalesceWindowMs, shipped.coalesceMaxMs], [1000, 10_000]);
    const longQuiet = loadConfig(['--coalesce-window-ms', '20000'], {});
    assert.deepEqual([longQuiet.coalesceWindowMs, longQuiet.coalesceMaxMs], [20_000, 20_000]);
  });

  test('flags override environment', () => {
    const env = { CONFIG_CHECKSUM_PORT: '9443', CONFIG_CHECKSUM_LOG_LEVEL: 'debug', CONFIG_CHECKSUM_DRAIN_SECONDS: '30' };
    const config = loadConfig(['--port', '10443', '--log-level=warn', '--host', '127.0.0.1', '--configmap-read-timeout-ms', '500'], env);
    assert.equal(config.port, 10443);
    assert.equal(config.logLevel, 'warn');
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.configMapReadTimeoutMs, 500);
    assert.equal(config.drainSeconds, 30);
  });

  test('every setting has a flag and an environment variable that work', () => {
    const values: Record<string, string> = {
      host: '127.0.0.2',
      port: '1234',
      tlsCertFile: '/c',
      tlsKeyFile: '/k',
      kubeconfig: '/kc',
      checksumAnnotation: 'a.b/c',
      configMapReadTimeoutMs: '300',
      maxConfigMaps: '5',
      drainSeconds: '0',
      logLevel: 'error',
      coalesceWindowMs: '250',
      coalesceMaxMs: '4000',
    };
    for (const [name, value] of Object.entries(values)) {
      const setting = SETTINGS[name as keyof typeof SETTINGS];
      const fromFlag = loadConfig([`--${setting.flag}`, value], {}) as unknown as Record<string, unknown>;
      const fromEnv = loadConfig([], { [setting.env]: value }) as unknown as Record<string, unknown>;
      assert.equal(String(fromFlag[name]), value, `--${setting.flag}`);
      assert.equal(String(fromEnv[name]), value, setting.env);
    }
  });

  const invalid: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['port not a number (flag)', ['--port', 'https'], {}, /--port \(CONFIG_CHECKSUM_PORT\) must be an integer from 0 to 65535, got "https"/],
    ['port out of range (env)', [], { CONFIG_CHECKSUM_PORT: '70000' }, /--port .*got "70000"/],
    ['port not an integer', ['--port', '8443.5'], {}, /--port/],
    ['read timeout under the minimum', ['--configmap-read-timeout-ms', '10'], {}, /--configmap-read-timeout-ms .*from 50 to 4000/],
    ['read timeout over the webhook timeout', [], { CONFIG_CHECKSUM_CONFIGMAP_READ_TIMEOUT_MS: '5000' }, /--configmap-read-timeout-ms/],
    ['max-configmaps zero', ['--max-configmaps', '0'], {}, /--max-configmaps/],
    ['drain-seconds negative', ['--drain-seconds=-1'], {}, /--drain-seconds/],
    ['empty flag value', ['--host', ''], {}, /--host \(CONFIG_CHECKSUM_HOST\) must not be empty/],
    ['checksum annotation not a qualified name', ['--checksum-annotation', 'Bad Key!'], {}, /--checksum-annotation must be a valid annotation key/],
    ['checksum annotation with a bad prefix', [], { CONFIG_CHECKSUM_ANNOTATION: 'UPPER.case/x' }, /--checksum-annotation/],
    ['log level unknown', ['--log-level', 'verbose'], {}, /--log-level must be one of/],
    ['unknown flag', ['--bogus', '1'], {}, /bogus.*Known flags: --host/],
    ['positional argument', ['serve'], {}, /Known flags/],
    ['coalescing maximum shorter than the quiet period', ['--coalesce-window-ms', '3000', '--coalesce-max-ms', '2000'], {}, /--coalesce-max-ms \(2000\) must be at least --coalesce-window-ms \(3000\)/],
    ['boolean neither true nor false', ['--watch', 'yes'], {}, /--watch \(CONFIG_CHECKSUM_WATCH\) must be true or false, got "yes"/],
  ];
  for (const [label, argv, env, message] of invalid) {
    test(`invalid: ${label}`, () => {
      assert.throws(() => loadConfig(argv, env), (error: unknown) => {
        assert.ok(error instanceof ConfigError, `not a ConfigError: ${String(error)}`);
        assert.equal(error.name, 'ConfigError');
        assert.match(error.message, message);
        return true;
      });
    });
  }

  test('an invalid environment value is not rescued by the default, but a valid flag overrides it', () => {
    assert.throws(() => loadConfig([], { CONFIG_CHECKSUM_PORT: 'x' }), ConfigError);
    assert.equal(loadConfig(['--port', '1'], { CONFIG_CHECKSUM_PORT: 'x' }).port, 1);
  });
});

test('self-managed certificate timings that could not rotate safely are refused', () => {
  assert.throws(() => loadConfig(['--cert-propagation-seconds', '10', '--cert-poll-seconds', '10'], {}), /must be longer than --cert-poll-seconds/);
  assert.throws(() => loadConfig(['--cert-validity-seconds', '60', '--cert-propagation-seconds', '10', '--cert-poll-seconds', '2'], {}), /lifetimes must exceed 9 x/);
  assert.throws(() => loadConfig(['--tls-mode', 'auto'], {}), /--tls-mode must be files or self-managed/);
  const config = loadConfig(['--tls-mode', 'self-managed', '--cert-validity-seconds', '120', '--ca-validity-seconds', '240', '--cert-propagation-seconds', '4', '--cert-poll-seconds', '1'], {});
  assert.equal(config.tlsMode, 'self-managed');
  assert.equal(config.certValiditySeconds, 120);
});
