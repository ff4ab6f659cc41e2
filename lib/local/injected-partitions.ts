/**
 * Athena's rule for a partition key with `injected` projection (a partition field without an enum): Athena reads
 * only the partitions a query names, so a query on the table must name them — "at least one value for the partition
 * key", given as literals or expressions that need no data — or it fails with CONSTRAINT_VIOLATION (Athena user guide,
 * "Use dynamic ID partitioning"). DuckDB has no such rule; the local twin applies it so a query that would fail on
 * Athena fails here too, with Athena's message.
 *
 * Read from DuckDB's parse tree (`json_serialize_sql`): a statement that reads such a table must, in a WHERE clause,
 * limit the key to literals (`key = <static>`, `key IN (<static>, …)`, and ANDs and ORs of such terms), and test the
 * key in no WHERE another way.
 */
/** Injected partition keys by table name (lower case), e.g. `orders` → [`region`]. */
export type InjectedKeys = ReadonlyMap<string, readonly string[]>;

export interface InjectedKeyViolation {
  readonly table: string;
  readonly column: string;
}

/** Athena's own message for a violation, and what to do about it. */
export function injectedKeyMessage(v: InjectedKeyViolation): string {
  return `CONSTRAINT_VIOLATION: For the injected projected partition column ${v.column}, the WHERE clause must contain only static `
    + 'equality conditions, and at least one such condition must be present. '
    + `(${v.column} is a partition field of ${v.table} without an enum, so Athena reads only the partitions a query names: `
    + `add WHERE ${v.column} = '…' or ${v.column} IN ('…', '…'); Athena answers the same.)`;
}

type Node = Record<string, unknown>;

const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The first violation in a statement's parse tree (`json_serialize_sql`'s `statements[0].node`), or undefined. The
 * conditions may sit in any WHERE of the statement (a subquery's or a CTE's, or the query's over them), since Athena
 * pushes them down to the table; a key that no WHERE limits to literals, or that a WHERE tests another way, fails.
 */
export function injectedKeyViolation(tree: unknown, injected: InjectedKeys): InjectedKeyViolation | undefined {
  if (injected.size === 0) return undefined;
  const tables = new Set<string>();
  const wheres: Node[] = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const item of v) visit(item);
      return;
    }
    // DESCRIBE reads no data (its parse tree holds a SELECT of the whole table).
    if (!isNode(v) || v.type === 'SHOW_REF') return;
    if (v.type === 'BASE_TABLE' && typeof v.table_name === 'string') tables.add(v.table_name.toLowerCase());
    if (v.type === 'SELECT_NODE' && isNode(v.where_clause)) wheres.push(v.where_clause);
    for (const key of Object.keys(v)) visit(v[key]);
  };
  visit(tree);
  for (const table of tables) {
    for (const column of injected.get(table) ?? []) {
      const found = wheres.map((where) => valuesNamed(where, column));
      if (found.includes('other') || !found.includes('finite')) return { table, column };
    }
  }
  return undefined;
}

/**
 * What a condition makes of the key, as Trino reads a WHERE into the values a column may take: `finite` when it allows
 * a set of literals only (`k = 'a'`, `k IN (…)`, and ANDs and ORs of such terms), `unbounded` when a branch of an OR
 * leaves the key free, `other` when it tests the key any other way (a range, LIKE, `<>`, another column), `none`
 * when it does not mention the key.
 */
type Named = 'none' | 'finite' | 'unbounded' | 'other';

function valuesNamed(e: Node, column: string): Named {
  if (references(e, column) === 0) return 'none';
  if (staticEquality(e, column)) return 'finite';
  const children = Array.isArray(e.children) ? (e.children as unknown[]).filter(isNode).map((c) => valuesNamed(c, column)) : [];
  if (children.includes('other')) return 'other';
  if (e.type === 'CONJUNCTION_AND') return children.includes('finite') ? 'finite' : 'unbounded';
  if (e.type === 'CONJUNCTION_OR') return children.every((c) => c === 'finite') ? 'finite' : 'unbounded';
  return 'other';
}

function staticEquality(e: Node, column: string): boolean {
  if (e.type === 'COMPARE_EQUAL') {
    return (isColumn(e.left, column) && isStatic(e.right)) || (isColumn(e.right, column) && isStatic(e.left));
  }
  if (e.type === 'COMPARE_IN' && Array.isArray(e.children) && e.children.length > 1) {
    const [subject, ...values] = e.children as unknown[];
    return isColumn(subject, column) && values.every(isStatic);
  }
  return false;
}

function isColumn(e: unknown, column: string): boolean {
  if (!isNode(e) || e.class !== 'COLUMN_REF' || !Array.isArray(e.column_names)) return false;
  const names = e.column_names as unknown[];
  const last = names[names.length - 1];
  return typeof last === 'string' && last.toLowerCase() === column;
}

/** A literal, or an expression of literals only (a cast, a function such as lower('EU')): evaluated without data. */
function isStatic(e: unknown): boolean {
  if (!isNode(e)) return false;
  if (e.class === 'CONSTANT') return true;
  if (e.class === 'CAST') return isStatic(e.child);
  if (e.class === 'FUNCTION' && Array.isArray(e.children)) return (e.children as unknown[]).every(isStatic);
  return false;
}

function references(v: unknown, column: string): number {
  if (Array.isArray(v)) return v.reduce((n: number, item) => n + references(item, column), 0);
  if (!isNode(v)) return 0;
  if (isColumn(v, column)) return 1;
  let n = 0;
  for (const key of Object.keys(v)) n += references(v[key], column);
  return n;
}
