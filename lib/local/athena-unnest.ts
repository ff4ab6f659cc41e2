/**
 * Athena's (Trino's) UNNEST where DuckDB reads it otherwise, rewritten on DuckDB's parse tree (`json_serialize_sql`):
 *
 * - `CROSS JOIN UNNEST(array_of_rows) AS t(a, b, …)` gives one column per field of the rows in Trino; DuckDB's
 *   UNNEST gives the row as one column, and fails the aliases ("Referenced column b not found"). It becomes
 *   `CROSS JOIN (SELECT unnest(array_of_rows, max_depth := 2)) AS t(a, b, …)`, which gives the fields; with
 *   `WITH ORDINALITY` the position follows them (`generate_subscripts`), as in Trino. `AS t(item)`, one column for
 *   the whole row (`item.a`), is left as it is: Athena and DuckDB both read it so.
 * - A WHERE condition on the table an UNNEST joins (`WHERE o.channel = 'web'`) did not reach DuckDB's Parquet scan
 *   past the UNNEST (its lateral join numbers the rows first, and a filter does not pass that), so partition pruning
 *   was lost. Each such condition is repeated in a subquery over the table, `(SELECT * FROM orders AS o WHERE …) AS o`,
 *   where it prunes as on a query without UNNEST, as Athena prunes either.
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

/** `(SELECT unnest(array, max_depth := 2)[, generate_subscripts(array, 1)]) AS t(a, b, …[, n])`: the fields as columns. */
function rowFieldsSubquery(ref: Node & { function: Node; column_name_alias: string[] }): Node {
  const array = (ref.function.children as unknown[])[0];
  const columns = [functionCall('unnest', [array, integer(2, 'max_depth')])];
  if (ref.with_ordinality === 'WITH_ORDINALITY') columns.push(functionCall('generate_subscripts', [structuredClone(array), integer(1)]));
  return subquery(selectNode(columns, { type: 'EMPTY', alias: '', sample: null }, null), String(ref.alias), ref.column_name_alias);
}

/** The AND-ed conditions of a WHERE clause. */
function conjuncts(where: unknown): unknown[] {
  if (isNode(where) && where.type === 'CONJUNCTION_AND' && Array.isArray(where.children)) return where.children.flatMap(conjuncts);
  return where === null || where === undefined ? [] : [where];
}

/**
 * Whether a condition reads only the table (`table`: its alias, or its name without one), never the UNNEST's columns
 * (`unnested`: their names and the UNNESTs' aliases, lower case), nor holds a subquery, an aggregate or a window.
 */
function readsOnlyTable(condition: unknown, table: string, unnested: ReadonlySet<string>): boolean {
  let columns = 0;
  let only = true;
  const visit = (v: unknown): void => {
    if (!only) return;
    if (Array.isArray(v)) {
      v.forEach(visit);
      return;
    }
    if (!isNode(v)) return;
    if (v.class === 'SUBQUERY' || v.class === 'WINDOW' || v.class === 'LAMBDA' || v.class === 'STAR' || v.class === 'COLUMN_REF' && !Array.isArray(v.column_names)) {
      only = false;
      return;
    }
    if (v.class === 'FUNCTION' && ['unnest', 'generate_subscripts'].includes(String(v.function_name).toLowerCase())) only = false;
    if (v.class === 'COLUMN_REF') {
      const names = (v.column_names as unknown[]).map((n) => String(n).toLowerCase());
      columns++;
      if (names.length === 1 ? unnested.has(names[0]) : names.length !== 2 || names[0] !== table) only = false;
      return;
    }
    Object.values(v).forEach(visit);
  };
  visit(condition);
  return only && columns > 0;
}

/**
 * Rewrites the UNNESTs of a statement's parse tree (`json_serialize_sql`'s `statements[0].node`) in place, and says
 * whether it changed anything.
 */
export function rewriteUnnests(tree: unknown): boolean {
  let changed = false;
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) {
      v.forEach(visit);
      return;
    }
    if (!isNode(v)) return;
    if (v.type === 'JOIN' && unnestsRowFields(v.right)) {
      v.right = rowFieldsSubquery(v.right as Node & { function: Node; column_name_alias: string[] });
      changed = true;
    }
    if (v.type === 'SELECT_NODE') changed = pushConditionsToTable(v) || changed;
    Object.values(v).forEach(visit);
  };
  visit(tree);
  return changed;
}

/** `FROM t [CROSS JOIN UNNEST(…) AS u(…)]… WHERE …`: the conditions on t repeated in a subquery over it (see above). */
function pushConditionsToTable(select: Node): boolean {
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
  const name = String(table.alias || table.table_name).toLowerCase();
  const pushed = conjuncts(select.where_clause).filter((c) => readsOnlyTable(c, name, unnested));
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

/** Whether a parse tree holds an UNNEST of rows into columns (see unnestsRowFields). */
export function hasRowFieldsUnnest(tree: unknown): boolean {
  if (Array.isArray(tree)) return tree.some(hasRowFieldsUnnest);
  if (!isNode(tree)) return false;
  return unnestsRowFields(tree) || Object.values(tree).some(hasRowFieldsUnnest);
}
