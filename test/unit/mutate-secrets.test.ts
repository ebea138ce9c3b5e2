// Admission with --secrets (DESIGN section 4, "Secrets"): off changes nothing, on adds checksum/secret to the
// workloads that consume a Secret and nothing to the others; the fail-open rules of ConfigMap reads hold
// for Secret reads; no Secret is read without the key to hash it; one cap for both kinds.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mutate, type Mutation } from '../../src/admission/mutate.ts';
import { complete } from '../../src/admission/review.ts';
import { secretChecksumValue } from '../../src/checksum/encode.ts';
import { CONTRACT } from '../../src/config.ts';
import { readAnnotation, TEMPLATE_METADATA, WORKLOAD_METADATA } from '../../src/workload/annotations.ts';
import { admissionRequest, decodePatch, FakeReader, fakeSecrets, secretData, SETTINGS, TEST_HASH_KEY, workload, type ConfigMapData } from '../support/fakes.ts';
import { applyAnswer } from '../support/patch-helpers.ts';

const SECRET_KEY = 'checksum/secret';
const CONFIG: Record<string, ConfigMapData> = { 'app-config': { data: { LOG_LEVEL: 'info' } } };
const SECRETS: Record<string, ConfigMapData> = { db: secretData({ password: 'hunter2', user: 'app' }), tls: secretData({ 'tls.crt': 'CERT', 'tls.key': 'KEY' }) };

/** A Deployment reading app-config through envFrom, plus the given Secret references in its one container and volumes. */
function deployment(secretRefs: { env?: unknown[]; envFrom?: unknown[]; volumes?: unknown[] } = {}, extra: { annotations?: Record<string, string>; templateAnnotations?: Record<string, string>; configMaps?: boolean } = {}): Record<string, unknown> {
  return workload({
    ...(extra.annotations ? { annotations: extra.annotations } : {}),
    template: {
      metadata: { labels: { app: 'web' }, ...(extra.templateAnnotations ? { annotations: extra.templateAnnotations } : {}) },
      spec: {
        containers: [{ name: 'app', image: 'app:1', envFrom: [...(extra.configMaps === false ? [] : [{ configMapRef: { name: 'app-config' } }]), ...(secretRefs.envFrom ?? [])], env: secretRefs.env ?? [] }],
        volumes: secretRefs.volumes ?? [],
      },
    },
  });
}

const DB_PASSWORD = { env: [{ name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }] };

function secretChecksumAfter(object: unknown, mutation: Mutation): string | undefined {
  return readAnnotation(applyAnswer(object, mutation), TEMPLATE_METADATA, SECRET_KEY);
}

function expectedSecretChecksum(secrets: Array<[string, Record<string, string>] | [string]>): string {
  return secretChecksumValue(TEST_HASH_KEY, secrets.map(([name, values]) => (values ? { name, content: { data: new Map(), binaryData: new Map(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)])) } } : { name })));
}

describe('--secrets off', () => {
  test('a Secret-consuming workload gets what it got before Secrets existed, whatever Secrets are stored; no Secret is read', async () => {
    const object = deployment({ ...DB_PASSWORD, volumes: [{ name: 'tls', secret: { secretName: 'tls' } }] }, { annotations: { [CONTRACT.extraSecretsAnnotation]: 'db' } });
    const withoutSecrets = await mutate(admissionRequest(object), new FakeReader(CONFIG), SETTINGS);
    // The same namespace, now with Secrets (and, in the same reader, objects of the Secrets' names).
    const reader = new FakeReader({ ...CONFIG, ...SECRETS });
    const withSecretsStored = await mutate(admissionRequest(object), reader, SETTINGS);
    assert.deepEqual(withSecretsStored, withoutSecrets);
    assert.deepEqual(reader.calls.map((call) => call.name), ['app-config']);
    assert.equal(secretChecksumAfter(object, withoutSecrets), undefined);
    assert.equal(readAnnotation(applyAnswer(object, withoutSecrets), WORKLOAD_METADATA, CONTRACT.sourcesAnnotation), 'configmap/app-config');
  });

  test('a workload consuming only Secrets is skipped, as one consuming nothing', async () => {
    const mutation = await mutate(admissionRequest(deployment(DB_PASSWORD, { configMaps: false })), new FakeReader(SECRETS), SETTINGS);
    assert.equal(mutation.outcome, 'skipped');
    assert.equal(mutation.reason, 'no-configmaps');
  });
});

