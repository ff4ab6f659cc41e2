/**
 * What a schema change does to the data already written: the changes between two versions of a pipeline's schema,
 * each judged as schemas/README.md's "Changing a schema" table judges it (safe, with care, unsafe) and with what it
 * does in the lake and in OpenSearch. `sluice schema <pipeline> --against <rev|file>` prints them before a deploy.
 */
import { hiveType, type Column, type LogicalType, type PiiMask, type SchemaModel } from './index';

export type ChangeVerdict = 'unsafe' | 'care' | 'safe';

export interface SchemaChange {
  readonly verdict: ChangeVerdict;
  /** The column, field path or setting the change is about: `score`, `device.battery`, `partitionFields`. */
  readonly subject: string;
  /** What changed: `int → double`, `added (optional)`. */
  readonly change: string;
  /** What it does to data already written, and what to do. */
  readonly consequence: string;
}

const HIVE_BAD_DATA = 'Athena fails a query that reads it from a file written before with HIVE_BAD_DATA (the twin\'s `sluice query` too);'
  + ' the current OpenSearch index keeps the old type until it rotates. Keep the type and add a new field instead, or rewrite the earlier partitions';

const REQUIRED_NOW = 'records on their way without it fail validation and replaying them cannot help: have every producer send it first';

/** The changes from `before` to `after`, unsafe first; none when the two derive the same table, projection, masks and version. */
export function schemaChanges(before: SchemaModel, after: SchemaModel): SchemaChange[] {
  const changes: SchemaChange[] = [];
  const add = (verdict: ChangeVerdict, subject: string, change: string, consequence: string): void => {
    changes.push({ verdict, subject, change, consequence });
  };
  columnChanges(before, after, add);
  partitionChanges(before, after, add);
  maskChanges(before, after, add);
  const x = before.extensions;
  const y = after.extensions;
  if (x.eventTimeField !== y.eventTimeField) {
    add('care', 'eventTimeField', `${x.eventTimeField} → ${y.eventTimeField}`,
      'the time partitions (year/month/day/hour) of records written from the deploy on come from the new field; earlier rows stay where the old one put them');
  }
  if (x.idField !== y.idField) {
    add('care', 'idField', `${x.idField} → ${y.idField}`,
      'OpenSearch document ids and the metadata table\'s keys come from the new field: a record sent again after the deploy is not matched with its earlier copy');
  }
  if (x.version !== y.version) {
    add('safe', 'x-sluice.version', `${x.version} → ${y.version}`, 'sluice.schema_version of the rows written after the deploy');
  } else if (changes.length > 0) {
    add('care', 'x-sluice.version', `unchanged (${x.version})`, 'nothing checks it, but the rows say which contract wrote them only if it changes with the shape: bump it');
  }
  const order: Record<ChangeVerdict, number> = { unsafe: 0, care: 1, safe: 2 };
  return changes.sort((a, b) => order[a.verdict] - order[b.verdict]);
}

type Add = (verdict: ChangeVerdict, subject: string, change: string, consequence: string) => void;

