/**
 * Event times as Sluice stores them: UTC ISO-8601 with milliseconds (`YYYY-MM-DDTHH:mm:ss.sssZ`),
 * the one form OpenX JSON, Athena, DuckDB and OpenSearch all read the same way.
 *
 * Parsing accepts exactly what the validator's `date-time` format (ajv-formats, full mode) accepts,
 * so a record the schema admits never fails here for its syntax: a `t`/`T`/whitespace separator,
 * any number of fraction digits (truncated to milliseconds, never rounded, so the hour cannot move),
 * offsets `Z`, `±HH`, `±HHMM`, `±HH:MM`, and a leap second (stored as :59.999 of the same minute).
 * UTC input is rewritten without a Date round trip: it is the common case and the transform's hot path.
 */
import { isCalendarDate, isPlainUtcForm } from '../../lib/schema/formats';

export interface UtcTime {
  /** `YYYY-MM-DDTHH:mm:ss.sssZ` (six-digit years outside 0000–9999, as Date#toISOString writes them) */
  readonly iso: string;
}

/** Longer values are refused before any parsing: no date-time a producer writes comes near. */
const MAX_LENGTH = 64;
const DATE_TIME = /^(\d\d\d\d)-(\d\d)-(\d\d)[Tt\s](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d)(?::?(\d\d))?)$/;
const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));
const pad4 = (n: number) => (n < 1000 ? String(n).padStart(4, '0') : String(n));

/** Parses an RFC 3339 date-time with a zone; undefined when it is not one. */
export function parseDateTime(value: string): UtcTime | undefined {
  if (value.length > MAX_LENGTH) return undefined;
  return isPlainUtcForm(value, MAX_LENGTH) ? plainUtcTime(value) : parseDateTimeByPattern(value);
}

/**
 * `parseDateTime` by the regular expression alone: every form, but slower than reading the plain
 * UTC form by position. Exported for the test that proves both readings agree.
 */
export function parseDateTimeByPattern(value: string): UtcTime | undefined {
  if (value.length > MAX_LENGTH) return undefined;
  const m = DATE_TIME.exec(value);
  if (!m) return undefined;
  const fraction = m[7];
  const millis = fraction === undefined ? 0 : fraction.length >= 3 ? +fraction.slice(0, 3) : +fraction.padEnd(3, '0');
  const zoneHours = m[10] === undefined ? 0 : +m[10];
  const zoneMinutes = m[11] === undefined ? 0 : +m[11];
  if (zoneHours > 23 || zoneMinutes > 59) return undefined;
  const offsetMinutes = (m[9] === '-' ? -1 : 1) * (zoneHours * 60 + zoneMinutes);
  return utcTime(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], millis, offsetMinutes);
}

// A local copy of formats.ts's `digit`, on purpose: run through tsx (the local twin), an imported function is
// read through a getter at every call, and this one is called 15 times per record.
const digit = (s: string, i: number): number => s.charCodeAt(i) - 48;

function plainUtcTime(v: string): UtcTime | undefined {
  const fractionDigits = v.length - 21;
  let millis = 0;
  if (fractionDigits > 0) {
    millis = digit(v, 20) * 100;
    if (fractionDigits > 1) millis += digit(v, 21) * 10;
    if (fractionDigits > 2) millis += digit(v, 22);
  }
  return utcTime(
    digit(v, 0) * 1000 + digit(v, 1) * 100 + digit(v, 2) * 10 + digit(v, 3),
    digit(v, 5) * 10 + digit(v, 6),
    digit(v, 8) * 10 + digit(v, 9),
    digit(v, 11) * 10 + digit(v, 12),
    digit(v, 14) * 10 + digit(v, 15),
    digit(v, 17) * 10 + digit(v, 18),
    millis,
    0,
    // Already in the stored form (unless a leap second): keep the producer's string rather than build an equal one.
    fractionDigits === 3 ? v : undefined,
  );
}

/** Checks the fields of a date-time and converts it to UTC; `stored` is the input when it is a UTC time in the stored form. */
function utcTime(
  year: number, month: number, day: number, hour: number, minute: number, second: number, millis: number, offsetMinutes: number, stored?: string,
): UtcTime | undefined {
  if (!isCalendarDate(year, month, day)) return undefined;
  if (hour > 23 || minute > 59 || second > 60) return undefined;
  if (second === 60) {
    // RFC 3339 allows a leap second only at the end of a UTC day; ajv-formats checks that too.
    second = 59;
    millis = 999;
    stored = undefined;
  }
  // Already in the stored form (nearly every record's time): the checks above are all it needs.
  if (stored !== undefined) return { iso: stored };
  const local = Date.UTC(year, month - 1, day, hour, minute, second, millis);
  // Date.UTC maps years 0–99 to 1900–1999; setUTCFullYear puts them back.
  const epochMs = (year < 100 ? new Date(local).setUTCFullYear(year) : local) - offsetMinutes * 60_000;
  if (!Number.isFinite(epochMs)) return undefined;
  if (offsetMinutes === 0) {
    const iso = `${pad4(year)}-${pad2(month)}-${pad2(day)}T${pad2(hour)}:${pad2(minute)}:${pad2(second)}.${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`;
    return { iso };
  }
  return { iso: isoUtc(epochMs) };
}

/** `YYYY-MM-DDTHH:mm:ss.sssZ` of an instant (years outside 0–9999 get the platform's six-digit form). */
export function isoUtc(epochMs: number): string {
  return new Date(epochMs).toISOString();
}

/** The UTC year of a `YYYY-…` ISO string, NaN for the six-digit forms of years outside 0–9999. */
export function isoYear(iso: string): number {
  if (iso.length !== 24) return NaN;
  return (iso.charCodeAt(0) - 48) * 1000 + (iso.charCodeAt(1) - 48) * 100 + (iso.charCodeAt(2) - 48) * 10 + (iso.charCodeAt(3) - 48);
}

/** UTC year/month/day/hour partition values, zero-padded, from an ISO string this module wrote. */
export function timePartitions(iso: string): { year: string; month: string; day: string; hour: string } {
  return { year: iso.slice(0, 4), month: iso.slice(5, 7), day: iso.slice(8, 10), hour: iso.slice(11, 13) };
}

/**
 * ISO strings of epoch milliseconds, reusing the formatted second: arrival times in one batch are
 * close together, and Date#toISOString per record shows in profiles.
 */
export function isoFormatter(): (epochMs: number) => string {
  let second = NaN;
  let prefix = '';
  return (epochMs) => {
    if (!Number.isFinite(epochMs) || Math.abs(epochMs) > 8.64e15) return '';
    const s = Math.floor(epochMs / 1000);
    if (s !== second) {
      const iso = new Date(s * 1000).toISOString();
      if (iso.length !== 24) return new Date(epochMs).toISOString();
      second = s;
      prefix = iso.slice(0, 20);
    }
    const ms = epochMs - s * 1000;
    const whole = Math.floor(ms);
    return `${prefix}${whole < 10 ? '00' : whole < 100 ? '0' : ''}${whole}Z`;
  };
}
