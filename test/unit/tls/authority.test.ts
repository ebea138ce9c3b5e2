import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { nextCertificateState, splitPem, type CertificateState, type Step } from '../../../src/tls/authority.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const settings = { caValidityMs: 90 * DAY, leafValidityMs: 30 * DAY, propagationMs: 2 * HOUR, dnsNames: ['svc.ns.svc'] };

const parsed = new Map<string, X509Certificate>();
const x509 = (pem: string): X509Certificate => {
  let certificate = parsed.get(pem);
  if (!certificate) parsed.set(pem, (certificate = new X509Certificate(pem)));
  return certificate;
};

/** Does `leafPem` chain to a CA in `bundle`, and is it valid at `at`? */
function trusted(leafPem: string, bundle: string, at: number): boolean {
  const leaf = x509(leafPem);
  const valid = Date.parse(leaf.validFrom) <= at && at <= Date.parse(leaf.validTo);
  return valid && splitPem(bundle).some((pem) => {
    const ca = x509(pem);
    return leaf.checkIssued(ca) && leaf.verify(ca.publicKey) && Date.parse(ca.validTo) >= at;
  });
}

test('rotation keeps every served certificate trusted, through several CA rotations', () => {
  const start = Date.parse('2026-01-01T00:00:00Z');
  const settings = { caValidityMs: 24 * DAY, leafValidityMs: 8 * DAY, propagationMs: 4 * HOUR, dnsNames: ['svc.ns.svc'] };
  const history: Array<{ at: number; state: CertificateState }> = [];
  const stateAt = (at: number): CertificateState => [...history].reverse().find((entry) => entry.at <= at)!.state;
  const steps = new Map<Step, number>();
  let state: CertificateState | undefined;
  // The API server learns a caBundle, and other replicas load a new leaf, up to two hours late: half the
  // propagation time the authority waits for. Either may be late while the other is not.
  const lag = 2 * HOUR;
  for (let now = start; now <= start + 110 * DAY; now += HOUR) {
    // The acting replica writes caBundle in the same pass as the Secret, so the configuration object
    // holds the bundle at once; what lags is the API server's view of it (`lagging` below).
    const published = state !== undefined;
    const next = nextCertificateState(state, now, settings, published);
    steps.set(next.step, (steps.get(next.step) ?? 0) + 1);
    if (next.step !== 'none') history.push({ at: now, state: next.state });
    state = next.state;
    const lagging = stateAt(Math.max(start, now - lag));
    for (const bundle of [state.bundle, lagging.bundle]) {
      for (const served of [state.leaf.certificate, lagging.leaf.certificate]) {
        assert.ok(trusted(served, bundle, now), `at day ${((now - start) / DAY).toFixed(2)} a served certificate is not trusted by a published bundle`);
      }
    }
  }
  assert.equal(steps.get('created'), 1);
  assert.ok((steps.get('ca-added') ?? 0) >= 4, `CA rotations: ${steps.get('ca-added')}`);
  assert.equal(steps.get('ca-added'), steps.get('leaf-from-new-ca'));
  assert.ok((steps.get('old-ca-removed') ?? 0) >= 4);
  assert.ok((steps.get('leaf-renewed') ?? 0) >= 4);
});

test('the leaf does not move to a new CA before the wider bundle is published', () => {
  const start = Date.parse('2026-01-01T00:00:00Z');
  // A leaf that outlives the CA's due date, so the CA step is the one that comes up.
  const longLeaf = { ...settings, leafValidityMs: 80 * DAY };
  let { state } = nextCertificateState(undefined, start, longLeaf, false);
  const dueAt = start + 61 * DAY;
  const added = nextCertificateState(state, dueAt, longLeaf, true);
  assert.equal(added.step, 'ca-added');
  assert.equal(splitPem(added.state.bundle).length, 2);
  state = added.state;
  // Long past the propagation time, but the webhook configuration still has the old bundle: wait.
  assert.equal(nextCertificateState(state, dueAt + 10 * HOUR, longLeaf, false).step, 'none');
  assert.equal(nextCertificateState(state, dueAt + 10 * HOUR, longLeaf, true).step, 'leaf-from-new-ca');
});

test('an unusable state (expired, or a leaf no CA in the bundle issued) starts over', () => {
  const start = Date.parse('2026-01-01T00:00:00Z');
  const { state } = nextCertificateState(undefined, start, settings, false);
  assert.equal(nextCertificateState(state, start + 91 * DAY, settings, true).step, 'created');
  const other = nextCertificateState(undefined, start, settings, false).state;
  assert.equal(nextCertificateState({ ...state, bundle: other.ca.certificate }, start + HOUR, settings, true).step, 'created');
});