function columnChanges(before: SchemaModel, after: SchemaModel, add: Add): void {
  const oldColumns = new Map(before.tableColumns.map((c) => [c.name.toLowerCase(), c]));
  const newColumns = new Map(after.tableColumns.map((c) => [c.name.toLowerCase(), c]));
  const oldByKey = new Map(before.inputColumns.map((c) => [c.jsonKey, c]));
  const newByKey = new Map(after.inputColumns.map((c) => [c.jsonKey, c]));
  const renamedTo = new Map<string, string>();
  for (const [key, c] of newByKey) {
    const old = oldByKey.get(key);
    if (old !== undefined && old.name.toLowerCase() !== c.name.toLowerCase()) renamedTo.set(old.name.toLowerCase(), c.name.toLowerCase());
  }
  // The money rule's minor-units column is the transform's, not a field producers send: no producer can lack it.
  const oldMinor = before.extensions.money?.minorUnitsField.toLowerCase();
  const newMinor = after.extensions.money?.minorUnitsField.toLowerCase();
  const minorRenamed = oldMinor !== undefined && newMinor !== undefined && oldMinor !== newMinor && !newColumns.has(oldMinor) && !oldColumns.has(newMinor);
  for (const [name, c] of newColumns) {
    const old = oldColumns.get(name);
    if (old === undefined) {
      const from = [...renamedTo].find(([, to]) => to === name)?.[0];
      if (name === newMinor && minorRenamed) {
        add('unsafe', name, `renamed from column ${oldMinor} (money.minorUnitsField)`, `a new column: earlier rows read NULL under it and keep their values under ${oldMinor},`
          + ` which the table no longer has; keep money.minorUnitsField "${before.extensions.money!.minorUnitsField}"`);
      } else if (name === newMinor) {
        add('safe', name, `added (money.minorUnitsField, ${hiveType(c.type)})`, `a new column the transform computes from ${after.extensions.money!.amountField}: earlier rows read NULL`);
      } else if (from !== undefined) {
        add('unsafe', name, `renamed from column ${from}`, `a new column: earlier rows read NULL under it and keep their values under ${from}, which the table no longer has;`
          + ` to rename the JSON key only, map the new key to ${from} in x-sluice.columns`);
      } else if (c.required) {
        add('care', name, `added (required, ${hiveType(c.type)})`, 'earlier rows read NULL; records on their way without it fail validation and replaying them cannot help:'
          + ' add it as optional, deploy, have every producer send it, then make it required (schemas/README.md, "Adding a required field")');
      } else {
        add('safe', name, `added (optional, ${hiveType(c.type)})`, 'a new column: earlier rows read NULL; a new OpenSearch field, put to the current index at deploy');
      }
      continue;
    }
    typeChange(name, old.type, c.type, add);
    if (c.required && !old.required) add('care', name, 'optional → required', REQUIRED_NOW);
  }
  for (const [key, old] of oldByKey) {
    if (newByKey.has(key)) continue;
    const kept = after.inputColumns.find((c) => c.name.toLowerCase() === old.name.toLowerCase() && !oldByKey.has(c.jsonKey));
    if (kept !== undefined) {
      add('care', old.name.toLowerCase(), `JSON key ${key} → ${kept.jsonKey} (the column keeps its name)`, `the column and the OpenSearch field keep the earlier rows; records on`
        + ` their way with ${key} fail validation once the schema refuses unknown fields: have every producer send ${kept.jsonKey} first`);
    }
  }
  for (const [name, old] of oldColumns) {
    if (newColumns.has(name) || renamedTo.has(name) || (name === oldMinor && minorRenamed)) continue;
    if (name === oldMinor) {
      add('safe', name, `removed (was money.minorUnitsField, ${hiveType(old.type)})`, 'the column leaves the table; earlier files keep it, unread');
      continue;
    }
    add('safe', name, `removed (was ${hiveType(old.type)})`, 'the column leaves the table; earlier files keep it, unread. A record that still carries the field fails validation once'
      + ' the schema refuses unknown fields: stop sending it first');
  }
}

/** Compares a column's (or a nested field's) type: unsafe when Athena would not read the old Parquet type as the new one. */
function typeChange(at: string, old: LogicalType, now: LogicalType, add: Add): void {
  if (old.kind === 'int' && now.kind === 'bigint') {
    add('safe', at, 'int → bigint', 'earlier files\' int reads as bigint; the current OpenSearch index keeps integer until it rotates (a value past ±2³¹ is refused until then)');
    return;
  }
  if (old.kind !== now.kind) {
    add('unsafe', at, `${hiveType(old)} → ${hiveType(now)}`, HIVE_BAD_DATA);
    return;
  }
  switch (old.kind) {
    case 'struct': {
      const fields = (now as typeof old).fields;
      const nowByName = new Map(fields.map((f): [string, Column] => [f.name.toLowerCase(), f]));
      for (const f of old.fields) {
        const g = nowByName.get(f.name.toLowerCase());
        // A field added to or removed from a struct reads as NULL or is not read: Athena reads structs by field name.
        if (g === undefined) continue;
        const here = `${at}.${f.name.toLowerCase()}`;
        typeChange(here, f.type, g.type, add);
        // The validator checks nested fields as it does top-level ones: what records on their way send is refused the same.
        if (g.required && !f.required) add('care', here, 'optional → required', REQUIRED_NOW);
        if (g.jsonKey !== f.jsonKey) {
          add('care', here, `JSON key ${f.jsonKey} → ${g.jsonKey} (the field keeps its name)`, `the field keeps the earlier rows; records on their way with ${f.jsonKey}`
            + ` fail validation once the object refuses unknown fields: have every producer send ${g.jsonKey} first`);
        }
      }
      for (const g of fields) {
        if (old.fields.some((f) => f.name.toLowerCase() === g.name.toLowerCase())) continue;
        if (g.required) add('care', `${at}.${g.name.toLowerCase()}`, `added (required, ${hiveType(g.type)})`, `earlier rows read NULL in it; ${REQUIRED_NOW}`);
        else add('safe', `${at}.${g.name.toLowerCase()}`, `added (${hiveType(g.type)})`, 'earlier rows read NULL in it');
      }
      return;
    }
    case 'array':
      typeChange(`${at}[]`, old.items, (now as typeof old).items, add);
      return;
    case 'map':
      typeChange(`${at}{}`, old.values, (now as typeof old).values, add);
      return;
    default:
  }
}

