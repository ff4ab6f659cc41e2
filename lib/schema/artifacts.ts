import { SchemaDerivationError, type Column, type LogicalType, type SchemaModel } from './model';

/** Hive type for Glue (lower case, as Glue stores it). */
export function hiveType(t: LogicalType): string {
  switch (t.kind) {
    case 'string': return 'string';
    case 'timestamp': return 'timestamp';
    case 'date': return 'date';
    case 'int': return 'int';
    case 'bigint': return 'bigint';
    case 'double': return 'double';
    case 'boolean': return 'boolean';
    case 'struct': return `struct<${t.fields.map((f) => `${f.name}:${hiveType(f.type)}`).join(',')}>`;
    case 'array': return `array<${hiveType(t.items)}>`;
    case 'map': return `map<string,${hiveType(t.values)}>`;
  }
}

/** DuckDB type the local twin writes to Parquet. TIMESTAMP is UTC without zone, as Firehose's Parquet is. */
export function duckDbType(t: LogicalType): string {
  switch (t.kind) {
    case 'string': return 'VARCHAR';
    case 'timestamp': return 'TIMESTAMP';
    case 'date': return 'DATE';
    case 'int': return 'INTEGER';
    case 'bigint': return 'BIGINT';
    case 'double': return 'DOUBLE';
    case 'boolean': return 'BOOLEAN';
    case 'struct': return `STRUCT(${t.fields.map((f) => `${quoteIdent(f.name)} ${duckDbType(f.type)}`).join(', ')})`;
    case 'array': return `${duckDbType(t.items)}[]`;
    case 'map': return `MAP(VARCHAR, ${duckDbType(t.values)})`;
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal in Athena's (Trino's) SQL and DuckDB's. */
export function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** `2026-11-22 10:00:00.000`: a UTC time as Athena (Trino) prints it and as a TIMESTAMP literal there and in DuckDB. */
export function athenaTimestamp(t: Date): string {
  return t.toISOString().replace('T', ' ').slice(0, 23);
}

export interface GlueColumn {
  readonly name: string;
  readonly type: string;
  readonly comment?: string;
}

/** Glue table columns (partition keys excluded) and partition keys. */
export function glueColumns(model: SchemaModel): { columns: GlueColumn[]; partitionKeys: GlueColumn[] } {
  return {
    columns: model.tableColumns.map((c) => ({ name: c.name, type: hiveType(c.type), comment: c.description === undefined ? undefined : glueColumnComment(c.description) })),
    partitionKeys: model.partitionKeys.map((k) => ({ name: k.name, type: k.hiveType })),
  };
}

/**
 * A field's description as a Glue column comment: Glue takes at most 255 characters and no line breaks or other control
 * characters but tab (Column.Comment's pattern), which a schema's free-text description may well have.
 */
function glueColumnComment(description: string): string {
  const oneLine = Array.from(description.replace(/\r\n/g, '\n'), (ch) => (ch < ' ' && ch !== '\t' ? ' ' : ch)).join('');
  return cutTo(oneLine, 255, '');
}

/**
 * `text`, or its beginning and `ellipsis` in `max` UTF-16 units (the length AWS's string limits count). A character outside
 * the BMP is not cut in half: a lone surrogate is refused by the patterns AWS's text fields have.
 */
export function cutTo(text: string, max: number, ellipsis = '…'): string {
  if (text.length <= max) return text;
  return text.slice(0, max - ellipsis.length).replace(/[\ud800-\udbff]$/, '') + ellipsis;
}

/** Parquet columns as the twin writes them: name → DuckDB type, in table order. */
export function parquetColumns(model: SchemaModel): Array<{ name: string; type: string }> {
  return model.tableColumns.map((c) => ({ name: c.name, type: duckDbType(c.type) }));
}

type Mapping = Record<string, unknown>;

/** OpenSearch field mapping of one logical type. */
export function openSearchField(t: LogicalType, name: string): Mapping {
  switch (t.kind) {
    case 'string':
      if (t.format === 'ipv4' || t.format === 'ipv6') return { type: 'ip' };
      // Identifiers, codes and enums are matched exactly; free text also gets a keyword sub-field for aggregations.
      if (t.enum || t.format || name === 'id' || name.endsWith('_id') || (t.maxLength !== undefined && t.maxLength <= 256)) {
        return { type: 'keyword', ignore_above: 1024 };
      }
      return { type: 'text', fields: { keyword: { type: 'keyword', ignore_above: 256 } } };
    case 'timestamp': return { type: 'date', format: 'strict_date_optional_time||epoch_millis' };
    case 'date': return { type: 'date', format: 'strict_date' };
    case 'int': return { type: 'integer' };
    case 'bigint': return { type: 'long' };
    case 'double': return { type: 'double' };
    case 'boolean': return { type: 'boolean' };
    case 'struct':
      if (t.geoPoint) return { type: 'geo_point' };
      return { properties: Object.fromEntries(t.fields.map((f) => [f.name, openSearchField(f.type, f.name)])) };
    case 'array': return openSearchField(t.items, name);
    case 'map': return { type: 'flat_object' };
  }
}

/** `index.mapping.total_fields.limit` of Sluice's search indices. */
export const OPENSEARCH_TOTAL_FIELDS_LIMIT = 1000;
/** OpenSearch's default `index.mapping.depth.limit`: a field at the root is 1 deep, one inside an object 2, and so on. */
export const OPENSEARCH_DEPTH_LIMIT = 20;

export interface OpenSearchMappingSize {
  /** Fields as OpenSearch counts them against the total-fields limit: every object, leaf and multi-field (`.keyword`). */
  readonly fields: number;
  /** Depth of the deepest field, and its schema path. */
  readonly depth: number;
  readonly deepestAt: string;
}

/** The size of the pipeline's OpenSearch mapping, counted the way OpenSearch checks its mapping limits. */
export function openSearchMappingSize(model: SchemaModel): OpenSearchMappingSize {
  let fields = 0;
  let depth = 0;
  let deepestAt = '';
  const walk = (columns: readonly Column[], at: string, level: number) => {
    for (const c of columns) {
      let t = c.type;
      let path = `${at}/properties/${c.jsonKey}`;
      // An array maps as its items: OpenSearch has no array type.
      while (t.kind === 'array') {
        t = t.items;
        path += '/items';
      }
      fields += 1 + Object.keys((openSearchField(t, c.name).fields as object | undefined) ?? {}).length;
      if (level > depth) {
        depth = level;
        deepestAt = path;
      }
      if (t.kind === 'struct' && !t.geoPoint) walk(t.fields, path, level + 1);
    }
  };
  walk(model.enrichedColumns, '', 1);
  return { fields, depth, deepestAt };
}

/**
 * Index template for the pipeline's search indices (`<pipeline>-*`, one per rotation period).
 * Throws SchemaDerivationError when OpenSearch would refuse the mapping (too many fields, or too deep),
 * so synth fails naming the schema rather than the deployment failing on the index template.
 */
export function openSearchIndexTemplate(model: SchemaModel): Mapping {
  const size = openSearchMappingSize(model);
  if (size.fields > OPENSEARCH_TOTAL_FIELDS_LIMIT) {
    throw new SchemaDerivationError('', `the OpenSearch mapping would have ${size.fields} fields, over the search index's limit of ${OPENSEARCH_TOTAL_FIELDS_LIMIT} (index.mapping.total_fields.limit; every object, leaf and .keyword sub-field counts, the sluice enrichment included); drop fields, turn a wide object into a map (an additionalProperties schema is one flat_object field), or leave search out of the pipeline's destinations`, model.pipeline);
  }
  if (size.depth > OPENSEARCH_DEPTH_LIMIT) {
    throw new SchemaDerivationError(size.deepestAt, `this field is ${size.depth} levels deep in the OpenSearch mapping, past OpenSearch's index.mapping.depth.limit of ${OPENSEARCH_DEPTH_LIMIT}; nest objects less deeply, turn an inner object into a map, or leave search out of the pipeline's destinations`, model.pipeline);
  }
  const properties = Object.fromEntries(model.enrichedColumns.map((c) => [c.name, openSearchField(c.type, c.name)]));
  return {
    index_patterns: [`${model.pipeline}-*`],
    template: {
      settings: { number_of_shards: 1, number_of_replicas: 1, 'index.mapping.total_fields.limit': OPENSEARCH_TOTAL_FIELDS_LIMIT },
      mappings: { dynamic: 'strict', _source: { enabled: true }, properties },
    },
    _meta: { source: `schemas/${model.pipeline}.schema.json`, version: model.extensions.version },
  };
}

/** Names of the interfaces `typeScriptTypes` declares for a pipeline: the record before and after enrichment. */
export function recordTypeNames(pipeline: string): { readonly input: string; readonly enriched: string } {
  const base = typeName(pipeline);
  return { input: `${base}Record`, enriched: `${base}EnrichedRecord` };
}

/** TypeScript declarations of the record before and after enrichment. */
export function typeScriptTypes(model: SchemaModel): string {
  const names = recordTypeNames(model.pipeline);
  // A title is free text: "*/" in it would end the doc comment and leave the rest as code.
  const title = model.title.replace(/\*\//g, '*\\/');
  const lines = [
    `/** ${title}: the record producers send (schemas/${model.pipeline}.schema.json v${model.extensions.version}). */`,
    `export interface ${names.input} {`,
    ...model.inputColumns.map((c) => member(c, false, '  ')),
    '}',
    '',
    `/** ${title} after the Sluice transform: PII masked, enriched, keys as Glue columns. */`,
    `export interface ${names.enriched} {`,
    ...model.enrichedColumns.map((c) => member(c, true, '  ')),
    '}',
    '',
  ];
  return lines.join('\n');
}

export function typeName(pipeline: string): string {
  return pipeline.split(/[^a-zA-Z0-9]+/).filter(Boolean).map((p) => p[0].toUpperCase() + p.slice(1)).join('');
}

function member(c: Column, columnNames: boolean, indent: string): string {
  const key = columnNames ? c.name : c.jsonKey;
  const safeKey = /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? key : JSON.stringify(key);
  return `${indent}${safeKey}${c.required ? '' : '?'}: ${tsType(c.type, columnNames, indent)}${c.nullable ? ' | null' : ''};`;
}

function tsType(t: LogicalType, columnNames: boolean, indent: string): string {
  switch (t.kind) {
    case 'string': return t.enum ? t.enum.map((v) => JSON.stringify(v)).join(' | ') : 'string';
    case 'timestamp': return 'string';
    case 'date': return 'string';
    case 'int':
    case 'bigint':
    case 'double': return 'number';
    case 'boolean': return 'boolean';
    case 'struct': return `{\n${t.fields.map((f) => member(f, columnNames, `${indent}  `)).join('\n')}\n${indent}}`;
    case 'array': {
      const inner = tsType(t.items, columnNames, indent);
      if (t.itemsNullable) return `Array<${inner} | null>`;
      return t.items.kind === 'string' && t.items.enum ? `Array<${inner}>` : `${inner}[]`;
    }
    case 'map': return `Record<string, ${tsType(t.values, columnNames, indent)}${t.valuesNullable ? ' | null' : ''}>`;
  }
}
