/**
 * Reads a record contract (JSON Schema 2020-12 with the `x-sluice` keyword) into one column model.
 * Every derived artifact — Glue columns, DuckDB types, the OpenSearch mapping, TypeScript types —
 * is rendered from this model, so they cannot disagree. Pure: no I/O, safe to bundle into Lambdas.
 */
import { minorUnitDigits } from '../../transforms/shared/money';
import { formats } from './formats';

export type LogicalType =
  | { readonly kind: 'string'; readonly enum?: readonly string[]; readonly format?: string; readonly maxLength?: number }
  | { readonly kind: 'timestamp' }
  | { readonly kind: 'date' }
  | { readonly kind: 'int' }
  | { readonly kind: 'bigint' }
  | { readonly kind: 'double' }
  | { readonly kind: 'boolean' }
  | { readonly kind: 'struct'; readonly fields: readonly Column[]; readonly geoPoint: boolean }
  /** `itemsNullable`: an item may be null (the items schema admits it, as a column's `nullable`). */
  | { readonly kind: 'array'; readonly items: LogicalType; readonly itemsNullable?: boolean }
  /** `valuesNullable`: a value may be null. */
  | { readonly kind: 'map'; readonly values: LogicalType; readonly valuesNullable?: boolean };

export interface Column {
  /** Glue / Parquet column name: lower case, Hive-safe. */
  readonly name: string;
  /** The key producers send in JSON. */
  readonly jsonKey: string;
  readonly type: LogicalType;
  readonly required: boolean;
  /**
   * True when a record may hold `null` here: the schema's type list admits it (`["string", "null"]`) and its `enum` or
   * `const`, if any, lists it (a value must pass both); absent otherwise.
   */
  readonly nullable?: boolean;
  readonly description?: string;
}

export const PII_MASKS = ['last4', 'hash', 'redact', 'drop'] as const;
export type PiiMask = (typeof PII_MASKS)[number];

export interface MoneyRule {
  readonly amountField: string;
  readonly currencyField: string;
  readonly minorUnitsField: string;
  readonly defaultCurrency?: string;
}

/** The documented `x-sluice` keyword, after validation. Field names are JSON keys of top-level properties. */
export interface SluiceExtensions {
  readonly version: string;
  /** Unique id of a record: OpenSearch document id and DynamoDB key. */
  readonly idField: string;
  /** A `date-time` field: drives year/month/day/hour partitions. */
  readonly eventTimeField: string;
  /** String fields that become S3 partitions (before the time partitions), in path order. */
  readonly partitionFields: readonly string[];
  /** The device or user a record is about (last-seen items in DynamoDB). */
  readonly entityField?: string;
  readonly pii: Readonly<Record<string, PiiMask>>;
  readonly money?: MoneyRule;
  /** Column names for JSON keys that are not usable as Hive column names (e.g. reserved words). */
  readonly columns: Readonly<Record<string, string>>;
}

export interface PartitionKey {
  readonly name: string;
  /** Hive type in the Glue table. */
  readonly hiveType: 'string' | 'int';
  /** Partition projection settings for Athena. */
  readonly projection: Readonly<Record<string, string>>;
}

/**
 * The first enum-projected partition key whose folder in `relativePath` (a file's path under its table's folder,
 * `event_type=a/year=2026/…`) holds a value the enum does not list, with that value; undefined when every one is
 * listed. Athena's enum projection reads only listed values, so such a file does not show in its table.
 */
export function unlistedPartitionValue(model: Pick<SchemaModel, 'partitionKeys'>, relativePath: string): { readonly key: string; readonly value: string } | undefined {
  const segments = relativePath.split(/[\\/]/);
  for (const key of model.partitionKeys) {
    if (key.projection.type !== 'enum') continue;
    const value = segments.find((s) => s.startsWith(`${key.name}=`))?.slice(key.name.length + 1);
    if (value !== undefined && !key.projection.values.split(',').includes(value)) return { key: key.name, value };
  }
  return undefined;
}

/**
 * The partition keys Athena projects as `injected` (partition fields without an enum): Athena runs a query on the table
 * only when its WHERE clause names their values (`key = '…'`, `key IN (…)`).
 */
export function injectedPartitionKeys(model: Pick<SchemaModel, 'partitionKeys'>): string[] {
  return model.partitionKeys.filter((k) => k.projection.type === 'injected').map((k) => k.name);
}

export interface SchemaModel {
  readonly pipeline: string;
  readonly title: string;
  readonly extensions: SluiceExtensions;
  /** Columns of the record as producers send it (names already mapped to column names). */
  readonly inputColumns: readonly Column[];
  /** Columns of the record after the transform: masked, enriched, keys normalised. */
  readonly enrichedColumns: readonly Column[];
  /** Columns of the Glue table / Parquet file: enriched columns less the partition fields. */
  readonly tableColumns: readonly Column[];
  readonly partitionKeys: readonly PartitionKey[];
}

/** A schema the derivation cannot represent faithfully; names the JSON pointer of the offending node. */
export class SchemaDerivationError extends Error {
  constructor(readonly schemaPath: string, readonly problem: string, readonly pipeline?: string) {
    super(`${pipeline ? `schemas/${pipeline}.schema.json` : 'schema'} at ${schemaPath || '/'}: ${problem}`);
    this.name = 'SchemaDerivationError';
  }
}

/** A schema file that cannot be a pipeline's whatever it holds (its name): the file, what is wrong and what to do, in one line. */
export class SchemaFileNameError extends SchemaDerivationError {
  constructor(readonly file: string, problem: string) {
    super('', problem);
    this.message = `${file}: ${problem}`;
    this.name = 'SchemaFileNameError';
  }
}

/**
 * A schema file that is not JSON, as a schema to fix (the CLI and `npm run generate` say it in one line, exit 2 / 1): the
 * parser's message without the file's absolute path, which Node's require puts before it.
 */
export function notValidJson(pipeline: string, err: unknown, text?: string): SchemaDerivationError {
  // The parser quotes the text around the mistake, line breaks and all: a message is one line, so they are written \n.
  const message = (err instanceof Error ? err.message : String(err)).replace(/^.*?\.schema\.json: /, '').replace(/\r?\n/g, '\\n');
  return new SchemaDerivationError('', `is not valid JSON (${message}${lineAndColumn(message, text)}): fix it, then run \`npm run generate\``, pipeline);
}

