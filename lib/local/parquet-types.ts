import { DuckDBTypeId, type DuckDBType } from '@duckdb/node-api';
import { hiveType, type Column, type LogicalType } from '../schema';

/** A column (or nested field) whose type in a Parquet file is not one Athena reads as the table's type. */
export interface ParquetTypeMismatch {
  /** The table's column it is in (as the schema names it). */
  readonly tableColumn: string;
  /** The column, and the field in it for a nested one: `device.battery`, `tags[]`, `attributes{}`. */
  readonly column: string;
  /** The file's type as DuckDB reads it: DOUBLE, BIGINT, STRUCT("b" VARCHAR). */
  readonly fileType: string;
  /** The table's (Glue) type: string, int, struct<b:int>. */
  readonly tableType: string;
}

/**
 * The file types Athena reads as each of the table's types. Its documented compatible types are the wider integers
 * (TINYINT → SMALLINT → INT → BIGINT) and FLOAT → DOUBLE; any other mismatch fails the query with HIVE_BAD_DATA. (Its
 * table lists STRING → the integers too, which is for text formats: a Parquet string column is not read as a number.)
 */
const READS_AS: Readonly<Record<Exclude<LogicalType['kind'], 'struct' | 'array' | 'map'>, readonly DuckDBTypeId[]>> = {
  string: [DuckDBTypeId.VARCHAR],
  int: [DuckDBTypeId.TINYINT, DuckDBTypeId.SMALLINT, DuckDBTypeId.INTEGER],
  bigint: [DuckDBTypeId.TINYINT, DuckDBTypeId.SMALLINT, DuckDBTypeId.INTEGER, DuckDBTypeId.BIGINT],
  double: [DuckDBTypeId.FLOAT, DuckDBTypeId.DOUBLE],
  boolean: [DuckDBTypeId.BOOLEAN],
  date: [DuckDBTypeId.DATE],
  // However the writer stored it: micro- or milliseconds, INT96, with a zone or not.
  timestamp: [DuckDBTypeId.TIMESTAMP, DuckDBTypeId.TIMESTAMP_S, DuckDBTypeId.TIMESTAMP_MS, DuckDBTypeId.TIMESTAMP_NS, DuckDBTypeId.TIMESTAMP_TZ],
};

/**
 * The table's columns that a Parquet file holds as a type Athena would not read them as (the first mismatch in each).
 * Athena reads Parquet by column name (case aside): a column or struct field the file lacks reads as NULL, and one
 * only the file has is not read, so neither is a mismatch.
 */
export function parquetTypeMismatches(columns: readonly Column[], fileColumns: ReadonlyMap<string, DuckDBType>): ParquetTypeMismatch[] {
  const mismatches: ParquetTypeMismatch[] = [];
  for (const c of columns) {
    const inFile = fileColumns.get(c.name.toLowerCase());
    const mismatch = inFile === undefined ? undefined : typeMismatch(c.name, c.type, inFile);
    if (mismatch) mismatches.push({ ...mismatch, tableColumn: c.name });
  }
  return mismatches;
}

function typeMismatch(at: string, table: LogicalType, file: DuckDBType): Omit<ParquetTypeMismatch, 'tableColumn'> | undefined {
  const mismatch = { column: at, fileType: file.toString(), tableType: hiveType(table) };
  switch (table.kind) {
    case 'struct': {
      if (file.typeId !== DuckDBTypeId.STRUCT) return mismatch;
      const struct = file as DuckDBType & { entryNames: string[]; entryTypes: DuckDBType[] };
      const fields = new Map(struct.entryNames.map((name, i) => [name.toLowerCase(), struct.entryTypes[i]]));
      for (const f of table.fields) {
        const inFile = fields.get(f.name.toLowerCase());
        const nested = inFile === undefined ? undefined : typeMismatch(`${at}.${f.name}`, f.type, inFile);
        if (nested) return nested;
      }
      return undefined;
    }
    case 'array':
      if (file.typeId !== DuckDBTypeId.LIST && file.typeId !== DuckDBTypeId.ARRAY) return mismatch;
      return typeMismatch(`${at}[]`, table.items, (file as DuckDBType & { valueType: DuckDBType }).valueType);
    case 'map': {
      if (file.typeId !== DuckDBTypeId.MAP) return mismatch;
      const map = file as DuckDBType & { keyType: DuckDBType; valueType: DuckDBType };
      return typeMismatch(`${at}{}`, { kind: 'string' }, map.keyType) ?? typeMismatch(`${at}{}`, table.values, map.valueType);
    }
    default:
      return READS_AS[table.kind].includes(file.typeId) ? undefined : mismatch;
  }
}
