import * as duckdb from '@duckdb/node-api';
import { parquetTypeMismatches } from '../../lib/local/parquet-types';
import { duckDbType, readSchema } from '../../lib/schema';
import { schemaChanges, type SchemaChange } from '../../lib/schema/changes';
import { describeSchema } from '../../lib/schema/model';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The shipped schema of `pipeline`, changed by `edit` (a deep copy). */
function edited(pipeline: string, edit: (s: Json) => void = () => {}): ReturnType<typeof describeSchema> {
  const schema = structuredClone(readSchema(pipeline)) as Json;
  edit(schema);
  return describeSchema(pipeline, schema);
}

/** The changes from `before` to `after` as `verdict subject: change` lines, the version's own left out unless asked. */
function lines(changes: readonly SchemaChange[], withVersion = false): string[] {
  return changes.filter((c) => withVersion || c.subject !== 'x-sluice.version').map((c) => `${c.verdict} ${c.subject}: ${c.change}`);
}

describe('schemaChanges: what a schema change does to the data already written', () => {
  test('the same schema has no change', () => {
    for (const pipeline of ['iot', 'clickstream', 'transactions', 'app-events']) expect(schemaChanges(edited(pipeline), edited(pipeline))).toEqual([]);
  });

  test('a column\'s type changed other than to a wider integer is unsafe (HIVE_BAD_DATA), nested fields, array items and map values too; int → bigint is safe', () => {
    const before = edited('iot', (s) => {
      s.properties.temperature_c = { type: 'integer', minimum: -60, maximum: 150 };
      s.properties.signal_rssi = { type: 'string', maxLength: 8 };
      s.properties.uptime_s = { type: 'integer', minimum: 0, maximum: 1000 };
      s.properties.location.properties.lat = { type: 'string' };
      s.properties.tags.items = { type: 'integer' };
    });
    const changes = schemaChanges(before, edited('iot'));
    expect(lines(changes)).toEqual([
      'unsafe temperature_c: int → double',
      'unsafe signal_rssi: string → int',
      'unsafe location.lat: string → double',
      'unsafe tags[]: bigint → string',
      'safe uptime_s: int → bigint',
    ]);
    expect(changes[0].consequence).toMatch(/HIVE_BAD_DATA/);
    const maps = schemaChanges(edited('app-events', (s) => { s.properties.attributes.additionalProperties = { type: 'integer' }; }), edited('app-events'));
    expect(lines(maps)).toEqual(['unsafe attributes{}: bigint → string']);
  });

  test('an added optional field is safe, an added required one needs care, a field made required needs care, a removed one is safe', () => {
    const before = edited('iot', (s) => {
      delete s.properties.humidity_pct;
      s.properties.old_field = { type: 'string' };
      s.required = s.required.filter((r: string) => r !== 'device_id');
    });
    const after = edited('iot', (s) => {
      s.properties.site = { type: 'string' };
      s.required.push('site');
    });
    expect(lines(schemaChanges(before, after))).toEqual([
      'care device_id: optional → required',
      'care site: added (required, string)',
      'safe humidity_pct: added (optional, double)',
      'safe old_field: removed (was string)',
    ]);
    const struct = schemaChanges(edited('iot'), edited('iot', (s) => { s.properties.location.properties.alt = { type: 'number' }; }));
    expect(lines(struct)).toEqual(['safe location.alt: added (double)']);
  });

  test('a column renamed (a new x-sluice.columns name) is unsafe; a JSON key renamed onto the same column needs care', () => {
    const renamedColumn = schemaChanges(edited('app-events'), edited('app-events', (s) => { s['x-sluice'].columns.timestamp = 'event_ts'; }));
    expect(lines(renamedColumn)).toEqual(['unsafe event_ts: renamed from column event_timestamp']);
    expect(renamedColumn[0].consequence).toMatch(/earlier rows read NULL under it/);
    const renamedKey = schemaChanges(edited('iot'), edited('iot', (s) => {
      s.properties.fw = s.properties.firmware_version;
      delete s.properties.firmware_version;
      s['x-sluice'].columns = { fw: 'firmware_version' };
    }));
    expect(lines(renamedKey)).toEqual(['care firmware_version: JSON key firmware_version → fw (the column keeps its name)']);
  });

  test('partition keys changed, or an enum partition value removed, are unsafe; a value added is safe; an enum dropped makes the key injected (care)', () => {
    const keys = schemaChanges(edited('iot'), edited('iot', (s) => { s['x-sluice'].partitionFields = []; }));
    // event_type leaves the path for the files: a column of the table.
    expect(lines(keys)).toEqual(['unsafe partitionFields: event_type, year, month, day, hour → year, month, day, hour', 'care event_type: added (required, string)']);
    const values = schemaChanges(edited('iot'), edited('iot', (s) => { s.properties.event_type.enum = ['telemetry', 'alert', 'heartbeat', 'reboot']; }));
    expect(lines(values)).toEqual(['unsafe event_type: enum loses firmware_update', 'safe event_type: enum gains reboot']);
    const injected = schemaChanges(edited('iot'), edited('iot', (s) => { delete s.properties.event_type.enum; }));
    expect(lines(injected)).toEqual(['care event_type: projection enum → injected']);
  });

  test('a pii mask added, changed or removed is unsafe: the column mixes both forms', () => {
    const changes = schemaChanges(edited('transactions'), edited('transactions', (s) => {
      const pii = s['x-sluice'].pii as Record<string, string>;
      const [first] = Object.keys(pii);
      pii[first] = pii[first] === 'redact' ? 'hash' : 'redact';
    }));
    expect(changes.filter((c) => c.verdict === 'unsafe')).toHaveLength(1);
    expect(changes[0].change).toMatch(/^pii mask (last4|hash|redact|drop) → (last4|hash|redact|drop)$/);
    expect(changes[0].consequence).toMatch(/mixes both forms/);
  });

  test('a masked field added or removed, or its JSON key renamed onto its column with the mask, mixes nothing: no mask change', () => {
    const added = schemaChanges(edited('transactions'), edited('transactions', (s) => {
      s.properties.phone = { type: 'string' };
      s['x-sluice'].pii.phone = 'hash';
    }));
    expect(lines(added)).toEqual(['safe phone: added (optional, string)']);
    const removed = schemaChanges(edited('transactions'), edited('transactions', (s) => {
      delete s.properties.email;
      delete s['x-sluice'].pii.email;
    }));
    expect(lines(removed)).toEqual(['safe email: removed (was string)']);
    // email's JSON key renamed e_mail onto its column, masked as `mask`.
    const renamedKey = (mask: string) => schemaChanges(edited('transactions'), edited('transactions', (s) => {
      s.properties.e_mail = s.properties.email;
      delete s.properties.email;
      delete s['x-sluice'].pii.email;
      s['x-sluice'].pii.e_mail = mask;
      s['x-sluice'].columns = { e_mail: 'email' };
    }));
    expect(lines(renamedKey('hash'))).toEqual(['care email: JSON key email → e_mail (the column keeps its name)']);
    // The same rename with the mask changed on the way is still unsafe, named by the new key.
    expect(lines(renamedKey('redact'))[0]).toBe('unsafe e_mail: pii mask hash → redact');
  });

  test('the money rule\'s minor-units column is the transform\'s: added it is safe (no producer sends it), renamed it is unsafe as a column renamed', () => {
    const added = schemaChanges(edited('transactions', (s) => { delete s['x-sluice'].money; }), edited('transactions'));
    expect(lines(added)).toEqual(['safe amount_minor: added (money.minorUnitsField, bigint)']);
    expect(added.find((c) => c.subject === 'amount_minor')!.consequence).not.toMatch(/validation/);
    const renamed = schemaChanges(edited('transactions'), edited('transactions', (s) => { s['x-sluice'].money.minorUnitsField = 'amount_cents'; }));
    expect(lines(renamed)).toEqual(['unsafe amount_cents: renamed from column amount_minor (money.minorUnitsField)']);
    const removed = schemaChanges(edited('transactions'), edited('transactions', (s) => { delete s['x-sluice'].money; }));
    expect(lines(removed)).toEqual(['safe amount_minor: removed (was money.minorUnitsField, bigint)']);
  });

  test('a nested field added as required, made required or given another JSON key needs care, as a top-level one: the validator checks it the same', () => {
    const addedRequired = schemaChanges(edited('transactions'), edited('transactions', (s) => {
      s.properties.merchant.properties.mcc = { type: 'string' };
      s.properties.merchant.required.push('mcc');
    }));
    expect(lines(addedRequired)).toEqual(['care merchant.mcc: added (required, string)']);
    expect(addedRequired[0].consequence).toMatch(/fail validation/);
    const madeRequired = schemaChanges(edited('transactions'), edited('transactions', (s) => { s.properties.merchant.required.push('country'); }));
    expect(lines(madeRequired)).toEqual(['care merchant.country: optional → required']);
    const inArray = schemaChanges(edited('transactions', (s) => { s.properties.lines = { type: 'array', items: { type: 'object', additionalProperties: false, properties: { sku: { type: 'string' } } } }; }),
      edited('transactions', (s) => { s.properties.lines = { type: 'array', items: { type: 'object', additionalProperties: false, required: ['sku'], properties: { sku: { type: 'string' } } } }; }));
    expect(lines(inArray)).toEqual(['care lines[].sku: optional → required']);
    const renamedKey = schemaChanges(edited('transactions'), edited('transactions', (s) => {
      s.properties.merchant.properties.Country = s.properties.merchant.properties.country;
      delete s.properties.merchant.properties.country;
    }));
    expect(lines(renamedKey)).toEqual(['care merchant.country: JSON key country → Country (the field keeps its name)']);
  });

  test('x-sluice.version: a change with it unchanged asks for a bump; a bump alone is safe', () => {
    const unchanged = schemaChanges(edited('iot'), edited('iot', (s) => { s.properties.site = { type: 'string' }; }));
    expect(lines(unchanged, true)).toEqual(['care x-sluice.version: unchanged (1.0.0)', 'safe site: added (optional, string)']);
    const bumped = schemaChanges(edited('iot'), edited('iot', (s) => { s['x-sluice'].version = '1.1.0'; }));
    expect(lines(bumped, true)).toEqual(['safe x-sluice.version: 1.0.0 → 1.1.0']);
  });

  test('a type change is unsafe exactly when the twin\'s query (as Athena) refuses a file written with the earlier type', () => {
    const kinds: Record<string, object> = {
      string: { type: 'string' }, int: { type: 'integer', minimum: 0, maximum: 100 }, bigint: { type: 'integer' }, double: { type: 'number' },
      boolean: { type: 'boolean' }, date: { type: 'string', format: 'date' }, timestamp: { type: 'string', format: 'date-time' },
    };
    const withUptime = (property: object) => edited('iot', (s) => { s.properties.uptime_s = property; });
    let unsafe = 0;
    for (const [oldKind, oldProperty] of Object.entries(kinds)) {
      for (const [newKind, newProperty] of Object.entries(kinds)) {
        const before = withUptime(oldProperty);
        const after = withUptime(newProperty);
        const column = (m: typeof after) => m.tableColumns.find((c) => c.name === 'uptime_s')!;
        expect([column(before).type.kind, column(after).type.kind]).toEqual([oldKind, newKind]);
        const written = (duckdb as unknown as Record<string, duckdb.DuckDBType>)[duckDbType(column(before).type)];
        const refused = parquetTypeMismatches([column(after)], new Map([['uptime_s', written]])).length > 0;
        const verdict = schemaChanges(before, after).find((c) => c.subject === 'uptime_s')?.verdict;
        expect({ oldKind, newKind, verdict: verdict ?? 'none' }).toEqual({ oldKind, newKind, verdict: refused ? 'unsafe' : oldKind === newKind ? 'none' : 'safe' });
        if (refused) unsafe++;
      }
    }
    expect(unsafe).toBe(41);
  });
});
