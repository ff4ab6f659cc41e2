import { createHmac } from 'node:crypto';
import type { FirehoseTransformationEvent, FirehoseTransformationResultRecord } from 'aws-lambda';
import { partitionPath } from '../../lib/schema/layout';
import { describeSchema } from '../../lib/schema/model';
import { schemas } from '../../transforms/shared/generated';
import { createTransformHandler, transformHandlerFromEnv } from '../../transforms/record-transform/handler';
import { b64, capturedTelemetry, fixture, quietTelemetry, unb64 } from './helpers';

const NOW = new Date('2026-11-22T14:00:00.000Z');
const KEY = 'test-pii-key';

function lake(pipeline: string, extra: Partial<Parameters<typeof createTransformHandler>[0]> = {}) {
  return createTransformHandler({ pipeline, destination: 'lake', piiHashKey: KEY, now: () => NOW, ...quietTelemetry(), ...extra });
}

function byId(records: FirehoseTransformationResultRecord[]): Map<string, FirehoseTransformationResultRecord> {
  return new Map(records.map((r) => [r.recordId, r]));
}

describe('record transform: DirectPut batch (app-events)', () => {
  const event = fixture<FirehoseTransformationEvent>('firehose-direct-put.json');

  it('answers every record id exactly once, in order', async () => {
    const out = await lake('app-events')(event);
    expect(out.records.map((r) => r.recordId)).toEqual(event.records.map((r) => r.recordId));
  });

  it('enriches a valid record: Glue column names, UTC timestamps, minor units, sluice struct, partition keys', async () => {
    const out = await lake('app-events')(event);
    const ok = out.records[0];
    expect(ok.result).toBe('Ok');
    const line = unb64(ok.data);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.indexOf('\n')).toBe(line.length - 1);
    const doc = JSON.parse(line);
    expect(doc).toEqual({
      event_id: '6f1c2a9e-4b7d-4c1e-9f2a-3d5b7c9e1a20',
      user_id: 'user-1',
      event_type: 'purchase',
      amount: 12.5,
      amount_minor: 1250, // no currency sent: the schema's defaultCurrency USD
      event_timestamp: '2026-11-22T18:45:12.500Z', // "timestamp" renamed by x-sluice.columns, -05:00 → UTC
      app_version: '3.2.1',
      attributes: { plan: 'pro', __proto__x: 'y' },
      sluice: {
        arrival_time: new Date(event.records[0].approximateArrivalTimestamp).toISOString(),
        processed_at: '2026-11-22T14:00:00.000Z',
        source: 'direct-put',
        schema_version: '1.0.0',
        quality_score: 0.75, // 3 of 4 optional fields present (currency absent)
      },
    });
    expect(doc.sluice).not.toHaveProperty('shard_id');
    expect(ok.metadata).toEqual({ partitionKeys: { event_type: 'purchase', year: '2026', month: '11', day: '22', hour: '18' } });
    const model = describeSchema('app-events', schemas['app-events']);
    expect(partitionPath(model, ok.metadata!.partitionKeys)).toBe('data/app-events/event_type=purchase/year=2026/month=11/day=22/hour=18/');
  });

  it('fails a record missing a required field, keeping its original bytes', async () => {
    const out = await lake('app-events')(event);
    expect(out.records[1]).toEqual({ recordId: event.records[1].recordId, result: 'ProcessingFailed', data: event.records[1].data });
  });

  it('drops a blank record by the documented rule', async () => {
    const out = await lake('app-events')(event);
    expect(out.records[2].result).toBe('Dropped');
    expect(out.records[2].data).toBe(event.records[2].data);
  });

  it('fails a value outside the enum and an event time before 2000', async () => {
    const out = await lake('app-events')(event);
    expect(out.records[3]).toMatchObject({ result: 'ProcessingFailed', data: event.records[3].data });
    expect(out.records[4]).toMatchObject({ result: 'ProcessingFailed', data: event.records[4].data });
    expect(out.records[3].metadata).toBeUndefined();
  });

  it('logs the batch\'s durationMs on the monotonic clock: a wall clock an hour further on at every look adds nothing to it', async () => {
    const realNow = Date.now.bind(Date);
    let looks = 0;
    const wallClock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + 3_600_000 * ++looks);
    const t = capturedTelemetry();
    try {
      await createTransformHandler({ pipeline: 'app-events', destination: 'lake', piiHashKey: KEY, now: () => NOW, logger: t.logger, metrics: t.metrics })(event);
    } finally {
      t.restore();
      wallClock.mockRestore();
    }
    const { durationMs } = t.lines.find((l) => l.message === 'batch transformed') as { durationMs: number };
    expect(durationMs).toBeGreaterThanOrEqual(0);
    expect(durationMs).toBeLessThan(60_000);
  });

  it('logs one line per batch and one per failed record (keyed by record id), and EMF metrics per pipeline', async () => {
    const t = capturedTelemetry();
    try {
      await createTransformHandler({ pipeline: 'app-events', destination: 'lake', piiHashKey: KEY, now: () => NOW, logger: t.logger, metrics: t.metrics })(event);
    } finally {
      t.restore();
    }
    const logs = t.lines.filter((l) => typeof l.message === 'string');
    const failed = logs.filter((l) => l.message === 'record failed');
    expect(failed.map((l) => l.recordId)).toEqual([event.records[1].recordId, event.records[3].recordId, event.records[4].recordId]);
    expect(failed[0]).toMatchObject({ category: 'schema', field: '/user_id', rule: 'required', reason: 'schema (required): /user_id is required' });
    expect(failed[1]).toMatchObject({ field: '/event_type', rule: 'enum' });
    expect(failed[2]).toMatchObject({ category: 'event-time', field: '/timestamp', rule: 'range' });
    expect(String(failed[2].reason)).toContain('1999');
    const batch = logs.filter((l) => l.message === 'batch transformed');
    expect(batch).toHaveLength(1);
    expect(batch[0]).toMatchObject({ records: 5, ok: 1, dropped: 1, failed: 3, failedByReason: { schema: 2, 'event-time': 1 } });
    const emf = t.lines.filter((l) => l._aws !== undefined);
    const main = emf.find((l) => 'RecordsOk' in l)!;
    expect(main).toMatchObject({ RecordsOk: 1, RecordsDropped: 1, RecordsFailed: 3, pipeline: 'app-events', destination: 'lake' });
    const byReason = emf.filter((l) => 'reason' in l);
    expect(Object.fromEntries(byReason.map((l) => [l.reason, l.RecordsFailed]))).toEqual({ schema: 2, 'event-time': 1 });
  });
});

