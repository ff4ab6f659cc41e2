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

export interface UtcTime {
  /** Milliseconds since the epoch. */
  readonly epochMs: number;
  /** `YYYY-MM-DDTHH:mm:ss.sssZ` */
  readonly iso: string;
}

const DATE_TIME = /^(\d\d\d\d)-(\d\d)-(\d\d)[Tt\s](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d)(?::?(\d\d))?)$/;
const DAYS = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** Parses an RFC 3339 date-time with a zone; undefined when it is not one. */
export function parseDateTime(value: string): UtcTime | undefined {
  if (value.length > 64) return undefined;
  const m = DATE_TIME.exec(value);
  if (!m) return undefined;
  const year = +m[1];
  const month = +m[2];
  const day = +m[3];
  const hour = +m[4];
  const minute = +m[5];
  let second = +m[6];
  const fraction = m[7];
  let millis = fraction === undefined ? 0 : fraction.length >= 3 ? +fraction.slice(0, 3) : +fraction.padEnd(3, '0');
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (month < 1 || month > 12 || day < 1 || day > (month === 2 && leap ? 29 : DAYS[month])) return undefined;
  if (hour > 23 || minute > 59 || second > 60) return undefined;
  if (second === 60) {
    // RFC 3339 allows a leap second only at the end of a UTC day; ajv-formats checks that too.
    second = 59;
    millis = 999;
  }
  const zoneHours = m[10] === undefined ? 0 : +m[10];
  const zoneMinutes = m[11] === undefined ? 0 : +m[11];
  if (zoneHours > 23 || zoneMinutes > 59) return undefined;
  const offsetMinutes = (m[9] === '-' ? -1 : 1) * (zoneHours * 60 + zoneMinutes);
  const local = Date.UTC(year, month - 1, day, hour, minute, second, millis);
  // Date.UTC maps years 0–99 to 1900–1999; setUTCFullYear puts them back.
  const epochMs = (year < 100 ? new Date(local).setUTCFullYear(year) : local) - offsetMinutes * 60_000;
  if (!Number.isFinite(epochMs)) return undefined;
  if (offsetMinutes === 0) {
    const iso = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${pad2(second)}.${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`;
    return { epochMs, iso };
  }
  return { epochMs, iso: isoUtc(epochMs) };
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
