import * as fs from 'node:fs';
import * as path from 'node:path';
import { DuckDBInstance, DuckDBTypeId, StatementType, type DuckDBConnection, type DuckDBExtractedStatements, type DuckDBPreparedStatement, type DuckDBType } from '@duckdb/node-api';
import { didYouMean, resourceNames, type SluiceConfig } from '../config';
import { athenaTimestamp, duckDbType, injectedPartitionKeys, loadModel, quoteIdent, sqlString, unlistedPartitionValue, type SchemaModel } from '../schema';
import { dataRoot, ERROR_OBJECT_FIELDS, ERRORS_ROOT, ERRORS_TABLE_SUFFIX } from '../schema/layout';
import { MAX_ERROR_LINE_BYTES } from '../../transforms/failure-router/error-records';
import { hasRowFieldsUnnest, hasTwoColumnUnnest, protectLongIntegers, rewriteUnnests, withoutQueryLocations } from './athena-unnest';
import { injectedKeyMessage, injectedKeyViolation } from './injected-partitions';
import { fileStamp, footerDigest, FooterCache, type FooterEntry } from './footer-cache';
import { parquetTypeMismatches } from './parquet-types';
import { bucketDir, filesUnder, localBucketName, makeDirectories, makeTempFolder } from './paths';
import { athenaColumnNames, cteNames, referencedTables } from './referenced-tables';
// Strings read back whole, a leading U+FEFF included, as Athena gives them.
import './duckdb-strings';

/** The most arguments the concat macro takes; DuckDB's own concat, which it replaces, takes any number. */
const CONCAT_MAX_ARGUMENTS = 64;

/**
 * The most arguments the greatest and least macros take: each overload checks every argument for NULL, so their size
 * grows with the square of this, and so did the time to define them for each query (30 ms at 64).
 */
const GREATEST_MAX_ARGUMENTS = 16;

/** The most arguments the format macro takes, the format string included. */
const FORMAT_MAX_ARGUMENTS = 17;

/** A macro of 1 to `most` arguments: one overload per count (a macro takes a fixed number), `body` of their names. */
function variadicMacro(name: string, most: number, body: (args: readonly string[]) => string): string {
  const overloads: string[] = [];
  for (let n = 1; n <= most; n++) {
    const args = Array.from({ length: n }, (_, i) => `a${i}`);
    overloads.push(`(${args.join(', ')}) AS ${body(args)}`);
  }
  return `${name}${overloads.join(', ')}`;
}

/** A function of 1 to `most` arguments that is NULL when one is, and otherwise DuckDB's own of that name. */
const nullStrict = (name: string, most: number) => variadicMacro(name, most,
  (args) => `CASE WHEN ${args.map((a) => `${a} IS NULL`).join(' OR ')} THEN NULL ELSE system.main.${name}(${args.join(', ')}) END`);

/**
 * Trino's substring (and substr): empty from position 0, for a length of 0 or less, or from before the string's start
 * counted from its end (DuckDB's substr('hello', 0, 3) is 'he', substr('hello', -7, 3) 'h'); NULL stays NULL.
 */
function substringMacro(name: string): string {
  const empty = (condition: string) => `CASE WHEN ${condition} THEN system.main.substr(s, 1, 0) ELSE`;
  return `${name}(s, start) AS ${empty('start = 0 OR start < -length(s)')} system.main.substr(s, start) END, `
    + `(s, start, n) AS ${empty('start = 0 OR start < -length(s) OR n <= 0')} system.main.substr(s, start, n) END`;
}

/**
 * The characters Trino's trim, ltrim and rtrim remove: Java's Character.isWhitespace (tab, line feed, vertical tab,
 * form feed, carriage return, U+001C–U+001F, and Unicode's spaces and line and paragraph separators, but not the no-break
 * ones). DuckDB's trim(s) removes spaces alone.
 */
const TRINO_WHITESPACE = [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005,
  0x2006, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x205f, 0x3000].map((c) => String.fromCodePoint(c)).join('');

/** Trino's trim of whitespace (TRINO_WHITESPACE) under `name`, and DuckDB's own of the characters given (`trim(BOTH 'x' FROM s)`). */
function trimMacro(name: string): string {
  return `${name}(s) AS system.main.${name}(s, ${sqlString(TRINO_WHITESPACE)}), (s, characters) AS system.main.${name}(s, characters)`;
}

/**
 * Athena (Trino) functions under their Athena names, where DuckDB has the same function by another name or
 * with other semantics. Macros take the name over, so `date_diff` counts whole units elapsed as Trino does
 * (DuckDB's own counts unit boundaries crossed: 02:59 → 03:01 would be 1 hour). Not covered, as they would
 * need to tell arrays from maps or translate format strings: cardinality of arrays, date_format / date_parse
 * (a query using them is told what to write locally: ATHENA_ONLY_FUNCTIONS).
 */
const ATHENA_MACROS = [
  // from_unixtime(seconds): the saved "failed records by error code" queries use it.
  'from_unixtime(unixtime) AS to_timestamp(unixtime)',
  'to_unixtime(t) AS epoch(t)',
  'from_iso8601_timestamp(s) AS CAST(s AS TIMESTAMPTZ)',
  'from_iso8601_date(s) AS CAST(s AS DATE)',
  'date_diff(unit, a, b) AS date_sub(unit, a, b)',
  // Athena's (unit, value, timestamp), and DuckDB's own (timestamp, interval) still. A DATE comes back as a TIMESTAMP (Athena keeps DATE).
  "date_add(t, i) AS t + i, (unit, n, t) AS t + CASE lower(unit) WHEN 'millisecond' THEN to_milliseconds(n) WHEN 'second' THEN to_seconds(n) "
    + "WHEN 'minute' THEN to_minutes(n) WHEN 'hour' THEN to_hours(n) WHEN 'day' THEN to_days(n) WHEN 'week' THEN to_weeks(n) "
    + "WHEN 'month' THEN to_months(n) WHEN 'quarter' THEN to_months(3 * n) WHEN 'year' THEN to_years(n) "
    + "ELSE error('date_add: ' || unit || ' is not a unit (millisecond, second, minute, hour, day, week, month, quarter, year)') END",
  'day_of_week(d) AS isodow(d)',
  // t AT TIME ZONE zone, which DuckDB reads as timezone(zone, t): Trino takes a TIMESTAMP as the session's zone's (UTC) and
  // gives its time in zone (10:00 is 11:00 in Berlin), where DuckDB's takes it as zone's own time (10:00 in Berlin, 09:00 UTC).
  // DuckDB's answer is the time without its zone: the same time of day, date and hour as Athena's.
  'timezone(t) AS system.main.timezone(t), (zone, t) AS system.main.timezone(zone, CAST(t AS TIMESTAMPTZ))',
  // EXTRACT(DOW FROM t), which DuckDB reads as date_part('dow', t): Trino's is day_of_week, 1 (Monday) to 7 (Sunday); DuckDB's
  // 0 (Sunday) to 6. DuckDB's date_part of a list of parts, which Athena does not have, is not taken.
  "date_part(part, t) AS CASE WHEN lower(part) = 'dow' THEN system.main.date_part('isodow', t) ELSE system.main.date_part(part, t) END",
  'day_of_year(d) AS dayofyear(d)',
  // The millisecond of the second (datetime: 0 to 999), as Trino's; DuckDB's counts the second's too (1.234 s gives 1234).
  'millisecond(t) AS system.main.millisecond(t) % 1000',
  // Exact: Athena's estimate is within 2.3 % (standard error) of the exact count, DuckDB's approx_count_distinct was 20 % off
  // at a few thousand values, above the largest possible count. A twin's lake is small enough to count.
  'approx_distinct(x) AS count(DISTINCT x), (x, e) AS count(DISTINCT x)',
  // Trino's element_at: a map's value for the key (DuckDB's gives a list of it), an array's element (1-based, negative from the end), NULL when absent.
  'element_at(c, k) AS c[k]',
  // Trino's concat is NULL when any argument is (DuckDB's skips NULLs); `||` is NULL-strict in both. Strings and arrays
  // alike, 1 to CONCAT_MAX_ARGUMENTS arguments.
  variadicMacro('concat', CONCAT_MAX_ARGUMENTS, (args) => args.join(' || ')),
  // Trino's are NULL when any argument is ("like most other functions in Trino", its docs say); DuckDB's skip NULLs.
  nullStrict('greatest', GREATEST_MAX_ARGUMENTS),
  nullStrict('least', GREATEST_MAX_ARGUMENTS),
  // Trino's format takes Java's format strings ('%.2f', '%,d', '%2$s'), which DuckDB's printf reads alike; DuckDB's own
  // format takes '{}' and gave '%.2f' back as it was. A number given to %s, which Java takes, fails here.
  variadicMacro('format', FORMAT_MAX_ARGUMENTS, (args) => `printf(${args.join(', ')})`),
  'approx_percentile(x, p) AS approx_quantile(x, p)',
  // Trino's url_encode is Java's URLEncoder (functions/url): a space is `+`, `*` is kept and `~` encoded; DuckDB's gives
  // `%20`, `%2A` and `~`. Its url_decode reads `+` as a space, which DuckDB's kept.
  "url_encode(s) AS replace(replace(replace(system.main.url_encode(s), '%20', '+'), '%2A', '*'), '~', '%7E')",
  "url_decode(s) AS system.main.url_decode(replace(s, '+', '%20'))",
  trimMacro('trim'),
  trimMacro('ltrim'),
  trimMacro('rtrim'),
  substringMacro('substr'),
  substringMacro('substring'),
  // NULL past the last field, as Trino's (functions/string); DuckDB's gives ''.
  'split_part(s, delimiter, i) AS CASE WHEN i > len(string_split(s, delimiter)) THEN NULL ELSE system.main.split_part(s, delimiter, i) END',
  'regexp_like(s, pattern) AS regexp_matches(s, pattern)',
  // Trino's regexp_replace replaces every match (DuckDB's only the first, without 'g'), its 2-argument form removes them, and its
  // replacement names a group `$1` and escapes a character with `\` (`\$`, `\\`): here RE2's `\1`, the character, and `\\`.
  "regexp_replace(s, pattern) AS system.main.regexp_replace(s, pattern, '', 'g'), (s, pattern, replacement) AS system.main.regexp_replace(s, pattern, "
    + String.raw`array_to_string(list_transform(regexp_extract_all(replacement, '(?s)\\.|\$[0-9]|.'), lambda t: CASE WHEN t = '\' OR t = '\\' THEN '\\' `
    + String.raw`WHEN t[1] = '\' THEN t[2] WHEN length(t) = 2 THEN '\' || t[2] ELSE t END), ''), 'g')`,
  // NULL when the pattern does not match (DuckDB's gives '').
  'regexp_extract(s, pattern) AS CASE WHEN regexp_matches(s, pattern) THEN system.main.regexp_extract(s, pattern) END, '
    + '(s, pattern, g) AS CASE WHEN regexp_matches(s, pattern) THEN system.main.regexp_extract(s, pattern, g) END',
  // NULL for an object or array, as Athena (json_extract_string would give its JSON text).
  "json_extract_scalar(j, p) AS CASE WHEN json_type(json_extract(j, p)) IN ('OBJECT', 'ARRAY') THEN NULL ELSE json_extract_string(j, p) END",
];

