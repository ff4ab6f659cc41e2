/**
 * The tables a query names, from DuckDB's parse tree (`json_serialize_sql`), so that only their views are defined
 * before it runs: defining a view lists its table's files and reads their footers, and on a lake of many files that
 * was most of every query's time, a query on one table paying for all the others. `'all'` when the tree does not say:
 * a table function (other than those that read no table, such as unnest and range), the catalog's own tables
 * (information_schema, duckdb_views(), SHOW TABLES), or no tree at all. Names are lower case; a CTE's name counts as a
 * table too, which only defines a view more.
 */
type Node = Record<string, unknown>;

const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Table functions that read no table: a query using them needs no more views than the tables it names. */
const TABLELESS_FUNCTIONS = new Set(['unnest', 'range', 'generate_series', 'generate_subscripts']);

/** Schemas and name prefixes of DuckDB's catalog tables and views, which list every view. */
const CATALOG_SCHEMAS = new Set(['information_schema', 'pg_catalog']);
const CATALOG_TABLE = /^(duckdb_|pragma_|sqlite_|pg_)/;

export function referencedTables(tree: unknown): ReadonlySet<string> | 'all' {
  const tables = new Set<string>();
  let all = false;
  const visit = (v: unknown): void => {
    if (all) return;
    if (Array.isArray(v)) {
      for (const item of v) visit(item);
      return;
    }
    if (!isNode(v)) return;
    if (v.type === 'BASE_TABLE') {
      const name = String(v.table_name).toLowerCase();
      if (CATALOG_SCHEMAS.has(String(v.schema_name).toLowerCase()) || CATALOG_TABLE.test(name)) all = true;
      tables.add(name);
    } else if (v.type === 'TABLE_FUNCTION') {
      if (!isNode(v.function) || !TABLELESS_FUNCTIONS.has(String(v.function.function_name).toLowerCase())) all = true;
    } else if (v.type === 'SHOW_REF' && !isNode(v.query)) {
      // SHOW TABLES, SHOW ALL TABLES: the catalog. (DESCRIBE and SUMMARIZE hold the query they describe.)
      all = true;
    }
    for (const child of Object.values(v)) visit(child);
  };
  visit(tree);
  return all ? 'all' : tables;
}

/** The names of the query's WITH queries (lower case), at any depth: a misspelt one is suggested among them too. */
export function cteNames(tree: unknown): string[] {
  const names = new Set<string>();
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const item of v) visit(item);
      return;
    }
    if (!isNode(v)) return;
    if (isNode(v.cte_map) && Array.isArray(v.cte_map.map)) {
      for (const entry of v.cte_map.map) if (isNode(entry) && typeof entry.key === 'string') names.add(entry.key.toLowerCase());
    }
    for (const child of Object.values(v)) visit(child);
  };
  visit(tree);
  return [...names];
}

/**
 * The result's column names as Athena gives them: an expression selected without an alias is `_col<position>` (0-based;
 * `count(*)` in the second place is `_col1`), where DuckDB names it by its text (`count_star()`); a column keeps its
 * name, as in both. A set operation takes the first query's names. DuckDB's names stand when the tree does not line up
 * with the result (a `*` in the list, a statement that is not a plain query).
 */
export function athenaColumnNames(tree: unknown, names: readonly string[]): string[] {
  let node = tree;
  while (isNode(node) && node.type === 'SET_OPERATION_NODE') node = node.left;
  if (!isNode(node) || node.type !== 'SELECT_NODE' || !Array.isArray(node.select_list)) return [...names];
  const list: unknown[] = node.select_list;
  if (list.length !== names.length || list.some((e) => !isNode(e) || e.class === 'STAR')) return [...names];
  return list.map((e, i) => (((e as Node).class !== 'COLUMN_REF' || isClockFunction(e as Node)) && ((e as Node).alias ?? '') === '' ? `_col${i}` : names[i]));
}

/** SQL's functions written without parentheses (current_date, …), which DuckDB's parser gives as column references. */
const CLOCK_FUNCTIONS = new Set(['current_date', 'current_time', 'current_timestamp', 'localtime', 'localtimestamp', 'current_user', 'current_catalog', 'current_schema']);

function isClockFunction(e: Node): boolean {
  const names = e.column_names;
  return Array.isArray(names) && names.length === 1 && CLOCK_FUNCTIONS.has(String(names[0]).toLowerCase());
}
