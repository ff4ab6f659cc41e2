import type { KinesisStreamRecord } from 'aws-lambda';
import { compileValidator } from '../../lib/schema/validator';
import { eventFacts } from '../../transforms/metadata-consumer/handler';
import { describeSchema } from '../../lib/schema/model';
import { FIREHOSE_MAX_RECORD_BYTES } from '../../transforms/shared/limits';
import { toMinorUnits } from '../../transforms/shared/money';
import { maskValue } from '../../transforms/shared/pii';
import { pipelineSchema, type PipelineSchema } from '../../transforms/shared/pipeline';
import { analyzeForLake, describeFailure, failureReason, transformRecord, type TransformOutcome } from '../../transforms/shared/record';
import { createRng, sampleRecord } from '../../lib/schema/sample';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { parseDateTime } from '../../transforms/shared/timestamps';
import { decodeJson, jsonErrorWithoutContent } from '../../transforms/shared/json';

const settings = { destination: 'lake' as const, piiHashKey: 'k', processedAt: new Date('2026-11-22T14:00:00Z') };
const ingest = { arrivalMs: Date.parse('2026-11-22T13:59:00Z') };

const iot = {
  event_id: '5a4d0a3d-7e1f-4f9c-8ca8-000000000001',
  event_type: 'telemetry',
  event_time: '2026-11-22T13:40:00Z',
  device_id: 'dev-0000a1b2',
  temperature_c: 21.5,
  battery_pct: 87,
};

function run(pipeline: string, data: string | Buffer): TransformOutcome {
  return transformRecord(pipelineSchema(pipeline), typeof data === 'string' ? Buffer.from(data, 'utf8') : data, ingest, settings);
}

function reasonOf(o: TransformOutcome): string {
  if (o.result !== 'ProcessingFailed') throw new Error(`expected ProcessingFailed, got ${o.result}`);
  return `${o.failure.category} ${o.failure.field} ${o.failure.rule}: ${o.failure.message}`;
}

describe('timestamps', () => {
  it.each([
    ['2026-11-22T13:45:12Z', '2026-11-22T13:45:12.000Z'],
    ['2026-11-22t13:45:12.1z', '2026-11-22T13:45:12.100Z'],
    ['2026-11-22 13:45:12.123456789+05:30', '2026-11-22T08:15:12.123Z'],
    ['2026-11-22T23:59:59.9999-01', '2026-11-23T00:59:59.999Z'],
    ['2026-11-22T00:30:00+0100', '2026-11-21T23:30:00.000Z'],
    ['2016-12-31T23:59:60Z', '2016-12-31T23:59:59.999Z'],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
  ])('%s → %s', (input, iso) => {
    expect(parseDateTime(input)?.iso).toBe(iso);
  });

  it.each(['2026-11-22', '2026-11-22T13:45:12', '2023-02-29T00:00:00Z', '2026-13-01T00:00:00Z', '2026-11-22T24:00:00Z', '2026-11-22TT13:45:12Z', '٢٠٢٦-11-22T13:45:12Z'])(
    'rejects %s',
    (input) => {
      expect(parseDateTime(input)).toBeUndefined();
    },
  );
});

describe('money', () => {
  it.each([
    [19.99, 'USD', 1999],
    [0.1, 'EUR', 10],
    [1500, 'JPY', 1500],
    [1.234, 'KWD', 1234],
    [1e-2, 'USD', 1],
    [1000000, 'GBP', 100000000],
    [-5.5, 'CHF', -550],
  ])('%p %s → %p', (amount, currency, minor) => {
    expect(toMinorUnits(amount, currency)).toEqual({ ok: true, value: minor });
  });

  it('refuses to round: more decimals than the currency has is an error, and says so', () => {
    expect(toMinorUnits(19.999, 'USD')).toEqual({ ok: false, message: "19.999 USD has more than 2 decimal places, the currency's minor unit" });
    expect(toMinorUnits(1.5, 'JPY')).toMatchObject({ ok: false });
    expect(toMinorUnits(1e300, 'USD')).toMatchObject({ ok: false, message: expect.stringContaining('2^53') });
    expect(toMinorUnits(1, 'usd')).toMatchObject({ ok: false, message: expect.stringContaining('ISO 4217') });
  });
});