function partitionChanges(before: SchemaModel, after: SchemaModel, add: Add): void {
  const oldKeys = before.partitionKeys.map((k) => k.name);
  const newKeys = after.partitionKeys.map((k) => k.name);
  if (oldKeys.join('/') !== newKeys.join('/')) {
    add('unsafe', 'partitionFields', `${oldKeys.join(', ')} → ${newKeys.join(', ')}`, 'new files go under other folders: the new projection does not find the earlier ones, so'
      + ' their rows leave every query without an error, and dynamic partitioning cannot be re-keyed on the existing delivery stream. Give the new layout a new pipeline'
      + ' (schemas/README.md, "Partition changes"); the twin refuses to start on the old data dir');
    return;
  }
  for (const key of after.partitionKeys) {
    const old = before.partitionKeys.find((k) => k.name === key.name)!;
    if (old.projection.type !== key.projection.type) {
      add(key.projection.type === 'injected' ? 'care' : 'safe', key.name, `projection ${old.projection.type} → ${key.projection.type}`, key.projection.type === 'injected'
        ? 'without an enum Athena projects the key as injected: every query on the table must name its values (CONSTRAINT_VIOLATION otherwise)'
        : 'Athena lists the enum\'s values: queries need not name them; values outside the enum leave every query');
      continue;
    }
    if (key.projection.type !== 'enum') continue;
    const oldValues = old.projection.values.split(',');
    const newValues = key.projection.values.split(',');
    const removed = oldValues.filter((v) => !newValues.includes(v));
    const added = newValues.filter((v) => !oldValues.includes(v));
    if (removed.length > 0) {
      add('unsafe', key.name, `enum loses ${removed.join(', ')}`, `the projection no longer lists ${removed.length === 1 ? 'it' : 'them'}: rows under ${key.name}=${removed[0]}/…`
        + ' leave every query without an error (the twin warns at start). List the value again to read them, or delete them on purpose');
    }
    if (added.length > 0) add('safe', key.name, `enum gains ${added.join(', ')}`, 'the projection lists it from the deploy on');
  }
}

function maskChanges(before: SchemaModel, after: SchemaModel, add: Add): void {
  // Masks are keyed by JSON path; the data they mix is a column's, so compare them by column path: a JSON key renamed onto
  // its column keeps its mask. A field only one side has is added or removed, with nothing earlier to mix.
  const byColumn = (model: SchemaModel): Map<string, [string, PiiMask]> => new Map(Object.entries(model.extensions.pii)
    .map(([field, mask]): [string, [string, PiiMask]] => [columnPath(model.inputColumns, field) ?? field, [field, mask]]));
  const oldMasks = byColumn(before);
  const newMasks = byColumn(after);
  const paths = [...new Set([...oldMasks.keys(), ...newMasks.keys()])].sort();
  for (const path of paths) {
    if (columnPath(before.inputColumns, path, 'name') === undefined || columnPath(after.inputColumns, path, 'name') === undefined) continue;
    const old = oldMasks.get(path)?.[1];
    const now = newMasks.get(path)?.[1];
    if (old === now) continue;
    add('unsafe', (newMasks.get(path) ?? oldMasks.get(path))![0], `pii mask ${old ?? 'none'} → ${now ?? 'none'}`, 'records handled after the deploy are masked the new way; the partitions and OpenSearch documents written'
      + ' before keep the values as they were, so the column mixes both forms. Delete or rewrite the earlier partitions and indices (schemas/README.md, "Masks")');
  }
}

/** The column path (`payment_method.card_number`, names) of a dotted path of JSON keys, or of column names with `by` 'name'; undefined when there is none. */
function columnPath(columns: readonly Column[], dotted: string, by: 'jsonKey' | 'name' = 'jsonKey'): string | undefined {
  const [head, ...rest] = dotted.split('.');
  const c = columns.find((x) => x[by] === head);
  if (c === undefined) return undefined;
  if (rest.length === 0) return c.name;
  const below = c.type.kind === 'struct' ? columnPath(c.type.fields, rest.join('.'), by) : undefined;
  return below === undefined ? undefined : `${c.name}.${below}`;
}