/** The file a JSON parse error from require() names first (`/…/iot.schema.json: Unexpected …`); undefined otherwise. */
export function schemaFileOfParseError(err: unknown): string | undefined {
  return err instanceof Error ? /^(.*?\.schema\.json): /.exec(err.message)?.[1] : undefined;
}

/**
 * " (line 3 column 1)" for a parser message that gives only a position, as Node 20's does (Node 22's gives both):
 * a schema file (or cdk.json) is edited by line, not by offset. Empty when the message has no position or the text is
 * not at hand.
 */
export function lineAndColumn(message: string, text: string | undefined): string {
  const position = /at position (\d+)$/.exec(message)?.[1];
  if (position === undefined || text === undefined) return '';
  const before = text.slice(0, Number(position)).split('\n');
  return ` (line ${before.length} column ${before[before.length - 1].length + 1})`;
}

/**
 * The event years the lake holds: its `year` partition projection covers them, and the transform fails a record whose
 * event time falls outside (a row in a year Athena does not project would be in S3 and in no query).
 */
export const MIN_EVENT_YEAR = 2000;
export const MAX_EVENT_YEAR = 2100;

/** Name of the struct column the transform adds; user schemas may not use it. */
export const ENRICHMENT_COLUMN = 'sluice';
export const TIME_PARTITIONS = ['year', 'month', 'day', 'hour'] as const;

/** Fields of the `sluice` struct every enriched record carries. */
export const ENRICHMENT_FIELDS: readonly Column[] = [
  col('arrival_time', { kind: 'timestamp' }, true, 'When Firehose (or the stream) received the record.'),
  col('processed_at', { kind: 'timestamp' }, true, 'When the transform processed the record.'),
  col('source', { kind: 'string', enum: ['kinesis', 'direct-put'] }, true, 'How the record entered the pipeline.'),
  col('shard_id', { kind: 'string' }, false, 'Kinesis shard, for Kinesis-sourced records.'),
  col('sequence_number', { kind: 'string' }, false, 'Kinesis sequence number, for Kinesis-sourced records.'),
  col('schema_version', { kind: 'string' }, true, 'x-sluice.version of the schema that validated the record.'),
  col('quality_score', { kind: 'double' }, true, 'Share of the schema\'s optional fields present, 0–1.'),
];

/**
 * Words Athena's DDL reserves (from the Athena documentation's reserved-keywords list);
 * a column named so breaks CREATE TABLE and unquoted queries, so the schema must map it.
 */
export const HIVE_RESERVED = new Set([
  'all', 'alter', 'and', 'array', 'as', 'authorization', 'between', 'bigint', 'binary', 'boolean', 'both', 'by', 'case',
  'cashe', 'cast', 'char', 'column', 'conf', 'constraint', 'commit', 'create', 'cross', 'cube', 'current', 'current_date',
  'current_timestamp', 'cursor', 'database', 'date', 'dayofweek', 'decimal', 'delete', 'describe', 'distinct', 'div',
  'double', 'drop', 'else', 'end', 'exchange', 'exists', 'extended', 'external', 'extract', 'false', 'fetch', 'float',
  'floor', 'following', 'for', 'foreign', 'from', 'full', 'function', 'grant', 'group', 'grouping', 'having', 'if',
  'import', 'in', 'inner', 'insert', 'int', 'integer', 'intersect', 'interval', 'into', 'is', 'join', 'lateral', 'left',
  'less', 'like', 'local', 'macro', 'map', 'more', 'none', 'not', 'null', 'numeric', 'of', 'on', 'only', 'or', 'order',
  'out', 'outer', 'over', 'partialscan', 'partition', 'percent', 'preceding', 'precision', 'preserve', 'primary',
  'procedure', 'range', 'reads', 'reduce', 'regexp', 'references', 'revoke', 'right', 'rlike', 'rollback', 'rollup',
  'row', 'rows', 'select', 'set', 'smallint', 'start', 'table', 'tablesample', 'then', 'time', 'timestamp', 'to',
  'transform', 'trigger', 'true', 'truncate', 'unbounded', 'union', 'uniquejoin', 'update', 'user', 'using',
  'utc_timestamp', 'values', 'varchar', 'views', 'when', 'where', 'window', 'with',
]);

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const SUPPORTED_KEYWORDS = new Set([
  '$schema', '$id', '$comment', 'title', 'description', 'examples', 'default', 'deprecated', 'readOnly', 'writeOnly',
  'type', 'properties', 'required', 'additionalProperties', 'items', 'enum', 'const', 'format',
  'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf',
  'minLength', 'maxLength', 'pattern', 'minItems', 'maxItems', 'uniqueItems', 'minProperties', 'maxProperties',
  'x-sluice',
]);

type JsonSchema = Record<string, unknown>;