describe('--secrets on', () => {
  test('a workload consuming no Secret gets exactly the patch it gets with Secrets off, and no Secret is read', async () => {
    for (const object of [deployment(), deployment({ envFrom: [] }, { templateAnnotations: { 'checksum/config': 'old' } }), deployment({}, { annotations: { [CONTRACT.extraConfigMapsAnnotation]: 'app-config' } })]) {
      for (const operation of ['CREATE', 'UPDATE'] as const) {
        const request = admissionRequest(object, { operation, oldObject: operation === 'UPDATE' ? object : null });
        const off = await mutate(request, new FakeReader(CONFIG), SETTINGS);
        const secrets = fakeSecrets(SECRETS);
        const on = await mutate(request, { configMaps: new FakeReader(CONFIG), secrets }, SETTINGS);
        assert.deepEqual(on, off);
        assert.deepEqual(complete('u', on.result), complete('u', off.result));
        assert.equal(secrets.reader.calls.length, 0);
      }
    }
  });

  test('env secretKeyRef: checksum/secret of that key, checksum/config unchanged, sources list the Secret after the ConfigMaps', async () => {
    const object = deployment(DB_PASSWORD);
    const off = await mutate(admissionRequest(object), new FakeReader(CONFIG), SETTINGS);
    const secrets = fakeSecrets(SECRETS);
    const on = await mutate(admissionRequest(object), { configMaps: new FakeReader(CONFIG), secrets }, SETTINGS);
    const after = applyAnswer(object, on);
    assert.equal(readAnnotation(after, TEMPLATE_METADATA, 'checksum/config'), readAnnotation(applyAnswer(object, off), TEMPLATE_METADATA, 'checksum/config'));
    assert.equal(readAnnotation(after, TEMPLATE_METADATA, SECRET_KEY), expectedSecretChecksum([['db', { password: 'hunter2' }]]));
    assert.equal(readAnnotation(after, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation), 'configmap/app-config, secret/db[password]');
    assert.deepEqual(secrets.reader.calls, [{ namespace: 'shop', name: 'db' }]);
    assert.equal(on.outcome, 'patched');
    assert.equal(on.checksumChanged, true);
    assert.equal(on.secrets, 1);
    assert.deepEqual(on.result.warnings, []);
  });

  test('a template without an annotations map gets both checksums in the one operation that creates it', async () => {
    const object = deployment(DB_PASSWORD);
    const on = await mutate(admissionRequest(object), { configMaps: new FakeReader(CONFIG), secrets: fakeSecrets(SECRETS) }, SETTINGS);
    const operations = decodePatch(complete('u', on.result).response.patch) as Array<{ path: string; value: unknown }>;
    assert.deepEqual(operations.map((op) => op.path), ['/spec/template/metadata/annotations', '/metadata/annotations']);
    assert.deepEqual(Object.keys(operations[0]!.value as object), ['checksum/config', SECRET_KEY]);
  });

  test('a workload consuming only Secrets gets checksum/secret and no checksum/config', async () => {
    const object = deployment({ envFrom: [{ secretRef: { name: 'tls' } }] }, { configMaps: false });
    const on = await mutate(admissionRequest(object), { configMaps: new FakeReader(CONFIG), secrets: fakeSecrets(SECRETS) }, SETTINGS);
    const after = applyAnswer(object, on);
    assert.equal(readAnnotation(after, TEMPLATE_METADATA, 'checksum/config'), undefined);
    assert.equal(readAnnotation(after, TEMPLATE_METADATA, SECRET_KEY), expectedSecretChecksum([['tls', { 'tls.crt': 'CERT', 'tls.key': 'KEY' }]]));
    assert.equal(readAnnotation(after, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation), 'secret/tls');
    assert.equal(on.configMaps, 0);
  });

  test('admitted again with the same Secrets: no patch; a consumed value changed: a new checksum/secret, counted as a change', async () => {
    const object = deployment(DB_PASSWORD);
    const sources = { configMaps: new FakeReader(CONFIG), secrets: fakeSecrets(SECRETS) };
    const admitted = applyAnswer(object, await mutate(admissionRequest(object), sources, SETTINGS));
    const again = await mutate(admissionRequest(admitted, { operation: 'UPDATE', oldObject: admitted }), sources, SETTINGS);
    assert.equal(again.outcome, 'unchanged');
    assert.equal(again.checksumChanged, false);
    const unconsumed = await mutate(admissionRequest(admitted, { operation: 'UPDATE', oldObject: admitted }), { ...sources, secrets: fakeSecrets({ db: secretData({ password: 'hunter2', user: 'other' }) }) }, SETTINGS);
    assert.equal(unconsumed.outcome, 'unchanged', 'a key the workload does not consume rolls nothing');
    const changed = await mutate(admissionRequest(admitted, { operation: 'UPDATE', oldObject: admitted }), { ...sources, secrets: fakeSecrets({ db: secretData({ password: 'rotated' }) }) }, SETTINGS);
    assert.equal(changed.outcome, 'patched');
    assert.equal(changed.checksumChanged, true);
    assert.deepEqual(decodePatch(complete('u', changed.result).response.patch), [{ op: 'add', path: '/spec/template/metadata/annotations/checksum~1secret', value: expectedSecretChecksum([['db', { password: 'rotated' }]]) }]);
  });

  test('the annotation key comes from the Secret source', async () => {
    const object = deployment(DB_PASSWORD);
    const on = await mutate(admissionRequest(object), { configMaps: new FakeReader(CONFIG), secrets: fakeSecrets(SECRETS, { annotation: 'example.com/secret-hash' }) }, SETTINGS);
    const after = applyAnswer(object, on);
    assert.equal(readAnnotation(after, TEMPLATE_METADATA, 'example.com/secret-hash'), expectedSecretChecksum([['db', { password: 'hunter2' }]]));
    assert.equal(readAnnotation(after, TEMPLATE_METADATA, SECRET_KEY), undefined);
  });

  test('a missing required Secret or key: hashed as absent, allowed, a warning naming it; optional: silent', async () => {
    const object = deployment({
      env: [
        { name: 'A', valueFrom: { secretKeyRef: { name: 'db', key: 'nope' } } },
        { name: 'B', valueFrom: { secretKeyRef: { name: 'gone', key: 'x' } } },
        { name: 'C', valueFrom: { secretKeyRef: { name: 'gone-optional', key: 'x', optional: true } } },
      ],
      volumes: [{ name: 'v', secret: { secretName: 'also-gone', optional: true } }],
    });
    const on = await mutate(admissionRequest(object), { configMaps: new FakeReader(CONFIG), secrets: fakeSecrets(SECRETS) }, SETTINGS);
    assert.equal(on.outcome, 'patched');
    assert.equal(on.reason, 'computed-with-problems');
    assert.deepEqual(on.result.warnings, [
      'config-checksum: key "nope" not found in Secret "db"; hashed as absent',
      'config-checksum: Secret "gone" not found; hashed as absent, pods roll when it is created',
    ]);
    assert.equal(secretChecksumAfter(object, on), expectedSecretChecksum([['also-gone'], ['db', {}], ['gone'], ['gone-optional']]));
  });

  test('names no Secret can have are never read: hashed as absent, with a warning when required; extra-secrets too', async () => {
    const object = deployment({ volumes: [{ name: 'v', secret: { secretName: 'a/b' } }] }, { annotations: { [CONTRACT.extraSecretsAnnotation]: 'db, Not_Valid' } });
    const secrets = fakeSecrets(SECRETS);
    const on = await mutate(admissionRequest(object), { configMaps: new FakeReader(CONFIG), secrets }, SETTINGS);
    assert.deepEqual(secrets.reader.calls.map((call) => call.name), ['db']);
    assert.deepEqual(on.result.warnings, [
      'config-checksum: config-checksum.io/extra-secrets: "Not_Valid" is not a Secret name in this namespace; ignored',
      'config-checksum: "a/b" is not a valid Secret name; not read, hashed as absent',
    ]);
  });

  test('a Secret read failure fails open exactly like a ConfigMap read failure: allowed, no patch, a warning naming the Secret', async () => {
    const object = deployment(DB_PASSWORD);
    const on = await mutate(admissionRequest(object), { configMaps: new FakeReader(CONFIG), secrets: fakeSecrets(SECRETS, { unreadable: { db: 'HTTP 403' } }) }, SETTINGS);
    assert.equal(on.outcome, 'fail-open');
    assert.equal(on.reason, 'secret-unreadable');
    assert.equal(on.checksumChanged, false);
    assert.deepEqual(on.result.patch, []);
    assert.deepEqual(on.result.warnings, ['config-checksum: could not read Secret "db" (HTTP 403); checksums left unchanged, nothing rolls']);
    assert.deepEqual(complete('u', on.result).response, { uid: 'u', allowed: true, warnings: on.result.warnings });
  });

  test('a ConfigMap and a Secret unreadable: the ConfigMap is named', async () => {
    const on = await mutate(admissionRequest(deployment(DB_PASSWORD)), { configMaps: new FakeReader({}, { 'app-config': 'timeout' }), secrets: fakeSecrets({}, { unreadable: { db: 'HTTP 500' } }) }, SETTINGS);
    assert.equal(on.reason, 'configmap-unreadable');
    assert.deepEqual(on.result.warnings, ['config-checksum: could not read ConfigMap "app-config" (timeout); checksums left unchanged, nothing rolls']);
  });

  test('fail-open on an UPDATE that dropped both checksums (and the annotations map): both restored in one operation', async () => {
    const object = deployment(DB_PASSWORD);
    const sources = { configMaps: new FakeReader(CONFIG), secrets: fakeSecrets(SECRETS) };
    const running = applyAnswer(object, await mutate(admissionRequest(object), sources, SETTINGS));
    const replaced = deployment(DB_PASSWORD);
    const failing = { configMaps: new FakeReader(CONFIG), secrets: fakeSecrets({}, { unreadable: { db: 'ECONNRESET' } }) };
    const mutation = await mutate(admissionRequest(replaced, { operation: 'UPDATE', oldObject: running }), failing, SETTINGS);
    assert.equal(mutation.outcome, 'fail-open');
    const after = applyAnswer(replaced, mutation) as { spec: { template: unknown } };
    assert.deepEqual(after.spec.template, (running as { spec: { template: unknown } }).spec.template, 'the template that runs now: no rollout');
    assert.equal(readAnnotation(after, WORKLOAD_METADATA, CONTRACT.sourcesAnnotation), 'configmap/app-config, secret/db[password]');
  });

  test('the hash key not loaded yet: Secret-consuming workloads fail open without reading a Secret; others are served', async () => {
    const secrets = fakeSecrets(SECRETS, { key: null });
    const consuming = await mutate(admissionRequest(deployment(DB_PASSWORD)), { configMaps: new FakeReader(CONFIG), secrets }, SETTINGS);
    assert.equal(consuming.outcome, 'fail-open');
    assert.equal(consuming.reason, 'hash-key-unavailable');
    assert.deepEqual(consuming.result.patch, []);
    assert.deepEqual(consuming.result.warnings, ['config-checksum: the hash key for Secrets is not loaded yet; checksums left unchanged, nothing rolls']);
    assert.equal(secrets.reader.calls.length, 0);
    const other = await mutate(admissionRequest(deployment()), { configMaps: new FakeReader(CONFIG), secrets }, SETTINGS);
    assert.equal(other.outcome, 'patched');
  });

  test('--max-configmaps caps ConfigMaps and Secrets together; nothing is read over it', async () => {
    const object = deployment({ envFrom: [{ secretRef: { name: 'db' } }, { secretRef: { name: 'tls' } }] });
    const configMaps = new FakeReader(CONFIG);
    const secrets = fakeSecrets(SECRETS);
    const over = await mutate(admissionRequest(object), { configMaps, secrets }, { ...SETTINGS, maxConfigMaps: 2 });
    assert.equal(over.outcome, 'fail-open');
    assert.equal(over.reason, 'too-many-configmaps');
    assert.deepEqual(over.result.warnings, ['config-checksum: pod template consumes 1 ConfigMaps and 2 Secrets, over the limit of 2; checksums left unchanged']);
    assert.equal(configMaps.calls.length + secrets.reader.calls.length, 0);
    const atLimit = await mutate(admissionRequest(object), { configMaps, secrets }, { ...SETTINGS, maxConfigMaps: 3 });
    assert.equal(atLimit.outcome, 'patched');
    // Off, the same template counts its one ConfigMap only.
    assert.equal((await mutate(admissionRequest(object), new FakeReader(CONFIG), { ...SETTINGS, maxConfigMaps: 1 })).outcome, 'patched');
  });

  test('dry run: the same patch', async () => {
    const object = deployment(DB_PASSWORD);
    const sources = { configMaps: new FakeReader(CONFIG), secrets: fakeSecrets(SECRETS) };
    assert.deepEqual(await mutate(admissionRequest(object, { dryRun: true }), sources, SETTINGS), await mutate(admissionRequest(object), sources, SETTINGS));
  });
});

