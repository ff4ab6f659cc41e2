/**
 * Realistic sample records generated from a pipeline's schema: the smoke test (`sluice put`), the
 * twin's demo traffic and the property tests all draw from here, so new schemas need no new generator.
 * Deterministic for a seed.
 */

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
  }, '');
  const record = value as Record<string, unknown>;
  const money = ((schema as JsonSchema)['x-sluice'] as { money?: { amountField: string; currencyField: string } } | undefined)?.money;
  // Zero-decimal currencies (JPY, ...) have no cents: an amount with decimals would be refused by the transform.
  if (money && typeof record[money.amountField] === 'number' && ZERO_DECIMAL_CURRENCIES.has(String(record[money.currencyField]))) {
    record[money.amountField] = Math.max(1, Math.round(record[money.amountField] as number));
  }
  return record;
}

const ZERO_DECIMAL_CURRENCIES = new Set(['BIF', 'CLP', 'DJF', 'GNF', 'ISK', 'JPY', 'KMF', 'KRW', 'PYG', 'RWF', 'UGX', 'UYI', 'VND', 'VUV', 'XAF', 'XOF', 'XPF']);

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
    case 'unknown-enum':
      record[x.partitionFields[0]] = '../../etc/passwd';
      break;
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
}

const EDGE_STRINGS = ['', ' ', 'ünïcödé', '日本語テキスト', 'emoji 🚀', 'quote " and \\ backslash', 'line\nbreak', 'tab\tchar'];
const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet', 'kilo', 'lima'];

function sampleValue(s: JsonSchema, rng: Rng, ctx: Ctx, field: string): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
  if (Array.isArray(s.enum)) return pick(s.enum);
  if (s.const !== undefined) return s.const;
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type;
  switch (type) {
    case 'string': return sampleString(s, rng, ctx, pick, field);
    case 'integer': {
      const lo = typeof s.minimum === 'number' ? s.minimum : typeof s.exclusiveMinimum === 'number' ? s.exclusiveMinimum + 1 : 0;
      const hi = typeof s.maximum === 'number' ? s.maximum : typeof s.exclusiveMaximum === 'number' ? s.exclusiveMaximum - 1 : lo + 10000;
      if (ctx.edgy && rng() < 0.2) return rng() < 0.5 ? lo : hi;
      return lo + Math.floor(rng() * (hi - lo + 1));
    }
    case 'number': {
      const exclusiveLo = typeof s.exclusiveMinimum === 'number';
      const lo = typeof s.minimum === 'number' ? s.minimum : exclusiveLo ? (s.exclusiveMinimum as number) : 0;
      const hi = typeof s.maximum === 'number' ? s.maximum : typeof s.exclusiveMaximum === 'number' ? (s.exclusiveMaximum as number) : lo + 1000;
      if (ctx.edgy && rng() < 0.2) return rng() < 0.5 ? (exclusiveLo ? lo + 0.01 : lo) : hi;
      // Money-like amounts skew small: most payments are modest.
      const span = hi - lo > 10000 ? Math.min(hi - lo, 500) : hi - lo;
      const v = Math.round((lo + rng() * span) * 100) / 100;
      return exclusiveLo && v <= lo ? lo + 0.01 : Math.min(v, hi);
    }
    case 'boolean': return rng() < 0.5;
    case 'array': {
      const max = typeof s.maxItems === 'number' ? Math.min(s.maxItems, 3) : 3;
      const n = Math.floor(rng() * (max + 1));
      return Array.from({ length: n }, () => sampleValue(s.items as JsonSchema, rng, ctx, `${field}/*`));
    }
    case 'object': {
      const out: Record<string, unknown> = {};
      const props = s.properties as Record<string, JsonSchema> | undefined;
      if (props) {
        const required = (s.required as string[] | undefined) ?? [];
        for (const [key, sub] of Object.entries(props)) {
          if (required.includes(key) || rng() < ctx.optionalRate) out[key] = sampleValue(sub, rng, ctx, `${field}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`);
        }
      } else if (typeof s.additionalProperties === 'object') {
        const n = Math.floor(rng() * 4);
        for (let i = 0; i < n; i++) out[pick(WORDS)] = sampleValue(s.additionalProperties as JsonSchema, rng, ctx, `${field}/*`);
      }
      return out;
    }
    default:
      throw new SampleError(field || '/', `cannot sample a value for schema type ${JSON.stringify(type)}`);
  }
}

function sampleString(s: JsonSchema, rng: Rng, ctx: Ctx, pick: <T>(xs: readonly T[]) => T, field: string): string {
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(rng() * 16).toString(16)).join('');
  switch (s.format) {
    case 'date-time': {
      const t = ctx.now - Math.floor(rng() * 3600_000);
      return new Date(t).toISOString();
    }
    case 'date': return new Date(ctx.now).toISOString().slice(0, 10);
    case 'uuid': return `${hex(8)}-${hex(4)}-4${hex(3)}-${pick(['8', '9', 'a', 'b'])}${hex(3)}-${hex(12)}`;
    case 'email': return `${pick(WORDS)}.${Math.floor(rng() * 1000)}@example.com`;
    case 'ipv4': return `${10 + Math.floor(rng() * 200)}.${Math.floor(rng() * 256)}.${Math.floor(rng() * 256)}.${1 + Math.floor(rng() * 254)}`;
    case 'uri':
      if (Array.isArray(s.examples)) return pick(s.examples as string[]);
      return `https://example.com/${pick(WORDS)}/${Math.floor(rng() * 100)}`;
    default:
      break;
  }
  if (Array.isArray(s.examples) && s.examples.length > 0) {
    return pick(s.examples as string[]);
  }
  if (s.pattern !== undefined) throw new SampleError(field, `a string with "pattern" needs "examples" to be sampled (pattern ${String(s.pattern)})`);
  const min = typeof s.minLength === 'number' ? s.minLength : 0;
  const max = typeof s.maxLength === 'number' ? s.maxLength : 64;
  let v = ctx.edgy && rng() < 0.3 ? pick(EDGE_STRINGS) : `${pick(WORDS)}-${Math.floor(rng() * 10000)}`;
  while ([...v].length < min) v += 'x';
  if ([...v].length > max) v = [...v].slice(0, max).join('');
  return v;
}
