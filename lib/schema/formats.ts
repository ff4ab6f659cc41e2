/**
 * The string formats the validators check: ajv-formats' full set, except that `date-time` reads the
 * plain UTC form (`YYYY-MM-DDTHH:mm:ss[.f…]Z`, which nearly every record carries) by position.
 * ajv-formats splits the value and runs two regular expressions on it, which made the format the
 * largest single cost of validating a record. Every other form goes to ajv-formats itself, so the
 * set of accepted values is unchanged (test/schema/formats.test.ts checks the two agree).
 *
 * The transform's date-time parser (transforms/shared/timestamps.ts) reads the same plain form and
 * checks calendar dates with the helpers here, so validation and parsing cannot disagree. The
 * precompiled validators `require` this module (see `newAjv` in ./validator.ts), so it stays free
 * of anything a Lambda bundle should not carry.
 */
import type { FormatDefinition } from 'ajv';
import { fullFormats } from 'ajv-formats/dist/formats';

const ajvDateTime = fullFormats['date-time'] as FormatDefinition<string> & { validate: (value: string) => boolean };

const DAYS = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
/** What each of the first 19 characters of the plain form is: a digit (0), or that character. */
const PLAIN_UTC_PREFIX = [0, 0, 0, 0, 0x2d, 0, 0, 0x2d, 0, 0, 0x54, 0, 0, 0x3a, 0, 0, 0x3a, 0, 0]; // YYYY-MM-DDTHH:mm:ss
/** More fraction digits than this could round the seconds up to 60 when ajv-formats reads them as a number. */
const MAX_CHECKED_FRACTION_DIGITS = 12;

const digit = (s: string, i: number): number => s.charCodeAt(i) - 48;

/** ajv-formats' full-mode `date-time` check, with the plain UTC form read by position. */
export function isDateTime(value: string): boolean {
  return isPlainUtcForm(value, MAX_CHECKED_FRACTION_DIGITS) ? plainUtcIsValid(value) : ajvDateTime.validate(value);
}

/**
 * Whether `v` is written `YYYY-MM-DDTHH:mm:ss[.f…]Z` (capital T and Z, at most `maxFractionDigits`
 * fraction digits): the form nearly every producer sends, which can be read by position. Says
 * nothing about the ranges of the fields.
 */
export function isPlainUtcForm(v: string, maxFractionDigits: number): boolean {
  const n = v.length;
  if (n < 20 || n > 21 + maxFractionDigits || v.charCodeAt(n - 1) !== 0x5a /* Z */) return false;
  for (let i = 0; i < n - 1; i++) {
    const c = v.charCodeAt(i);
    const want = i < 19 ? PLAIN_UTC_PREFIX[i] : i === 19 ? 0x2e /* . */ : 0;
    if (want === 0 ? c < 0x30 || c > 0x39 : c !== want) return false;
  }
  return n !== 21; // a point needs a digit after it
}

/** Whether the month and day exist in that (proleptic Gregorian) year, as RFC 3339 and ajv-formats read them. */
export function isCalendarDate(year: number, month: number, day: number): boolean {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month >= 1 && month <= 12 && day >= 1 && day <= (month === 2 && leap ? 29 : DAYS[month]);
}

/** ajv-formats' date and time checks for a value of the plain UTC form (zone Z, so local time is UTC). */
function plainUtcIsValid(v: string): boolean {
  const year = digit(v, 0) * 1000 + digit(v, 1) * 100 + digit(v, 2) * 10 + digit(v, 3);
  const month = digit(v, 5) * 10 + digit(v, 6);
  const day = digit(v, 8) * 10 + digit(v, 9);
  if (!isCalendarDate(year, month, day)) return false;
  const hour = digit(v, 11) * 10 + digit(v, 12);
  const minute = digit(v, 14) * 10 + digit(v, 15);
  // With few enough fraction digits, "ss.f…" < 60 exactly when ss ≤ 59, and < 61 when ss ≤ 60.
  const second = digit(v, 17) * 10 + digit(v, 18);
  if (hour <= 23 && minute <= 59 && second <= 59) return true;
  // A leap second, only in the last minute of a UTC day.
  return hour === 23 && minute === 59 && second <= 60;
}

export const dateTimeFormat: FormatDefinition<string> = { validate: isDateTime, compare: ajvDateTime.compare };

/** ajv-formats' full formats with this `date-time`: what the precompiled validators reference. */
export const formats = { ...fullFormats, 'date-time': dateTimeFormat };
