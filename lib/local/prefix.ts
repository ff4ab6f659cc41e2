/**
 * Firehose S3 prefix expressions and object keys, as the local twin evaluates them.
 *
 * Follows the Firehose developer guide ("Custom prefixes for Amazon S3 objects", "Amazon S3 object
 * name format"): `!{timestamp:<Java DateTimeFormatter>}` is the arrival time of the oldest record in
 * the object, the same instant for every use in one prefix, UTC unless a time zone is configured;
 * `!{firehose:random-string}` is 11 characters, new per use; `!{firehose:error-output-type}` is
 * allowed in the error prefix only; `!{partitionKeyFromLambda:<key>}` comes from the transform's
 * `metadata.partitionKeys`; a prefix without any expression gets `yyyy/MM/dd/HH/` appended as is;
 * at most 512 characters after evaluation.
 *
 * The twin is stricter than AWS about partition key values, because here a key is a file path:
 * a value that is empty, contains `/`, `\`, `..` or a control character, or would make the key
 * leave the prefix's literal root, fails the record (error type `partitioning-failed`) instead of
 * becoming a path.
 */
import { randomUUID } from 'node:crypto';

/** Characters a prefix may have after evaluation (Firehose's documented limit). */
export const MAX_EVALUATED_PREFIX_LENGTH = 512;
/** Longest path segment most local file systems accept (NAME_MAX), in UTF-8 bytes. */
export const MAX_SEGMENT_BYTES = 255;
/** Appended to a prefix that has no expression at all. */
export const DEFAULT_TIME_PREFIX = 'yyyy/MM/dd/HH/';
/** Version of every local delivery stream (AWS starts at 1 and bumps it per configuration change). */
export const DELIVERY_STREAM_VERSION = 1;

/** The error types `!{firehose:error-output-type}` evaluates to in the twin. */
export const ERROR_OUTPUT_TYPES = [
  'processing-failed',
  'format-conversion-failed',
  'partitioning-failed',
  'AmazonOpenSearchService-failed',
] as const;
export type ErrorOutputType = (typeof ERROR_OUTPUT_TYPES)[number];

export type PrefixKind = 'data' | 'error';

type PrefixPart =
  | { readonly kind: 'literal'; readonly text: string }
  | { readonly kind: 'timestamp'; readonly pattern: string; readonly tokens: readonly TimeToken[] }
  | { readonly kind: 'random-string' }
  | { readonly kind: 'error-output-type' }
  | { readonly kind: 'partition-key'; readonly key: string };

/** A parsed prefix: parse once when a stream is configured, evaluate per object. */
export interface PrefixTemplate {
  readonly source: string;
  readonly kind: PrefixKind;
  readonly parts: readonly PrefixPart[];
  /** True when the prefix has at least one `!{…}` expression (otherwise `yyyy/MM/dd/HH/` is appended). */
  readonly hasExpressions: boolean;
  /** Partition keys used, in order of first use. */
  readonly partitionKeys: readonly string[];
  /** Literal text before the first expression: every evaluated key must stay under it. */
  readonly root: string;
}

/** A prefix the twin cannot evaluate: a configuration mistake, reported when the stream is set up. */
export class PrefixSyntaxError extends Error {
  constructor(readonly prefix: string, problem: string) {
    super(`prefix ${JSON.stringify(prefix)}: ${problem}`);
    this.name = 'PrefixSyntaxError';
  }
}

export type PrefixEvaluationProblem =
  | 'missing-partition-key'
  | 'invalid-partition-key'
  | 'too-long'
  | 'invalid-segment'
  | 'escapes-root';

/** A prefix that cannot be evaluated for a particular record or object: the records go to the error prefix. */
export class PrefixEvaluationError extends Error {
  constructor(readonly problem: PrefixEvaluationProblem, message: string) {
    super(message);
    this.name = 'PrefixEvaluationError';
  }
}

