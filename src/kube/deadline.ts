// A deadline that is cancelled when the work finishes. AbortSignal.timeout() cannot be cancelled: on the
// admission path every review left a timer behind that fired seconds later and built a DOMException with
// a stack (about 4% of an admission's CPU in a profile of the in-process benchmark).

export interface Deadline {
  readonly signal: AbortSignal;
  /** Cancels the timer and the link to the outer signal; call once the guarded work has settled. */
  clear(): void;
  /** Aborts now (the work is abandoned), before the deadline. */
  cancel(): void;
  /** Starts the full time again from now: an inactivity timeout restarts it at each sign of progress. */
  restart(): void;
}

/** Aborts after `timeoutMs` with a TimeoutError (as AbortSignal.timeout does), or as soon as `outer` aborts. */
export function startDeadline(timeoutMs: number, outer?: AbortSignal): Deadline {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException('the deadline passed', 'TimeoutError')), timeoutMs);
  // Like AbortSignal.timeout: a pending deadline alone does not keep the process alive.
  timer.unref();
  const forward = () => controller.abort(outer?.reason);
  if (outer?.aborted) forward();
  else outer?.addEventListener('abort', forward, { once: true });
  return {
    signal: controller.signal,
    clear() {
      clearTimeout(timer);
      outer?.removeEventListener('abort', forward);
    },
    cancel() {
      controller.abort(new DOMException('the work was abandoned', 'AbortError'));
    },
    restart() {
      timer.refresh();
    },
  };
}
