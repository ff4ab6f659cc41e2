/**
 * Record format conversion against real DuckDB: files are read back with DuckDB and checked for
 * rows, column names and types; records that do not convert fail alone, with Firehose's codes.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { compileRowConverter, ParquetWriter } from '../../lib/local/parquet-writer';
import { parquetColumns } from '../../lib/schema/artifacts';
import { describeSchema } from '../../lib/schema/model';
import { loadModel } from '../../lib/schema/registry';
import { sampleRecords } from '../../lib/schema/sample';
import { compileValidator } from '../../lib/schema/validator';
import type { PipelineSchema } from '../../transforms/shared/pipeline';
import { transformRecord } from '../../transforms/shared/record';

const clickstream = loadModel('clickstream');
const iot = loadModel('iot');
const appEvents = loadModel('app-events');

let dir: string;
let reader: DuckDBInstance;
let sql: DuckDBConnection;
const writers: ParquetWriter[] = [];

beforeAll(async () => {
  reader = await DuckDBInstance.create(':memory:');
  sql = await reader.connect();
});

afterAll(() => {
  sql.closeSync();
  reader.closeSync();
});

beforeEach(async () => {
  dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sluice-parquet-'));
});

afterEach(async () => {
  await Promise.all(writers.splice(0).map((w) => w.close()));
  await fs.promises.rm(dir, { recursive: true, force: true });
});

async function writer(model = clickstream, deserializer?: 'openx' | 'hive'): Promise<ParquetWriter> {
  const w = await ParquetWriter.open(model, { workDir: path.join(dir, 'work'), deserializer });
  writers.push(w);
  return w;
}

async function rows(file: string, select = '*'): Promise<Array<Record<string, unknown>>> {
  const result = await sql.runAndReadAll(`SELECT ${select} FROM read_parquet('${file}')`);
  return result.getRowObjectsJson() as Array<Record<string, unknown>>;
}

async function schemaOf(file: string): Promise<Array<{ name: string; type: string }>> {
  const result = await sql.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${file}')`);
  return (result.getRowObjectsJson() as Array<{ column_name: string; column_type: string }>).map((r) => ({ name: r.column_name, type: r.column_type }));
}

/** A clickstream record as the transform emits it (column names, `sluice` enrichment, event_type still present). */
function click(i: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    event_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    event_type: 'click',
    event_time: `2026-03-01T10:${String(i % 60).padStart(2, '0')}:00.250Z`,
    user_id: `u-${i}`,
    session_id: `s-${i % 7}`,
    page: { url: `https://shop.example.com/p/${i}`, path: `/p/${i}`, title: 'Product' },
    element: { id: 'buy', text: 'Buy now' },
    scroll_depth_pct: i % 100,
    device: { type: 'mobile', os: 'iOS 18', screen_width: 390, screen_height: 844 },
    geo: { country: 'DE', city: 'Berlin', location: { lat: 52.52, lon: 13.405 } },
    sluice: {
      arrival_time: '2026-03-01T10:00:01.000Z', processed_at: '2026-03-01T10:00:02.000Z', source: 'kinesis',
      shard_id: 'shardId-000000000000', sequence_number: `4960${i}`, schema_version: '1.0.0', quality_score: 0.75,
    },
    ...overrides,
  };
}

const line = (value: unknown): Buffer => Buffer.from(`${JSON.stringify(value)}\n`);