/** Athena (Trino) functions DuckDB has no macro or name for here, with what to write locally instead. */
const ATHENA_ONLY_FUNCTIONS: Readonly<Record<string, string>> = {
  date_format: "strftime(t, format), whose specifiers differ from Athena's MySQL-style ones (minutes are %M there, %i in Athena)",
  date_parse: "strptime(s, format), whose specifiers differ from Athena's MySQL-style ones (minutes are %M there, %i in Athena)",
  format_datetime: 'strftime(t, format), with strftime specifiers instead of Joda-Time patterns',
  parse_datetime: 'strptime(s, format), with strftime specifiers instead of Joda-Time patterns',
  to_iso8601: "strftime(t, '%Y-%m-%dT%H:%M:%S.%gZ') for a UTC timestamp",
  at_timezone: "timezone('Europe/Berlin', t)",
  with_timezone: "CAST(CAST(t AS VARCHAR) || ' Europe/Berlin' AS TIMESTAMPTZ)",
  url_extract_host: "regexp_extract(url, '^[a-z]+://([^/:?#]+)', 1)",
  url_extract_path: "regexp_extract(url, '^[a-z]+://[^/?#]*([^?#]*)', 1)",
};

/**
 * Rewrites, in a statement's parse tree, each `approx_distinct(x[, e])` with a FILTER, DISTINCT or ORDER BY into
 * `count(DISTINCT x)` with the same FILTER (the macro ATHENA_MACROS defines it by takes none: DuckDB allows them on
 * aggregates only), and says whether it changed anything.
 */
function rewriteApproxDistinct(tree: unknown): boolean {
  const calls = approxDistinctWithModifiers(tree);
  for (const node of calls) {
    node.function_name = 'count';
    node.distinct = true;
    node.children = (node.children as unknown[]).slice(0, 1);
    // An order does not change a count; DuckDB refuses ORDER BY with DISTINCT on other arguments.
    node.order_bys = { type: 'ORDER_MODIFIER', orders: [] };
  }
  return calls.length > 0;
}

/** The `approx_distinct` calls in a parse tree with a FILTER, DISTINCT or ORDER BY, which the macro cannot take. */
function approxDistinctWithModifiers(tree: unknown): Array<Record<string, unknown>> {
  const found: Array<Record<string, unknown>> = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) {
      v.forEach(visit);
      return;
    }
    if (typeof v !== 'object' || v === null) return;
    const node = v as Record<string, unknown>;
    const orders = (node.order_bys as { orders?: unknown[] } | undefined)?.orders ?? [];
    if (node.class === 'FUNCTION' && String(node.function_name).toLowerCase() === 'approx_distinct' && Array.isArray(node.children)
      && (node.filter != null || node.distinct === true || orders.length > 0)) {
      found.push(node);
    }
    for (const child of Object.values(node)) visit(child);
  };
  visit(tree);
  return found;
}

/**
 * DuckDB's "Scalar Function with name date_format does not exist! Did you mean "date_part"?" for a function Athena has and
 * the twin does not: what to write locally instead, and that the SQL still runs on Athena as it is.
 */
export function athenaFunctionHint(err: unknown): unknown {
  const message = (err as Error | undefined)?.message ?? '';
  // The rewrite of approx_distinct with a FILTER could not be made (rewriteApproxDistinct): DuckDB's refusal of a macro.
  if (/Function "approx_distinct" is a Macro Function/.test(message)) {
    return new Error('approx_distinct with a FILTER, DISTINCT or ORDER BY could not be rewritten for the local engine (DuckDB) in this query: '
      + 'it runs as it is on Athena (--aws); locally, write count(DISTINCT x) FILTER (WHERE …), which counts what approx_distinct estimates', { cause: err });
  }
  const name = /(?:Scalar|Aggregate|Table) Function with name "?([A-Za-z_][A-Za-z0-9_]*)"? does not exist/.exec(message)?.[1]?.toLowerCase();
  const instead = name === undefined ? undefined : Object.prototype.hasOwnProperty.call(ATHENA_ONLY_FUNCTIONS, name) ? ATHENA_ONLY_FUNCTIONS[name] : undefined;
  if (name === undefined || instead === undefined) return err;
  return new Error(`${name} is an Athena (Trino) function the local engine (DuckDB) does not have: the query runs as it is on Athena (--aws); `
    + `locally, write ${instead}. The Athena functions that work locally are listed under \`sluice query\` in docs/cli.md`, { cause: err });
}

/** The Glue Data Catalog as Athena names it in a query (`awsdatacatalog.sluice_dev.iot`); names are case-insensitive in both. */
const ATHENA_CATALOG = 'awsdatacatalog';

/**
 * Values as Athena's results give them where DuckDB's JavaScript form differs: a DATE is its day
 * (2026-01-02, not midnight UTC as a timestamp), a TIMESTAMP `2026-12-05 02:18:22.932` (` UTC` after one
 * with a time zone), not ISO-8601's `2026-12-05T02:18:22.932Z`, a TIME its clock time, a MAP an object of
 * its entries (not a list of key/value pairs), a VARBINARY its bytes in hex, and a double's NaN and
 * infinities the strings Athena sends (JSON has no such numbers). Values nested in a ROW, an ARRAY or a MAP
 * too, as Athena writes them inside its text of the whole value (`{d=2026-12-05}`); the nesting stays
 * objects and arrays, which the outputs print as JSON.
 */
function asAthenaGives(columnTypes: readonly DuckDBType[], rows: unknown[][]): unknown[][] {
  const convert = columnTypes.map(athenaConversion);
  if (convert.every((c) => c === undefined)) return rows;
  for (const row of rows) {
    for (let i = 0; i < row.length; i++) {
      const c = convert[i];
      if (c !== undefined && row[i] !== null && row[i] !== undefined) row[i] = c(row[i]);
    }
  }
  return rows;
}

/** A value of one type (never NULL) as Athena gives it. */
type Conversion = (v: unknown) => unknown;

/** Converts a value that is not NULL, leaving NULL (a ROW's field, an ARRAY's element) as it is. */
const unlessNull = (c: Conversion): Conversion => (v) => (v === null || v === undefined ? v : c(v));

