// Who the product is on the wire. Every write names FIELD_MANAGER (so managedFields, server-side apply
// conflict messages and audit logs say who wrote) and every request carries USER_AGENT; the version is
// package.json's, the one source of it.

import packageJson from '../package.json' with { type: 'json' };

export const PRODUCT_NAME = 'config-checksum-webhook';
export const PRODUCT_VERSION: string = packageJson.version;
export const FIELD_MANAGER = PRODUCT_NAME;
export const USER_AGENT = `${PRODUCT_NAME}/${PRODUCT_VERSION}`;