/** Builds the column model of a pipeline's schema, or throws SchemaDerivationError naming the schema path. */
export function describeSchema(pipeline: string, schema: unknown): SchemaModel {
  const fail = (at: string, problem: string): never => {
    throw new SchemaDerivationError(at, problem, pipeline);
  };
  if (!isObject(schema)) fail('', 'a schema must be a JSON object');
  const root = schema as JsonSchema;
  if (root.$schema !== 'https://json-schema.org/draft/2020-12/schema') {
    fail('/$schema', `must be "https://json-schema.org/draft/2020-12/schema", got ${JSON.stringify(root.$schema)}`);
  }
  if (root.type !== 'object' || !isObject(root.properties)) fail('', 'the record schema must be {"type": "object", "properties": {...}}');
  checkKeywords(root, '', 'describe the record with "properties" alone', fail);
  requireClosedObject(root, '', fail);

  const extensions = readExtensions(root, fail);
  const inputColumns = structFields(root, '', extensions.columns, fail);
  const byKey = new Map(inputColumns.map((c) => [c.jsonKey, c]));
  for (const key of Object.keys(extensions.columns)) {
    if (!byKey.has(key)) {
      fail(`/x-sluice/columns/${key}`, `"${key}" is not a top-level property of the schema; x-sluice.columns renames top-level properties only (nested fields keep their keys, lower-cased), so remove the entry or correct its key`);
    }
  }

  const field = (key: string, what: string): Column => {
    const c = byKey.get(key);
    if (!c) return fail('/x-sluice', `${what} "${key}" is not a top-level property of the schema`);
    return c;
  };
  // A null would pass validation and then fail (or crash) whatever reads these fields: the id keys
  // documents and metadata items, the event time and partition fields make the record's S3 path.
  const notNullable = (c: Column, what: string) => {
    if (typeAdmitsNull((root.properties as Record<string, JsonSchema>)[c.jsonKey])) fail(`/properties/${c.jsonKey}/type`, `the ${what} "${c.jsonKey}" must not admit null; give it a single type`);
  };
  const id = field(extensions.idField, 'idField');
  if (id.type.kind !== 'string') fail(`/properties/${id.jsonKey}`, 'the idField must be a string');
  if (!id.required) fail('/required', `the idField "${id.jsonKey}" must be required`);
  notNullable(id, 'idField');
  const time = field(extensions.eventTimeField, 'eventTimeField');
  if (time.type.kind !== 'timestamp') fail(`/properties/${time.jsonKey}`, 'the eventTimeField must be {"type": "string", "format": "date-time"}');
  if (!time.required) fail('/required', `the eventTimeField "${time.jsonKey}" must be required`);
  notNullable(time, 'eventTimeField');
  for (const key of extensions.partitionFields) {
    const c = field(key, 'partition field');
    if (c.type.kind !== 'string') fail(`/properties/${key}`, `a partition field must be a plain string${c.type.kind === 'date' || c.type.kind === 'timestamp' ? ' (not a date or date-time: the event time gives the time partitions)' : ''}`);
    if (!c.required) fail('/required', `the partition field "${key}" must be required, or records would have no partition`);
    notNullable(c, 'partition field');
    if (c.type.kind === 'string' && c.type.enum) {
      const keyword = Array.isArray((root.properties as Record<string, JsonSchema>)[key].enum) ? 'enum' : 'const';
      checkPartitionEnum(c.type.enum, `/properties/${key}/${keyword}`, fail);
    }
  }
  if (extensions.entityField) {
    // The metadata consumer writes last-seen items for string values only; optional or null just means no item.
    const entity = field(extensions.entityField, 'entityField');
    if (entity.type.kind !== 'string') {
      fail(`/properties/${entity.jsonKey}`, `the entityField "${entity.jsonKey}" must be a string: last-seen items are keyed by string values, so no item would ever be written`);
    }
  }
  for (const [fieldPath, mask] of Object.entries(extensions.pii)) {
    const c = columnAt(inputColumns, fieldPath);
    if (!c) fail(`/x-sluice/pii/${fieldPath}`, missingPiiFieldProblem(inputColumns, fieldPath));
    else if (c.type.kind !== 'string') fail(`/x-sluice/pii/${fieldPath}`, `PII mask "${mask}" applies to plain strings only${c.type.kind === 'date' || c.type.kind === 'timestamp' ? ' (a date or date-time is a column of its own type)' : ''}`);
    if (fieldPath === extensions.idField || extensions.partitionFields.includes(fieldPath) || fieldPath === extensions.eventTimeField) {
      fail(`/x-sluice/pii/${fieldPath}`, 'the id, event-time and partition fields cannot be masked');
    }
    // The metadata consumer keys last-seen items by the raw value, before any mask applies.
    if (fieldPath === extensions.entityField) {
      fail(`/x-sluice/pii/${fieldPath}`, `the entityField "${fieldPath}" is stored unmasked (the metadata table's last-seen items are keyed by it); choose another entityField or drop the mask`);
    }
  }
  if (extensions.money) {
    const m = extensions.money;
    const amount = field(m.amountField, 'money.amountField');
    if (amount.type.kind !== 'double' && amount.type.kind !== 'int' && amount.type.kind !== 'bigint') {
      fail(`/properties/${m.amountField}`, 'money.amountField must be a number');
    }
    const currency = field(m.currencyField, 'money.currencyField');
    if (currency.type.kind !== 'string') fail(`/properties/${m.currencyField}`, 'money.currencyField must be a string');
    // A listed currency the transform's table does not know passes validation and then fails every record carrying it.
    const unknownCurrencies = currency.type.kind === 'string' ? (currency.type.enum ?? []).filter((c) => minorUnitDigits(c) === undefined) : [];
    if (unknownCurrencies.length > 0) {
      fail(`/properties/${m.currencyField}`, `${unknownCurrencies.map((c) => JSON.stringify(c)).join(', ')} ${unknownCurrencies.length === 1 ? 'is not an ISO 4217 currency code' : 'are not ISO 4217 currency codes'}, which the transform needs to compute money.minorUnitsField: list three capital letters, e.g. "USD"`);
    }
    // A record without a currency, or with a null one, passes validation: without a default the transform would fail it.
    if ((!currency.required || currency.nullable) && !m.defaultCurrency) {
      fail('/x-sluice/money', `"${m.currencyField}" ${currency.required ? 'admits null' : 'is optional'}, so money.defaultCurrency is required`);
    }
    // The transform converts with the same table: a default it does not know fails every record without a currency.
    if (m.defaultCurrency !== undefined && minorUnitDigits(m.defaultCurrency) === undefined) {
      fail('/x-sluice/money/defaultCurrency', `${JSON.stringify(m.defaultCurrency)} is not an ISO 4217 currency code; write three capital letters, e.g. "USD"`);
    }
    // The field becomes a column of its own name beside the others, so it obeys the same naming rules.
    const minorAt = '/x-sluice/money/minorUnitsField';
    const minor = m.minorUnitsField;
    const problem = columnNameProblem(minor, true);
    if (problem !== undefined) {
      fail(minorAt, {
        syntax: `${quotedName(minor)}, ${glueNameSyntaxProblem(minor) ?? ''}; choose another name`,
        inherited: `"${minor}" is named like a member every JavaScript object inherits; choose another name`,
        reserved: `"${minor}" is a reserved word in Athena DDL; choose another name`,
        'time-partition': `"${minor}" collides with the lake's time partition key of the same name; choose another name`,
      }[problem]);
    }
    if (m.minorUnitsField === ENRICHMENT_COLUMN) {
      fail(minorAt, `"${ENRICHMENT_COLUMN}" is reserved for the enrichment the transform adds; choose another name`);
    }
    if (byKey.has(m.minorUnitsField) || inputColumns.some((c) => c.name === m.minorUnitsField)) {
      fail(minorAt, `"${m.minorUnitsField}" already exists in the schema; choose another name`);
    }
  }
  if (inputColumns.some((c) => c.name === ENRICHMENT_COLUMN)) {
    fail(`/properties/${ENRICHMENT_COLUMN}`, `"${ENRICHMENT_COLUMN}" is reserved for the enrichment the transform adds`);
  }

  const enrichedColumns: Column[] = [];
  for (const c of maskedColumns(inputColumns, extensions.pii, '')) {
    enrichedColumns.push(c);
    if (extensions.money && c.jsonKey === extensions.money.amountField) {
      enrichedColumns.push(col(extensions.money.minorUnitsField, { kind: 'bigint' }, c.required,
        `${c.jsonKey} in the currency's minor units (e.g. cents), exact.`));
    }
  }
  enrichedColumns.push(col(ENRICHMENT_COLUMN, { kind: 'struct', fields: ENRICHMENT_FIELDS, geoPoint: false }, true,
    'Ingest metadata added by the Sluice transform.'));

  const partitionColumnNames = extensions.partitionFields.map((k) => byKey.get(k)!.name);
  const tableColumns = enrichedColumns.filter((c) => !partitionColumnNames.includes(c.name));

  const partitionKeys: PartitionKey[] = [
    ...partitionColumnNames.map((name): PartitionKey => {
      const t = byKey.get(extensions.partitionFields[partitionColumnNames.indexOf(name)])!.type;
      // An enum lets Athena enumerate partitions; otherwise the value must be given in every query.
      const projection: Record<string, string> = t.kind === 'string' && t.enum
        ? { type: 'enum', values: t.enum.map(sanitizedPartitionValue).join(',') }
        : { type: 'injected' };
      return { name, hiveType: 'string', projection };
    }),
    { name: 'year', hiveType: 'int', projection: { type: 'integer', range: `${MIN_EVENT_YEAR},${MAX_EVENT_YEAR}` } },
    { name: 'month', hiveType: 'int', projection: { type: 'integer', range: '1,12', digits: '2' } },
    { name: 'day', hiveType: 'int', projection: { type: 'integer', range: '1,31', digits: '2' } },
    { name: 'hour', hiveType: 'int', projection: { type: 'integer', range: '0,23', digits: '2' } },
  ];

  return {
    pipeline,
    title: typeof root.title === 'string' ? root.title : pipeline,
    extensions,
    inputColumns,
    enrichedColumns,
    tableColumns,
    partitionKeys,
  };
}