export interface PrefixContext {
  /** Arrival time (epoch ms) of the oldest record in the object. */
  readonly arrivalTimestamp: number;
  /** IANA time zone for `!{timestamp:…}`. @default 'UTC' */
  readonly timeZone?: string;
  /** The record's `metadata.partitionKeys` (data prefix only). */
  readonly partitionKeys?: Readonly<Record<string, unknown>>;
  /** Required when the prefix uses `!{firehose:error-output-type}` (error prefix only). */
  readonly errorOutputType?: ErrorOutputType;
  /** Source of `!{firehose:random-string}`. @default 11 characters of a random UUID */
  readonly randomString?: () => string;
}

const EXPRESSION_NAMESPACES = ['timestamp', 'firehose', 'partitionKeyFromLambda', 'partitionKeyFromQuery'];

/** Parses a Firehose `Prefix` (kind 'data') or `ErrorOutputPrefix` (kind 'error'), enforcing Firehose's rules. */
export function parsePrefix(source: string, kind: PrefixKind): PrefixTemplate {
  const fail = (problem: string): never => {
    throw new PrefixSyntaxError(source, problem);
  };
  const parts: PrefixPart[] = [];
  const partitionKeys: string[] = [];
  let root: string | undefined;
  let literal = '';
  let i = 0;
  while (i < source.length) {
    const start = source.indexOf('!{', i);
    if (start < 0) {
      literal += source.slice(i);
      break;
    }
    literal += source.slice(i, start);
    const end = source.indexOf('}', start + 2);
    if (end < 0) fail(`"!{" at offset ${start} is not closed by "}"`);
    const body = source.slice(start + 2, end);
    if (body.includes('!{')) fail(`"!{" may only start an expression !{namespace:value}; found a nested one at offset ${start}`);
    const colon = body.indexOf(':');
    if (colon < 0) fail(`expression !{${body}} needs the form !{namespace:value}`);
    const namespace = body.slice(0, colon);
    const value = body.slice(colon + 1);
    if (literal) parts.push({ kind: 'literal', text: literal });
    if (root === undefined) root = literal;
    literal = '';
    switch (namespace) {
      case 'timestamp':
        if (value === '') fail('!{timestamp:} needs a DateTimeFormatter pattern, e.g. !{timestamp:yyyy/MM/dd}');
        parts.push({ kind: 'timestamp', pattern: value, tokens: compileTimePattern(value, source) });
        break;
      case 'firehose':
        if (value === 'random-string') {
          parts.push({ kind: 'random-string' });
        } else if (value === 'error-output-type') {
          if (kind === 'data') fail('!{firehose:error-output-type} can only be used in the error output prefix');
          parts.push({ kind: 'error-output-type' });
        } else {
          fail(`unknown firehose expression !{firehose:${value}}; use error-output-type or random-string`);
        }
        break;
      case 'partitionKeyFromLambda':
        if (kind === 'error') fail('partition keys cannot be used in the error output prefix');
        if (!/^[A-Za-z0-9_-]{1,64}$/.test(value)) fail(`partition key name ${JSON.stringify(value)} must be 1–64 letters, digits, "_" or "-"`);
        parts.push({ kind: 'partition-key', key: value });
        if (!partitionKeys.includes(value)) partitionKeys.push(value);
        break;
      case 'partitionKeyFromQuery':
        fail('!{partitionKeyFromQuery:…} (inline JQ parsing) is not emulated by the local twin; return the key from the transform and use !{partitionKeyFromLambda:…}');
        break;
      default:
        fail(`unknown expression namespace "${namespace}" in !{${body}}; expected one of ${EXPRESSION_NAMESPACES.join(', ')}`);
    }
    i = end + 1;
  }
  if (literal) parts.push({ kind: 'literal', text: literal });
  const hasExpressions = parts.some((p) => p.kind !== 'literal');
  if (kind === 'error' && hasExpressions && !parts.some((p) => p.kind === 'error-output-type')) {
    fail('an error output prefix with expressions must contain !{firehose:error-output-type}');
  }
  if (source.startsWith('/')) fail('a prefix must not start with "/"');
  return { source, kind, parts, hasExpressions, partitionKeys, root: root ?? source };
}

