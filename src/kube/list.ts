// One page of a LIST (the reflectors of watch/reflector.ts), read as it arrives: each object is handed out
// as soon as its bytes are in, so memory holds one object at a time, not the page (kube/json-items.ts).

import { asObject, asString } from '../util/json.ts';
import { OperationalError } from '../util/errors.ts';
import { ApiError, DEFAULT_TIMEOUT_MS, MAX_RESPONSE_BYTES, type KubeHttp } from './http.ts';
import { JsonItemsScanner } from './json-items.ts';

export interface ListPage {
  /** How many objects the page held (each was handed to the caller as it arrived). */
  readonly count: number;
  /** Size of the response body, for sizing the next page. */
  readonly bytes: number;
  /** Where the next page starts; undefined on the last page. */
  readonly continueToken: string | undefined;
  readonly resourceVersion: string | undefined;
}

/** The list's continuation (or resourceVersion) expired: list again from the start. */
export class GoneError extends OperationalError {
  override readonly name = 'GoneError';
}

export interface ListOptions {
  readonly limit: number;
  readonly labelSelector?: string | undefined;
  readonly fieldSelector?: string | undefined;
  readonly continueToken?: string | undefined;
}

/**
 * Reads one page, handing each object of `items` to `onItem` as soon as it has arrived, and resolves with
 * the page's list metadata. Fails with ResponseTooLargeError when one object is over MAX_RESPONSE_BYTES
 * (the objects before it have been handed out by then); a page as a whole may be any size.
 */
export async function listPage(http: KubeHttp, path: string, options: ListOptions, onItem: (item: unknown) => void): Promise<ListPage> {
  const query = new URLSearchParams({ limit: String(options.limit) });
  if (options.labelSelector) query.set('labelSelector', options.labelSelector);
  if (options.fieldSelector) query.set('fieldSelector', options.fieldSelector);
  if (options.continueToken) query.set('continue', options.continueToken);
  // An inactivity timeout rather than a deadline on the whole page: a large page keeps arriving, however
  // long it takes, and a silent connection still fails after the usual time.
  const stream = await http.stream(`${path}?${query}`, { idleTimeoutMs: DEFAULT_TIMEOUT_MS });
  if (stream.status !== 200) {
    stream.discard();
    if (stream.status === 410) throw new GoneError('list continuation expired');
    throw new ApiError(`LIST ${path}`, stream.status);
  }
  const scanner = new JsonItemsScanner(onItem, { maxBytes: MAX_RESPONSE_BYTES });
  let bytes = 0;
  await stream.read((chunk) => {
    bytes += chunk.length;
    scanner.write(chunk);
  });
  const metadata = asObject(scanner.end()['metadata']);
  return { count: scanner.count, bytes, continueToken: asString(metadata?.['continue']) || undefined, resourceVersion: asString(metadata?.['resourceVersion']) };
}

// Pages are bounded by bytes as well as by count: the API server's `limit` counts objects, and it holds a
// page's objects in memory while it answers, so 500 ConfigMaps of 1 MiB would be one 500 MiB answer.
export const PAGE_ITEMS = 500;
export const PAGE_TARGET_BYTES = 4 * 1024 * 1024;

/** The next page's `limit`, from the last page's bytes per object: about PAGE_TARGET_BYTES, 1 to `maxItems`. */
export function nextPageLimit(page: Pick<ListPage, 'count' | 'bytes'>, maxItems = PAGE_ITEMS): number {
  if (page.count === 0) return maxItems;
  const perItem = page.bytes / page.count;
  return Math.max(1, Math.min(maxItems, Math.floor(PAGE_TARGET_BYTES / perItem)));
}
