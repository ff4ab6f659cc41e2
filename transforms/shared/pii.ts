/**
 * PII masks named in a schema's `x-sluice.pii`. Masked values stay strings (the Glue column keeps
 * its type); `drop` removes the field. The keyed hash is HMAC-SHA-256 so equal inputs still join
 * across records and pipelines, while nobody without the key can test guesses against it.
 */
import type { PiiMask } from '../../lib/schema/model';
import { hmacSha256Hex } from './hmac';

export const REDACTED = '[redacted]';

/** The masked form of a value, or undefined for `drop`. */
export function maskValue(mask: PiiMask, value: string, hashKey: string): string | undefined {
  switch (mask) {
    case 'last4':
      return lastFourCodePoints(value);
    case 'hash':
      return hmacSha256Hex(hashKey, value);
    case 'redact':
      return REDACTED;
    case 'drop':
      return undefined;
  }
}

/**
 * The last four code points (not UTF-16 units, so a surrogate pair is never split) — what
 * `Array.from(value).slice(-4).join('')` gives, without an array. A value of four or fewer would be
 * shown whole, so it is redacted instead.
 */
function lastFourCodePoints(value: string): string {
  let at = value.length;
  let start = 0;
  let count = 0;
  while (at > 0 && count < 5) {
    const low = value.charCodeAt(at - 1);
    const high = at >= 2 ? value.charCodeAt(at - 2) : 0;
    at -= low >= 0xdc00 && low <= 0xdfff && high >= 0xd800 && high <= 0xdbff ? 2 : 1;
    if (++count === 4) start = at;
  }
  return count > 4 ? value.slice(start) : REDACTED;
}