function athenaConversion(type: DuckDBType): Conversion | undefined {
  if (type.typeId === DuckDBTypeId.STRUCT) {
    const fields = type.entryTypes.map(athenaConversion);
    if (fields.every((c) => c === undefined)) return undefined;
    return (v) => {
      if (typeof v !== 'object' || v === null) return v;
      const row = v as Record<string, unknown>;
      type.entryNames.forEach((name, i) => {
        const c = fields[i];
        if (c !== undefined) row[name] = unlessNull(c)(row[name]);
      });
      return row;
    };
  }
  if (type.typeId === DuckDBTypeId.LIST || type.typeId === DuckDBTypeId.ARRAY) {
    const element = athenaConversion(type.valueType);
    return element === undefined ? undefined : (v) => (Array.isArray(v) ? v.map(unlessNull(element)) : v);
  }
  if (type.typeId === DuckDBTypeId.MAP) {
    const key = unlessNull(athenaConversion(type.keyType) ?? ((k) => k));
    const value = unlessNull(athenaConversion(type.valueType) ?? ((x) => x));
    const pairs = (v: unknown) => (v as Array<{ key: unknown; value: unknown }>).map((e) => ({ key: key(e.key), value: value(e.value) }));
    // A map with plain keys (VARCHAR, numbers, dates): a map keyed by ROWs or ARRAYs keeps its pairs, which an object would merge.
    if (/^(VARCHAR|[A-Z]*INT[A-Z]*|DOUBLE|FLOAT|DECIMAL\(\d+,\s*\d+\)|BOOLEAN|DATE|UUID)$/.test(type.keyType.toString())) {
      return (v) => (Array.isArray(v) ? Object.fromEntries(pairs(v).map((e) => [String(e.key), e.value])) : v);
    }
    return (v) => (Array.isArray(v) ? pairs(v) : v);
  }
  return leafConversion(type.toString());
}

function leafConversion(type: string): Conversion | undefined {
  // Years 0–9999 only: beyond them the ISO form has a sign and six digits, and is kept whole.
  if (type === 'DATE') return (v) => (v instanceof Date && /^\d{4}-/.test(v.toISOString()) ? v.toISOString().slice(0, 10) : v);
  // Athena's timestamp(3): `2026-12-05 02:18:22.932`, and ` UTC` after one with a zone (the session's zone is UTC).
  if (/^TIMESTAMP(_S|_MS|_NS)?$/.test(type)) return (v) => (v instanceof Date && /^\d{4}-/.test(v.toISOString()) ? athenaTimestamp(v) : v);
  if (type === 'TIMESTAMP WITH TIME ZONE') return (v) => (v instanceof Date && /^\d{4}-/.test(v.toISOString()) ? `${athenaTimestamp(v)} UTC` : v);
  if (type === 'TIME') return (v) => (typeof v === 'bigint' || typeof v === 'number' ? clockTimeOf(BigInt(v)) : v);
  if (type === 'BLOB') return (v) => (v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex').replace(/(..)(?!$)/g, '$1 ') : v);
  if (type === 'DOUBLE' || type === 'FLOAT') return (v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v);
  return undefined;
}

/** Microseconds since midnight as HH:MM:SS.ffffff. */
function clockTimeOf(micros: bigint): string {
  const pad = (n: bigint, width: number) => n.toString().padStart(width, '0');
  const seconds = micros / 1_000_000n;
  return `${pad(seconds / 3600n, 2)}:${pad((seconds / 60n) % 60n, 2)}:${pad(seconds % 60n, 2)}.${pad(micros % 1_000_000n, 6)}`;
}

export interface QueryResult {
  readonly columns: string[];
  /** Each column's DuckDB type: DOUBLE, DECIMAL(8,2), BIGINT, VARCHAR. */
  readonly columnTypes: string[];
  readonly rows: unknown[][];
  /** Parquet files the query read, and how many the tables it scanned hold: partition pruning at work. */
  readonly filesRead: number;
  readonly filesTotal: number;
  /**
   * Set when a LIMIT may have stopped the scans part-way: DuckDB then counts only the files it read to the
   * end, so the files read lie between filesRead and this (the files left after pruning).
   */
  readonly filesReadAtMost?: number;
  /** The statement was an EXPLAIN: its rows are DuckDB's plan, text laid out over lines to be read as it is. */
  readonly plan: boolean;
  readonly elapsedMs: number;
}

/**
 * A query LocalAthena will not run: more than one statement, or one that is not a read-only query.
 * Athena refuses these too (one statement per query; no COPY, no file access).
 */
export class QueryNotAllowedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QueryNotAllowedError';
  }
}

/** Parquet footers one `parquet_schema` scan reads (the SQL names each file). */
const FOOTERS_PER_SCAN = 2000;

/**
 * Athena-style SQL over the twin's Parquet with DuckDB. The Glue database is a DuckDB schema and each
 * pipeline's Glue tables views over its files — `<table>` over the hive-partitioned Parquet,
 * `<table>_errors` over Firehose's error objects — so `SELECT … FROM sluice_dev.iot` runs unchanged here
 * and on Athena (for the SQL both dialects share).
 *
 * Like Athena, it runs one read-only statement per query, and reads nothing but the lake: DuckDB itself
 * refuses any file outside the data bucket (COPY, read_csv('/etc/…'), ATTACH, extensions), with its
 * configuration locked so a query cannot turn that off.
 */
export class LocalAthena {
  /** Parquet files per table folder (with its trailing separator), for the files a scan could read once pruned. */
  private readonly parquetFiles = new Map<string, number>();
  /**
   * Each view's definition as last run: a view is defined again only when it changes (its first files
   * arrive). Every statement also writes DuckDB's profile, so redefining all of them per query cost time.
   */
  private readonly views = new Map<string, string>();
  /** Tables DuckDB could not define because it could not read their files, and why. */
  private readonly unreadable = new Map<string, string>();
  /** Partition keys Athena projects as `injected`, by table: a query must name their values (see injected-partitions.ts). */
  private readonly injected = new Map<string, readonly string[]>();
  /** Partition keys by table (lower case): the conditions an UNNEST rewrite may repeat over the table (see athena-unnest.ts). */
  private readonly partitionColumns = new Map<string, readonly string[]>();
  /** The columns (lower-case names) and types DuckDB reads the files of one footer schema (its digest) as. */
  private readonly schemaColumns = new Map<string, ReadonlyMap<string, DuckDBType>>();
  /** The database (a DuckDB schema) is made and in use: done before the first query. */
  private catalogReady = false;
  /** The last query's parse tree as json_serialize_sql gives it, and its one statement's node (read only): each step that reads the tree asks DuckDB once, and parses it once. */
  private serialized?: { readonly sql: string; readonly text: string; node?: unknown };

  private constructor(
    private readonly connection: DuckDBConnection,
    private readonly instance: DuckDBInstance,
    private readonly config: SluiceConfig,
    private readonly profilePath: string,
    /** The data bucket as DuckDB is given it (see lakePathForDuckDb). */
    private readonly lake: string,
    /** The Parquet files' footer schemas, kept in the data dir between queries. */
    private readonly footers: FooterCache,
    /** Where the pipelines' schemas are. @default the project's schemas/ */
    private readonly schemaDir?: string,
  ) {}

  /** `options.schemaDir`: where the pipelines' schemas are (@default the project's schemas/). */
  static async open(dataDir: string, config: SluiceConfig, options: { readonly schemaDir?: string } = {}): Promise<LocalAthena> {
    const instance = await DuckDBInstance.create(':memory:');
    const connection = await instance.connect();
    const privateDir = makeTempFolder('sluice-query-', 'the query\'s scratch folder');
    let athena: LocalAthena | undefined;
    try {
      const lake = lakePathForDuckDb(bucketDir(dataDir, localBucketName(config)), privateDir);
      const footers = new FooterCache(path.join(dataDir, '.cache', 'parquet-footers'));
      athena = new LocalAthena(connection, instance, config, path.join(privateDir, 'profile.json'), lake, footers, options.schemaDir);
      await athena.confine();
    } catch (err) {
      // An open that fails leaves no folder either (the link to the lake can fail before there is a LocalAthena to close).
      if (athena) {
        athena.close();
      } else {
        connection.closeSync();
        instance.closeSync();
        fs.rmSync(privateDir, { recursive: true, force: true });
      }
      throw err;
    }
    return athena;
  }

  /** The query's private folder (DuckDB's profile and spill files, the lake's link): close() removes it. */
  get scratchDir(): string {
    return path.dirname(this.profilePath);
  }

