/**
 * Turning untrusted record bytes into a JSON value, with a reason a person can act on when that
 * fails. Never throws. Reasons never quote the record's content (it may hold PII); they name the
 * byte offset instead.
 */

export type Decoded =
  | {
      readonly ok: true;
      readonly value: unknown;
      /**
       * Whether the text holds a `\u` escape. Only such an escape can put an unpaired surrogate
       * into a parsed string (the text itself is valid UTF-8), so without one no string needs that check.
       */
      readonly unicodeEscapes: boolean;
    }
  | { readonly ok: false; readonly empty: true }
  | { readonly ok: false; readonly empty: false; readonly rule: 'utf8' | 'syntax'; readonly message: string };

import { isUtf8 } from 'node:buffer';

const BOM = 0xfeff;

/**
 * Decodes UTF-8 strictly (invalid sequences and overlong forms fail), tolerates one leading byte
 * order mark (some Windows producers write it), and parses one JSON value. Bytes that are only
 * whitespace come back as `empty`.
 */
export function decodeJson(bytes: Uint8Array): Decoded {
  // isUtf8 is a native, allocation-free scan; Buffer's decoder would silently substitute U+FFFD.
  if (!isUtf8(bytes)) {
    return { ok: false, empty: false, rule: 'utf8', message: `is not valid UTF-8 (first bad byte at offset ${firstInvalidUtf8Offset(bytes)})` };
  }
  let text = (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)).toString('utf8');
  if (text.charCodeAt(0) === BOM) text = text.slice(1);
  if (isBlank(text)) return { ok: false, empty: true };
  try {
    return { ok: true, value: JSON.parse(text), unicodeEscapes: text.includes('\\u') };
  } catch (err) {
    return { ok: false, empty: false, rule: 'syntax', message: `is not valid JSON (${jsonErrorWithoutContent(err)})` };
  }
}

function isBlank(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return false;
  }
  return true;
}

/**
 * V8's JSON.parse messages quote up to ten characters of the input; keep the position, drop the quote.
 * Node 22 (the Lambda runtime) also appends `(line L column C)` to a position, which Node 20 (where the
 * twin may run) does not: dropped too, so a record gets the same reason in both. Exported for its test.
 */
export function jsonErrorWithoutContent(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // V8 marks a clipped quote with "..." on either side: `Unexpected token 'N', ..."t":NaN}" is not valid JSON`.
  const token = /^Unexpected token '(.+?)', (?:\.\.\.)?".*"(?:\.\.\.)? is not valid JSON$/su.exec(message);
  if (token) {
    const c = token[1];
    const shown = /^[\x21-\x7e]$/.test(c) ? `'${c}'` : `U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
    return `unexpected token ${shown}`;
  }
  return message
    .replace(/, (?:\.\.\.)?".*"(?:\.\.\.)? is not valid JSON$/su, '')
    .replace(/ in JSON at/, ' at')
    .replace(/ \(line \d+ column \d+\)$/, '')
    .slice(0, 200);
}

/** Offset of the first byte that breaks UTF-8 well-formedness (RFC 3629), for the reason. */
export function firstInvalidUtf8Offset(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    if (b < 0x80) { i++; continue; }
    let need: number;
    let min: number;
    if (b >= 0xc2 && b <= 0xdf) { need = 1; min = 0x80; }
    else if (b >= 0xe0 && b <= 0xef) { need = 2; min = 0x800; }
    else if (b >= 0xf0 && b <= 0xf4) { need = 3; min = 0x10000; }
    else return i;
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return bytes.length;
}