/**
 * Evaluates a prefix for one object. Throws PrefixEvaluationError when a partition key is missing or
 * unsafe, or the result breaks Firehose's or the file system's limits.
 */
export function evaluatePrefix(template: PrefixTemplate, context: PrefixContext): string {
  const zone = context.timeZone ?? 'UTC';
  const random = context.randomString ?? randomString;
  let fields: TimeFields | undefined;
  const time = (): TimeFields => (fields ??= timeFields(context.arrivalTimestamp, zone));
  let out = '';
  for (const part of template.parts) {
    switch (part.kind) {
      case 'literal':
        out += part.text;
        break;
      case 'timestamp':
        out += renderTime(part.tokens, time());
        break;
      case 'random-string':
        out += random();
        break;
      case 'error-output-type':
        if (!context.errorOutputType) throw new Error(`prefix ${JSON.stringify(template.source)} needs an error output type to evaluate`);
        out += context.errorOutputType;
        break;
      case 'partition-key':
        out += partitionKeyValue(part.key, context.partitionKeys);
        break;
    }
  }
  if (!template.hasExpressions) {
    // Without expressions Firehose appends the default time prefix (for an error prefix, after the error type).
    if (template.kind === 'error' && context.errorOutputType) out += `${context.errorOutputType}/`;
    out += renderTime(DEFAULT_TIME_TOKENS, time());
  }
  checkEvaluatedPrefix(template, out);
  return out;
}

/** The problem with a partition key value, or undefined when it can safely become part of a key. */
export function partitionValueProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `must be a string, got ${value === null ? 'null' : typeof value}`;
  if (value === '') return 'is empty';
  if (value === '.') return 'is "."';
  if (value.includes('/')) return 'contains "/"';
  if (value.includes('\\')) return 'contains "\\"';
  if (value.includes('..')) return 'contains ".."';
  // C0 and C1 control characters, DEL, and lone UTF-16 surrogates (not representable in a UTF-8 key).
  if (hasControlCharacter(value)) return 'contains a control character';
  if (!isWellFormedUnicode(value)) return 'contains an unpaired UTF-16 surrogate';
  if (value.length > MAX_EVALUATED_PREFIX_LENGTH) return `is longer than ${MAX_EVALUATED_PREFIX_LENGTH} characters`;
  return undefined;
}

function partitionKeyValue(key: string, keys: Readonly<Record<string, unknown>> | undefined): string {
  const value = keys && Object.prototype.hasOwnProperty.call(keys, key) ? keys[key] : undefined;
  if (value === undefined) {
    throw new PrefixEvaluationError('missing-partition-key', `partition key "${key}" is missing from the transform's metadata.partitionKeys`);
  }
  const problem = partitionValueProblem(value);
  if (problem) {
    throw new PrefixEvaluationError('invalid-partition-key', `partition key "${key}" ${problem}: ${preview(value)}`);
  }
  return value as string;
}

function checkEvaluatedPrefix(template: PrefixTemplate, prefix: string): void {
  const length = [...prefix].length;
  if (length > MAX_EVALUATED_PREFIX_LENGTH) {
    throw new PrefixEvaluationError('too-long', `the evaluated prefix is ${length} characters; Firehose allows at most ${MAX_EVALUATED_PREFIX_LENGTH}`);
  }
  if (!prefix.startsWith(template.root)) {
    throw new PrefixEvaluationError('escapes-root', `the evaluated prefix ${preview(prefix)} is not under ${JSON.stringify(template.root)}`);
  }
  const segments = prefix.split('/');
  // The last element is the start of the object name (or empty after a trailing "/").
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    const last = i === segments.length - 1;
    if (segment === '.' || segment === '..') {
      throw new PrefixEvaluationError('escapes-root', `the evaluated prefix ${preview(prefix)} has a "${segment}" path segment`);
    }
    if (segment === '' && !last) {
      throw new PrefixEvaluationError('invalid-segment', `the evaluated prefix ${preview(prefix)} has an empty path segment ("//" or a leading "/")`);
    }
    if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES) {
      throw new PrefixEvaluationError('invalid-segment', `a path segment of the evaluated prefix is longer than ${MAX_SEGMENT_BYTES} bytes, which local file systems refuse`);
    }
  }
  if (prefix.includes('\\') || prefix.includes('\u0000')) {
    throw new PrefixEvaluationError('invalid-segment', `the evaluated prefix ${preview(prefix)} contains "\\" or NUL`);
  }
}

