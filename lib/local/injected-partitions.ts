/**
 * Athena's rule for a partition key with `injected` projection (a partition field without an enum): Athena reads
 * only the partitions a query names, so a query on the table must name them — "at least one value for the partition
 * key", given as literals or expressions that need no data — or it fails with CONSTRAINT_VIOLATION (Athena user guide,
 * "Use dynamic ID partitioning"). DuckDB has no such rule; the local twin applies it so a query that would fail on
 * Athena fails here too, with Athena's message.
 *
 * Read from DuckDB's parse tree (`json_serialize_sql`): each SELECT that reads such a table must limit the key to literals
 * (`key = <static>`, `key IN (<static>, …)`, and ANDs and ORs of such terms) in its WHERE or its joins' ON conditions, or
 * be read by a SELECT that does (a subquery or CTE filtered outside, as Athena pushes the condition down), and test the
 * key there no other way. A statement DuckDB cannot show as a tree (not a plain query) is not checked.
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

/** A partition key as a query may name it: `region`, or qualified by its table or the table's alias (`o.region`). */
interface Key {
  readonly column: string;
  readonly qualifiers: ReadonlySet<string>;
}

/** The first violation in a statement's parse tree (`json_serialize_sql`'s `statements[0].node`), or undefined. */
export function injectedKeyViolation(tree: unknown, injected: InjectedKeys): InjectedKeyViolation | undefined {
  if (injected.size === 0) return undefined;
  let found: InjectedKeyViolation | undefined;
  /** `conditions` and `names`: the conditions of the SELECTs around this node, which Athena pushes down into it, and their relations' names. */
  const visit = (v: unknown, conditions: readonly Node[], names: ReadonlySet<string>): void => {
    if (found !== undefined) return;
    if (Array.isArray(v)) {
      for (const item of v) visit(item, conditions, names);
      return;
    }
    // DESCRIBE reads no data (its parse tree holds a SELECT of the whole table).
    if (!isNode(v) || v.type === 'SHOW_REF') return;
    let innerConditions = conditions;
    let innerNames = names;
    if (v.type === 'SELECT_NODE') {
      const scans = baseTables(v.from_table);
      innerConditions = [...conditions, ...(isNode(v.where_clause) ? [v.where_clause] : []), ...scans.flatMap((t) => t.on)];
      innerNames = new Set([...names, ...relationNames(v.from_table)]);
      for (const scan of scans) {
        for (const column of injected.get(scan.name) ?? []) {
          const named = innerConditions.map((c) => valuesNamed(c, { column, qualifiers: innerNames }));
          if (named.includes('other') || !named.includes('finite')) found ??= { table: scan.name, column };
        }
      }
    }
    for (const key of Object.keys(v)) {
      // Conditions reach the SELECTs this one reads from (FROM, WITH), not a subquery in its WHERE or select list.
      const reads = v.type !== 'SELECT_NODE' || key === 'from_table' || key === 'cte_map';
      visit(v[key], reads ? innerConditions : conditions, innerNames);
    }
  };
  visit(tree, [], new Set());
  return found;
}

/** The tables a SELECT reads in its own FROM (through joins, with their ON conditions; a subquery is a SELECT of its own). */
function baseTables(from: unknown): Array<{ name: string; alias: string; on: Node[] }> {
  if (!isNode(from)) return [];
  if (from.type === 'BASE_TABLE' && typeof from.table_name === 'string') {
    return [{ name: from.table_name.toLowerCase(), alias: typeof from.alias === 'string' ? from.alias.toLowerCase() : '', on: [] }];
  }
  if (from.type === 'JOIN') {
    const tables = [...baseTables(from.left), ...baseTables(from.right)];
    if (isNode(from.condition) && tables.length > 0) tables[0].on.push(from.condition);
    return tables;
  }
  return [];
}

/** The names a SELECT's FROM gives its relations: tables and their aliases, subqueries' aliases (for `t.region`). */
function relationNames(from: unknown): string[] {
  if (!isNode(from)) return [];
  const alias = typeof from.alias === 'string' && from.alias !== '' ? [from.alias.toLowerCase()] : [];
  if (from.type === 'BASE_TABLE' && typeof from.table_name === 'string') return [from.table_name.toLowerCase(), ...alias];
  if (from.type === 'JOIN') return [...relationNames(from.left), ...relationNames(from.right)];
  return alias;
}

/**
 * What a condition makes of the key, as Trino reads a WHERE into the values a column may take: `finite` when it allows
 * a set of literals only (`k = 'a'`, `k IN (…)`, and ANDs and ORs of such terms), `unbounded` when a branch of an OR
 * leaves the key free, `other` when it tests the key any other way (a range, LIKE, `<>`, another column), `none`
 * when it does not mention the key.
 */
type Named = 'none' | 'finite' | 'unbounded' | 'other';

function valuesNamed(e: Node, key: Key): Named {
  if (references(e, key) === 0) return 'none';
  if (staticEquality(e, key)) return 'finite';
  const children = Array.isArray(e.children) ? (e.children as unknown[]).filter(isNode).map((c) => valuesNamed(c, key)) : [];
  if (children.includes('other')) return 'other';
  if (e.type === 'CONJUNCTION_AND') return children.includes('finite') ? 'finite' : 'unbounded';
  if (e.type === 'CONJUNCTION_OR') return children.every((c) => c === 'finite') ? 'finite' : 'unbounded';
  return 'other';
}

function staticEquality(e: Node, key: Key): boolean {
  if (e.type === 'COMPARE_EQUAL') {
    return (isKey(e.left, key) && isStatic(e.right)) || (isKey(e.right, key) && isStatic(e.left));
  }
  if (e.type === 'COMPARE_IN' && Array.isArray(e.children) && e.children.length > 1) {
    const [subject, ...values] = e.children as unknown[];
    return isKey(subject, key) && values.every(isStatic);
  }
  return false;
}

/** `region`, `o.region`, `orders.region` or `db.orders.region`, not a struct's field (`shipping_address.region`). */
function isKey(e: unknown, key: Key): boolean {
  if (!isNode(e) || e.class !== 'COLUMN_REF' || !Array.isArray(e.column_names)) return false;
  const names = (e.column_names as unknown[]).map((n) => (typeof n === 'string' ? n.toLowerCase() : ''));
  if (names[names.length - 1] !== key.column) return false;
  return names.length === 1 || key.qualifiers.has(names[names.length - 2]);
}

/** A literal, or an expression of literals only (a cast, a function such as lower('EU')): evaluated without data. */
function isStatic(e: unknown): boolean {
  if (!isNode(e)) return false;
  if (e.class === 'CONSTANT') return true;
  if (e.class === 'CAST') return isStatic(e.child);
  if (e.class === 'FUNCTION' && Array.isArray(e.children)) return (e.children as unknown[]).every(isStatic);
  return false;
}

/** References to the key in a condition, not counting subqueries in it (SELECTs of their own, checked as such). */
function references(v: unknown, key: Key): number {
  if (Array.isArray(v)) return v.reduce((n: number, item) => n + references(item, key), 0);
  if (!isNode(v) || v.class === 'SUBQUERY') return 0;
  if (isKey(v, key)) return 1;
  let n = 0;
  for (const k of Object.keys(v)) n += references(v[k], key);
  return n;
}
