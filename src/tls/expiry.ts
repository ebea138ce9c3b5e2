// When the certificate served stops being valid, and when the CA that issued it does: what the metric
// config_checksum_certificate_expiration_timestamp_seconds shows and the certificate alerts watch. A
// serving certificate that is renewed in time never comes close to its notAfter; one that is close means
// renewal stopped (the self-managed loop cannot write its Secret, cert-manager cannot issue).

import { X509Certificate } from 'node:crypto';
import type { Gauge } from 'prom-client';
import { splitPem } from './authority.ts';

export interface CertificateExpiry {
  /** notAfter of the served certificate (the first of its chain), Unix seconds. */
  readonly serving: number;
  /** notAfter of the CA that issued it, Unix seconds; undefined when none of the candidates did. */
  readonly ca: number | undefined;
}

/**
 * `chainPem` is what the server presents (the certificate, then any chain after it); `issuersPem` holds
 * more candidates for its issuer (the caBundle of the self-managed Secret, or the ca.crt cert-manager
 * writes beside tls.crt). The issuer is the candidate whose subject is the certificate's issuer and whose
 * key verifies its signature; a self-signed certificate is its own. Candidates that do not parse are
 * passed over: they must never stop a certificate from loading.
 */
export function certificateExpiry(chainPem: string, issuersPem = ''): CertificateExpiry {
  const [leafPem, ...chain] = splitPem(chainPem);
  if (leafPem === undefined) throw new Error('no PEM certificate to serve');
  const leaf = new X509Certificate(leafPem);
  const issuer = [...chain, ...splitPem(issuersPem)].map(parseOrUndefined).find((candidate) => candidate !== undefined && issued(candidate, leaf));
  return { serving: notAfterSeconds(leaf), ca: issuer ? notAfterSeconds(issuer) : undefined };
}

/** Sets the gauge from the certificate about to be served; the `ca` sample goes away when the issuer is not known. */
export function observeCertificateExpiry(gauge: Gauge<'certificate'>, chainPem: string, issuersPem = ''): void {
  const expiry = certificateExpiry(chainPem, issuersPem);
  gauge.set({ certificate: 'serving' }, expiry.serving);
  if (expiry.ca === undefined) gauge.remove({ certificate: 'ca' });
  else gauge.set({ certificate: 'ca' }, expiry.ca);
}

function issued(candidate: X509Certificate, leaf: X509Certificate): boolean {
  try {
    return leaf.checkIssued(candidate) && leaf.verify(candidate.publicKey);
  } catch {
    return false;
  }
}

function parseOrUndefined(pem: string): X509Certificate | undefined {
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

function notAfterSeconds(certificate: X509Certificate): number {
  return Math.floor(new Date(certificate.validTo).getTime() / 1000);
}