export interface ObjectKeyOptions {
  readonly streamName: string;
  /** Arrival time (epoch ms) of the oldest record in the object. */
  readonly timestamp: number;
  /** @default 'UTC' */
  readonly timeZone?: string;
  /** @default 1 */
  readonly version?: number;
  /** e.g. '.parquet'. @default '' */
  readonly extension?: string;
  /** @default a random UUID */
  readonly uuid?: string;
}

/** `<evaluated prefix><stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><ext>` (Firehose's object name format). */
export function objectKey(evaluatedPrefix: string, options: ObjectKeyOptions): string {
  const stamp = renderTime(SUFFIX_TIME_TOKENS, timeFields(options.timestamp, options.timeZone ?? 'UTC'));
  const version = options.version ?? DELIVERY_STREAM_VERSION;
  return `${evaluatedPrefix}${options.streamName}-${version}-${stamp}-${options.uuid ?? randomUUID()}${options.extension ?? ''}`;
}

/** 11 characters, like Firehose's `!{firehose:random-string}` (e.g. `046b6c7f-0b`). */
export function randomString(): string {
  return randomUUID().slice(0, 11);
}

/** Formats an instant with a Java DateTimeFormatter pattern (the subset Firehose prefixes use). */
export function formatTimestamp(pattern: string, epochMs: number, timeZone = 'UTC'): string {
  return renderTime(compileTimePattern(pattern, pattern), timeFields(epochMs, timeZone));
}

/** Throws a RangeError naming the zone when Intl does not know it. */
export function checkTimeZone(timeZone: string): void {
  zoneFormatter(timeZone);
}

// ---------------------------------------------------------------------------------------------
// Java DateTimeFormatter subset: y/u (year), M (month), d (day), H (hour 0–23), m, s, S (fraction),
// 'quoted literals' with '' for a quote, and any other non-letter character as a literal.
// ---------------------------------------------------------------------------------------------

type TimeField = 'year' | 'month' | 'day' | 'hour' | 'minute' | 'second' | 'fraction';
type TimeToken = { readonly literal: string } | { readonly field: TimeField; readonly width: number };

interface TimeFields {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  readonly millisecond: number;
}

const PATTERN_FIELDS: Readonly<Record<string, TimeField>> = {
  y: 'year', u: 'year', M: 'month', d: 'day', H: 'hour', m: 'minute', s: 'second', S: 'fraction',
};
const MAX_WIDTH: Readonly<Record<TimeField, number>> = {
  year: 9, month: 2, day: 2, hour: 2, minute: 2, second: 2, fraction: 9,
};