describe('PII masks', () => {
  it('keeps the last four characters, never a whole short value', () => {
    expect(maskValue('last4', '4111111111111111', 'k')).toBe('1111');
    expect(maskValue('last4', '1234', 'k')).toBe('[redacted]');
    expect(maskValue('last4', 'ab😀cde', 'k')).toBe('😀cde');
  });
  it('hashes with the key (same input, same key → same hash; other key → other hash)', () => {
    const a = maskValue('hash', 'alice@example.com', 'k1');
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(maskValue('hash', 'alice@example.com', 'k1')).toBe(a);
    expect(maskValue('hash', 'alice@example.com', 'k2')).not.toBe(a);
  });
  it('redacts and drops', () => {
    expect(maskValue('redact', '10.0.0.1', 'k')).toBe('[redacted]');
    expect(maskValue('drop', '10.0.0.1', 'k')).toBeUndefined();
  });
});

describe('decodeJson', () => {
  it('never quotes record content in its reasons', () => {
    const d = decodeJson(Buffer.from('x4111111111111111'));
    expect(d).toMatchObject({ ok: false, rule: 'syntax' });
    expect(JSON.stringify(d)).not.toContain('4111');
    // Past the first ten characters V8 clips its quote with a leading "...": still no content.
    const deep = decodeJson(Buffer.from('{"card":"4111111111111111","amount":NaN}'));
    expect(deep).toMatchObject({ ok: false, rule: 'syntax', message: "is not valid JSON (unexpected token 'N')" });
  });

  it.each([
    // Node 20 (the twin here) and Node 22 (the Lambda runtime) word the same error differently; the reason is one.
    ["Expected ',' or '}' after property value in JSON at position 7", "Expected ',' or '}' after property value at position 7"],
    ["Expected ',' or '}' after property value in JSON at position 7 (line 1 column 8)", "Expected ',' or '}' after property value at position 7"],
    ['Bad control character in string literal in JSON at position 7 (line 1 column 8)', 'Bad control character in string literal at position 7'],
    ['Unexpected end of JSON input', 'Unexpected end of JSON input'],
  ])('%j reads %j on every Node version', (v8Message, reason) => {
    expect(jsonErrorWithoutContent(new SyntaxError(v8Message))).toBe(reason);
  });
});