  /**
   * Settings first, then the lock: after it no statement can change them. Profiling stays on (the files-read
   * count comes from its output), and DuckDB may touch only the data bucket, the profile file and its own
   * spill directory next to it.
   */
  private async confine(): Promise<void> {
    const lake = this.lake;
    // Athena's catalog, so `FROM awsdatacatalog.sluice_dev.iot` runs here too: the views are made in it. Attached
    // before external access is turned off.
    await this.connection.run(`ATTACH ':memory:' AS ${ATHENA_CATALOG}`);
    await this.connection.run(`USE ${ATHENA_CATALOG}`);
    for (const setting of [
      // No network here: never try to download an extension.
      'SET autoinstall_known_extensions = false',
      // Athena divides integers as integers (7 / 2 = 3); the saved queries rely on it (arrivaltimestamp / 1000).
      'SET integer_division = true',
      // Athena runs in UTC: current_date, now() and a TIMESTAMP compared with now() must not follow the machine's zone.
      "SET TimeZone = 'UTC'",
      "SET enable_profiling = 'json'",
      // DuckDB allows its temp directory too, by default `.tmp` in the working directory: a query could read that.
      `SET temp_directory = ${sqlString(path.join(path.dirname(this.profilePath), 'spill'))}`,
      `SET profiling_output = ${sqlString(this.profilePath)}`,
      // The trailing separator keeps a sibling such as `<bucket>-other/` out.
      `SET allowed_directories = [${sqlString(lake + path.sep)}]`,
      `SET allowed_paths = [${sqlString(this.profilePath)}]`,
      'SET enable_external_access = false',
      'SET lock_configuration = true',
    ]) {
      await this.connection.run(setting);
    }
    for (const macro of ATHENA_MACROS) await this.connection.run(`CREATE OR REPLACE TEMP MACRO ${macro}`);
  }

  /** The Glue database name (a DuckDB schema) and the pipelines with a lake table. */
  get database(): string {
    return Object.keys(this.config.pipelines).length > 0 ? resourceNames(this.config, Object.keys(this.config.pipelines)[0]).glueDatabase : '';
  }

