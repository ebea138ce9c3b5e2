// The self-managed certificate authority as a pure state machine: given what the Secret holds now and
// the time, what it should hold next. The I/O (Secret, caBundle, serving) is in ./self-managed.ts.
//
// Rotation never lets an admission call fail for TLS, because trust always widens before it narrows:
//   1. CA due (2/3 of its life): a new CA joins the bundle *beside* the old one; the leaf stays as it is.
//   2. Once the wider bundle has been in the webhook configuration for `propagationMs`, the leaf is
//      re-issued from the new CA (every replica picks it up within its poll interval).
//   3. Once the new leaf has been out for `propagationMs`, the old CA leaves the bundle.
// A leaf that is due (2/3 of its life) while its CA is current is simply re-issued (trust unchanged).

import { certificateValidity, createCertificateAuthority, issueCertificate, type KeyPairPem } from './certs.ts';
import { X509Certificate } from 'node:crypto';

export interface CertificateState {
  readonly ca: KeyPairPem;
  /** PEM bundle the API server must trust: the current CA first, the previous one during a rotation. */
  readonly bundle: string;
  readonly leaf: KeyPairPem;
  /** When the bundle last changed (ms since epoch). */
  readonly bundleChangedAt: number;
  /** When the leaf was last issued (ms since epoch). */
  readonly leafIssuedAt: number;
}

export interface AuthoritySettings {
  readonly caValidityMs: number;
  readonly leafValidityMs: number;
  /** Time for a change of caBundle or of the Secret to reach the API server and every replica. */
  readonly propagationMs: number;
  readonly dnsNames: readonly string[];
  readonly ipAddresses?: readonly string[];
}

export type Step = 'created' | 'ca-added' | 'leaf-from-new-ca' | 'old-ca-removed' | 'leaf-renewed' | 'none';

export interface NextState {
  readonly state: CertificateState;
  readonly step: Step;
}

/**
 * @param bundlePublished whether the webhook configuration's caBundle already equals state.bundle;
 *   the leaf never moves to a new CA before the API server has been told to trust it.
 */
export function nextCertificateState(current: CertificateState | undefined, now: number, settings: AuthoritySettings, bundlePublished: boolean): NextState {
  if (!current || !isUsable(current, now)) {
    const ca = createCertificateAuthority('config-checksum-webhook CA', settings.caValidityMs, now);
    return { step: 'created', state: { ca, bundle: ca.certificate, leaf: issueLeaf(ca, settings, now), bundleChangedAt: now, leafIssuedAt: now } };
  }
  // Mid-rotation: the new CA is in the bundle and the leaf still comes from the old one.
  if (!issuedBy(current.leaf.certificate, current.ca.certificate)) return leafToNewCa(current, now, settings, bundlePublished);
  return nextFromSettledLeaf(current, now, settings);
}

/** Step 2: the leaf moves to the new CA once the wider bundle has been published and has propagated. */
function leafToNewCa(current: CertificateState, now: number, settings: AuthoritySettings, bundlePublished: boolean): NextState {
  if (bundlePublished && now - current.bundleChangedAt >= settings.propagationMs) {
    return { step: 'leaf-from-new-ca', state: { ...current, leaf: issueLeaf(current.ca, settings, now), leafIssuedAt: now } };
  }
  return { step: 'none', state: current };
}

/** The leaf comes from the current CA: finish a rotation, start one, or renew the leaf. */
function nextFromSettledLeaf(current: CertificateState, now: number, settings: AuthoritySettings): NextState {
  const twoCas = splitPem(current.bundle).length > 1;
  // Step 3: the old CA leaves once the new leaf has been out long enough.
  if (twoCas && now - current.leafIssuedAt >= settings.propagationMs) {
    return { step: 'old-ca-removed', state: { ...current, bundle: current.ca.certificate, bundleChangedAt: now } };
  }
  // Step 1: a new CA joins the bundle beside the current one.
  if (!twoCas && isDue(current.ca.certificate, settings.caValidityMs, now)) {
    const ca = createCertificateAuthority('config-checksum-webhook CA', settings.caValidityMs, now);
    return { step: 'ca-added', state: { ...current, ca, bundle: `${ca.certificate.trim()}\n${current.ca.certificate.trim()}\n`, bundleChangedAt: now } };
  }
  if (isDue(current.leaf.certificate, settings.leafValidityMs, now)) {
    return { step: 'leaf-renewed', state: { ...current, leaf: issueLeaf(current.ca, settings, now), leafIssuedAt: now } };
  }
  return { step: 'none', state: current };
}

function issueLeaf(ca: KeyPairPem, settings: AuthoritySettings, now: number): KeyPairPem {
  return issueCertificate(ca, {
    now,
    commonName: settings.dnsNames[0] ?? 'config-checksum-webhook',
    dnsNames: settings.dnsNames,
    ipAddresses: settings.ipAddresses ?? [],
    usage: 'server',
    validityMs: settings.leafValidityMs,
  });
}

/**
 * Due for replacement at 2/3 of its lifetime (cert-manager's rule), leaving a third as margin. Measured
 * as time left against the configured validity, not from notBefore, which is back-dated for clock skew.
 */
function isDue(pem: string, validityMs: number, now: number): boolean {
  return certificateValidity(pem).notAfter.getTime() - now <= validityMs / 3;
}

/** A state is usable while its leaf and CA are valid and the leaf chains to a CA in the bundle. */
function isUsable(state: CertificateState, now: number): boolean {
  try {
    const leafExpiry = certificateValidity(state.leaf.certificate).notAfter.getTime();
    const caExpiry = certificateValidity(state.ca.certificate).notAfter.getTime();
    if (leafExpiry <= now || caExpiry <= now) return false;
    return splitPem(state.bundle).some((ca) => issuedBy(state.leaf.certificate, ca));
  } catch {
    return false;
  }
}

function issuedBy(leafPem: string, caPem: string): boolean {
  return new X509Certificate(leafPem).checkIssued(new X509Certificate(caPem)) && new X509Certificate(leafPem).verify(new X509Certificate(caPem).publicKey);
}

export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