describe('hostile input: every case is Ok or ProcessingFailed with a reason, never a throw', () => {
  const valid = JSON.stringify(iot);

  it('invalid UTF-8 (including overlong and surrogate encodings) fails with the byte offset', () => {
    for (const bad of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]]) {
      const bytes = Buffer.concat([Buffer.from('{"a":"'), Buffer.from(bad), Buffer.from('"}')]);
      expect(reasonOf(run('iot', bytes))).toBe('encoding / utf8: is not valid UTF-8 (first bad byte at offset 6)');
    }
  });

  it('a UTF-8 byte order mark is accepted; a BOM in the middle is not JSON', () => {
    expect(run('iot', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(valid)])).result).toBe('Ok');
    expect(run('iot', `${valid}\ufeff`).result).toBe('ProcessingFailed');
  });

  it('raw control characters are invalid JSON; escaped NUL is data the schema judges', () => {
    expect(reasonOf(run('iot', valid.replace('dev-0000a1b2', 'dev-0000a1b2\u0001')))).toMatch(/^json \/ syntax: is not valid JSON \(Bad control character/);
    expect(reasonOf(run('iot', valid.replace('"TH', '"TH').replace('"telemetry"', '"tele\\u0000metry"')))).toMatch(/^schema \/event_type enum/);
    const nulModel = JSON.stringify({ ...iot, device_model: 'TH\u0000200' });
    expect(run('iot', nulModel).result).toBe('Ok');
  });

  it('__proto__ and constructor keys never touch prototypes', () => {
    const proto = valid.replace('{', '{"__proto__":{"polluted":true},');
    expect(reasonOf(run('iot', proto))).toContain('/__proto__');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(reasonOf(run('iot', valid.replace('{', '{"constructor":"x",')))).toContain('/constructor');
    // In a map (app-events attributes), such keys are data and come out as data.
    const app = '{"event_id":"6f1c2a9e-4b7d-4c1e-9f2a-3d5b7c9e1a20","user_id":"u","event_type":"login","timestamp":"2026-11-22T18:45:12Z","attributes":{"__proto__":"a","constructor":"b","toString":"c"}}';
    const out = run('app-events', app);
    expect(out.result).toBe('Ok');
    const doc = JSON.parse((out as { data: Buffer }).data.toString()) as { attributes: Record<string, string> };
    expect(Object.getPrototypeOf(doc.attributes)).toBe(Object.prototype);
    expect(Object.keys(doc.attributes)).toEqual(['__proto__', 'constructor', 'toString']);
    expect(Object.getOwnPropertyDescriptor(doc.attributes, '__proto__')?.value).toBe('a');
  });

  it('integers beyond 2^53 fail instead of silently losing precision', () => {
    expect(reasonOf(run('iot', valid.replace('}', ',"uptime_s":9007199254740993}')))).toBe(
      'value /uptime_s safeInteger: is beyond ±(2^53 − 1): JSON parsers, Athena and OpenSearch would read a different number',
    );
    expect(run('iot', valid.replace('}', ',"uptime_s":9007199254740991}')).result).toBe('Ok');
    expect(reasonOf(run('iot', valid.replace('21.5', '1e400')))).toMatch(/^schema \/temperature_c/);
  });

  it('deep nesting fails fast', () => {
    const deep = valid.replace('}', `,"location":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    const started = Date.now();
    expect(reasonOf(run('iot', deep))).toMatch(/^schema \/location type/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('huge strings in pattern, format and free-text fields fail fast', () => {
    const huge = 'a'.repeat(900_000);
    for (const [pipeline, field, base] of [
      ['iot', 'device_id', iot],
      ['iot', 'firmware_version', iot],
      ['transactions', 'email', null],
      ['clickstream', 'page', null],
    ] as const) {
      const record = base ? { ...base, [field]: huge } : { event_id: 'x', [field]: field === 'page' ? { url: `https://${huge}`, path: huge } : `${huge}@${huge}.com` };
      const started = Date.now();
      const o = run(pipeline, JSON.stringify(record));
      expect(o.result).toBe('ProcessingFailed');
      expect(Date.now() - started).toBeLessThan(3000);
    }
  });

  it('unpaired surrogates in strings fail: UTF-8 cannot carry them', () => {
    const o = run('iot', valid.replace('"TH', '"TH').replace('}', ',"device_model":"TH-\\ud800"}'));
    expect(reasonOf(o)).toBe('encoding /device_model utf16: holds an unpaired surrogate (\\uD800–\\uDFFF), which UTF-8 cannot encode');
  });

  it('non-object JSON is named', () => {
    expect(reasonOf(run('iot', '[1,2]'))).toBe('json / type: must be a JSON object, got an array');
    expect(reasonOf(run('iot', 'null'))).toBe('json / type: must be a JSON object, got null');
    expect(reasonOf(run('iot', '"s"'))).toBe('json / type: must be a JSON object, got a string');
    expect(run('iot', ' \r\n\t').result).toBe('Dropped');
    expect(run('iot', '').result).toBe('Dropped');
  });

  it('event time outside 2000–2100 (after conversion to UTC) fails', () => {
    expect(reasonOf(run('iot', JSON.stringify({ ...iot, event_time: '2100-12-31T23:30:00-01:00' })))).toBe(
      "event-time /event_time range: is in UTC year 2101; the lake's partitions cover 2000–2100",
    );
    expect(run('iot', JSON.stringify({ ...iot, event_time: '2100-12-31T23:30:00Z' })).result).toBe('Ok');
    expect(run('iot', JSON.stringify({ ...iot, event_time: '2000-01-01T00:30:00+01:00' })).result).toBe('ProcessingFailed');
  });
});