/**
 * The partition value a string becomes in an S3 path: lower-case letters, digits, "_" and "-" only,
 * at most 64 characters. Values that come out empty are not allowed (the transform fails the record).
 * Shared by the transform (paths) and the projection (enum values) so both agree.
 */
export function sanitizedPartitionValue(value: string): string {
  return value
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '_')
    .replace(/^[_-]+|[_-]+$/g, '')
    .slice(0, 64);
}

/**
 * Athena's projection enumerates an enum partition field by its partition names: a value with no name
 * fails every record that carries it, and two values of one name would share a partition and be listed twice.
 */
function checkPartitionEnum(values: readonly string[], at: string, fail: (at: string, problem: string) => never): void {
  const byName = new Map<string, string>();
  for (const value of values) {
    const name = sanitizedPartitionValue(value);
    if (name === '') {
      fail(at, `${JSON.stringify(value)} leaves no partition name once sanitized (a-z, 0-9, "_" and "-" are kept, lower-cased; other characters become "_", trimmed from the ends), so every record with it would fail; remove it or partition by another field`);
    }
    const clash = byName.get(name);
    if (clash !== undefined) {
      fail(at, `${JSON.stringify(clash)} and ${JSON.stringify(value)} both become the partition "${name}"; keep values that differ once sanitized, or partition by another field`);
    }
    byName.set(name, value);
  }
}

function readExtensions(root: JsonSchema, fail: (at: string, problem: string) => never): SluiceExtensions {
  const x = root['x-sluice'];
  const keys = '{version, idField, eventTimeField, partitionFields, pii}';
  if (x === undefined) return fail('/x-sluice', `missing: every Sluice schema declares x-sluice ${keys}`);
  if (!isObject(x)) return fail('/x-sluice', `must be an object ${keys}, not ${JSON.stringify(x)}`);
  const allowed = ['version', 'idField', 'eventTimeField', 'partitionFields', 'entityField', 'pii', 'money', 'columns'];
  for (const k of Object.keys(x)) if (!allowed.includes(k)) fail(`/x-sluice/${k}`, `unknown key; allowed: ${allowed.join(', ')}`);
  const str = (k: string): string => {
    const v = x[k];
    if (typeof v !== 'string' || v === '') return fail(`/x-sluice/${k}`, 'must be a non-empty string');
    return v;
  };
  const version = str('version');
  if (!/^\d+\.\d+\.\d+$/.test(version)) fail('/x-sluice/version', `"${version}" must be a semantic version like 1.0.0`);
  const partitionFields = x.partitionFields ?? [];
  if (!Array.isArray(partitionFields) || partitionFields.some((f) => typeof f !== 'string')) {
    fail('/x-sluice/partitionFields', 'must be a list of top-level string field names');
  }
  (partitionFields as string[]).forEach((f, i) => {
    if ((partitionFields as string[]).indexOf(f) !== i) fail(`/x-sluice/partitionFields/${i}`, `"${f}" is listed twice; list each partition field once`);
  });
  const pii = x.pii ?? {};
  if (!isObject(pii)) fail('/x-sluice/pii', 'must be an object of field name → mask');
  for (const [k, mask] of Object.entries(pii as Record<string, unknown>)) {
    if (!(PII_MASKS as readonly unknown[]).includes(mask)) fail(`/x-sluice/pii/${k}`, `mask ${JSON.stringify(mask)} is not one of ${PII_MASKS.join(', ')}`);
  }
  let money: MoneyRule | undefined;
  if (x.money !== undefined) {
    const m = x.money;
    const shape = '{amountField, currencyField, minorUnitsField, defaultCurrency?} with string values';
    if (!isObject(m)) return fail('/x-sluice/money', `must be ${shape}, not ${JSON.stringify(m)}`);
    // As at the top of x-sluice: a misspelt key would otherwise be ignored, or leave a required one seemingly missing.
    const moneyKeys = ['amountField', 'currencyField', 'minorUnitsField', 'defaultCurrency'];
    for (const k of Object.keys(m)) if (!moneyKeys.includes(k)) fail(`/x-sluice/money/${k}`, `unknown key; allowed: ${moneyKeys.join(', ')}`);
    for (const k of moneyKeys) {
      const v = m[k];
      if (v === undefined && k !== 'defaultCurrency') fail('/x-sluice/money', `"${k}" is missing: money must be ${shape}`);
      if (v !== undefined && (typeof v !== 'string' || v === '')) fail(`/x-sluice/money/${k}`, `must be a non-empty string, not ${JSON.stringify(v)}`);
    }
    money = m as unknown as MoneyRule;
  }
  const columns = x.columns ?? {};
  if (!isObject(columns) || Object.values(columns).some((v) => typeof v !== 'string')) {
    fail('/x-sluice/columns', 'must be an object of JSON key → column name');
  }
  return {
    version,
    idField: str('idField'),
    eventTimeField: str('eventTimeField'),
    partitionFields: partitionFields as string[],
    entityField: x.entityField === undefined ? undefined : str('entityField'),
    pii: pii as Record<string, PiiMask>,
    money,
    columns: columns as Record<string, string>,
  };
}