describe('--secrets on: properties over generated templates', () => {
  const name = fc.constantFrom('app-config', 'db', 'tls', 'gone');
  const secretRef = fc.oneof(
    fc.tuple(name, fc.constantFrom('password', 'user', 'tls.crt')).map(([secret, key]) => ({ env: [{ name: 'S', valueFrom: { secretKeyRef: { name: secret, key } } }] })),
    name.map((secret) => ({ envFrom: [{ secretRef: { name: secret } }] })),
    name.map((secret) => ({ volumes: [{ name: 'v', secret: { secretName: secret } }] })),
    name.map((secret) => ({ volumes: [{ name: 'p', projected: { sources: [{ secret: { name: secret } }] } }] })),
  );
  const template = fc.record({ secret: fc.option(secretRef, { nil: undefined }), configMaps: fc.boolean(), operation: fc.constantFrom('CREATE' as const, 'UPDATE' as const) });

  test('checksum/config is the same with Secrets on and off; without a Secret reference, so is everything', async () => {
    await fc.assert(
      fc.asyncProperty(template, async ({ secret, configMaps, operation }) => {
        const object = deployment(secret ?? {}, { configMaps });
        const request = admissionRequest(object, { operation, oldObject: operation === 'UPDATE' ? object : null });
        const off = await mutate(request, new FakeReader(CONFIG), SETTINGS);
        const on = await mutate(request, { configMaps: new FakeReader(CONFIG), secrets: fakeSecrets(SECRETS) }, SETTINGS);
        if (!secret) {
          assert.deepEqual(on, off);
          return;
        }
        assert.equal(on.outcome === 'skipped', false);
        assert.equal(readAnnotation(applyAnswer(object, on), TEMPLATE_METADATA, 'checksum/config'), readAnnotation(applyAnswer(object, off), TEMPLATE_METADATA, 'checksum/config'));
        assert.match(readAnnotation(applyAnswer(object, on), TEMPLATE_METADATA, SECRET_KEY) ?? '', /^[0-9a-f]{8}\.[0-9a-f]{64}$/);
      }),
      { numRuns: 300 },
    );
  });
});