describe('record transform: Kinesis-sourced batch (transactions)', () => {
  const event = fixture<FirehoseTransformationEvent>('firehose-kinesis.json');

  it('masks PII, converts money per currency, and records Kinesis ingest metadata', async () => {
    const out = byId((await lake('transactions')(event)).records);
    const first = out.get(event.records[0].recordId)!;
    expect(first.result).toBe('Ok');
    const doc = JSON.parse(unb64(first.data));
    expect(doc.payment_method).toEqual({ type: 'card', card_brand: 'visa', card_number: '1111' });
    expect(doc.email).toBe(createHmac('sha256', KEY).update('alice@example.com').digest('hex'));
    expect(doc.ip_address).toBe('[redacted]');
    expect(doc.amount_minor).toBe(1999);
    expect(doc.event_time).toBe('2026-11-22T12:45:12.123Z');
    expect(doc.sluice).toEqual({
      arrival_time: new Date(1795874712000).toISOString(), // the stream's arrival, not Firehose's
      processed_at: NOW.toISOString(),
      source: 'kinesis',
      shard_id: 'shardId-000000000000',
      sequence_number: event.records[0].kinesisRecordMetadata!.sequenceNumber,
      schema_version: '1.0.0',
      quality_score: 0.75, // decline_reason absent
    });
    expect(first.metadata!.partitionKeys).toEqual({ event_type: 'capture', year: '2026', month: '11', day: '22', hour: '12' });

    const yen = JSON.parse(unb64(out.get(event.records[1].recordId)!.data));
    expect(yen.amount_minor).toBe(1500); // JPY has no minor unit
    expect(yen.sluice.quality_score).toBe(0);
    expect(yen).not.toHaveProperty('email');
  });

  it('fails schema violations, accepts a leading BOM, and fails truncated JSON', async () => {
    const out = (await lake('transactions')(event)).records;
    expect(out[2]).toEqual({ recordId: event.records[2].recordId, result: 'ProcessingFailed', data: event.records[2].data });
    expect(out[3].result).toBe('Ok');
    expect(JSON.parse(unb64(out[3].data)).event_type).toBe('refund');
    expect(out[4]).toEqual({ recordId: event.records[4].recordId, result: 'ProcessingFailed', data: event.records[4].data });
  });

  it('requires a hash key for a pipeline that hashes PII, and fetches a secret key once', async () => {
    expect(() => createTransformHandler({ pipeline: 'transactions', destination: 'lake', piiHashKey: '' })).toThrow(/hash key is required/);
    const fetch = jest.fn(async () => 'from-secrets-manager');
    const h = createTransformHandler({ pipeline: 'transactions', destination: 'lake', piiHashKey: fetch, now: () => NOW, ...quietTelemetry() });
    const a = await h(event);
    await h(event);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(JSON.parse(unb64(a.records[0].data)).email).toBe(createHmac('sha256', 'from-secrets-manager').update('alice@example.com').digest('hex'));
  });

  it('retries a failed secret fetch on the next invocation instead of caching the failure', async () => {
    let calls = 0;
    const h = createTransformHandler({
      pipeline: 'transactions', destination: 'lake', now: () => NOW, ...quietTelemetry(),
      piiHashKey: async () => {
        calls++;
        if (calls === 1) throw new Error('AccessDeniedException');
        return 'k2';
      },
    });
    await expect(h(event)).rejects.toThrow('AccessDeniedException');
    await expect(h(event)).resolves.toHaveProperty('records');
    expect(calls).toBe(2);
  });
});