/** The column at a dotted JSON path (`payment_method.card_number`), if any. */
export function columnAt(columns: readonly Column[], dottedPath: string): Column | undefined {
  const [head, ...rest] = dottedPath.split('.');
  const c = columns.find((x) => x.jsonKey === head);
  if (!c || rest.length === 0) return c;
  return c.type.kind === 'struct' ? columnAt(c.type.fields, rest.join('.')) : undefined;
}

/** Why a PII path names no column: it goes through an array or a map (masks do not reach inside them), or names no property. */
function missingPiiFieldProblem(columns: readonly Column[], dottedPath: string): string {
  const parts = dottedPath.split('.');
  let fields = columns;
  for (let i = 0; i < parts.length - 1; i++) {
    const c = fields.find((x) => x.jsonKey === parts[i]);
    if (!c) break;
    if (c.type.kind === 'array' || c.type.kind === 'map') {
      const through = parts.slice(0, i + 1).join('.');
      const what = c.type.kind === 'array' ? 'an array' : 'a map';
      return `PII field "${dottedPath}" goes through "${through}", ${what}: a path through ${what} is not supported (masks reach top-level fields and fields of nested objects only); move the field out of it, or mask it before sending`;
    }
    if (c.type.kind !== 'struct') break;
    fields = c.type.fields;
  }
  return `PII field "${dottedPath}" is not a property of the schema (nested fields are written a.b)`;
}

/** `o[key]` when `o` has it as its own key: a field named "constructor" must not find Object.prototype's. */
export function ownValue<T>(o: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(o, key) ? o[key] : undefined;
}

/** Columns after PII masking: masked strings stay strings, dropped fields disappear. */
function maskedColumns(columns: readonly Column[], pii: Readonly<Record<string, PiiMask>>, at: string): Column[] {
  const out: Column[] = [];
  for (const c of columns) {
    const here = at + c.jsonKey;
    const mask = ownValue(pii, here);
    if (mask === 'drop') continue;
    if (mask) {
      out.push({ ...c, type: { kind: 'string', format: `pii-${mask}` }, description: `${c.description ?? c.jsonKey} (PII, masked: ${mask})` });
    } else if (c.type.kind === 'struct' && Object.keys(pii).some((k) => k.startsWith(`${here}.`))) {
      out.push({ ...c, type: { ...c.type, fields: maskedColumns(c.type.fields, pii, `${here}.`) } });
    } else {
      out.push(c);
    }
  }
  return out;
}

/** Names every object inherits (constructor, toString, __proto__, …): as properties, `data.name` finds the inherited value when the record lacks them. */
export const INHERITED_NAMES: ReadonlySet<string> = new Set(Object.getOwnPropertyNames(Object.prototype));

/**
 * The rule a column name breaks, checked in this order; undefined when it is a good name. Schema fields
 * and derived columns (money's minor units) obey the same rules, each caller saying how to fix it.
 */
function columnNameProblem(name: string, topLevel: boolean): 'syntax' | 'inherited' | 'reserved' | 'time-partition' | undefined {
  if (glueNameSyntaxProblem(name) !== undefined) return 'syntax';
  // As properties, `data.name` finds the inherited value when a record lacks them.
  if (INHERITED_NAMES.has(name)) return 'inherited';
  if (HIVE_RESERVED.has(name)) return 'reserved';
  // Glue would get a column and a partition key of one name, and Athena refuses such a table.
  if (topLevel && isTimePartition(name)) return 'time-partition';
  return undefined;
}

/** Longest column name Glue takes. */
const MAX_COLUMN_NAME = 255;

/**
 * Which of Glue's syntax rules a column name breaks, said so a reader sees it in the name: `which …` follows
 * the quoted name. Undefined when it keeps them all.
 */
function glueNameSyntaxProblem(name: string): string | undefined {
  if (name.length > MAX_COLUMN_NAME) return `which is ${name.length} characters long, and a Glue column name has at most ${MAX_COLUMN_NAME}`;
  if (!/^[a-z0-9_]*$/.test(name)) return 'which cannot be a Glue column name (lower-case letters, digits and "_" only)';
  if (!/^[a-z_]/.test(name)) return `which starts with ${name === '' ? 'nothing' : `"${name[0]}"`}, and a Glue column name starts with a letter or "_"`;
  return undefined;
}

/** A name as a message quotes it: a name too long to be a column is cut, its schema path having it whole. */
function quotedName(name: string): string {
  return JSON.stringify(name.length > 40 ? `${name.slice(0, 32)}…` : name);
}

