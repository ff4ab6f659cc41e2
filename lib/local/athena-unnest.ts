/**
 * Athena's (Trino's) UNNEST where DuckDB reads it otherwise, rewritten on DuckDB's parse tree (`json_serialize_sql`):
 *
 * - `CROSS JOIN UNNEST(array_of_rows) AS t(a, b, …)` gives one column per field of the rows in Trino; DuckDB's
 *   UNNEST gives the row as one column, and fails the aliases ("Referenced column b not found"). It becomes
 *   `CROSS JOIN (SELECT unnest(array_of_rows, max_depth := 2)) AS t(a, b, …)`, which gives the fields; with
 *   `WITH ORDINALITY` the position follows them (`generate_subscripts`), as in Trino. `AS t(item)`, one column for
 *   the whole row (`item.a`), is left as it is: Athena and DuckDB both read it so. Trino's `UNNEST(map) AS t(k, v)`,
 *   a key and a value column per entry, is the same form over `map_entries(map)` (`mapEntries`: the parse tree does not
 *   say which argument is a map, so the caller tries that when the first rewrite does not bind).
 * - A WHERE condition on the table an UNNEST joins (`WHERE o.channel = 'web'`) did not reach DuckDB's Parquet scan
 *   past the UNNEST (its lateral join numbers the rows first, and a filter does not pass that), so partition pruning
 *   was lost. Each such condition is repeated in a subquery over the table, `(SELECT * FROM orders AS o WHERE …) AS o`,
 *   where it prunes as on a query without UNNEST, as Athena prunes either. Only a condition on the table's partition
 *   columns and constants, with comparisons, IN, BETWEEN, IS NULL, AND, OR, NOT, casts and arithmetic, is repeated: it
 *   gives the same answer both times (a `random()` would not), and a name that is not the table's column (a SELECT
 *   alias) is never moved where it does not bind.
 */

type Node = Record<string, unknown>;

const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && !Array.isArray(v);

/** An UNNEST in FROM: a table function `unnest` of one array (no named parameters), with its column aliases. */
function isUnnest(ref: unknown): ref is Node & { function: Node; column_name_alias: string[] } {
  if (!isNode(ref) || ref.type !== 'TABLE_FUNCTION' || !isNode(ref.function)) return false;
  const fn = ref.function;
  return String(fn.function_name).toLowerCase() === 'unnest' && fn.schema === '' && Array.isArray(fn.children)
    && fn.children.length === 1 && isNode(fn.children[0]) && fn.children[0].alias === '' && Array.isArray(ref.column_name_alias);
}

/** `CROSS JOIN UNNEST(array_of_rows) AS t(a, b, …)`: more column aliases than UNNEST's one column (and its ordinality). */
export function unnestsRowFields(ref: unknown): boolean {
  if (!isUnnest(ref)) return false;
  return ref.column_name_alias.length - (ref.with_ordinality === 'WITH_ORDINALITY' ? 1 : 0) > 1;
}

function functionCall(name: string, children: unknown[]): Node {
  return {
    class: 'FUNCTION', type: 'FUNCTION', alias: '', function_name: name, schema: '', children, filter: null,
    order_bys: { type: 'ORDER_MODIFIER', orders: [] }, distinct: false, is_operator: false, export_state: false, catalog: '',
  };
}

function integer(value: number, alias = ''): Node {
  return { class: 'CONSTANT', type: 'VALUE_CONSTANT', alias, value: { type: { id: 'INTEGER', type_info: null }, is_null: false, value } };
}

function selectNode(selectList: unknown[], from: unknown, where: unknown): Node {
  return {
    type: 'SELECT_NODE', modifiers: [], cte_map: { map: [] }, select_list: selectList, from_table: from, where_clause: where,
    group_expressions: [], group_sets: [], aggregate_handling: 'STANDARD_HANDLING', having: null, sample: null, qualify: null,
  };
}

function subquery(node: Node, alias: string, columnAliases: readonly string[]): Node {
  return { type: 'SUBQUERY', alias, sample: null, subquery: { node, named_param_map: [] }, column_name_alias: columnAliases };
}

/**
 * `(SELECT unnest(array, max_depth := 2)[, generate_subscripts(array, 1)]) AS t(a, b, …[, n])`: the fields as columns;
 * with `mapEntries`, a two-column one's array is `map_entries(map)`, whose rows are (key, value).
 */
function rowFieldsSubquery(ref: Node & { function: Node; column_name_alias: string[] }, mapEntries: boolean): Node {
  const argument = (ref.function.children as unknown[])[0];
  const fields = ref.column_name_alias.length - (ref.with_ordinality === 'WITH_ORDINALITY' ? 1 : 0);
  const array = mapEntries && fields === 2 ? functionCall('map_entries', [argument]) : argument;
  const columns = [functionCall('unnest', [array, integer(2, 'max_depth')])];
  if (ref.with_ordinality === 'WITH_ORDINALITY') columns.push(functionCall('generate_subscripts', [structuredClone(array), integer(1)]));
  return subquery(selectNode(columns, { type: 'EMPTY', alias: '', sample: null }, null), String(ref.alias), ref.column_name_alias);
}