function compileTimePattern(pattern: string, source: string): TimeToken[] {
  const fail = (problem: string): never => {
    throw new PrefixSyntaxError(source, `timestamp pattern ${JSON.stringify(pattern)}: ${problem}`);
  };
  const tokens: TimeToken[] = [];
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i];
    if (c === "'") {
      if (pattern[i + 1] === "'") {
        tokens.push({ literal: "'" });
        i += 2;
        continue;
      }
      let text = '';
      let j = i + 1;
      for (;;) {
        if (j >= pattern.length) fail(`quote at offset ${i} is not closed`);
        if (pattern[j] === "'") {
          if (pattern[j + 1] === "'") {
            text += "'";
            j += 2;
            continue;
          }
          break;
        }
        text += pattern[j];
        j++;
      }
      tokens.push({ literal: text });
      i = j + 1;
      continue;
    }
    if (/[A-Za-z]/.test(c)) {
      let j = i;
      while (pattern[j] === c) j++;
      const width = j - i;
      const field = PATTERN_FIELDS[c];
      if (!field) fail(`pattern letter "${c}" is not supported by the local twin (supported: y u M d H m s S and 'quoted text')`);
      if (width > MAX_WIDTH[field]) fail(`too many pattern letters: "${c.repeat(width)}"${field === 'month' ? ' (month names are not supported)' : ''}`);
      tokens.push({ field, width });
      i = j;
      continue;
    }
    if ('#{}[]'.includes(c)) fail(`"${c}" is reserved in DateTimeFormatter patterns`);
    tokens.push({ literal: c });
    i++;
  }
  return tokens;
}

const DEFAULT_TIME_TOKENS = compileTimePattern(DEFAULT_TIME_PREFIX, DEFAULT_TIME_PREFIX);
const SUFFIX_TIME_TOKENS = compileTimePattern('yyyy-MM-dd-HH-mm-ss', 'object key');

function renderTime(tokens: readonly TimeToken[], t: TimeFields): string {
  let out = '';
  for (const token of tokens) {
    if ('literal' in token) {
      out += token.literal;
      continue;
    }
    switch (token.field) {
      case 'year':
        // Java: "yy" is the two-digit reduced year; other widths pad the full year.
        out += token.width === 2 ? pad(((t.year % 100) + 100) % 100, 2) : pad(t.year, token.width);
        break;
      case 'month': out += pad(t.month, token.width); break;
      case 'day': out += pad(t.day, token.width); break;
      case 'hour': out += pad(t.hour, token.width); break;
      case 'minute': out += pad(t.minute, token.width); break;
      case 'second': out += pad(t.second, token.width); break;
      case 'fraction': out += pad(t.millisecond, 3).padEnd(9, '0').slice(0, token.width); break;
    }
  }
  return out;
}

function pad(n: number, width: number): string {
  const s = String(Math.abs(n)).padStart(width, '0');
  return n < 0 ? `-${s}` : s;
}

const zoneFormatters = new Map<string, Intl.DateTimeFormat>();

function zoneFormatter(timeZone: string): Intl.DateTimeFormat {
  let f = zoneFormatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric',
        hour: 'numeric', minute: 'numeric', second: 'numeric',
      });
    } catch {
      throw new RangeError(`time zone ${JSON.stringify(timeZone)} is not a known IANA time zone (e.g. UTC, Asia/Tokyo, America/New_York)`);
    }
    zoneFormatters.set(timeZone, f);
  }
  return f;
}

function timeFields(epochMs: number, timeZone: string): TimeFields {
  if (!Number.isFinite(epochMs)) throw new RangeError(`timestamp ${epochMs} is not a finite epoch time in milliseconds`);
  const millisecond = ((epochMs % 1000) + 1000) % 1000;
  if (timeZone === 'UTC') {
    const d = new Date(epochMs);
    return {
      year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(),
      hour: d.getUTCHours(), minute: d.getUTCMinutes(), second: d.getUTCSeconds(), millisecond,
    };
  }
  const parts = zoneFormatter(timeZone).formatToParts(new Date(epochMs));
  const get = (type: Intl.DateTimeFormatPartTypes): number => Number(parts.find((p) => p.type === type)?.value);
  return {
    year: get('year'), month: get('month'), day: get('day'),
    hour: get('hour'), minute: get('minute'), second: get('second'), millisecond,
  };
}

function hasControlCharacter(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x1f || (c >= 0x7f && c <= 0x9f)) return true;
  }
  return false;
}

function isWellFormedUnicode(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return false;
    }
  }
  return true;
}

function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}…"` : text;
}