describe('record transform: search mode', () => {
  it('emits the enriched document without partition keys', async () => {
    const event = fixture<FirehoseTransformationEvent>('firehose-kinesis.json');
    const out = await createTransformHandler({ pipeline: 'transactions', destination: 'search', piiHashKey: KEY, now: () => NOW, ...quietTelemetry() })(event);
    expect(out.records[0].result).toBe('Ok');
    expect(out.records[0].metadata).toBeUndefined();
    const doc = JSON.parse(unb64(out.records[0].data));
    expect(doc.event_id).toBe('0b9e5b8e-2f6a-4a47-9d53-6d7c3fbd1a11'); // the schema's idField: the stable document id
    expect(doc.sluice.source).toBe('kinesis');
    expect(unb64(out.records[0].data).endsWith('}\n')).toBe(true);
  });
  it('masks the document exactly as the lake row: the same bytes, PII masked', async () => {
    const event = fixture<FirehoseTransformationEvent>('firehose-kinesis.json');
    const make = (destination: 'lake' | 'search') => createTransformHandler({ pipeline: 'transactions', destination, piiHashKey: KEY, now: () => NOW, ...quietTelemetry() })(event);
    const [lake, search] = await Promise.all([make('lake'), make('search')]);
    expect(search.records.map((r) => [r.result, r.data])).toEqual(lake.records.map((r) => [r.result, r.data]));
    const doc = JSON.parse(unb64(search.records[0].data));
    expect(doc.payment_method.card_number).toBe('1111');
    expect(doc.email).toBe(createHmac('sha256', KEY).update('alice@example.com').digest('hex'));
    expect(doc.ip_address).toBe('[redacted]');
    expect(unb64(search.records[0].data)).not.toMatch(/alice|4111111111111111|203\.0\.113/);
  });
});