/** The AND-ed conditions of a WHERE clause. */
function conjuncts(where: unknown): unknown[] {
  if (isNode(where) && where.type === 'CONJUNCTION_AND' && Array.isArray(where.children)) return where.children.flatMap(conjuncts);
  return where === null || where === undefined ? [] : [where];
}

/** Operators a condition repeated over the table may hold besides columns and constants: each gives the same answer twice. */
const DETERMINISTIC_OPERATORS = new Set(['+', '-', '*', '/', '//', '%', '~~', '!~~', '~~*', '!~~*']);
const CONDITION_OPERATORS = new Set(['OPERATOR_NOT', 'COMPARE_IN', 'COMPARE_NOT_IN', 'OPERATOR_IS_NULL', 'OPERATOR_IS_NOT_NULL']);

/**
 * Whether a condition reads only the table's partition columns (`partitions`, lower case; the table is `table`: its
 * alias, or its name without one) and constants, through the comparisons and operators of a partition filter: no
 * function (`random()` would answer otherwise the second time), no subquery, and no name the table does not have
 * (a SELECT alias, an UNNEST's column, an outer query's column).
 */
function filtersPartitions(condition: unknown, table: string, partitions: ReadonlySet<string>): boolean {
  let columns = 0;
  const allowed = (v: unknown): boolean => {
    if (Array.isArray(v)) return v.every(allowed);
    if (!isNode(v)) return true;
    switch (v.class) {
      case 'CONSTANT':
        return true;
      case 'COLUMN_REF': {
        if (!Array.isArray(v.column_names)) return false;
        const names = v.column_names.map((n) => String(n).toLowerCase());
        columns++;
        return (names.length === 1 || names.length === 2 && names[0] === table) && partitions.has(names[names.length - 1]);
      }
      case 'COMPARISON': case 'CONJUNCTION':
        return allowed(v.children ?? [v.left, v.right]);
      case 'BETWEEN':
        return allowed([v.input, v.lower, v.upper]);
      case 'CAST':
        return allowed(v.child);
      case 'OPERATOR':
        return CONDITION_OPERATORS.has(String(v.type)) && allowed(v.children);
      case 'FUNCTION':
        return v.is_operator === true && DETERMINISTIC_OPERATORS.has(String(v.function_name)) && allowed(v.children);
      default:
        return false;
    }
  };
  return allowed(condition) && columns > 0;
}

/** What rewriteUnnests knows of the tables, and how it reads a two-column UNNEST. */
export interface UnnestRewriteOptions {
  /** The partition columns of each table (its name, lower case), for the conditions repeated over it. */
  readonly partitionColumns: ReadonlyMap<string, readonly string[]>;
  /** Whether `UNNEST(x) AS t(k, v)` unnests a map's entries (`map_entries(x)`) rather than rows of two fields. @default false */
  readonly mapEntries?: boolean;
}

/**
 * Rewrites the UNNESTs of a statement's parse tree (`json_serialize_sql`'s `statements[0].node`) in place, and says
 * whether it changed anything.
 */
export function rewriteUnnests(tree: unknown, options: UnnestRewriteOptions): boolean {
  let changed = false;
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) {
      v.forEach(visit);
      return;
    }
    if (!isNode(v)) return;
    if (v.type === 'JOIN' && unnestsRowFields(v.right)) {
      v.right = rowFieldsSubquery(v.right as Node & { function: Node; column_name_alias: string[] }, options.mapEntries ?? false);
      changed = true;
    }
    if (v.type === 'SELECT_NODE') changed = pushConditionsToTable(v, options.partitionColumns) || changed;
    Object.values(v).forEach(visit);
  };
  visit(tree);
  return changed;
}