describe('partition values and size limits (schemas that allow what the shipped ones do not)', () => {
  const schema = {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    type: 'object',
    'x-sluice': { version: '2.0.0', idField: 'id', eventTimeField: 'at', partitionFields: ['kind'], pii: {} },
    required: ['id', 'at', 'kind'],
    additionalProperties: false,
    properties: {
      id: { type: 'string' },
      at: { type: 'string', format: 'date-time' },
      kind: { type: 'string' },
      blob: { type: 'string' },
    },
  };
  const open: PipelineSchema = { pipeline: 'open' as PipelineSchema['pipeline'], model: describeSchema('open', schema), validate: compileValidator(schema) };
  const go = (record: object) => transformRecord(open, Buffer.from(JSON.stringify(record)), ingest, settings);

  it.each([
    ['../../etc', 'etc'],
    ['a/b', 'a_b'],
    ['Page View', 'page_view'],
    ['ＦＵＬＬ', 'full'],
    ['x'.repeat(500), 'x'.repeat(64)],
  ])('%s becomes the partition value %s', (kind, value) => {
    const o = go({ id: '1', at: '2026-01-01T00:00:00Z', kind });
    expect(o).toMatchObject({ result: 'Ok', partitionKeys: { kind: value, year: '2026', month: '01', day: '01', hour: '00' } });
  });

  it.each(['', '..', '/', '\u0000\u0001', '   ', '日本', '-', '_-_', 'é'.repeat(600)])('%j cannot name a partition: the record fails with the field and why', (kind) => {
    const o = go({ id: '1', at: '2026-01-01T00:00:00Z', kind });
    expect(o.result).toBe('ProcessingFailed');
    expect(o.result === 'ProcessingFailed' && o.failure).toMatchObject({ category: 'partition', field: '/kind', rule: 'partition' });
    // The reason names the rule as it is: "-" and "_" alone do not make a name, nor do letters outside ASCII.
    expect(o.result === 'ProcessingFailed' && o.failure.message).toMatch(/^has no ASCII letter or digit to name an S3 partition with \((it is empty|\d+ characters?, not shown); partition values keep a-z, 0-9/);
  });

  it('a value that cannot name a partition is not quoted in the reason: the field and the rule are (it may be personal data)', () => {
    const o = go({ id: '1', at: '2026-01-01T00:00:00Z', kind: 'Иван Петров' });
    expect(o.result === 'ProcessingFailed' && describeFailure(o.failure)).toBe(
      'partition (partition): /kind has no ASCII letter or digit to name an S3 partition with (11 characters, not shown; partition values keep a-z, 0-9, "_" and "-", lower-cased; other characters become "_", and "_" and "-" are trimmed from the ends)',
    );
    const empty = go({ id: '1', at: '2026-01-01T00:00:00Z', kind: '' });
    expect(empty.result === 'ProcessingFailed' && empty.failure.message).toMatch(/^has no ASCII letter or digit to name an S3 partition with \(it is empty;/);
  });

  it('a record over 1,000 KiB once enriched fails with its size', () => {
    const fits = go({ id: '1', at: '2026-01-01T00:00:00Z', kind: 'k', blob: 'x'.repeat(FIREHOSE_MAX_RECORD_BYTES - 1000) });
    expect(fits.result).toBe('Ok');
    const blob = 'x'.repeat(FIREHOSE_MAX_RECORD_BYTES - 150);
    const input = JSON.stringify({ id: '1', at: '2026-01-01T00:00:00Z', kind: 'k', blob });
    expect(Buffer.byteLength(input)).toBeLessThan(FIREHOSE_MAX_RECORD_BYTES);
    const o = go(JSON.parse(input));
    expect(o.result === 'ProcessingFailed' && o.failure).toMatchObject({ category: 'size', rule: 'maxRecordBytes' });
  });

  it('the metadata consumer checks the size of the line with the record\'s Kinesis shard and sequence number, as the transform of a Kinesis-sourced stream writes it', () => {
    const kinesis = { shardId: 'shardId-000000000003', sequenceNumber: '49654218744930171232346185420183853094356263932735209474', arrivalMs: ingest.arrivalMs };
    const data = (n: number) => Buffer.from(JSON.stringify({ id: '1', at: '2026-01-01T00:00:00Z', kind: 'k', blob: 'x'.repeat(n) }));
    // The longest blob whose line fits without the Kinesis fields.
    let [fits, over] = [FIREHOSE_MAX_RECORD_BYTES - 2000, FIREHOSE_MAX_RECORD_BYTES];
    while (over - fits > 1) {
      const mid = (fits + over) >> 1;
      if (analyzeForLake(open, data(mid), ingest).kind === 'valid') fits = mid;
      else over = mid;
    }
    const record = data(fits);
    expect(analyzeForLake(open, record, ingest).kind).toBe('valid');
    // With them it is over the limit: the transform fails it, so the consumer does not record it.
    expect(transformRecord(open, record, { ...ingest, kinesis }, settings)).toMatchObject({ result: 'ProcessingFailed', failure: { category: 'size' } });
    const lake = analyzeForLake(open, record, { ...ingest, kinesis });
    expect(lake.kind === 'failed' && lake.failure).toMatchObject({ category: 'size', rule: 'maxRecordBytes' });
    // The consumer's own reading of an ESM record: the same shard and sequence number reach the check.
    const esmRecord = (sequenceNumber: string) => ({
      eventID: `${kinesis.shardId}:${sequenceNumber}`,
      kinesis: { data: record.toString('base64'), sequenceNumber, approximateArrivalTimestamp: ingest.arrivalMs / 1000, partitionKey: 'k', kinesisSchemaVersion: '1.0' },
    }) as unknown as KinesisStreamRecord;
    expect(eventFacts(open, esmRecord(kinesis.sequenceNumber))).toEqual([{ reason: expect.stringMatching(/^size \(maxRecordBytes\)/) }]);
  });
});

describe('partition keys of a batch that straddles hours', () => {
  const keysOf = (o: TransformOutcome): Readonly<Record<string, string>> => {
    if (o.result !== 'Ok' || !o.partitionKeys) throw new Error(`expected Ok with partition keys, got ${o.result}`);
    return o.partitionKeys;
  };
  const at = (hour: number, type: string): TransformOutcome => run('iot', JSON.stringify({ ...iot, event_type: type, event_time: `2026-11-22T${String(hour).padStart(2, '0')}:40:00Z` }));

  it('records alternating between hours each get their own hour, and records of one partition share one keys object', () => {
    const first = [at(13, 'telemetry'), at(14, 'telemetry'), at(13, 'alert'), at(14, 'alert')].map(keysOf);
    const again = [at(13, 'telemetry'), at(14, 'telemetry'), at(13, 'alert'), at(14, 'alert')].map(keysOf);
    expect(first.map((k) => `${k.event_type} ${k.hour}`)).toEqual(['telemetry 13', 'telemetry 14', 'alert 13', 'alert 14']);
    again.forEach((k, i) => expect(k).toBe(first[i]));
  });

  it('stays right past the number of hours it remembers', () => {
    for (let day = 1; day <= 3; day++) {
      for (let hour = 0; hour < 24; hour++) {
        const time = `2026-11-${String(day).padStart(2, '0')}T${String(hour).padStart(2, '0')}:05:00Z`;
        const keys = keysOf(run('iot', JSON.stringify({ ...iot, event_time: time })));
        expect(keys).toEqual({ event_type: 'telemetry', year: '2026', month: '11', day: String(day).padStart(2, '0'), hour: String(hour).padStart(2, '0') });
      }
    }
  });
});

describe('deeply nested schemas', () => {
  const nested = (depth: number) => {
    let property: object = { type: 'object', additionalProperties: false, properties: { leaf: { type: 'string' } } };
    let value: object = { leaf: 'bottom' };
    for (let i = 0; i < depth; i++) {
      property = { type: 'object', additionalProperties: false, properties: { next: property } };
      value = { next: value };
    }
    const schema = {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      'x-sluice': { version: '1.0.0', idField: 'id', eventTimeField: 'at', partitionFields: ['kind'], pii: {} },
      required: ['id', 'at', 'kind'],
      additionalProperties: false,
      properties: { id: { type: 'string' }, at: { type: 'string', format: 'date-time' }, kind: { type: 'string' }, deep: property },
    };
    const deep: PipelineSchema = { pipeline: 'deep' as PipelineSchema['pipeline'], model: describeSchema('deep', schema), validate: compileValidator(schema) };
    const record = Buffer.from(JSON.stringify({ id: '1', at: '2026-01-01T00:00:00Z', kind: 'k', deep: value }));
    return { deep, value, record };
  };

  it('a record nested 40 levels deep is shaped', () => {
    const { deep, value, record } = nested(40);
    const o = transformRecord(deep, record, ingest, settings);
    if (o.result !== 'Ok') throw new Error(`expected Ok, got ${o.result}`);
    expect((JSON.parse(o.data.toString('utf8')) as { deep: unknown }).deep).toEqual(value);
  });

  it('the transform plan reads the innermost struct a fixed number of times, however deep it sits', () => {
    const reads = (depth: number): number => {
      const { deep, record } = nested(depth);
      let type = deep.model.inputColumns.find((c) => c.jsonKey === 'deep')!.type;
      while (type.kind === 'struct' && type.fields[0].jsonKey === 'next') type = type.fields[0].type;
      if (type.kind !== 'struct') throw new Error('expected the innermost struct');
      const fields = type.fields;
      let count = 0;
      Object.defineProperty(type, 'fields', { get: () => (count++, fields) });
      expect(transformRecord(deep, record, ingest, settings).result).toBe('Ok');
      return count;
    };
    // Planning each struct twice (its fields, and again for its shaper) doubles the reads at every level: 2^depth.
    expect(reads(12)).toBe(reads(2));
  });
});

describe('failure reasons never quote a masked value (they reach log lines and the dead-letter queue\'s reason)', () => {
  it('an unknown currency is not quoted, even where the currency field is a free string with a mask', () => {
    const schema = {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      'x-sluice': { version: '1.0.0', idField: 'id', eventTimeField: 'at', partitionFields: [], pii: { currency: 'hash' }, money: { amountField: 'amount', currencyField: 'currency', minorUnitsField: 'amount_minor' } },
      required: ['id', 'at', 'amount', 'currency'],
      additionalProperties: false,
      properties: { id: { type: 'string' }, at: { type: 'string', format: 'date-time' }, amount: { type: 'number' }, currency: { type: 'string' } },
    };
    const money: PipelineSchema = { pipeline: 'money' as PipelineSchema['pipeline'], model: describeSchema('money', schema), validate: compileValidator(schema) };
    const o = transformRecord(money, Buffer.from(JSON.stringify({ id: '1', at: '2026-01-01T00:00:00Z', amount: 1, currency: 'alice@example.com' })), ingest, settings);
    expect(o.result === 'ProcessingFailed' && describeFailure(o.failure)).toBe('value (minorUnits): /amount has no minor units: its currency, "currency", is not an ISO 4217 code (three capital letters, e.g. "USD")');
    expect(toMinorUnits(1, 'usd', 'ccy')).toEqual({ ok: false, message: 'has no minor units: its currency, "ccy", is not an ISO 4217 code (three capital letters, e.g. "USD")' });
  });

  // Every way a shipped schema's masked string field can fail a record: the reason names the field and the rule only.
  const marker = 'Zq9Leak';
  const bad = [`${marker} not a value of any format`, `${marker}@`, `${marker}${'7'.repeat(300)}`, `${marker}\ud800`];
  const masked = fs.readdirSync('schemas').filter((f) => f.endsWith('.schema.json')).flatMap((f) => {
    const pipeline = f.replace('.schema.json', '');
    const schema = JSON.parse(fs.readFileSync(join('schemas', f), 'utf8')) as { 'x-sluice': { pii: Record<string, string> } };
    return Object.keys(schema['x-sluice'].pii).map((path) => [pipeline, path, schema] as const);
  });
  it.each(masked.map(([pipeline, path]) => [pipeline, path]))('%s %s', (pipeline, path) => {
    const schema = masked.find(([p, q]) => p === pipeline && q === path)![2];
    const record = sampleRecord(schema, createRng(7));
    const parts = path.split('.');
    let parent = record as Record<string, unknown>;
    for (const part of parts.slice(0, -1)) parent = (parent[part] ??= {}) as Record<string, unknown>;
    for (const value of bad) {
      parent[parts[parts.length - 1]] = value;
      const reason = failureReason(pipeline, Buffer.from(JSON.stringify(record)));
      expect(reason).not.toBe('');
      expect(reason).toContain(`/${parts.join('/')}`);
      expect(reason).not.toContain(marker);
    }
  });
});

describe('failureReason', () => {
  it('recomputes the transform reason from raw bytes', () => {
    expect(failureReason('iot', Buffer.from(JSON.stringify({ ...iot, battery_pct: 101 })))).toBe('schema (maximum): /battery_pct must be <= 100');
    expect(failureReason('iot', Buffer.from([0xc3]))).toBe('encoding (utf8): / is not valid UTF-8 (first bad byte at offset 0)');
    expect(failureReason('iot', Buffer.from('{"a":'))).toBe('json (syntax): / is not valid JSON (Unexpected end of JSON input)');
    expect(failureReason('iot', Buffer.from(JSON.stringify(iot)))).toBe('');
    expect(failureReason('iot', Buffer.from('\n'))).toMatch(/^dropped \(empty-record\)/);
  });

  it('caps long issue lists', () => {
    const many = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`extra${i}`, i]));
    const reason = failureReason('iot', Buffer.from(JSON.stringify({ ...iot, ...many })));
    expect(reason).toMatch(/; and 40 more$/);
  });
});