function structFields(node: JsonSchema, at: string, renames: Readonly<Record<string, string>>, fail: (at: string, problem: string) => never): Column[] {
  const props = node.properties as Record<string, unknown>;
  const required = Array.isArray(node.required) ? (node.required as string[]) : [];
  const out: Column[] = [];
  const seen = new Map<string, string>();
  for (const [key, sub] of Object.entries(props)) {
    const path = `${at}/properties/${key}`;
    if (INHERITED_NAMES.has(key)) {
      fail(path, `"${key}" is named like a member every JavaScript object inherits: a validator would read the inherited one when a record leaves the field out; rename the field`);
    }
    const renamed = at === '' ? ownValue(renames, key) : undefined;
    const name = renamed ?? key.toLowerCase();
    const problem = columnNameProblem(name, at === '');
    if (problem !== undefined && renamed !== undefined) {
      // The mapping's target is what is wrong, not the key: point at the entry to change.
      fail(`/x-sluice/columns/${key}`, `x-sluice.columns maps ${quotedName(key)} to ${quotedName(renamed)}, ${{
        syntax: glueNameSyntaxProblem(renamed) ?? '',
        inherited: 'which is named like a member every JavaScript object inherits and cannot name a column',
        reserved: 'which is a reserved word in Athena DDL',
        'time-partition': `which collides with the lake's time partition key of the same name (${TIME_PARTITIONS.join('/')})`,
      }[problem]}; choose another column name`);
    }
    if (problem !== undefined) {
      fail(path, {
        syntax: `${quotedName(key)}${key === name ? '' : ` (column ${quotedName(name)})`}, ${glueNameSyntaxProblem(name) ?? ''}${at === '' ? '; map it to another column name with x-sluice.columns' : '; rename the field'}`,
        inherited: `"${name}" is named like a member every JavaScript object inherits and cannot name a column; map "${key}" to another column name with x-sluice.columns`,
        reserved: `"${name}" is a reserved word in Athena DDL${at === '' ? '; map it to another column name with x-sluice.columns' : '; rename the field'}`,
        'time-partition': `column "${name}" collides with the lake's time partition key of the same name (${TIME_PARTITIONS.join('/')}); map "${key}" to another column name with x-sluice.columns`,
      }[problem]);
    }
    const clash = seen.get(name);
    if (clash !== undefined) {
      const how = ownValue(renames, key) !== undefined || ownValue(renames, clash) !== undefined ? 'after the x-sluice.columns renames' : 'once lower-cased';
      fail(path, `"${key}" and "${clash}" are the same column "${name}" ${how}`);
    }
    seen.set(name, key);
    if (!isObject(sub)) fail(path, 'must be a schema object');
    const s = sub as JsonSchema;
    out.push({
      name,
      jsonKey: key,
      type: logicalType(s, path, fail),
      required: required.includes(key),
      ...(admitsNull(s) ? { nullable: true } : {}),
      description: typeof s.description === 'string' ? s.description : undefined,
    });
  }
  for (const r of required) if (!(r in props)) fail(`${at}/required`, `"${r}" is required but not defined in properties`);
  return out;
}

/** Refuses keywords the derivation does not read: a rule it ignores would let records through that no column describes. */
function checkKeywords(s: JsonSchema, at: string, instead: string, fail: (at: string, problem: string) => never): void {
  for (const k of Object.keys(s)) {
    if (SUPPORTED_KEYWORDS.has(k)) continue;
    const meant = lookalike(k, SUPPORTED_KEYWORDS);
    fail(at, meant !== undefined ? `keyword "${k}" is not one JSON Schema knows; did you mean "${meant}"?` : `keyword "${k}" has no faithful Glue/Parquet representation; ${instead}`);
  }
  // The validators would refuse an unknown format only when `npm run generate` compiles them, naming the schema's root.
  if (s.format !== undefined && !(typeof s.format === 'string' && Object.hasOwn(formats, s.format))) {
    const meant = typeof s.format === 'string' ? lookalike(s.format, Object.keys(formats)) : undefined;
    fail(`${at}/format`, `unknown format ${JSON.stringify(s.format)}${meant !== undefined ? `; did you mean "${meant}"?` : ''} (the validators know ${Object.keys(formats).join(', ')})`);
  }
}

/** The name among `known` that `name` spells otherwise (case, "-", "_"), if any: a typo's likely intent. */
function lookalike(name: string, known: Iterable<string>): string | undefined {
  const plain = (n: string) => n.toLowerCase().replace(/[-_]/g, '');
  for (const k of known) if (plain(k) === plain(name)) return k;
  return undefined;
}

/** An object with properties becomes a struct: a key it does not name would pass validation and then be dropped. */
function requireClosedObject(s: JsonSchema, at: string, fail: (at: string, problem: string) => never): void {
  if (s.additionalProperties === false) return;
  fail(s.additionalProperties === undefined ? at : `${at}/additionalProperties`,
    'an object with properties must set "additionalProperties": false: extra keys would pass validation and have no column');
}