describe('ParquetWriter', () => {
  it("writes exactly the table's columns, with the schema's types, partition fields left to the path", async () => {
    const w = await writer();
    const out = path.join(dir, 'out.parquet');
    const result = await w.convert([line(click(1)), line(click(2)), line(click(3))], out);
    expect(result).toEqual({ rows: 3, bytes: fs.statSync(out).size, failures: [] });
    const expected = parquetColumns(clickstream);
    const actual = await schemaOf(out);
    expect(actual.map((c) => c.name)).toEqual(expected.map((c) => c.name));
    expect(actual.map((c) => c.name)).not.toContain('event_type');
    // DuckDB reports the same types it was given (quoting of reserved field names aside).
    expect(actual.map((c) => c.type.replace(/"/g, ''))).toEqual(expected.map((c) => c.type.replace(/"/g, '')));

    const [first] = await rows(out, "event_id, strftime(event_time, '%Y-%m-%dT%H:%M:%S.%g') AS event_time, page.url AS url, geo.location.lat AS lat, scroll_depth_pct, duration_ms, sluice.quality_score AS q");
    expect(first).toEqual({
      event_id: '00000000-0000-4000-8000-000000000001', event_time: '2026-03-01T10:01:00.250', url: 'https://shop.example.com/p/1',
      lat: 52.52, scroll_depth_pct: 1, duration_ms: null, q: 0.75,
    });
  });

  it('writes Snappy-compressed Parquet', async () => {
    const w = await writer();
    const out = path.join(dir, 'out.parquet');
    await w.convert([line(click(1))], out);
    const meta = await sql.runAndReadAll(`SELECT DISTINCT compression FROM parquet_metadata('${out}')`);
    expect(meta.getRowObjectsJson()).toEqual([{ compression: 'SNAPPY' }]);
  });

  it('sends a record with a bad value to format-conversion-failed alone; its batch still converts, in order', async () => {
    const w = await writer();
    const out = path.join(dir, 'out.parquet');
    const records = [
      line(click(0)),
      line(click(1, { scroll_depth_pct: 'abc' })),
      line(click(2)),
      line(click(3, { event_time: '2026-02-30T10:00:00Z' })),
      Buffer.from('{"event_id": "broken"'),
      line(click(5, { geo: 'Berlin' })),
      line([click(6)]),
      line(click(7, { event_time: '2026-03-01T10:00:00+02:00' })),
      line(click(8, { duration_ms: 12.5 })),
      line(click(9, { duration_ms: 2 ** 31 })),
      line(click(10)),
    ];
    const result = await w.convert(records, out);
    expect(result.failures).toEqual([
      { index: 1, errorCode: 'DataFormatConversion.MalformedData', errorMessage: 'the string "abc" is not a valid int at "scroll_depth_pct"' },
      { index: 3, errorCode: 'DataFormatConversion.MalformedData', errorMessage: expect.stringMatching(/^the string "2026-02-30T10:00:00Z" is not a timestamp in a supported form .* at "event_time"$/) },
      { index: 4, errorCode: 'DataFormatConversion.ParseError', errorMessage: expect.stringMatching(/^Encountered malformed JSON\. /) },
      { index: 5, errorCode: 'DataFormatConversion.MalformedData', errorMessage: 'expected a JSON object for a struct, got the string "Berlin" at "geo"' },
      { index: 6, errorCode: 'DataFormatConversion.ParseError', errorMessage: 'Encountered malformed JSON. A record must be one JSON object, got an array.' },
      { index: 7, errorCode: 'DataFormatConversion.MalformedData', errorMessage: expect.stringContaining('"2026-03-01T10:00:00+02:00" is not a timestamp') },
      { index: 8, errorCode: 'DataFormatConversion.MalformedData', errorMessage: 'the number 12.5 is not a valid int at "duration_ms"' },
      { index: 9, errorCode: 'DataFormatConversion.MalformedData', errorMessage: 'the number 2147483648 is not a valid int at "duration_ms"' },
    ]);
    expect(result.rows).toBe(3);
    expect((await rows(out, 'user_id')).map((r) => r.user_id)).toEqual(['u-0', 'u-2', 'u-10']);
  });

  it('reads JSON the way the OpenX SerDe does', async () => {
    const w = await writer();
    const out = path.join(dir, 'out.parquet');
    const result = await w.convert([
      // Keys in any case; unknown keys ignored; missing columns NULL.
      line({ EVENT_ID: 'e1', Event_Time: '2026-03-01T10:00:00Z', Page: { URL: 'u' }, extra: { deep: [1, 2] } }),
      // Numeric and boolean strings coerced; nested JSON and numbers in a string column become text.
      line({ event_id: 'e2', scroll_depth_pct: '42', geo: { location: { lat: '1.5', lon: -2 } }, utm_campaign: { a: 1 }, user_id: 7 }),
      // The timestamp forms Firehose documents for OpenX.
      line({ event_id: 'e3', event_time: '2026-3-1 10:00:00.5' }),
      line({ event_id: 'e4', event_time: 1772359200 }),
      line({ event_id: 'e5', event_time: 1772359200123 }),
      line({ event_id: 'e6', event_time: '2026-03-01T10:00:00.123456789Z' }),
      // Pretty-printed over several lines: still one record.
      Buffer.from('{\n  "event_id": "e7",\n  "session_id": "s"\n}\n'),
    ], out);
    expect(result.failures).toEqual([]);
    const got = await rows(out, "event_id, strftime(event_time, '%Y-%m-%dT%H:%M:%S.%f') AS t, page.url AS url, scroll_depth_pct, geo.location.lat AS lat, utm_campaign, user_id, session_id");
    expect(got).toEqual([
      { event_id: 'e1', t: '2026-03-01T10:00:00.000000', url: 'u', scroll_depth_pct: null, lat: null, utm_campaign: null, user_id: null, session_id: null },
      { event_id: 'e2', t: null, url: null, scroll_depth_pct: 42, lat: 1.5, utm_campaign: '{"a":1}', user_id: '7', session_id: null },
      { event_id: 'e3', t: '2026-03-01T10:00:00.500000', url: null, scroll_depth_pct: null, lat: null, utm_campaign: null, user_id: null, session_id: null },
      { event_id: 'e4', t: '2026-03-01T10:00:00.000000', url: null, scroll_depth_pct: null, lat: null, utm_campaign: null, user_id: null, session_id: null },
      { event_id: 'e5', t: '2026-03-01T10:00:00.123000', url: null, scroll_depth_pct: null, lat: null, utm_campaign: null, user_id: null, session_id: null },
      { event_id: 'e6', t: '2026-03-01T10:00:00.123456', url: null, scroll_depth_pct: null, lat: null, utm_campaign: null, user_id: null, session_id: null },
      { event_id: 'e7', t: null, url: null, scroll_depth_pct: null, lat: null, utm_campaign: null, user_id: null, session_id: 's' },
    ]);
  });

  it('refuses coercions the Hive SerDe refuses', async () => {
    const w = await writer(clickstream, 'hive');
    const result = await w.convert([
      line({ event_id: 'ok' }),
      line({ event_id: 'e1', utm_campaign: { a: 1 } }),
      line({ event_id: 'e2', scroll_depth_pct: '42' }),
    ], path.join(dir, 'out.parquet'));
    expect(result.rows).toBe(1);
    expect(result.failures.map((f) => [f.index, f.errorMessage])).toEqual([
      [1, 'expected a string, got an object at "utm_campaign"'],
      [2, 'the string "42" is not a valid int at "scroll_depth_pct"'],
    ]);
  });

  it('converts arrays, maps and 64-bit integers exactly', async () => {
    const w = await writer(iot);
    const out = path.join(dir, 'iot.parquet');
    const result = await w.convert([
      // Beyond 2^53: JSON.parse would round it, the original text still has every digit.
      Buffer.from('{"event_id":"a","device_id":"dev-00000001","tags":["warehouse",null,"lab"],"uptime_s":9007199254740993}'),
      Buffer.from('{"event_id":"b","uptime_s":"9223372036854775807","tags":[]}'),
      line({ event_id: 'c', tags: ['x', 5] }),
      line({ event_id: 'd', tags: 'warehouse' }),
    ], out);
    expect(result.failures.map((f) => [f.index, f.errorMessage])).toEqual([[3, 'expected a JSON array, got the string "warehouse" at "tags"']]);
    expect(await rows(out, 'event_id, tags, uptime_s::VARCHAR AS uptime')).toEqual([
      { event_id: 'a', tags: ['warehouse', null, 'lab'], uptime: '9007199254740993' },
      { event_id: 'b', tags: [], uptime: '9223372036854775807' },
      { event_id: 'c', tags: ['x', '5'], uptime: null },
    ]);
    const events = await writer(appEvents);
    const mapOut = path.join(dir, 'app.parquet');
    const maps = await events.convert([
      line({ event_id: 'm1', attributes: { plan: 'pro', Seats: '3' }, amount_minor: 1999 }),
      // Rewritten (numeric string), and a "__proto__" key stays a key.
      Buffer.from('{"event_id":"m3","amount":"5.5","attributes":{"__proto__":"kept"}}'),
      line({ event_id: 'm2', attributes: ['not', 'a', 'map'] }),
      // OpenX lower-cases every key, a map's too: two keys that are one then fail the record.
      line({ event_id: 'm4', attributes: { Plan: 'pro', plan: 'free' } }),
    ], mapOut);
    expect(maps.failures.map((f) => [f.index, f.errorMessage])).toEqual([
      [2, expect.stringMatching(/^expected a JSON object for a map/)],
      [3, 'map keys "Plan" and "plan" are one key once lower-cased, as the OpenX JSON deserializer reads keys at "attributes"'],
    ]);
    expect(await rows(mapOut, "event_id, attributes['seats'] AS seats, attributes['Seats'] AS cased, attributes['__proto__'] AS proto, amount, amount_minor")).toEqual([
      { event_id: 'm1', seats: '3', cased: null, proto: null, amount: null, amount_minor: '1999' },
      { event_id: 'm3', seats: null, cased: null, proto: 'kept', amount: 5.5, amount_minor: null },
    ]);
    // The Hive JSON SerDe reads keys as they are.
    const hive = await writer(appEvents, 'hive');
    const hiveOut = path.join(dir, 'app-hive.parquet');
    expect((await hive.convert([line({ event_id: 'h1', attributes: { Seats: '3', seats: '4' } })], hiveOut)).failures).toEqual([]);
    expect(await rows(hiveOut, "attributes['Seats'] AS cased, attributes['seats'] AS seats")).toEqual([{ cased: '3', seats: '4' }]);
  });

  it('isolates records DuckDB refuses that the checks let through (duplicate keys) and keeps the rest', async () => {
    const w = await writer();
    const out = path.join(dir, 'out.parquet');
    const records = Array.from({ length: 40 }, (_, i) => line(click(i)));
    records[13] = Buffer.from('{"event_id":"dup","page":{"url":"a","url":"b"}}');
    records[31] = Buffer.from('{"event_id":"dup2","event_id":"again"}');
    const result = await w.convert(records, out);
    expect(result.failures.map((f) => f.index)).toEqual([13, 31]);
    expect(result.failures[0]).toEqual({ index: 13, errorCode: 'DataFormatConversion.MalformedData', errorMessage: expect.stringContaining('duplicate key "url"') });
    expect(result.failures[0].errorMessage).not.toContain(dir);
    expect(result.rows).toBe(38);
    expect((await rows(out, 'count(*)::INTEGER AS n'))[0].n).toBe(38);
  });

  it('writes no file when nothing converts', async () => {
    const w = await writer();
    const out = path.join(dir, 'none.parquet');
    const result = await w.convert([Buffer.from('nope'), Buffer.from(''), Buffer.from([0xff, 0xfe, 0x7b, 0x7d])], out);
    expect(result.rows).toBe(0);
    expect(result.failures.map((f) => f.errorMessage)).toEqual([
      expect.stringMatching(/^Encountered malformed JSON\. /),
      'Encountered malformed JSON. The record is empty.',
      'Encountered malformed JSON. The record is not valid UTF-8.',
    ]);
    expect(fs.existsSync(out)).toBe(false);
    expect(await w.convert([], out)).toEqual({ rows: 0, bytes: 0, failures: [] });
  });

  it('converts generated records of a schema whose fields admit null, each null a NULL', async () => {
    const nullable = (type: string, rest: object = {}) => ({ type: [type, 'null'], ...rest });
    const json = {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      additionalProperties: false,
      'x-sluice': {
        version: '1.0.0', idField: 'id', eventTimeField: 'at', partitionFields: ['kind'], entityField: 'who',
        pii: { email: 'hash', 'contact.phone': 'last4' },
        money: { amountField: 'price', currencyField: 'cur', minorUnitsField: 'price_minor', defaultCurrency: 'EUR' },
      },
      required: ['id', 'at', 'kind', 'who', 'price', 'cur', 'seen', 'on_day', 'n', 'flag', 'email', 'contact', 'tags', 'labels', 'tier'],
      properties: {
        id: { type: 'string', format: 'uuid' },
        at: { type: 'string', format: 'date-time' },
        kind: { type: 'string', enum: ['a', 'b'] },
        who: nullable('string', { examples: ['u-1', 'u-2'] }),
        price: nullable('number', { minimum: 0, maximum: 1000 }),
        cur: nullable('string', { examples: ['EUR', 'JPY'] }),
        seen: nullable('string', { format: 'date-time' }),
        on_day: nullable('string', { format: 'date' }),
        n: nullable('integer', { minimum: 0, maximum: 10 }),
        flag: nullable('boolean'),
        email: nullable('string', { format: 'email' }),
        contact: { type: ['object', 'null'], additionalProperties: false, required: ['phone'], properties: { phone: nullable('string', { examples: ['+4915112345678'] }) } },
        tags: { type: ['array', 'null'], items: nullable('string') },
        labels: { type: ['object', 'null'], additionalProperties: nullable('integer') },
        tier: nullable('string', { enum: ['bronze', 'silver', 'gold', null] }),
      },
    };
    const model = describeSchema('nullable', json);
    const schema = { pipeline: 'nullable', model, validate: compileValidator(json) } as unknown as PipelineSchema;
    const now = new Date('2026-03-01T10:00:00Z');
    const lines = sampleRecords(json, 200, 3, { now }).map((record) => {
      const outcome = transformRecord(schema, Buffer.from(JSON.stringify(record)), { arrivalMs: now.getTime() }, { destination: 'lake', piiHashKey: 'k', processedAt: now });
      if (outcome.result !== 'Ok') throw new Error(`${JSON.stringify(record)} was not transformed: ${JSON.stringify(outcome)}`);
      return outcome.data;
    });
    const w = await writer(model);
    const out = path.join(dir, 'nullable.parquet');
    const result = await w.convert(lines, out);
    expect(result.failures).toEqual([]);
    expect(result.rows).toBe(200);
    const sent = lines.map((l) => JSON.parse(l.toString()) as Record<string, unknown>);
    const columns = ['who', 'price', 'price_minor', 'cur', 'seen', 'on_day', 'n', 'flag', 'email', 'contact', 'tags', 'labels', 'tier'];
    const [counted] = await rows(out, columns.map((c) => `count(*) FILTER (WHERE "${c}" IS NULL)::INTEGER AS "${c}"`).join(', '));
    const nullsSent = Object.fromEntries(columns.map((c) => [c, sent.filter((r) => r[c] === null).length]));
    expect(counted).toEqual(nullsSent);
    // Every column was null in some record, and set in most.
    for (const c of columns) expect([c, nullsSent[c] > 0 && nullsSent[c] < 100]).toEqual([c, true]);
    const inner = await rows(out, 'count(*) FILTER (WHERE contact.phone IS NULL AND contact IS NOT NULL)::INTEGER AS phone, count(*) FILTER (WHERE len(list_filter(tags, lambda t: t IS NULL)) > 0)::INTEGER AS tag');
    expect(inner).toEqual([{
      phone: sent.filter((r) => r.contact !== null && (r.contact as Record<string, unknown>).phone === null).length,
      tag: sent.filter((r) => Array.isArray(r.tags) && r.tags.includes(null)).length,
    }]);
    expect(inner[0].phone).toBeGreaterThan(0);
    expect(inner[0].tag).toBeGreaterThan(0);
  });

  it('leaves no staging files behind', async () => {
    const w = await writer();
    await w.convert([line(click(1)), Buffer.from('{"event_id":"d","event_id":"d"}')], path.join(dir, 'x.parquet'));
    expect(fs.readdirSync(path.join(dir, 'work'))).toEqual([]);
  });
});

describe('compileRowConverter', () => {
  const convert = compileRowConverter(clickstream);

  it('passes the original bytes through when nothing needs rewriting (minus the trailing newline)', () => {
    const data = line(click(1));
    const result = convert(data);
    expect(result.ok && Buffer.from(result.line).equals(data.subarray(0, data.length - 1))).toBe(true);
  });

  it('rewrites a record whose keys or values need normalising', () => {
    const result = convert(Buffer.from('{"EVENT_ID":"x","scroll_depth_pct":"5","extra":1}'));
    expect(result.ok && JSON.parse(Buffer.from(result.line).toString())).toEqual({ event_id: 'x', scroll_depth_pct: 5 });
  });
});