  /**
   * (Re)defines the views of the tables a query names (`tables`, lower case, or all of them), so files written since
   * the last query are seen. Only those: a view's definition lists its table's files and reads their footers, which
   * a query on another table, or on none, has no need of.
   */
  private async defineViews(tables: ReadonlySet<string> | 'all'): Promise<void> {
    const database = this.database;
    if (!this.catalogReady) await this.connection.run(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(database)}`);
    const named = (table: string) => tables === 'all' || tables.has(table.toLowerCase());
    for (const { pipeline, table } of this.lakeTables()) {
      const model = loadModel(pipeline, this.schemaDir);
      const injected = injectedPartitionKeys(model);
      if (injected.length > 0) this.injected.set(table.toLowerCase(), injected);
      this.partitionColumns.set(table.toLowerCase(), model.partitionKeys.map((k) => k.name));
      if (named(table)) await this.defineLakeView(pipeline, model, table);
      if (named(table + ERRORS_TABLE_SUFFIX)) await this.defineErrorView(pipeline, table + ERRORS_TABLE_SUFFIX);
    }
    if (!this.catalogReady) await this.connection.run(`USE ${quoteIdent(database)}`);
    this.catalogReady = true;
  }

  private async defineLakeView(pipeline: string, model: SchemaModel, table: string): Promise<void> {
    const root = path.join(this.lake, dataRoot(pipeline));
    // Athena's enum projection reads only the values the schema lists: files under a value since removed from the enum
    // (or one it never listed) do not show there, nor are they read, so not here either. The twin warns of them at start.
    const files = filesUnder(root, '.parquet').filter((f) => unlistedPartitionValue(model, path.relative(root, f)) === undefined);
    this.parquetFiles.set(path.join(root, path.sep), files.length);
    const columnsByFile = await this.columnsOf(`${localBucketName(this.config)}/${pipeline}`, root, files);
    const groups = filesByColumns(files, columnsByFile);
    const refusals = groups.same.map((group) => this.hiveBadData(model, group));
    await this.defineView(table, files.length > 0 ? scanSql(model, groups, refusals) : emptySql(tableColumnTypes(model)));
  }

  /**
   * DuckDB reads the files' footers when it defines a view, so an unreadable file (not Parquet, truncated)
   * fails the definition. That table is then left undefined, so queries on the other tables still run, and a
   * query that names it fails with the reason (see unreadableTableError); the next query tries again.
   */
  private async defineView(table: string, sql: string): Promise<void> {
    if (this.views.get(table) === sql) return;
    const view = `${quoteIdent(this.database)}.${quoteIdent(table)}`;
    try {
      await this.connection.run(`CREATE OR REPLACE VIEW ${view} AS ${sql}`);
      this.views.set(table, sql);
      this.unreadable.delete(table);
    } catch (err) {
      // DuckDB's first line names the file and the problem; the lines after it quote the view's SQL.
      await this.leaveUndefined(table, (err as Error).message.split('\n')[0].trim());
    }
  }

  private async leaveUndefined(table: string, reason: string): Promise<void> {
    await this.connection.run(`DROP VIEW IF EXISTS ${quoteIdent(this.database)}.${quoteIdent(table)}`);
    this.views.delete(table);
    this.unreadable.set(table, `table ${this.database}.${table} cannot be read: ${reason} (queries on the other tables still run)`);
  }

  /**
   * Why Athena would fail a query that reads a column of a group of files (HIVE_BAD_DATA: the column has another type
   * there than the table's, after a schema change), by the table's column, as the SQL text of the message for the row's
   * file (as s3://bucket/key); undefined when it reads them all. As on Athena, only a query that
   * reads such a column from those files fails (scanSql): one on other partitions, or on other columns, answers, and
   * whatever the values are (NULLs too: Athena judges the file's column type). The view casts each column to the table's
   * type, so DESCRIBE gives the types `sluice schema` shows.
   */
  private hiveBadData(model: SchemaModel, group: FileGroup): ReadonlyMap<string, string> | undefined {
    const mismatches = parquetTypeMismatches(model.tableColumns, group.columns);
    if (mismatches.length === 0) return undefined;
    // The scan names the file in a column of its own (SOURCE_FILE_COLUMN): DuckDB's virtual `filename` is hidden by a
    // file's own column of that name.
    const file = this.s3PathSql(SOURCE_FILE_COLUMN);
    return new Map(mismatches.map((m) => [m.tableColumn,
      `${sqlString(`HIVE_BAD_DATA as on Athena: column ${m.column} is ${m.fileType} in `)} || ${file} || ${sqlString(` and ${m.tableType} in the table;`
        + ' Athena reads a Parquet column as the table\'s type only when they are the same, a wider integer, or FLOAT as DOUBLE, and fails a query'
        + ' that reads it from that file. Give the column its earlier type back, or move the files written before the change out of the data dir'
        + ' (schemas/README.md, "Changing a schema")')}`]));
  }

  /**
   * The Parquet files' top-level columns and types, by file; a file that cannot be read is left out (the view says why).
   * Each file's footer schema is known from the data dir's footer cache while the file keeps its stamp (fileStamp); one
   * `parquet_schema` scan reads the footers of the others, and the cache keeps them for the next query. DuckDB binds
   * one file per distinct footer schema for the types it reads them as: a lake's files share a handful of schemas (one
   * per schema version), and binding each file took 6 times as long as the scan. `name` names the folder's cache.
   */
  private async columnsOf(name: string, root: string, files: readonly string[]): Promise<ReadonlyMap<string, ReadonlyMap<string, DuckDBType>>> {
    const cached = this.footers.entries(name);
    const kept = new Map<string, FooterEntry>();
    const bySchema = new Map<string, string[]>();
    const inGroup = (schema: string, file: string) => {
      const group = bySchema.get(schema);
      if (group) group.push(file);
      else bySchema.set(schema, [file]);
    };
    const unseen: Array<{ file: string; key: string; stamp: string }> = [];
    for (const file of files) {
      let stamp: string;
      try {
        stamp = fileStamp(fs.statSync(file, { bigint: true }));
      } catch {
        continue;
      }
      const key = path.relative(root, file).split(path.sep).join('/');
      const entry = cached.get(key);
      if (entry && entry.stamp === stamp) {
        kept.set(key, entry);
        inGroup(entry.schema, file);
      } else {
        unseen.push({ file, key, stamp });
      }
    }
    for (let i = 0; i < unseen.length; i += FOOTERS_PER_SCAN) {
      const part = unseen.slice(i, i + FOOTERS_PER_SCAN);
      const schemas = await this.footerSchemas(part.map((f) => f.file));
      for (const f of part) {
        const schema = schemas.get(f.file);
        if (schema === undefined) continue;
        if (schema.startsWith('file:')) {
          // Its footer unreadable: bound alone (which fails too, and the view says why), and not kept.
          inGroup(schema, f.file);
          continue;
        }
        const digest = footerDigest(schema);
        kept.set(f.key, { stamp: f.stamp, schema: digest });
        inGroup(digest, f.file);
      }
    }
    this.footers.update(name, kept);
    const result = new Map<string, ReadonlyMap<string, DuckDBType>>();
    for (const [schema, group] of bySchema) {
      let columns = this.schemaColumns.get(schema);
      // Any file of the group will do: one removed since its footer was read fails, and the next is bound.
      for (const file of group.slice(0, 3)) {
        if (columns !== undefined) break;
        columns = await this.boundColumns(file);
        if (columns !== undefined && !schema.startsWith('file:')) this.schemaColumns.set(schema, columns);
      }
      if (columns === undefined) continue;
      for (const file of group) result.set(file, columns);
    }
    return result;
  }

  /**
   * Each file's footer schema as one string (its elements in order); `file:<name>` for a file whose footer DuckDB
   * cannot read. One such file fails the whole scan: its halves are scanned again, down to that file, so the others'
   * footers are still read (and kept in the cache), and the unreadable file is bound alone, for the view to say why.
   */
  private async footerSchemas(files: readonly string[]): Promise<Map<string, string>> {
    const schemas = new Map<string, string>();
    let rows: unknown[][];
    try {
      const reader = await this.connection.runAndReadAll('SELECT file_name, name, type, converted_type, logical_type::VARCHAR, num_children, repetition_type, scale, precision'
        + ` FROM parquet_schema(${sqlList(files)})`);
      rows = reader.getRows();
    } catch {
      if (files.length === 1) return new Map([[files[0], `file:${files[0]}`]]);
      const half = Math.ceil(files.length / 2);
      return new Map([...await this.footerSchemas(files.slice(0, half)), ...await this.footerSchemas(files.slice(half))]);
    }
    for (const [file, ...element] of rows) {
      const name = String(file);
      schemas.set(name, `${schemas.get(name) ?? ''}${JSON.stringify(element, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))};`);
    }
    return schemas;
  }

  /** The columns DuckDB reads a Parquet file as (lower-case names), or undefined when it cannot read it. */
  private async boundColumns(file: string): Promise<ReadonlyMap<string, DuckDBType> | undefined> {
    let prepared: DuckDBPreparedStatement;
    try {
      prepared = await this.connection.prepare(`SELECT * FROM read_parquet(${sqlString(file)})`);
    } catch {
      return undefined;
    }
    const columns = new Map<string, DuckDBType>();
    for (let i = 0; i < prepared.columnCount; i++) columns.set(prepared.columnName(i).toLowerCase(), prepared.columnType(i));
    prepared.destroySync();
    return columns;
  }

  /**
   * DuckDB's "Table with name app_events does not exist!" for a table left undefined because its files could
   * not be read: the reason instead; for a table or schema the database does not have, the tables it has, and the closest
   * of those or of the query's own WITH queries (`ctes`), whichever a misspelt name was meant to be. (A file that
   * is not Parquet cannot join a view that fails only when the file is read, as a file of another column type does: DuckDB
   * reads every file's footer when it plans the scan.)
   */
  private unreadableTableError(err: unknown, ctes: readonly string[]): unknown {
    const match = /Table with name (.+?) does not exist(?:!| because schema "(.*)" does not exist)/.exec((err as Error).message ?? '');
    if (match === null) return err;
    const [, missing, schema] = match;
    const reason = this.unreadable.get(missing);
    if (reason !== undefined) return new Error(reason, { cause: err });
    // DuckDB's own "Did you mean" picks among the views defined, which are only those the query names, and DuckDB's
    // catalog (`Did you mean "sqlite_temp_master"?`): the lake's tables instead.
    const tables = this.tableNames();
    if (schema !== undefined) {
      return new Error(`Schema ${schema} does not exist${didYouMean(schema, [this.database])}; the tables are in ${this.database}: ${tables.join(', ')}`, { cause: err });
    }
    if (tables.includes(missing.toLowerCase())) return err;
    // Its own WITH query named outside the query that defines it (`FROM (WITH a AS (…) SELECT …) t, a`), or before its
    // definition (`WITH a AS (SELECT * FROM b), b AS (…)`): a WITH query reads only those listed before it.
    const outOfScope = ctes.includes(missing.toLowerCase())
      ? ` (the WITH query ${quoteIdent(missing.toLowerCase())} can be read only inside the query that defines it, and by the WITH queries listed after it)` : '';
    const closest = outOfScope || didYouMean(missing, [...ctes, ...tables]);
    const shown = /^[A-Za-z_][A-Za-z0-9_]*$/.test(missing) ? missing : quoteIdent(missing);
    const withQueries = ctes.length === 0 ? '' : `; the query's WITH queries are ${ctes.join(', ')}`;
    return new Error(`Table ${this.database}.${shown} does not exist${closest}; its tables are ${tables.join(', ')}${withQueries}`, { cause: err });
  }

  /** SQL of the s3://bucket/key Athena names a lake file by, from the SQL of its path as DuckDB read it (`column`). */
  private s3PathSql(column: string): string {
    return `${sqlString(`s3://${localBucketName(this.config)}/`)} || replace(substr(${column}, ${[...this.lake].length + 2}), '\\', '/')`;
  }

  /** The tables of the database (lower case, sorted): each lake pipeline's table and its `_errors` table. */
  private tableNames(): string[] {
    return this.lakeTables().flatMap(({ table }) => [table.toLowerCase(), `${table.toLowerCase()}${ERRORS_TABLE_SUFFIX}`]).sort();
  }

  /** Each pipeline with a lake, and its Glue table's name. */
  private lakeTables(): Array<{ readonly pipeline: string; readonly table: string }> {
    return Object.keys(this.config.pipelines)
      .filter((pipeline) => this.config.pipelines[pipeline].destinations.includes('lake'))
      .map((pipeline) => ({ pipeline, table: resourceNames(this.config, pipeline).glueTable }));
  }

  /**
   * The stack's `<table>_errors` (lib/infra/lake-catalog.ts): Firehose's error objects under
   * `errors/<pipeline>/`, one JSON line per failed record, and `"$path"` as Athena gives it (s3://bucket/key). Athena
   * hides `"$path"` from `SELECT *`; a view cannot (DuckDB's virtual `filename` does not pass through one), so it shows.
   *
   * Read as lines (read_csv, one column) and parsed here, not with read_json, which failed the whole query on any line
   * past its maximum_object_size (16 MiB), a limit a query cannot raise: one damaged or foreign object in the prefix made
   * the table unqueryable. A line longer than MAX_LINE_BYTES_READ is skipped as it streams and gives no row (no line
   * Firehose writes comes near it; the failure router sends any line over 8 MiB as a Sluice.ErrorLineTooLong pointer).
   * An object is decompressed by its key's extension (`.gz`), as Athena's text input does.
   */
  private async defineErrorView(pipeline: string, table: string): Promise<void> {
    const root = path.join(this.lake, ERRORS_ROOT, pipeline);
    const columns = ERROR_OBJECT_COLUMNS.map(([key]) => `record.${quoteIdent(key)} AS ${quoteIdent(key.toLowerCase())}`);
    const typed: TypedColumn[] = [...ERROR_OBJECT_COLUMNS.map(([key, type]): TypedColumn => [key.toLowerCase(), type]), ['$path', 'VARCHAR']];
    const files = filesUnder(root);
    const structure = JSON.stringify(Object.fromEntries(ERROR_OBJECT_COLUMNS));
    const sql = files.length > 0
      ? `SELECT ${columns.join(', ')}, ${this.s3PathSql('filename')} AS "$path"`
        // As the table's JsonSerDe with ignore.malformed.json: a line that is not a JSON object reads as NULLs, not an error.
        + ` FROM (SELECT CASE WHEN json_valid(line) AND json_type(line) = 'OBJECT' THEN json_transform(line, ${sqlString(structure)}) END AS record, filename`
        + ` FROM read_csv(${sqlList(files)}, ${ERROR_LINES_OPTIONS}) WHERE trim(line) <> '')`
      : emptySql(typed);
    await this.defineView(table, sql);
  }

  /**
   * Runs one read-only statement. With `maxRows`, reads only the first maxRows + 1 rows of the result
   * (DuckDB streams it): a large result is never held in memory to show a few rows of it.
   */
  async query(sql: string, options: { maxRows?: number } = {}): Promise<QueryResult> {
    const started = performance.now();
    const statements = await this.readOnlyStatements(sql);
    await this.defineViews(await this.tablesNamedBy(sql));
    const statement = await this.prepareReadOnly(sql, statements).catch(async (err: unknown) => {
      const node = await this.statementNode(sql).catch(() => undefined);
      throw athenaFunctionHint(this.unreadableTableError(err, node === undefined ? [] : cteNames(node)));
    });
    if (this.injected.size > 0 && statement.statementType === StatementType.SELECT) await this.checkInjectedKeys(sql);
    // A stale profile from an earlier statement must not be read as this query's.
    fs.rmSync(this.profilePath, { force: true });
    const reader = options.maxRows === undefined ? await statement.runAndReadAll() : await statement.streamAndReadUntil(options.maxRows + 1);
    const files = filesReadFromProfile(this.profilePath, this.parquetFiles);
    const types = reader.columnTypes();
    return {
      columns: statement.statementType === StatementType.SELECT ? await this.athenaColumnNames(sql, reader.columnNames()) : reader.columnNames(),
      columnTypes: types.map((t) => t.toString()),
      rows: asAthenaGives(types, reader.getRowsJS() as unknown[][]),
      filesRead: files.read,
      filesTotal: files.total,
      ...(files.readAtMost !== undefined ? { filesReadAtMost: files.readAtMost } : {}),
      plan: statement.statementType === StatementType.EXPLAIN,
      elapsedMs: Math.round(performance.now() - started),
    };
  }

  /**
   * The query with its UNNESTs as Athena reads them (see athena-unnest.ts) and its approx_distinct with a FILTER as a
   * count (rewriteApproxDistinct), or as it is when it has none to rewrite
   * (or is no query: DuckDB gives no tree of one). The rewrite goes through DuckDB's parse tree and its text of a tree, so it is made only when that text
   * parses back to the same tree: for another query a rewrite could change what it asks. Without it, a query that
   * unnests rows into columns fails with what to write instead. A two-column UNNEST whose rewrite does not bind is
   * tried as a map's, `AS t(key, value)`, as Trino reads a map.
   */
  private async withTrinoRewrites(sql: string): Promise<string> {
    // Most queries have none: no parse tree is asked of DuckDB for them (a function named unnest is in the text as such).
    if (!/unnest|approx_distinct/i.test(sql)) return sql;
    const text = async (query: string, value: string) => String((await this.connection.runAndReadAll(query, [value])).getRows()[0][0]);
    const serialized = await this.parseTree(sql);
    if (!/"function_name":"(unnest|approx_distinct)"/i.test(serialized)) return sql;
    const parsed = JSON.parse(serialized) as { error: boolean; statements?: Array<{ node: unknown }> };
    if (parsed.error || parsed.statements?.length !== 1) return sql;
    if (!/"function_name":"unnest"/i.test(serialized) && approxDistinctWithModifiers(parsed).length === 0) return sql;
    // JavaScript's numbers would round an integer of 16 digits or more: the tree holds them as strings while it is rewritten.
    const longIntegers = protectLongIntegers(serialized);
    const treeOf = (json: string): unknown => withoutQueryLocations(JSON.parse(protectLongIntegers(json)?.text ?? json));
    const tree = withoutQueryLocations(JSON.parse(longIntegers?.text ?? serialized)) as { statements: Array<{ node: unknown }> };
    const original = JSON.stringify(tree);
    const sqlOf = (written: string): Promise<string> => text('SELECT json_deserialize_sql($1::JSON)', longIntegers!.restore(written));
    const faithful = longIntegers !== undefined
      && JSON.stringify(treeOf(await text('SELECT json_serialize_sql($1::VARCHAR)', await sqlOf(original)))) === original;
    const rewritten = async (mapEntries: boolean): Promise<string | undefined> => {
      const copy = JSON.parse(original) as typeof tree;
      const aggregates = rewriteApproxDistinct(copy.statements[0].node);
      if (!rewriteUnnests(copy.statements[0].node, { partitionColumns: this.partitionColumns, mapEntries }) && !aggregates) return undefined;
      return sqlOf(JSON.stringify(copy));
    };
    const rows = faithful ? await rewritten(false) : undefined;
    if (rows !== undefined) {
      // DuckDB's unnest of a map in a SELECT list fails so; Trino's of a map gives its keys and values.
      if (!hasTwoColumnUnnest(tree) || !/UNNEST not supported here/.test(await this.bindError(rows) ?? '')) return rows;
      const entries = await rewritten(true);
      const entriesError = entries === undefined ? undefined : await this.bindError(entries);
      // A map whose query fails for another reason (a misspelt column) fails with that reason.
      if (entries !== undefined && !/^.*argument types 'map_entries\(/.test(entriesError ?? '')) return entries;
      throw new Error('CROSS JOIN UNNEST(x) AS t(a, b) unnests an array of rows of two fields into their columns, or a map into its keys and'
        + ' values, and here x is neither (DuckDB: UNNEST not supported here): unnest an array, or give one column, AS t(item)');
    }
    if (hasRowFieldsUnnest(tree)) {
      throw new Error('CROSS JOIN UNNEST(array) AS t(a, b, …) unnests rows into columns on Athena, and the twin could not rewrite this query for DuckDB:'
        + ' unnest into one column, AS t(item), and name the fields item.a, item.b (both engines read that so); for a map,'
        + ' UNNEST(map_entries(m)) AS t(entry) with entry.key, entry.value');
    }
    return sql;
  }

  /** DuckDB's error preparing the query, if it fails to. */
  private async bindError(sql: string): Promise<string | undefined> {
    try {
      (await this.connection.prepare(sql)).destroySync();
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  /** DuckDB's parse tree of a query as JSON text (json_serialize_sql), asked of DuckDB once per query. */
  private async parseTree(sql: string): Promise<string> {
    if (this.serialized?.sql !== sql) {
      const reader = await this.connection.runAndReadAll('SELECT json_serialize_sql($1::VARCHAR)', [sql]);
      this.serialized = { sql, text: String(reader.getRows()[0][0]) };
    }
    return this.serialized.text;
  }

  /**
   * The parse tree's node of the query's one statement, parsed once per query; shared by the steps that read it, none
   * of which changes it. Undefined when DuckDB gives no tree of it (not a plain query) or more than one statement.
   */
  private async statementNode(sql: string): Promise<unknown> {
    const text = await this.parseTree(sql);
    const serialized = this.serialized!;
    if (!('node' in serialized)) {
      const parsed = JSON.parse(text) as { error: boolean; statements?: Array<{ node: unknown }> };
      serialized.node = parsed.error || parsed.statements?.length !== 1 ? undefined : parsed.statements[0].node;
    }
    return serialized.node;
  }

  /**
   * The tables the query names (lower case), or 'all' when its parse tree does not say (see referenced-tables.ts).
   * EXPLAIN's statement is read without it, as DuckDB shows only a plain query's tree.
   */
  private async tablesNamedBy(sql: string): Promise<ReadonlySet<string> | 'all'> {
    const [first] = leadingWords(sql, 1);
    const statement = first === 'EXPLAIN' ? /^\s*EXPLAIN\s(.*)$/is.exec(sql)?.[1] : sql;
    if (statement === undefined) return 'all';
    const node = await this.statementNode(statement);
    return node === undefined ? 'all' : referencedTables(node);
  }

  /** The result's column names as Athena gives them (`_col1` for an unnamed `count(*)`): see athenaColumnNames. */
  private async athenaColumnNames(sql: string, names: string[]): Promise<string[]> {
    const node = await this.statementNode(sql);
    return node === undefined ? names : athenaColumnNames(node, names);
  }

  /** Fails a query Athena would refuse for not naming the values of an injected partition key. */
  private async checkInjectedKeys(sql: string): Promise<void> {
    const node = await this.statementNode(sql);
    // A statement json_serialize_sql cannot show (not a plain query) is left to run as it is.
    if (node === undefined) return;
    const violation = injectedKeyViolation(node, this.injected);
    if (violation !== undefined) throw new Error(injectedKeyMessage(violation));
  }

  /**
   * The query's statements, if it is exactly one that reads only (DuckDB's parser says which kind): refused before any
   * view is defined, so a query that will not run waits for nothing.
   */
  private async readOnlyStatements(sql: string): Promise<DuckDBExtractedStatements> {
    // DuckDB's binding fails on a text of comments alone with "Error in native callback".
    if (/^[\s;]*$/.test(sql.replace(SQL_COMMENTS, ' '))) throw new QueryNotAllowedError('the query has no statement (only comments)');
    let statements;
    try {
      statements = await this.connection.extractStatements(sql);
    } catch (err) {
      if ((err as Error).message === 'Error in native callback') throw new QueryNotAllowedError('DuckDB found no statement in the query (only comments?)');
      // "Failed to extract statements: Parser Error: …": the parser's message is the news.
      throw new Error((err as Error).message.replace(/^Failed to extract statements:\s*/, ''), { cause: err });
    }
    if (statements.count === 0) throw new QueryNotAllowedError('the query has no statement');
    if (statements.count > 1) {
      throw new QueryNotAllowedError(`the query has ${statements.count} statements; Athena runs one per query, so run them one at a time`);
    }
    // By its first words, before DuckDB prepares it: preparing already does some of a statement's work (EXPORT DATABASE
    // makes its folder), so a statement refused only by its prepared type had left that behind.
    const [first, second] = leadingWords(sql, 2);
    if (!READ_ONLY_FIRST_WORDS.has(first)) throw notReadOnly(first === 'FORCE' ? `FORCE ${second}` : first || 'unrecognised');
    // EXPLAIN only shows a plan; EXPLAIN ANALYZE runs its statement, which could be a COPY, so it is refused.
    if (first === 'EXPLAIN' && explainAnalyzes(sql)) throw notReadOnly('EXPLAIN ANALYZE');
    return statements;
  }

  /** The query prepared, once its tables' views are defined; refused if its prepared type is not one that reads. */
  private async prepareReadOnly(sql: string, statements: DuckDBExtractedStatements): Promise<DuckDBPreparedStatement> {
    const duckDbSql = await this.withTrinoRewrites(sql);
    const prepared = duckDbSql === sql ? await statements.prepare(0) : await this.connection.prepare(duckDbSql);
    // Its type too, should a first word that reads let through a statement that does not. SELECT covers WITH … SELECT,
    // VALUES, DESCRIBE, SHOW and SUMMARIZE: DuckDB plans them all as SELECT.
    if (prepared.statementType !== StatementType.SELECT && prepared.statementType !== StatementType.EXPLAIN) {
      throw notReadOnly(StatementType[prepared.statementType] ?? String(prepared.statementType));
    }
    return prepared;
  }

  close(): void {
    try {
      this.connection.closeSync();
      this.instance.closeSync();
    } finally {
      fs.rmSync(this.scratchDir, { recursive: true, force: true });
    }
  }

  /** Stops the running query (Ctrl-C): it then fails with DuckDB's "Interrupted" error. */
  interrupt(): void {
    this.connection.interrupt();
  }
}

function notReadOnly(kind: string): QueryNotAllowedError {
  return new QueryNotAllowedError(`only read-only queries run here, as on Athena (SELECT, WITH … SELECT, DESCRIBE, SHOW, EXPLAIN); this is ${/^[AEIOU]/.test(kind) ? 'an' : 'a'} ${kind} statement`);
}

/**
 * The first words of the statements that only read: a query (SELECT, WITH, FROM, VALUES, TABLE, or `(` before one,
 * which leadingWords skips) or a look at one (DESCRIBE, SHOW, SUMMARIZE, EXPLAIN).
 */
const READ_ONLY_FIRST_WORDS = new Set(['SELECT', 'WITH', 'FROM', 'VALUES', 'TABLE', 'DESCRIBE', 'DESC', 'SHOW', 'SUMMARIZE', 'EXPLAIN']);

/**
 * A statement's first `count` words, upper-cased ('' for none), past blanks, `;`, opening parentheses and comments
 * (block comments nest, as DuckDB reads them: `/* /* *\/ x *\/` is one comment).
 */
function leadingWords(sql: string, count: number): string[] {
  const words: string[] = [];
  let i = 0;
  while (words.length < count) {
    if (i >= sql.length) {
      break;
    } else if (/[\s;(]/.test(sql[i])) {
      i++;
    } else if (sql.startsWith('--', i)) {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? sql.length : end + 1;
    } else if (sql.startsWith('/*', i)) {
      let depth = 0;
      do {
        if (sql.startsWith('/*', i)) {
          depth++;
          i += 2;
        } else if (sql.startsWith('*/', i)) {
          depth--;
          i += 2;
        } else {
          i++;
        }
      } while (depth > 0 && i < sql.length);
    } else {
      const word = /^[A-Za-z_]+/.exec(sql.slice(i))?.[0] ?? '';
      // Anything but a word (a quote, a digit) ends them: a statement's kind is in its first words.
      if (word === '') break;
      words.push(word.toUpperCase());
      i += word.length;
    }
  }
  while (words.length < count) words.push('');
  return words;
}

/** SQL comments, simple ones: only to say "only comments" kindly; DuckDB nests block comments, which this does not. */
const SQL_COMMENTS = /--[^\n]*|\/\*[\s\S]*?\*\//g;

/**
 * Whether an EXPLAIN statement may run its statement too (EXPLAIN ANALYZE). Judged without re-reading the
 * SQL as DuckDB would (comments nest and may hold quotes, options come in parentheses): "analyze" anywhere
 * in the text counts, even in a string. It can refuse an EXPLAIN that merely mentions the word, never let
 * EXPLAIN ANALYZE through.
 */
function explainAnalyzes(sql: string): boolean {
  return /analy[sz]e/i.test(sql);
}

/** The error objects' fields and the DuckDB types of their Glue types. */
const ERROR_OBJECT_COLUMNS: ReadonlyArray<readonly [key: string, duckDbType: string]> = ERROR_OBJECT_FIELDS.map((f) => [
  f.key,
  ({ int: 'INTEGER', bigint: 'BIGINT', string: 'VARCHAR' } as const)[f.type],
]);

/**
 * The longest error line the `<table>_errors` view reads, bytes: 16 MiB, read_json's limit before, twice the failure router's
 * (MAX_ERROR_LINE_BYTES). DuckDB's check is not exact at its limit (a line of its size next to a longer one was skipped or
 * read depending on where they fell), so it is kept well above the lines every reader takes whole.
 */
const MAX_LINE_BYTES_READ = 2 * MAX_ERROR_LINE_BYTES;

/**
 * read_csv over error objects as lines: one VARCHAR column (a delimiter no JSON text holds unescaped, no quoting), a longer
 * line than MAX_LINE_BYTES_READ skipped (ignore_errors) in buffers of twice that, rather than DuckDB's default of 16 lines'
 * worth. Not strict: bytes that are not JSON lines (a gzip object without `.gz`) read as lines of NULLs, as Athena reads
 * them, rather than failing the query, except that a line which is not UTF-8 gives no row. A line ends at "\n", "\r\n" or
 * "\r", as in Hadoop's text input.
 */
const ERROR_LINES_OPTIONS = [
  "columns = {'line': 'VARCHAR'}", 'header = false', 'auto_detect = false', 'delim = chr(1)', "quote = ''", "escape = ''",
  'strict_mode = false', 'ignore_errors = true', 'filename = true',
  `max_line_size = ${MAX_LINE_BYTES_READ}`, `buffer_size = ${2 * MAX_LINE_BYTES_READ}`,
].join(', ');

/** A column of a view and its DuckDB type. */
type TypedColumn = readonly [name: string, duckDbType: string];

/** The Glue table's columns, then its partition keys, as the stack's table has them. */
function tableColumnTypes(model: SchemaModel): TypedColumn[] {
  return [
    ...model.tableColumns.map((c): TypedColumn => [c.name, duckDbType(c.type)]),
    ...model.partitionKeys.map((k): TypedColumn => [k.name, hivePartitionType(k.hiveType)]),
  ];
}

function hivePartitionType(hiveType: string): string {
  return hiveType === 'int' ? 'INTEGER' : 'VARCHAR';
}

/**
 * The table's files as Athena reads them through Glue: by column name, and a column of the schema that no
 * file has yet (one just added) reads as NULL of its type, where naming it in the scan would fail. The typed
 * empty side gives every column its type; UNION ALL BY NAME fills in NULL for what the files lack (nested
 * struct fields too). Filters still reach the Parquet scans, so partitions are pruned as before.
 *
 * `groups`: the files, in groups that each read as the same columns (filesByColumns). Each group is one scan that
 * reads its files as it reads the first, and the groups are put together by name: a scan that unifies files of
 * different columns itself (union_by_name) reads every file's footer when the query starts, before partition
 * filters leave it a few of them to read. `unknown` files (columns not known: one DuckDB could not read) are read
 * that way, as DuckDB then names the file it cannot read.
 */
function scanSql(
  model: SchemaModel,
  groups: { readonly same: readonly FileGroup[]; readonly unknown: readonly string[] },
  refusals: ReadonlyArray<ReadonlyMap<string, string> | undefined>,
): string {
  const columns = tableColumnTypes(model);
  const hiveTypes = model.partitionKeys.map((k) => `${sqlString(k.name)}: ${hivePartitionType(k.hiveType)}`);
  // DuckDB reads a folder `event_type=null` as SQL NULL, where Athena reads the string 'null', a value the
  // transform's sanitizer can make. A real NULL cannot occur (the transform fails a record whose value is empty), and
  // filters on the coalesced key still prune the files.
  const strings = new Set(model.partitionKeys.filter((k) => hivePartitionType(k.hiveType) === 'VARCHAR').map((k) => k.name));
  // Each column cast to the table's type, as Athena reads it: UNION ALL BY NAME gives a column a type that holds both
  // sides (a struct keeps the fields only the files have, ones the schema removed; FLOAT files make a DOUBLE a FLOAT's).
  const partitions = new Set(model.partitionKeys.map((k) => k.name));
  const projected = columns.map(([name, type]) => (strings.has(name) ? `coalesce(${quoteIdent(name)}, 'null') AS ${quoteIdent(name)}`
    : partitions.has(name) ? quoteIdent(name) : `CAST(${quoteIdent(name)} AS ${type}) AS ${quoteIdent(name)}`));
  const typeOf = new Map(columns.map(([name, type]) => [name.toLowerCase(), type]));
  // A column read from files Athena would fail to read it from raises the reason (`refusals`: its SQL) for each row it
  // gives, a NULL too: a query pruned to other files, or reading other columns, never evaluates it (the message depends
  // on the row, so DuckDB cannot fold it into a constant and raise it while planning).
  const refusing = (refused: ReadonlyMap<string, string> | undefined) => (refused === undefined ? '' : ` REPLACE (${[...refused].map(([column, message]) => (
    `CAST(error(${message} || left(CAST(${quoteIdent(column)} IS NULL AS VARCHAR), 0)) AS ${typeOf.get(column.toLowerCase())}) AS ${quoteIdent(column)}`)).join(', ')})`);
  const scan = (files: readonly string[], unionByName: boolean, refused?: ReadonlyMap<string, string>) => ` UNION ALL BY NAME SELECT *`
    + `${refused === undefined ? '' : ` EXCLUDE (${SOURCE_FILE_COLUMN})`}${refusing(refused)} FROM read_parquet(${sqlList(files)}, hive_partitioning = true,`
    + ` hive_types = {${hiveTypes.join(', ')}}, union_by_name = ${unionByName}${refused === undefined ? '' : `, filename = ${sqlString(SOURCE_FILE_COLUMN)}`})`;
  const refused = groups.same.flatMap((group, i) => (refusals[i] === undefined ? [] : [scan(group.files, false, refusals[i])]));
  const readable = groups.same.filter((_, i) => refusals[i] === undefined);
  const scans = groups.unknown.length > 0
    ? scan([...readable.flatMap((g) => g.files), ...groups.unknown].sort(), true)
    : readable.map((group) => scan(group.files, false)).join('');
  return `SELECT ${projected.join(', ')} FROM (${emptySql(columns)}${scans}${refused.join('')})`;
}

/** The column a scan of files Athena would refuse a column of names each row's file in (hiveBadData's message). */
const SOURCE_FILE_COLUMN = '__sluice_source_file';

/** Files DuckDB reads as the same columns (names and types, in the same order). */
interface FileGroup {
  readonly files: readonly string[];
  readonly columns: ReadonlyMap<string, DuckDBType>;
}

/**
 * The files in groups that DuckDB reads as the same columns (names and types, in the same order), in the order of
 * their first files, and those whose columns are not known.
 */
function filesByColumns(files: readonly string[], columnsByFile: ReadonlyMap<string, ReadonlyMap<string, DuckDBType>>): { same: FileGroup[]; unknown: string[] } {
  const signatures = new Map<ReadonlyMap<string, DuckDBType>, string>();
  const groups = new Map<string, { files: string[]; columns: ReadonlyMap<string, DuckDBType> }>();
  const unknown: string[] = [];
  for (const file of files) {
    const columns = columnsByFile.get(file);
    if (columns === undefined) {
      unknown.push(file);
      continue;
    }
    let signature = signatures.get(columns);
    if (signature === undefined) {
      signature = [...columns].map(([name, type]) => `${quoteIdent(name)} ${type.toString()}`).join(', ');
      signatures.set(columns, signature);
    }
    const group = groups.get(signature);
    if (group) group.files.push(file);
    else groups.set(signature, { files: [file], columns });
  }
  return { same: [...groups.values()], unknown };
}

/** A typed, empty table: queries on a pipeline with no data yet return no rows instead of failing. */
function emptySql(columns: readonly TypedColumn[]): string {
  return `SELECT ${columns.map(([name, type]) => `CAST(NULL AS ${type}) AS ${quoteIdent(name)}`).join(', ')} WHERE false`;
}

/**
 * DuckDB expands glob characters even in a list of file names (it takes a name literally only when its glob
 * matches nothing), so under a data dir such as `/tmp/br[x]` a file name would match a sibling `/tmp/brx`'s
 * file. And its hive partitioning takes the first `key=value` folder anywhere in a file's path, so under
 * `/tmp/year=1999/dd` every row's year read 1999. Such a bucket is given to DuckDB through a link in the
 * query's private directory, whose path has neither.
 */
function lakePathForDuckDb(lake: string, privateDir: string): string {
  const misread = /[[\]*?{}\\=]/;
  if (!misread.test(lake)) return lake;
  const link = path.join(privateDir, 'lake');
  if (misread.test(link)) return lake;
  // DuckDB resolves the link when it is made the allowed directory, and each file through it when read: a link made
  // before the twin wrote its first object (a fresh data dir) pointed nowhere, so the files that came later resolved
  // outside the allowed directory and every read was refused. The bucket folder is made first, as the twin makes it.
  if (!fs.existsSync(lake) && fs.existsSync(path.dirname(path.dirname(lake)))) {
    try {
      makeDirectories(lake);
    } catch {
      // A data dir this user cannot write to: the link points nowhere until the twin makes the folder.
    }
  }
  fs.symlinkSync(lake, link, process.platform === 'win32' ? 'junction' : 'dir');
  return link;
}

interface ProfileNode {
  readonly operator_name?: string;
  readonly extra_info?: Record<string, unknown>;
  readonly children?: readonly ProfileNode[];
}

/**
 * Parquet files read, from the READ_PARQUET scans of DuckDB's JSON profile (other scans, such as the error
 * objects' JSON, are not Parquet). DuckDB counts a file once read to its end, so when a LIMIT stops the
 * scans early the count falls short: then the files each scan could read after pruning ("Scanning Files:
 * 2/8", or all its table's files) bound it from above. `total` is the files of the tables the query scanned
 * (a query on one table is not measured against every pipeline's files).
 */
function filesReadFromProfile(file: string, tableFiles: ReadonlyMap<string, number>): { read: number; total: number; readAtMost?: number } {
  if (!fs.existsSync(file)) return { read: 0, total: 0 };
  const scans: Array<{ table?: string; scanned: number; pruned?: readonly [left: number, of: number]; cluster: number }> = [];
  let limited = false;
  let clusters = 0;
  // `cluster`: the scans under one chain of UNIONs, projections and filters, as a table's view has them (one scan per
  // group of files with the same columns, see scanSql).
  const visit = (node: ProfileNode, cluster: number): void => {
    const name = node.operator_name ?? '';
    if (name.includes('LIMIT')) limited = true;
    const info = node.extra_info ?? {};
    if (name === 'READ_PARQUET' || info.Function === 'READ_PARQUET') {
      // DuckDB names the first files it scans (none when partition filters pruned them all): the table is the
      // one whose folder holds them. "Scanning Files: n/m" says how many the filters left of the scan's m.
      const named = String(info['Filename(s)'] ?? '');
      const pruned = /^(\d+)\/(\d+)$/.exec(String(info['Scanning Files'] ?? ''));
      scans.push({
        table: named === '' ? undefined : [...tableFiles.keys()].find((folder) => named.startsWith(folder)),
        scanned: Number(info['Total Files Read'] ?? 0),
        ...(pruned ? { pruned: [Number(pruned[1]), Number(pruned[2])] as const } : {}),
        cluster,
      });
    }
    const through = name === 'UNION' || name === 'PROJECTION' || name === 'FILTER';
    for (const child of node.children ?? []) visit(child, through ? cluster : ++clusters);
  };
  visit(JSON.parse(fs.readFileSync(file, 'utf8')) as ProfileNode, 0);
  // A scan its filters left no file to read names none: it is its table's when the other scans beside it are.
  const tableOf = new Map<number, Set<string>>();
  for (const scan of scans) if (scan.table !== undefined) tableOf.set(scan.cluster, (tableOf.get(scan.cluster) ?? new Set()).add(scan.table));
  // Per table: a table scanned twice (a self-join, UNION ALL) reads its files again, but they are the same files.
  const perTable = new Map<string, { read: number; couldRead: number; files: number }>();
  scans.forEach((scan, i) => {
    const beside = tableOf.get(scan.cluster);
    const table = scan.table ?? (beside?.size === 1 ? [...beside][0] : undefined);
    const files = (table !== undefined ? tableFiles.get(table) : undefined) ?? scan.pruned?.[1] ?? scan.scanned;
    const key = table ?? `(not a table's files) ${i}`;
    const seen = perTable.get(key) ?? { read: 0, couldRead: 0, files: 0 };
    seen.read += scan.scanned;
    seen.couldRead += scan.pruned?.[0] ?? files;
    seen.files = Math.max(seen.files, files);
    perTable.set(key, seen);
  });
  let read = 0;
  let couldRead = 0;
  let total = 0;
  for (const seen of perTable.values()) {
    read += Math.min(seen.read, seen.files);
    couldRead += Math.min(seen.couldRead, seen.files);
    total += seen.files;
  }
  return limited && couldRead > read ? { read, total, readAtMost: couldRead } : { read, total };
}

function sqlList(strings: readonly string[]): string {
  return `[${strings.map(sqlString).join(', ')}]`;
}