describe('record transform: limits', () => {
  const base = { event_id: '6f1c2a9e-4b7d-4c1e-9f2a-3d5b7c9e1a20', user_id: 'u', event_type: 'login', timestamp: '2026-11-22T18:45:12Z' };
  const event = (datas: string[], recordId = (i: number) => `r${i}`): FirehoseTransformationEvent => ({
    invocationId: 'i', deliveryStreamArn: 'arn:aws:firehose:us-east-1:1:deliverystream/x', region: 'us-east-1',
    records: datas.map((data, i) => ({ recordId: recordId(i), approximateArrivalTimestamp: 1795874712345, data })),
  });

  // An id the response's JSON escapes, or one with characters UTF-8 takes several bytes for, is longer there than its length.
  it.each([
    ['plain', (i: number) => `r${i}`],
    ['with a quote and a backslash', (i: number) => `r"${i}\\`],
    ['with non-ASCII characters', (i: number) => `ré${i}😀`],
    ['with a control character', (i: number) => `r\t${i}`],
  ])('accounts response bytes exactly (record ids %s): a budget of the response size fits everything, one byte less does not', async (_ids, recordId) => {
    const records = Array.from({ length: 20 }, (_, i) => b64({ ...base, user_id: `user-${i}` }));
    records.push(b64('\n'), b64('{"broken"'));
    const full = await lake('app-events')(event(records, recordId));
    const size = Buffer.byteLength(JSON.stringify(full));
    const exact = await lake('app-events', { maxResponseBytes: size })(event(records, recordId));
    expect(exact).toEqual(full);
    const short = await lake('app-events', { maxResponseBytes: size - 1 })(event(records, recordId));
    expect(short.records.filter((r) => r.result === 'Ok')).toHaveLength(19);
    expect(short.records[19]).toEqual({ recordId: recordId(19), result: 'ProcessingFailed', data: records[19] });
    expect(Buffer.byteLength(JSON.stringify(short))).toBeLessThanOrEqual(size - 1);
  });

  it('keeps the response within the budget: records that no longer fit fail with their original bytes', async () => {
    const records = Array.from({ length: 50 }, (_, i) => b64({ ...base, user_id: `user-${i}` }));
    const full = await lake('app-events')(event(records));
    const fullSize = JSON.stringify(full).length;
    const budget = Math.floor(fullSize * 0.8);
    const t = capturedTelemetry();
    let out;
    try {
      out = await createTransformHandler({ pipeline: 'app-events', destination: 'lake', piiHashKey: KEY, now: () => NOW, maxResponseBytes: budget, logger: t.logger, metrics: t.metrics })(event(records));
    } finally {
      t.restore();
    }
    expect(JSON.stringify(out).length).toBeLessThanOrEqual(budget);
    expect(out.records.map((r) => r.recordId)).toEqual(records.map((_, i) => `r${i}`));
    const failed = out.records.filter((r) => r.result === 'ProcessingFailed');
    expect(failed.length).toBeGreaterThan(0);
    // Accepted in order: once one does not fit, the rest fail too (their growth is the same).
    const firstFailed = out.records.findIndex((r) => r.result === 'ProcessingFailed');
    expect(out.records.slice(firstFailed).every((r) => r.result === 'ProcessingFailed')).toBe(true);
    for (const r of failed) expect(r.data).toBe(records[Number(r.recordId.slice(1))]);
    expect(t.lines.filter((l) => l.message === 'record failed').every((l) => l.category === 'response-size')).toBe(true);
  });
});

describe('record transform: configuration from the environment', () => {
  it('reads SLUICE_PIPELINE, SLUICE_DESTINATION and SLUICE_PII_HASH_KEY', async () => {
    const before = process.env.POWERTOOLS_LOG_LEVEL;
    process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
    try {
      const h = transformHandlerFromEnv({ SLUICE_PIPELINE: 'transactions', SLUICE_DESTINATION: 'search', SLUICE_PII_HASH_KEY: KEY });
      const out = await h(fixture<FirehoseTransformationEvent>('firehose-kinesis.json'));
      expect(out.records[0].result).toBe('Ok');
      expect(out.records[0].metadata).toBeUndefined();
    } finally {
      if (before === undefined) delete process.env.POWERTOOLS_LOG_LEVEL;
      else process.env.POWERTOOLS_LOG_LEVEL = before;
    }
  });

  it('names what is missing or wrong', () => {
    expect(() => transformHandlerFromEnv({})).toThrow(/SLUICE_PIPELINE/);
    expect(() => transformHandlerFromEnv({ SLUICE_PIPELINE: 'iot', SLUICE_DESTINATION: 'warehouse' })).toThrow(/lake or search/);
    expect(() => transformHandlerFromEnv({ SLUICE_PIPELINE: 'transactions' })).toThrow(/SLUICE_PII_HASH_KEY_SECRET_ARN/);
    expect(() => transformHandlerFromEnv({ SLUICE_PIPELINE: 'nope' })).toThrow(/known pipelines: app-events, clickstream, iot, transactions/);
    // iot hashes nothing: no key needed.
    expect(() => transformHandlerFromEnv({ SLUICE_PIPELINE: 'iot' })).not.toThrow();
  });
});
