/** Exponential backoff with full jitter (the AWS Architecture Blog's recommendation for contended writes). */

export interface BackoffOptions {
  /** First delay ceiling in ms. @default 50 */
  readonly baseMs?: number;
  /** Largest delay ceiling in ms. @default 2000 */
  readonly capMs?: number;
}

/** Delay before retry number `attempt` (0 for the first retry). */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const base = options.baseMs ?? 50;
  const cap = options.capMs ?? 2000;
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 20));
  return Math.floor(random() * ceiling);
}

export { setTimeout as sleep } from 'node:timers/promises';

/** Runs `work` over `items` with at most `limit` in flight, results in input order. */
export async function mapWithConcurrency<T, R>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i], i);
    }
  });
  await Promise.all(workers);
  return results;
}

/** `items` in consecutive slices of at most `size` (a batch API's limit). */
export function slices<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * `items` in consecutive slices within a batch API's limits: at most `maxCount` items and `maxBytes` (as `bytesOf`
 * counts them) each. An item larger than `maxBytes` goes alone.
 */
export function sizedSlices<T>(items: Iterable<T>, maxCount: number, maxBytes: number, bytesOf: (item: T) => number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = bytesOf(item);
    if (current.length > 0 && (current.length >= maxCount || bytes + size > maxBytes)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/**
 * An AWS SDK client's request handler options (options, not a NodeHttpHandler: the client builds its own, and a bundle
 * then carries neither @smithy/node-http-handler nor the @smithy/core it needs): a call unanswered for `timeoutMs`
 * fails with TimeoutError and the SDK retries it, where its default waits without end, holding an invocation to the
 * function's timeout. A connection not accepted within `connectionTimeoutMs` (at most `timeoutMs`) is given up.
 */
export function requestTimeouts(timeoutMs: number, connectionTimeoutMs: number): { connectionTimeout: number; requestTimeout: number; throwOnRequestTimeout: true } {
  return { connectionTimeout: Math.min(connectionTimeoutMs, timeoutMs), requestTimeout: timeoutMs, throwOnRequestTimeout: true };
}
