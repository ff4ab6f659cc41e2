/**
 * Realistic sample records generated from a pipeline's schema: the smoke test (`sluice put`), the
 * twin's demo traffic and the property tests all draw from here, so new schemas need no new generator.
 * Deterministic for a seed.
 */
import { minorUnitDigits } from '../../transforms/shared/money';
import { isMultipleOf, typeAdmitsNull } from './model';

type JsonSchema = Record<string, unknown>;
export type Rng = () => number;

/** mulberry32: small, fast, good enough for sample data (not for secrets). */
export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SampleOptions {
  /** Event times are drawn from the hour before this instant. @default now */
  readonly now?: Date;
  /** Probability that an optional property is present. @default 0.7 */
  readonly optionalRate?: number;
  /** Draw edge values (bounds, unicode, quotes) more often: for property tests. @default false */
  readonly edgy?: boolean;
  /** Probability that a field whose type admits null (`["string", "null"]`) is null. @default 0.1, or 0.25 when `edgy` */
  readonly nullRate?: number;
}

/** A schema the sampler cannot draw a value from: `field` is where in the record (a JSON pointer, `*` for any item). */
export class SampleError extends Error {
  constructor(readonly field: string, readonly problem: string) {
    super(`${field}: ${problem}`);
    this.name = 'SampleError';
  }
}

/** One valid record for the schema. Throws SampleError when the schema gives the sampler too little to go on. */
export function sampleRecord(schema: object, rng: Rng, options: SampleOptions = {}): Record<string, unknown> {
  const value = sampleValue(schema as JsonSchema, rng, {
    now: (options.now ?? new Date()).getTime(),
    optionalRate: options.optionalRate ?? 0.7,
    edgy: options.edgy ?? false,
    nullRate: options.nullRate ?? (options.edgy ? 0.25 : 0.1),
  }, '');
  const record = value as Record<string, unknown>;
  const money = ((schema as JsonSchema)['x-sluice'] as { money?: { amountField: string; currencyField: string; defaultCurrency?: string } } | undefined)?.money;
  // Zero-decimal currencies (JPY, ...) have no cents: an amount with decimals would be refused by the transform, which
  // takes the default currency for a record without one (or with null).
  const currency = money === undefined ? undefined : record[money.currencyField] ?? money.defaultCurrency;
  if (money && typeof record[money.amountField] === 'number' && typeof currency === 'string' && minorUnitDigits(currency) === 0) {
    record[money.amountField] = Math.max(1, Math.round(record[money.amountField] as number));
  }
  return record;
}

export function sampleRecords(schema: object, count: number, seed: number, options: SampleOptions = {}): Array<Record<string, unknown>> {
  const rng = createRng(seed);
  return Array.from({ length: count }, () => sampleRecord(schema, rng, options));
}

/** Kinds of bad record the demo and the tests send; each must end as an error object with a reason. */
export const BAD_RECORD_KINDS = ['malformed-json', 'missing-required', 'wrong-type', 'unknown-enum', 'extra-field', 'bad-timestamp'] as const;
export type BadRecordKind = (typeof BAD_RECORD_KINDS)[number];

/** Bytes of a record that must fail validation (or parsing) in the given way. */
export function badRecordBytes(schema: object, kind: BadRecordKind, rng: Rng, options: SampleOptions = {}): Buffer {
  const s = schema as JsonSchema;
  const record = sampleRecord(schema, rng, options);
  const required = (s.required as string[] | undefined) ?? [];
  const props = s.properties as Record<string, JsonSchema>;
  const x = s['x-sluice'] as { eventTimeField: string; partitionFields: string[] };
  switch (kind) {
    case 'malformed-json':
      return Buffer.from(JSON.stringify(record).slice(0, -7));
    case 'missing-required':
      delete record[required[Math.floor(rng() * required.length)]];
      break;
    case 'wrong-type': {
      const numeric = Object.keys(props).find((k) => props[k].type === 'number' || props[k].type === 'integer');
      if (numeric) record[numeric] = 'not-a-number';
      else record[required[0]] = 12345;
      break;
    }
    case 'unknown-enum': {
      // A value no enum lists, in a partition field when one has an enum. A schema with no enum field gets the same
      // hostile string as a key it does not have: a record that must fail all the same (a field without an enum would
      // take it, and write it to the lake).
      const listed = (k: string) => Array.isArray(props[k]?.enum);
      const field = x.partitionFields.find(listed) ?? Object.keys(props).find(listed);
      record[field ?? '../../etc/passwd'] = '../../etc/passwd';
      break;
    }
    case 'extra-field':
      record.unexpected_field = 'surprise';
      break;
    case 'bad-timestamp':
      record[x.eventTimeField] = '31/12/2026 25:61';
      break;
  }
  return Buffer.from(JSON.stringify(record));
}