function logicalType(s: JsonSchema, at: string, fail: (at: string, problem: string) => never): LogicalType {
  checkKeywords(s, at, 'describe the field with a single type', fail);
  let type = s.type;
  if (Array.isArray(type)) {
    const nonNull = type.filter((t) => t !== 'null');
    if (nonNull.length !== 1) fail(at, `type ${JSON.stringify(type)} mixes types; a column has exactly one type`);
    type = nonNull[0];
  }
  if (type === undefined && Array.isArray(s.enum) && s.enum.includes(null)) {
    fail(`${at}/enum`, 'lists null, but the field has no "type" to say it may be null: give it one, e.g. "type": ["string", "null"]');
  }
  if (type === undefined && Array.isArray(s.enum) && s.enum.every((v) => typeof v === 'string')) type = 'string';
  if (type === undefined && typeof s.const === 'string') type = 'string';
  checkSatisfiable(s, type, at, fail);
  switch (type) {
    case 'string': {
      if (s.format === 'date-time') return { kind: 'timestamp' };
      if (s.format === 'date') return { kind: 'date' };
      // null passed checkSatisfiable only where the type admits it; the column's nullable says so, its enum lists the strings.
      const listed = Array.isArray(s.enum) ? (s.enum as unknown[]).filter((v) => v !== null) : typeof s.const === 'string' ? [s.const] : undefined;
      const enumValues = listed?.length === 0 ? undefined : listed;
      if (enumValues && !enumValues.every((v) => typeof v === 'string')) fail(`${at}/enum`, 'a string enum must list strings (and null, when the type admits it) only');
      return {
        kind: 'string',
        enum: enumValues as string[] | undefined,
        format: typeof s.format === 'string' ? s.format : undefined,
        maxLength: typeof s.maxLength === 'number' ? s.maxLength : undefined,
      };
    }
    case 'integer': {
      const lo = numberOr(s.minimum, s.exclusiveMinimum);
      const hi = numberOr(s.maximum, s.exclusiveMaximum);
      return lo !== undefined && hi !== undefined && lo >= INT32_MIN && hi <= INT32_MAX ? { kind: 'int' } : { kind: 'bigint' };
    }
    case 'number':
      return { kind: 'double' };
    case 'boolean':
      return { kind: 'boolean' };
    case 'array': {
      if (!isObject(s.items)) fail(at, 'an array needs an "items" schema to become array<…>');
      const items = logicalType(s.items as JsonSchema, `${at}/items`, fail);
      return { kind: 'array', items, ...(admitsNull(s.items as JsonSchema) ? { itemsNullable: true } : {}) };
    }
    case 'object': {
      if (isObject(s.properties) && Object.keys(s.properties as object).length > 0) {
        requireClosedObject(s, at, fail);
        const fields = structFields(s, at, {}, fail);
        const geoPoint = fields.length === 2
          && fields.every((f) => (f.name === 'lat' || f.name === 'lon') && f.type.kind === 'double' && f.required);
        return { kind: 'struct', fields, geoPoint };
      }
      if (isObject(s.additionalProperties)) {
        const values = logicalType(s.additionalProperties as JsonSchema, `${at}/additionalProperties`, fail);
        return { kind: 'map', values, ...(admitsNull(s.additionalProperties as JsonSchema) ? { valuesNullable: true } : {}) };
      }
      return fail(at, 'an object needs "properties" (a struct) or an "additionalProperties" schema (a map<string,…>); without either its values have no column type');
    }
    default:
      return fail(at, `${type === undefined ? 'missing "type"' : `type ${JSON.stringify(type)} is not supported`}: use one of "string", "integer", "number", "boolean", "object", "array" (or a list of one of them and "null")`);
  }
}

/**
 * Refuses rules no value can pass (minimum above maximum, minLength above maxLength, …) and listed values
 * (`enum`, `const`, `examples`) the field's own rules refuse: every record would fail validation, or the
 * sample generator would draw values the validator refuses, while synth and generate succeed.
 */
function checkSatisfiable(s: JsonSchema, type: unknown, at: string, fail: (at: string, problem: string) => never): void {
  const num = (k: string) => (typeof s[k] === 'number' ? (s[k] as number) : undefined);
  const pair = (lo: string, hi: string) => {
    const a = num(lo);
    const b = num(hi);
    if (a !== undefined && b !== undefined && a > b) fail(`${at}/${lo}`, `${lo} ${a} is greater than ${hi} ${b}: no value can pass; fix one of them`);
  };
  pair('minLength', 'maxLength');
  pair('minItems', 'maxItems');
  pair('minProperties', 'maxProperties');
  const required = Array.isArray(s.required) ? s.required.length : 0;
  const maxProperties = num('maxProperties');
  if (maxProperties !== undefined && required > maxProperties) {
    fail(`${at}/maxProperties`, `maxProperties ${maxProperties} is less than the ${required} required properties: no value can pass; fix one of them`);
  }
  if (type === 'integer' || type === 'number') {
    const lower = [['minimum', num('minimum')], ['exclusiveMinimum', num('exclusiveMinimum')]].filter(([, v]) => v !== undefined) as Array<[string, number]>;
    const upper = [['maximum', num('maximum')], ['exclusiveMaximum', num('exclusiveMaximum')]].filter(([, v]) => v !== undefined) as Array<[string, number]>;
    for (const [lk, lv] of lower) {
      for (const [hk, hv] of upper) {
        const open = lk.startsWith('exclusive') || hk.startsWith('exclusive');
        if (lv > hv || (open && lv === hv)) fail(`${at}/${lk}`, `${lk} ${lv} is ${lv === hv ? 'equal to' : 'greater than'} ${hk} ${hv}: no value can pass; fix one of them`);
      }
    }
    // Bounds a few doubles apart leave no number between them (exclusiveMinimum -1e-323, exclusiveMaximum -5e-324).
    const passes = (x: number) => lower.every(([k, v]) => (k === 'minimum' ? x >= v : x > v)) && upper.every(([k, v]) => (k === 'maximum' ? x <= v : x < v));
    const least = Math.max(...lower.map(([, v]) => v));
    const most = Math.min(...upper.map(([, v]) => v));
    if (type === 'number' && lower.length > 0 && upper.length > 0 && least < most && ![least + (most - least) / 2, least, most].some(passes)) {
      fail(`${at}/${upper[0][0]}`, `no number lies within ${[...lower, ...upper].map(([k, v]) => `${k} ${v}`).join(' and ')} (the bounds are adjacent doubles): no value can pass; fix the bounds`);
    }
    const multipleOf = num('multipleOf');
    const lo = Math.max(...lower.map(([k, v]) => (k === 'minimum' ? v : v + Number.EPSILON * Math.max(1, Math.abs(v)))));
    const hi = Math.min(...upper.map(([k, v]) => (k === 'maximum' ? v : v - Number.EPSILON * Math.max(1, Math.abs(v)))));
    // An integer field needs a whole number in range whatever its multipleOf (0 < -5e-324 leaves none in [-5e-324, -5e-324]).
    if (type === 'integer' && multipleOf !== undefined && Number.isFinite(lo) && Number.isFinite(hi) && Math.ceil(lo) > Math.floor(hi)) {
      fail(at, `no integer lies within ${[...lower, ...upper].map(([k, v]) => `${k} ${v}`).join(' and ')}: no value can pass; fix the bounds`);
    }
    const step = multipleOf ?? (type === 'integer' ? 1 : undefined);
    if (step !== undefined && step > 0 && Number.isFinite(lo) && Number.isFinite(hi) && Math.ceil(lo / step) > Math.floor(hi / step)) {
      const bounds = [...lower, ...upper].map(([k, v]) => `${k} ${v}`).join(' and ');
      fail(`${at}${multipleOf !== undefined ? '/multipleOf' : ''}`, `no ${multipleOf !== undefined ? `multiple of ${multipleOf}` : 'integer'} lies within ${bounds}: no value can pass; fix the bounds`);
    }
  }
  if (typeof s.pattern === 'string') {
    try {
      new RegExp(s.pattern, 'u');
    } catch (err) {
      fail(`${at}/pattern`, `${JSON.stringify(s.pattern)} is not a regular expression (${(err as Error).message})`);
    }
  }
  const listed: Array<[string, unknown[]]> = [];
  if (Array.isArray(s.enum)) listed.push(['enum', s.enum]);
  if (s.const !== undefined) listed.push(['const', [s.const]]);
  if (Array.isArray(s.examples)) listed.push(['examples', s.examples]);
  for (const [keyword, values] of listed) {
    values.forEach((value, i) => {
      const problem = valueProblem(s, type, value);
      if (problem !== undefined) fail(keyword === 'const' ? `${at}/const` : `${at}/${keyword}/${i}`, `${JSON.stringify(value)} ${problem}, so ${keyword === 'examples' ? 'generated records would fail validation' : 'no record can carry it'}; fix the value or the rule`);
    });
  }
}