/** `FROM t [CROSS JOIN UNNEST(…) AS u(…)]… WHERE …`: the conditions on t repeated in a subquery over it (see above). */
function pushConditionsToTable(select: Node, partitionColumns: ReadonlyMap<string, readonly string[]>): boolean {
  const unnested = new Set<string>();
  let join = select.from_table;
  let parent: Node | undefined;
  let unnests = 0;
  while (isNode(join) && join.type === 'JOIN' && join.join_type === 'INNER' && join.condition === null) {
    const right = join.right;
    if (!isUnnest(right) && !(isNode(right) && right.type === 'SUBQUERY' && isRowFields(right))) return false;
    unnested.add(String(right.alias).toLowerCase());
    for (const name of right.column_name_alias as unknown[]) unnested.add(String(name).toLowerCase());
    unnests++;
    parent = join;
    join = join.left;
  }
  const table = join;
  if (unnests === 0 || parent === undefined || !isNode(table) || table.type !== 'BASE_TABLE' || (table.column_name_alias as unknown[]).length > 0) return false;
  // A table named with its schema and no alias (`FROM sluice_dev.orders`) may be named so in the query too, which the subquery's alias is not.
  if (!table.alias && (table.schema_name || table.catalog_name)) return false;
  // An UNNEST with no column aliases names its column `unnest`; one with no alias at all cannot be told from the table's columns.
  if ([...unnested].includes('')) return false;
  unnested.add('unnest');
  const partitions = new Set((partitionColumns.get(String(table.table_name).toLowerCase()) ?? []).map((c) => c.toLowerCase()));
  // A partition column an UNNEST's column shadows is not the table's in the query.
  for (const name of unnested) partitions.delete(name);
  const name = String(table.alias || table.table_name).toLowerCase();
  const pushed = conjuncts(select.where_clause).filter((c) => filtersPartitions(c, name, partitions));
  if (pushed.length === 0) return false;
  const where = pushed.length === 1 ? pushed[0] : { class: 'CONJUNCTION', type: 'CONJUNCTION_AND', alias: '', children: pushed };
  const star = { class: 'STAR', type: 'STAR', alias: '', relation_name: '', exclude_list: [], replace_list: [], columns: false, expr: null, qualified_exclude_list: [], rename_list: [] };
  parent.left = subquery(selectNode([star], table, structuredClone(where)), String(table.alias || table.table_name), []);
  return true;
}

/** A subquery rowFieldsSubquery made. */
function isRowFields(ref: Node): boolean {
  const node = isNode(ref.subquery) ? ref.subquery.node : undefined;
  return isNode(node) && isNode(node.from_table) && node.from_table.type === 'EMPTY' && Array.isArray(node.select_list)
    && node.select_list.some((c) => isNode(c) && c.function_name === 'unnest');
}

/** The tree without DuckDB's positions in the text, which the rewritten parts do not have (nor need). */
export function withoutQueryLocations(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutQueryLocations);
  if (!isNode(v)) return v;
  return Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'query_location').map(([k, x]) => [k, withoutQueryLocations(x)]));
}

/** What a long integer of a parse tree's JSON becomes while JavaScript holds the tree (see protectLongIntegers). */
const LONG_INTEGER_MARK = '\u0000sluice-integer:';
const LONG_INTEGER_STRING = /"\\u0000sluice-integer:(-?\d+)"/g;

/**
 * A parse tree's JSON text with every integer JavaScript's numbers would round (16 digits or more, outside strings) as a
 * string marking it, and `restore` for a text written from the tree: DuckDB gets the integer back as it wrote it.
 * Undefined when the text holds the mark already (in a string literal of the query), so nothing could be mistaken.
 */
export function protectLongIntegers(json: string): { readonly text: string; readonly restore: (text: string) => string } | undefined {
  if (json.includes('\\u0000sluice-integer:')) return undefined;
  let out = '';
  let from = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === 0x22) {
      // A string: up to its closing quote, past escaped characters.
      for (i++; i < json.length && json.charCodeAt(i) !== 0x22; i++) if (json.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      const number = /-?\d+(\.\d+)?([eE][+-]?\d+)?/y;
      number.lastIndex = i;
      const [token, fraction, exponent] = number.exec(json) ?? [''];
      if (fraction === undefined && exponent === undefined && token.replace('-', '').length >= 16) {
        out += `${json.slice(from, i)}${JSON.stringify(LONG_INTEGER_MARK + token)}`;
        from = i + token.length;
      }
      i += Math.max(token.length, 1) - 1;
    }
  }
  return { text: out + json.slice(from), restore: (text) => text.replace(LONG_INTEGER_STRING, '$1') };
}

/** Whether a parse tree holds an UNNEST of rows into columns (see unnestsRowFields). */
export function hasRowFieldsUnnest(tree: unknown): boolean {
  if (Array.isArray(tree)) return tree.some(hasRowFieldsUnnest);
  if (!isNode(tree)) return false;
  return unnestsRowFields(tree) || Object.values(tree).some(hasRowFieldsUnnest);
}

/** Whether a parse tree holds an UNNEST into two columns (and its ordinality): rows of two fields, or a map's entries. */
export function hasTwoColumnUnnest(tree: unknown): boolean {
  if (Array.isArray(tree)) return tree.some(hasTwoColumnUnnest);
  if (!isNode(tree)) return false;
  return isUnnest(tree) && tree.column_name_alias.length - (tree.with_ordinality === 'WITH_ORDINALITY' ? 1 : 0) === 2
    || Object.values(tree).some(hasTwoColumnUnnest);
}