interface Ctx {
  readonly now: number;
  readonly optionalRate: number;
  readonly edgy: boolean;
  readonly nullRate: number;
}

const EDGE_STRINGS = ['', ' ', 'ünïcödé', '日本語テキスト', 'emoji 🚀', 'quote " and \\ backslash', 'line\nbreak', 'tab\tchar'];
const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet', 'kilo', 'lima'];
/** Draws of one array item, or one map key, before a `uniqueItems` array or a map gives up on a new one. */
const UNIQUE_DRAWS = 50;

function sampleValue(s: JsonSchema, rng: Rng, ctx: Ctx, field: string): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
  // Only a field that admits null draws for it, so records of schemas without one are what they were for a seed. An
  // enum lists null when its type admits it (the schema is refused otherwise): null as often as any such field's.
  if (Array.isArray(s.enum)) {
    const values = s.enum.filter((v) => v !== null);
    if (values.length < s.enum.length && (values.length === 0 || rng() < ctx.nullRate)) return null;
    return pick(values);
  }
  if (s.const !== undefined) return s.const;
  if (typeAdmitsNull(s) && rng() < ctx.nullRate) return null;
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type;
  switch (type) {
    case 'string': return sampleString(s, rng, ctx, pick, field);
    case 'integer': return sampleInteger(s, rng, ctx, field);
    case 'number': return sampleNumber(s, rng, ctx, field);
    case 'boolean': return rng() < 0.5;
    case 'array': return sampleArray(s, rng, ctx, field);
    case 'object': {
      const out: Record<string, unknown> = {};
      const props = s.properties as Record<string, JsonSchema> | undefined;
      const at = (key: string) => `${field}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
      if (props) {
        const required = (s.required as string[] | undefined) ?? [];
        if (typeof s.minProperties === 'number' || typeof s.maxProperties === 'number') {
          sampleBoundedProperties(s, props, required, out, rng, ctx, at);
        } else {
          for (const [key, sub] of Object.entries(props)) {
            if (required.includes(key) || rng() < ctx.optionalRate) out[key] = sampleValue(sub, rng, ctx, at(key));
          }
        }
      } else if (typeof s.additionalProperties === 'object') {
        const values = s.additionalProperties as JsonSchema;
        if (typeof s.minProperties !== 'number') {
          const max = typeof s.maxProperties === 'number' ? Math.min(s.maxProperties, 3) : 3;
          // A repeated key overwrites: at most max keys, and fewer is fine without minProperties.
          const n = Math.floor(rng() * (max + 1));
          for (let i = 0; i < n; i++) out[pick(WORDS)] = sampleValue(values, rng, ctx, `${field}/*`);
        } else {
          const lo = s.minProperties;
          const hi = typeof s.maxProperties === 'number' ? Math.min(s.maxProperties, Math.max(lo, 3)) : Math.max(lo, 3);
          const n = lo + Math.floor(rng() * (hi - lo + 1));
          for (let i = 0; i < n; i++) {
            // Keys are distinct, so minProperties is met: past the words, they get a number.
            const key = uniqueDraw(() => pick(WORDS), (k) => !(k in out)) ?? `key_${i}`;
            out[key] = sampleValue(values, rng, ctx, `${field}/*`);
          }
        }
      }
      return out;
    }
    default:
      throw new SampleError(field || '/', `cannot sample a value for schema type ${JSON.stringify(type)}`);
  }
}

/** A struct with minProperties or maxProperties: each optional property drawn in a share of records, as many as the bounds allow. */
function sampleBoundedProperties(
  s: JsonSchema, props: Record<string, JsonSchema>, required: readonly string[], out: Record<string, unknown>, rng: Rng, ctx: Ctx, at: (key: string) => string,
): void {
  const minProps = typeof s.minProperties === 'number' ? s.minProperties : 0;
  const maxProps = typeof s.maxProperties === 'number' ? s.maxProperties : Number.POSITIVE_INFINITY;
  const optional = Object.keys(props).filter((k) => !required.includes(k));
  let wanted = optional.filter(() => rng() < ctx.optionalRate);
  if (required.length + wanted.length > maxProps) wanted = wanted.slice(0, Math.max(maxProps - required.length, 0));
  for (const k of optional) if (required.length + wanted.length < minProps && !wanted.includes(k)) wanted.push(k);
  for (const key of Object.keys(props)) {
    if (required.includes(key) || wanted.includes(key)) out[key] = sampleValue(props[key], rng, ctx, at(key));
  }
}

function uniqueDraw<T>(draw: () => T, fresh: (v: T) => boolean): T | undefined {
  for (let i = 0; i < UNIQUE_DRAWS; i++) {
    const v = draw();
    if (fresh(v)) return v;
  }
  return undefined;
}

function sampleArray(s: JsonSchema, rng: Rng, ctx: Ctx, field: string): unknown[] {
  const lo = typeof s.minItems === 'number' ? s.minItems : 0;
  const max = typeof s.maxItems === 'number' ? Math.min(s.maxItems, Math.max(lo, 3)) : Math.max(lo, 3);
  const n = lo + Math.floor(rng() * (max - lo + 1));
  const items = s.items as JsonSchema;
  const draw = () => sampleValue(items, rng, ctx, `${field}/*`);
  if (s.uniqueItems !== true) return Array.from({ length: n }, draw);
  const out: unknown[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    // Items of a record are JSON values whose keys the sampler writes in schema order: equal items stringify alike.
    const item = uniqueDraw(draw, (v) => !seen.has(JSON.stringify(v)));
    if (item === undefined) {
      if (out.length >= lo) break;
      throw new SampleError(field || '/', `uniqueItems with minItems ${lo}: only ${out.length} distinct items were drawn from the items schema in ${UNIQUE_DRAWS} tries; give the items more values or lower minItems`);
    }
    seen.add(JSON.stringify(item));
    out.push(item);
  }
  return out;
}

/** The closed range a numeric schema allows, its exclusive bounds and `format` (int32, int64, float, double) included. */
interface NumericRange { readonly lo: number; readonly hi: number; readonly loOpen: boolean; readonly hiOpen: boolean }

function numericRange(s: JsonSchema, defaultSpan: number): NumericRange {
  let lo = Number.NEGATIVE_INFINITY;
  let hi = Number.POSITIVE_INFINITY;
  let loOpen = false;
  let hiOpen = false;
  if (typeof s.minimum === 'number') lo = s.minimum;
  if (typeof s.exclusiveMinimum === 'number' && s.exclusiveMinimum >= lo) [lo, loOpen] = [s.exclusiveMinimum, true];
  if (typeof s.maximum === 'number') hi = s.maximum;
  if (typeof s.exclusiveMaximum === 'number' && s.exclusiveMaximum <= hi) [hi, hiOpen] = [s.exclusiveMaximum, true];
  // Unbounded sides: from 0 when the maximum allows it, else a span below the maximum.
  if (lo === Number.NEGATIVE_INFINITY) lo = hi > 0 || (hi === 0 && !hiOpen) ? 0 : hi - defaultSpan;
  if (hi === Number.POSITIVE_INFINITY) hi = lo + defaultSpan;
  if (s.format === 'int32') [lo, hi] = [Math.max(lo, -(2 ** 31)), Math.min(hi, 2 ** 31 - 1)];
  if (s.type === 'integer' || s.format === 'int64') [lo, hi] = [Math.max(lo, Number.MIN_SAFE_INTEGER), Math.min(hi, Number.MAX_SAFE_INTEGER)];
  return { lo, hi, loOpen, hiOpen };
}

function inRange(v: number, r: NumericRange): boolean {
  return (r.loOpen ? v > r.lo : v >= r.lo) && (r.hiOpen ? v < r.hi : v <= r.hi);
}

function sampleInteger(s: JsonSchema, rng: Rng, ctx: Ctx, field: string): number {
  const r = numericRange(s, 10000);
  const lo = r.loOpen ? Math.floor(r.lo) + 1 : Math.ceil(r.lo);
  const hi = r.hiOpen ? Math.ceil(r.hi) - 1 : Math.floor(r.hi);
  if (typeof s.multipleOf === 'number') return sampleMultiple(s.multipleOf, { lo, hi, loOpen: false, hiOpen: false }, true, rng, ctx, field);
  if (lo > hi) throw new SampleError(field || '/', `no integer lies between ${describeBound(r, 'lo')} and ${describeBound(r, 'hi')}`);
  if (ctx.edgy && rng() < 0.2) return rng() < 0.5 ? lo : hi;
  return lo + Math.floor(rng() * (hi - lo + 1));
}

function sampleNumber(s: JsonSchema, rng: Rng, ctx: Ctx, field: string): number {
  // These formats take whole numbers only.
  if (s.format === 'int32' || s.format === 'int64') return sampleInteger(s, rng, ctx, field);
  const r = numericRange(s, 1000);
  if (typeof s.multipleOf === 'number') return sampleMultiple(s.multipleOf, r, false, rng, ctx, field);
  const { lo, hi } = r;
  if (lo > hi || (lo === hi && (r.loOpen || r.hiOpen))) throw new SampleError(field || '/', `no number lies between ${describeBound(r, 'lo')} and ${describeBound(r, 'hi')}`);
  if (ctx.edgy && rng() < 0.2) {
    const edge = rng() < 0.5 ? (r.loOpen ? lo + 0.01 : lo) : hi;
    return inRange(edge, r) ? edge : within(r, field);
  }
  // Money-like amounts skew small: most payments are modest.
  const span = hi - lo > 10000 ? Math.min(hi - lo, 500) : hi - lo;
  const raw = lo + rng() * span;
  const v = Math.round(raw * 100) / 100;
  if (inRange(v, r)) return v;
  const clamped = r.loOpen && v <= lo ? lo + 0.01 : Math.min(v, hi);
  if (inRange(clamped, r)) return clamped;
  // A range narrower than a cent: the unrounded draw, or another number inside it.
  return inRange(raw, r) ? raw : within(r, field);
}

/** A number of a range too narrow to draw from: its middle, or a bound it includes (a range a few doubles wide rounds its middle onto a bound). */
function within(r: NumericRange, field: string): number {
  const v = [r.lo + (r.hi - r.lo) / 2, r.lo, r.hi].find((x) => inRange(x, r));
  if (v === undefined) throw new SampleError(field || '/', `no number lies between ${describeBound(r, 'lo')} and ${describeBound(r, 'hi')}`);
  return v;
}

/** A multiple of `m` inside the range (an integer too when `integer`), one ajv's `multipleOf` accepts. */
function sampleMultiple(m: number, r: NumericRange, integer: boolean, rng: Rng, ctx: Ctx, field: string): number {
  // An integer multiple of a fraction (multipleOf 0.5): step by the least multiple of m that is whole.
  let step = m;
  if (integer && !Number.isInteger(m)) {
    const k = Array.from({ length: 1000 }, (_, i) => i + 1).find((i) => Number.isInteger(Number((i * m).toPrecision(12))));
    if (k === undefined) throw new SampleError(field || '/', `no integer is a multiple of ${m} (multipleOf)`);
    step = Number((k * m).toPrecision(12));
  }
  const first = Math.ceil(r.lo / step);
  const last = Math.floor(r.hi / step);
  const candidates = (k: number): number[] => {
    const exact = k * step;
    // k × 0.01 is not always a float ajv divides back to k: the shortest decimal near it is tried too.
    return [exact, Number(exact.toPrecision(12)), Number(exact.toPrecision(15))];
  };
  const ok = (v: number) => inRange(v, r) && isMultipleOf(v, m) && (!integer || Number.isInteger(v));
  for (let attempt = 0; attempt < 20 && first <= last; attempt++) {
    const k = ctx.edgy && attempt === 0 && rng() < 0.2 ? (rng() < 0.5 ? first : last) : first + Math.floor(rng() * Math.min(last - first + 1, 10000));
    const v = candidates(k).find(ok);
    if (v !== undefined) return v;
  }
  // A bound ajv takes for a multiple although none lies in the range: a subnormal one divides to zero (-5e-324 / 3).
  const bound = [r.lo, r.hi].find(ok);
  if (bound !== undefined) return bound;
  throw new SampleError(field || '/', `no multiple of ${m} (multipleOf) between ${describeBound(r, 'lo')} and ${describeBound(r, 'hi')} was found`);
}

function describeBound(r: NumericRange, side: 'lo' | 'hi'): string {
  return side === 'lo' ? `${r.lo} (${r.loOpen ? 'exclusive' : 'inclusive'})` : `${r.hi} (${r.hiOpen ? 'exclusive' : 'inclusive'})`;
}

/** A value for each string format the validators know (ajv-formats' full set), or undefined for a plain string. */
function formattedString(format: unknown, rng: Rng, ctx: Ctx, pick: <T>(xs: readonly T[]) => T): string | undefined {
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(rng() * 16).toString(16)).join('');
  const int = (n: number) => Math.floor(rng() * n);
  switch (format) {
    case 'date-time':
    case 'iso-date-time':
      return new Date(ctx.now - Math.floor(rng() * 3600_000)).toISOString();
    case 'date': return new Date(ctx.now).toISOString().slice(0, 10);
    case 'time':
    case 'iso-time':
      return `${new Date(ctx.now - Math.floor(rng() * 3600_000)).toISOString().slice(11, 19)}Z`;
    case 'duration': return pick(['PT30S', 'PT5M', 'PT1H30M', 'P1D', 'P2W', 'P1Y2M3DT4H5M6S']);
    case 'uuid': return `${hex(8)}-${hex(4)}-4${hex(3)}-${pick(['8', '9', 'a', 'b'])}${hex(3)}-${hex(12)}`;
    case 'email': return `${pick(WORDS)}.${int(1000)}@example.com`;
    case 'hostname': return `${pick(WORDS)}-${int(100)}.example.com`;
    case 'ipv4': return `${10 + int(200)}.${int(256)}.${int(256)}.${1 + int(254)}`;
    case 'ipv6': return `2001:db8:${hex(4)}:${hex(4)}::${hex(3)}${(1 + int(15)).toString(16)}`;
    case 'uri':
    case 'url':
    case 'uri-reference':
      return `https://example.com/${pick(WORDS)}/${int(100)}`;
    case 'uri-template': return `https://example.com/${pick(WORDS)}/{id}`;
    case 'json-pointer': return `/${pick(WORDS)}/${int(10)}`;
    case 'json-pointer-uri-fragment': return `#/${pick(WORDS)}/${int(10)}`;
    case 'relative-json-pointer': return `${int(3)}/${pick(WORDS)}`;
    case 'regex': return `^${pick(WORDS)}-[0-9]+$`;
    case 'byte': return Buffer.from(`${pick(WORDS)}-${int(1000)}`).toString('base64');
    default: // password, binary, none: no format to follow
      return undefined;
  }
}

function sampleString(s: JsonSchema, rng: Rng, ctx: Ctx, pick: <T>(xs: readonly T[]) => T, field: string): string {
  const min = typeof s.minLength === 'number' ? s.minLength : 0;
  const max = typeof s.maxLength === 'number' ? s.maxLength : 64;
  const fits = (v: string) => [...v].length >= min && [...v].length <= max;
  const examples = Array.isArray(s.examples) && s.examples.length > 0 ? (s.examples as string[]) : undefined;
  // Times are drawn near `now`; other formats and patterns take the schema's examples first, which are realistic
  // and, checked when the schema loads (describeSchema), valid.
  const timeFormat = s.format === 'date-time' || s.format === 'date';
  if (examples && !timeFormat) return pick(examples);
  const formatted = formattedString(s.format, rng, ctx, pick);
  if (formatted !== undefined) {
    if (fits(formatted)) return formatted;
    throw new SampleError(field || '/', `a "${String(s.format)}" string within minLength ${min} and maxLength ${max} needs "examples" to be sampled (drawn: ${JSON.stringify(formatted)})`);
  }
  if (s.pattern !== undefined) throw new SampleError(field, `a string with "pattern" needs "examples" to be sampled (pattern ${String(s.pattern)})`);
  let v = ctx.edgy && rng() < 0.3 ? pick(EDGE_STRINGS) : `${pick(WORDS)}-${Math.floor(rng() * 10000)}`;
  while ([...v].length < min) v += 'x';
  if ([...v].length > max) v = [...v].slice(0, max).join('');
  return v;
}