/** The field's own rule a listed value breaks (its type, length, pattern, format, bounds), or undefined. Scalars only. */
function valueProblem(s: JsonSchema, type: unknown, value: unknown): string | undefined {
  if (value === null) {
    if (typeAdmitsNull(s)) return undefined;
    return `is null, which the field's type ${JSON.stringify(s.type)} does not admit${typeof s.type === 'string' ? ` (to allow it, write "type": ["${s.type}", "null"])` : ''}`;
  }
  const num = (k: string) => (typeof s[k] === 'number' ? (s[k] as number) : undefined);
  switch (type) {
    case 'string': {
      if (typeof value !== 'string') return `is not a string, the field's type`;
      const length = [...value].length;
      const minLength = num('minLength');
      const maxLength = num('maxLength');
      if (minLength !== undefined && length < minLength) return `is ${length} characters long, shorter than the field's minLength ${minLength}`;
      if (maxLength !== undefined && length > maxLength) return `is ${length} characters long, longer than the field's maxLength ${maxLength}`;
      if (typeof s.pattern === 'string' && !new RegExp(s.pattern, 'u').test(value)) return `does not match the field's pattern ${JSON.stringify(s.pattern)}`;
      if (typeof s.format === 'string' && !formatAccepts(s.format, value)) return `is not a valid "${s.format}" (the field's format)`;
      return undefined;
    }
    case 'integer':
    case 'number': {
      if (typeof value !== 'number' || (type === 'integer' && !Number.isInteger(value))) return `is not ${type === 'integer' ? 'an integer' : 'a number'}, the field's type`;
      const bounds: Array<[string, (v: number, b: number) => boolean]> = [
        ['minimum', (v, b) => v >= b], ['exclusiveMinimum', (v, b) => v > b], ['maximum', (v, b) => v <= b], ['exclusiveMaximum', (v, b) => v < b],
      ];
      for (const [k, ok] of bounds) {
        const b = num(k);
        if (b !== undefined && !ok(value, b)) return `is outside the field's ${k} ${b}`;
      }
      const m = num('multipleOf');
      if (m !== undefined && !isMultipleOf(value, m)) return `is not a multiple of ${m} (the field's multipleOf)`;
      return undefined;
    }
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `is not a boolean, the field's type`;
    default:
      return undefined;
  }
}

/** Whether the validators' `multipleOf` passes `v`: ajv divides and checks for a fraction, without a tolerance. */
export function isMultipleOf(v: number, m: number): boolean {
  return (v / m) % 1 === 0;
}

/** Whether a value passes the named string format as the validators check it (checkKeywords refuses unknown formats first). */
function formatAccepts(name: string, value: string): boolean {
  const f = (formats as Record<string, unknown>)[name];
  const check = typeof f === 'object' && f !== null && !(f instanceof RegExp) ? (f as { validate: unknown }).validate : f;
  if (check instanceof RegExp) return check.test(value);
  if (typeof check === 'function') return (check as (v: string) => boolean)(value);
  return true;
}

/** Whether the schema's type list names `null` (`["string", "null"]`). */
export function typeAdmitsNull(s: JsonSchema): boolean {
  return Array.isArray(s.type) && s.type.includes('null');
}

/** Whether null passes the schema: its type admits null, and its `enum` or `const`, if any, lists it too. */
function admitsNull(s: JsonSchema): boolean {
  if (!typeAdmitsNull(s)) return false;
  if (Array.isArray(s.enum)) return s.enum.includes(null);
  return s.const === undefined || s.const === null;
}

function numberOr(a: unknown, b: unknown): number | undefined {
  if (typeof a === 'number') return a;
  if (typeof b === 'number') return b;
  return undefined;
}

function col(name: string, type: LogicalType, required: boolean, description?: string): Column {
  return { name, jsonKey: name, type, required, description };
}

function isTimePartition(columnName: string): boolean {
  return (TIME_PARTITIONS as readonly string[]).includes(columnName);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A record with its keys renamed to column names at every level (what OpenX JSON → Parquet expects).
 * Keys the columns do not know are left out: they have no column to land in.
 */
export function renameToColumns(columns: readonly Column[], record: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of columns) {
    if (!Object.prototype.hasOwnProperty.call(record, c.jsonKey)) continue;
    out[c.name] = renameValue(c.type, record[c.jsonKey]);
  }
  return out;
}

function renameValue(t: LogicalType, value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (t.kind === 'struct' && !Array.isArray(value)) return renameToColumns(t.fields, value as Record<string, unknown>);
  if (t.kind === 'array' && Array.isArray(value)) return value.map((v) => renameValue(t.items, v));
  if (t.kind === 'map' && !Array.isArray(value)) {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, renameValue(t.values, v)]));
  }
  return value;
}
