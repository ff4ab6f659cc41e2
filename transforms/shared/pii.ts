/**
 * PII masks named in a schema's `x-sluice.pii`. Masked values stay strings (the Glue column keeps
 * its type); `drop` removes the field. The keyed hash is HMAC-SHA-256 so equal inputs still join
 * across records and pipelines, while nobody without the key can test guesses against it.
 */
import { createHmac } from 'node:crypto';
import type { PiiMask } from '../../lib/schema/model';

export const REDACTED = '[redacted]';

/** The masked form of a value, or undefined for `drop`. */
export function maskValue(mask: PiiMask, value: string, hashKey: string): string | undefined {
  switch (mask) {
    case 'last4': {
      // Code points, not UTF-16 units, so a surrogate pair is never split; a value of four or fewer
      // characters would be shown whole, so it is redacted instead.
      const chars = Array.from(value);
      return chars.length > 4 ? chars.slice(-4).join('') : REDACTED;
    }
    case 'hash':
      return createHmac('sha256', hashKey).update(value, 'utf8').digest('hex');
    case 'redact':
      return REDACTED;
    case 'drop':
      return undefined;
  }
}
