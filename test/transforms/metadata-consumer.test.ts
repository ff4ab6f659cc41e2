import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';
import { DescribeTableCommand, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { BatchWriteCommand, TransactWriteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import fc from 'fast-check';
import { createMetadataConsumer, createMetadataRecorder, eventFacts, metadataConsumerFromEnv, metadataKeys, metadataTableClient, METADATA_TABLE_KEYS, retryBudgetFor } from '../../transforms/metadata-consumer/handler';
import type { EventFacts } from '../../transforms/metadata-consumer/store';
import { describeSchema } from '../../lib/schema/model';
import { compileValidator } from '../../lib/schema/validator';
import type { PipelineSchema } from '../../transforms/shared/pipeline';
import { b64, capturedTelemetry, fixture, quietTelemetry } from './helpers';
import { faulty, startDynalite, transactional, type LocalDynamo } from './dynamo';
import { aggregatedRecord } from '../kpl-encoder';

const NOW = new Date('2026-11-22T14:00:00.000Z');
const TTL = Math.floor(NOW.getTime() / 1000) + 30 * 86_400;
const event = fixture<KinesisStreamEvent>('kinesis-esm.json');

let local: LocalDynamo;
beforeEach(async () => {
  local = await startDynalite();
});
afterEach(async () => {
  await local.close();
});

function consumer(dynamo: DynamoDBDocumentClient, extra: Partial<Parameters<typeof createMetadataConsumer>[0]> = {}) {
  return createMetadataConsumer({ pipeline: 'iot', tableName: local.tableName, ttlDays: 30, dynamo, now: () => NOW, sleep: async () => {}, ...quietTelemetry(), ...extra });
}

async function counters(): Promise<Record<string, unknown>> {
  const items = await local.scan();
  return Object.fromEntries(items.filter((i) => String(i.pk).startsWith('count#')).map((i) => [`${i.pk} ${i.sk}`, { events: i.events, bytes: i.bytes }]));
}

async function table(): Promise<Array<Record<string, unknown>>> {
  return (await local.scan()).sort((a, b) => `${a.pk}${a.sk}`.localeCompare(`${b.pk}${b.sk}`));
}

const sizes = event.Records.map((r) => Buffer.from(r.kinesis.data, 'base64').length);
const EXPECTED_COUNTERS = {
  'count#iot#telemetry 2026-11-22T13:40': { events: 2, bytes: sizes[0] + sizes[4] },
  'count#iot#alert 2026-11-22T13:41': { events: 1, bytes: sizes[1] },
  'count#iot#telemetry 2026-11-22T13:42': { events: 1, bytes: sizes[2] },
};

/** `records` as one KPL-aggregated Kinesis record, with the first one's sequence number and event id. */
function aggregateOf(records: readonly KinesisStreamRecord[], sequenceNumber = records[0].kinesis.sequenceNumber): KinesisStreamRecord {
  const data = aggregatedRecord(records.map((r) => ({ partitionKey: r.kinesis.partitionKey, data: Buffer.from(r.kinesis.data, 'base64') })));
  return { ...records[0], eventID: `shardId-000000000006:${sequenceNumber}`, kinesis: { ...records[0].kinesis, sequenceNumber, data: data.toString('base64') } };
}

describe.each([
  ['TransactWriteItems (AWS)', (l: LocalDynamo) => transactional(l).client],
  ['batches without transactions (dynalite, the local twin)', (l: LocalDynamo) => l.client],
])('metadata consumer with %s', (_name, clientFor) => {
  it('writes event items, per-minute counters and last-seen items', async () => {
    const out = await consumer(clientFor(local))(event);
    expect(out).toEqual({ batchItemFailures: [] });
    expect(await counters()).toEqual(EXPECTED_COUNTERS);
    const items = await table();
    const first = items.find((i) => i.pk === 'event#iot#5a4d0a3d-7e1f-4f9c-8ca8-000000000000');
    expect(first).toEqual({
      pk: 'event#iot#5a4d0a3d-7e1f-4f9c-8ca8-000000000000',
      sk: 'event',
      pipeline: 'iot',
      event_id: '5a4d0a3d-7e1f-4f9c-8ca8-000000000000',
      event_type: 'telemetry',
      event_time: '2026-11-22T13:40:00.000Z',
      arrival_time: new Date(Math.round(event.Records[0].kinesis.approximateArrivalTimestamp * 1000)).toISOString(),
      shard_id: 'shardId-000000000006',
      sequence_number: event.Records[0].kinesis.sequenceNumber,
      size_bytes: sizes[0],
      partition_path: 'data/iot/event_type=telemetry/year=2026/month=11/day=22/hour=13/',
      entity: 'dev-0000a1b2',
      written_at: NOW.toISOString(),
      ttl: TTL,
    });
    expect(items.filter((i) => String(i.pk).startsWith('event#'))).toHaveLength(4);
    const entity = items.find((i) => i.pk === 'entity#iot#dev-0000a1b2');
    expect(entity).toMatchObject({ sk: 'last-seen', last_event_type: 'alert', last_event_time: '2026-11-22T13:41:01.000Z', last_event_id: '5a4d0a3d-7e1f-4f9c-8ca8-000000000001', ttl: TTL });
    expect(items.find((i) => i.pk === 'entity#iot#dev-00c0ffee')).toMatchObject({ last_event_time: '2026-11-22T13:42:02.000Z' });
    for (const i of items) expect(i[METADATA_TABLE_KEYS.ttlAttribute]).toBe(TTL);
  });

  it('replaying the same batch (and overlapping ones) leaves every counter unchanged', async () => {
    const handle = consumer(clientFor(local));
    await handle(event);
    const before = await table();
    const t = capturedTelemetry();
    try {
      const again = await createMetadataConsumer({ pipeline: 'iot', tableName: local.tableName, ttlDays: 30, dynamo: clientFor(local), now: () => NOW, sleep: async () => {}, logger: t.logger, metrics: t.metrics })(event);
      expect(again).toEqual({ batchItemFailures: [] });
    } finally {
      t.restore();
    }
    expect(t.lines.find((l) => l.message === 'batch recorded')).toMatchObject({ recorded: 0, duplicates: 4, malformed: 1, failed: 0 });
    await handle({ Records: event.Records.slice(2) });
    await handle({ Records: [event.Records[4], event.Records[0]] });
    expect(await counters()).toEqual(EXPECTED_COUNTERS);
    expect(await table()).toEqual(before);
  });

  it('de-aggregates a KPL-aggregated record: each user record is written as a plain record is, and replaying the batch twice changes nothing', async () => {
    const aggregated: KinesisStreamEvent = { Records: [aggregateOf(event.Records)] };
    const sequenceNumber = event.Records[0].kinesis.sequenceNumber;
    const runLogged = async (batch: KinesisStreamEvent) => {
      const t = capturedTelemetry();
      try {
        const out = await createMetadataConsumer({ pipeline: 'iot', tableName: local.tableName, ttlDays: 30, dynamo: clientFor(local), now: () => NOW, sleep: async () => {}, logger: t.logger, metrics: t.metrics })(batch);
        return { out, lines: t.lines };
      } finally {
        t.restore();
      }
    };
    const first = await runLogged(aggregated);
    expect(first.out).toEqual({ batchItemFailures: [] });
    // The fixture's 4 valid events and its malformed one (index 3), counted in user records.
    expect(first.lines.find((l) => l.message === 'batch recorded')).toMatchObject({ records: 1, userRecords: 5, recorded: 4, duplicates: 0, malformed: 1, failed: 0 });
    expect(first.lines.filter((l) => l.message === 'malformed record skipped').map((l) => [l.sequenceNumber, l.subsequenceNumber])).toEqual([[sequenceNumber, 3]]);
    expect(await counters()).toEqual(EXPECTED_COUNTERS);
    const items = await table();
    const events = items.filter((i) => String(i.pk).startsWith('event#'));
    // Each user record's own size; all share the aggregate's sequence number, as their lake rows do.
    expect(events.map((i) => [i.event_id, i.size_bytes, i.sequence_number])).toEqual([0, 1, 2, 4].map((n) => [
      JSON.parse(Buffer.from(event.Records[n].kinesis.data, 'base64').toString('utf8')).event_id, sizes[n], sequenceNumber,
    ]));
    expect(items.find((i) => i.pk === 'entity#iot#dev-0000a1b2')).toMatchObject({ last_event_type: 'alert', last_event_time: '2026-11-22T13:41:01.000Z' });

    for (let replay = 0; replay < 2; replay++) {
      const again = await runLogged(aggregated);
      expect(again.out).toEqual({ batchItemFailures: [] });
      expect(again.lines.find((l) => l.message === 'batch recorded')).toMatchObject({ records: 1, userRecords: 5, recorded: 0, duplicates: 4, malformed: 1 });
      expect(await counters()).toEqual(EXPECTED_COUNTERS);
      expect(await table()).toEqual(items);
    }
    // The same events sent plain are the same events.
    await consumer(clientFor(local))(event);
    expect(await counters()).toEqual(EXPECTED_COUNTERS);
  });

  it('counts an event id repeated inside one batch once', async () => {
    const out = await consumer(clientFor(local))({ Records: [event.Records[0], { ...event.Records[0], kinesis: { ...event.Records[0].kinesis, sequenceNumber: '1' } }] });
    expect(out.batchItemFailures).toEqual([]);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 1, bytes: sizes[0] } });
  });

  it('an older batch replayed later does not move last-seen back', async () => {
    const handle = consumer(clientFor(local));
    await handle({ Records: [event.Records[1]] });
    await handle({ Records: [event.Records[0]] });
    const entity = (await table()).find((i) => i.pk === 'entity#iot#dev-0000a1b2');
    expect(entity).toMatchObject({ last_event_type: 'alert', last_event_time: '2026-11-22T13:41:01.000Z' });
  });

  it('two events of one entity at the same event time: last-seen keeps the larger event id, in either order and after a replay', async () => {
    const handle = consumer(clientFor(local));
    // The fixture's records 0 and 4: one device, one event time, event ids ...000 and ...003.
    const like = (r: KinesisStreamRecord, eventId: string, deviceId: string): KinesisStreamRecord => {
      const data = { ...JSON.parse(Buffer.from(r.kinesis.data, 'base64').toString('utf8')) as object, event_id: eventId, device_id: deviceId };
      return { ...r, kinesis: { ...r.kinesis, data: b64(JSON.stringify(data)) } };
    };
    const smaller = event.Records[0];
    const larger = event.Records[4];
    for (const records of [[smaller], [larger], [smaller]]) expect((await handle({ Records: records })).batchItemFailures).toEqual([]);
    const [otherSmaller, otherLarger] = ['5a4d0a3d-7e1f-4f9c-8ca8-000000000010', '5a4d0a3d-7e1f-4f9c-8ca8-000000000013'].map((id, i) => like(event.Records[i === 0 ? 0 : 4], id, 'dev-0000beef'));
    for (const records of [[otherLarger], [otherSmaller]]) expect((await handle({ Records: records })).batchItemFailures).toEqual([]);

    const items = await table();
    expect(items.find((i) => i.pk === 'entity#iot#dev-0000a1b2')).toMatchObject({ last_event_time: '2026-11-22T13:40:00.000Z', last_event_id: '5a4d0a3d-7e1f-4f9c-8ca8-000000000003' });
    expect(items.find((i) => i.pk === 'entity#iot#dev-0000beef')).toMatchObject({ last_event_time: '2026-11-22T13:40:00.000Z', last_event_id: '5a4d0a3d-7e1f-4f9c-8ca8-000000000013' });
  });
});

/** `count` iot records like the fixture's first, with their own event ids, devices and sequence numbers. */
function iotBatch(count: number, { devices = count, minute = 40, firstId = 0 } = {}): KinesisStreamEvent {
  const template = event.Records[0];
  return {
    Records: Array.from({ length: count }, (_, i) => {
      const id = `5a4d0a3d-7e1f-4f9c-8ca8-${String(100_000 + firstId + i).padStart(12, '0')}`;
      const data = { event_id: id, event_type: 'telemetry', event_time: `2026-11-22T13:${minute}:${String(i % 60).padStart(2, '0')}Z`, device_id: `dev-${String(i % devices).padStart(8, '0')}`, temperature_c: 20, battery_pct: 50 };
      return { ...template, kinesis: { ...template.kinesis, sequenceNumber: String(10_000 + firstId + i), data: b64(JSON.stringify(data)) } };
    }),
  };
}

describe('metadata consumer without transactions (dynalite, the local twin)', () => {
  /** The plain client, counting calls by command and optionally answering some itself. */
  function counted(answer?: (command: { constructor: { name: string }; input: unknown }, call: number) => unknown): { client: DynamoDBDocumentClient; calls: Record<string, number> } {
    const calls: Record<string, number> = {};
    const client = {
      send: async (command: { constructor: { name: string }; input: unknown }) => {
        const name = command.constructor.name;
        calls[name] = (calls[name] ?? 0) + 1;
        const own = answer?.(command, calls[name]);
        return own === undefined ? local.client.send(command as never) : own;
      },
    } as unknown as DynamoDBDocumentClient;
    return { client, calls };
  }

  it('writes 200 events in batches: a few dozen calls, not two per event, and every count once', async () => {
    const { client, calls } = counted();
    const out = await consumer(client)(iotBatch(200));
    expect(out.batchItemFailures).toEqual([]);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 200, bytes: expect.any(Number) } });
    // 4 chunks of 50: per chunk one read, two writes and one counter update; last-seen: 2 reads, 8 writes; one refused transaction.
    expect(calls).toEqual({ TransactWriteCommand: 1, BatchGetCommand: 6, BatchWriteCommand: 16, UpdateCommand: 4 });
    // The next invocation with that client does not try a transaction again.
    await consumer(client)(iotBatch(5));
    expect(calls.TransactWriteCommand).toBe(1);
  });

  it('consumers of two shards writing the same events at once count each once, and last-seen keeps the newest', async () => {
    const handle = consumer(local.client);
    const early = iotBatch(120, { devices: 7, minute: 40 });
    const late = iotBatch(120, { devices: 7, minute: 41 });
    // Same event ids in both batches (a producer's duplicates on two shards): the first write of each counts.
    const results = await Promise.all([handle(early), handle(late), handle(early)]);
    for (const r of results) expect(r.batchItemFailures).toEqual([]);
    const all = await counters();
    const total = Object.values(all).reduce<number>((n, c) => n + (c as { events: number }).events, 0);
    expect(total).toBe(120);
    const entities = (await table()).filter((i) => String(i.pk).startsWith('entity#'));
    expect(entities).toHaveLength(7);
    // Every device's last-seen is its newest event of all three batches (duplicates by id update it too, as in AWS).
    const seen = [...early.Records, ...late.Records].map((r) => JSON.parse(Buffer.from(r.kinesis.data, 'base64').toString('utf8')) as { device_id: string; event_time: string });
    for (const entity of entities) {
      const newest = seen.filter((e) => e.device_id === entity.entity).map((e) => e.event_time.replace('Z', '.000Z')).sort().at(-1);
      expect(entity.last_event_time).toBe(newest);
    }
  });

  it('retries unprocessed items; when writes give up, the items written are counted and a redelivery completes exactly once', async () => {
    const batch = iotBatch(60);
    // The first BatchWriteItem takes 10 of its 25 items; then every BatchWriteItem is throttled.
    const { client } = counted((command, call) => {
      if (command.constructor.name !== 'BatchWriteCommand') return undefined;
      if (call > 1) throw Object.assign(new Error('Rate exceeded'), { name: 'ProvisionedThroughputExceededException' });
      const input = command.input as { RequestItems: Record<string, Array<{ PutRequest: { Item: Record<string, unknown> } }>> };
      const [table, requests] = Object.entries(input.RequestItems)[0];
      return local.client.send(new BatchWriteCommand({ RequestItems: { [table]: requests.slice(0, 10) } })).then(() => ({ UnprocessedItems: { [table]: requests.slice(10) } }));
    });
    const out = await consumer(client)(batch);
    expect(out.batchItemFailures.length).toBeGreaterThan(0);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 10, bytes: expect.any(Number) } });

    const healthy = counted((command, call) => {
      // Unprocessed items once, then everything goes through.
      if (command.constructor.name !== 'BatchWriteCommand' || call > 1) return undefined;
      const input = command.input as { RequestItems: Record<string, unknown[]> };
      const [table, requests] = Object.entries(input.RequestItems)[0];
      return { UnprocessedItems: { [table]: requests } };
    });
    const retry = await consumer(healthy.client)(batch);
    expect(retry.batchItemFailures).toEqual([]);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 60, bytes: expect.any(Number) } });
    await consumer(local.client)(batch);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 60, bytes: expect.any(Number) } });
  });

  it('a batch write that fails after it was applied is read back, and what it wrote is counted', async () => {
    const batch = iotBatch(30);
    // Every BatchWriteItem is applied, then its answer is lost (a timeout): the consumer cannot tell from the call.
    const { client } = counted((command) => {
      if (command.constructor.name !== 'BatchWriteCommand') return undefined;
      return local.client.send(command as never).then(() => {
        throw Object.assign(new Error('Request timed out'), { name: 'TimeoutError' });
      });
    });
    const out = await consumer(client)(batch);
    expect(out.batchItemFailures.length).toBeGreaterThan(0);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 30, bytes: expect.any(Number) } });
    // The redelivery finds every event recorded and counts nothing twice.
    expect((await consumer(local.client)(batch)).batchItemFailures).toEqual([]);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 30, bytes: expect.any(Number) } });
  });

  it('a counter increment that meets a refused connection is tried again, not lost', async () => {
    let refusals = 2;
    const { client, calls } = counted((command) => {
      if (command.constructor.name !== 'UpdateCommand' || refusals === 0) return undefined;
      refusals--;
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4569'), { code: 'ECONNREFUSED' });
    });
    const out = await consumer(client)(iotBatch(10));
    expect(out.batchItemFailures).toEqual([]);
    expect(refusals).toBe(0);
    expect(calls.UpdateCommand).toBe(3);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 10, bytes: expect.any(Number) } });
  });

  it.each([
    ['a timeout', () => Object.assign(new Error('Request timed out'), { name: 'TimeoutError' })],
    ['a reset connection', () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })],
    ['a server error', () => Object.assign(new Error('Internal error'), { name: 'InternalServerError', $fault: 'server' })],
  ])('a counter increment applied and then answered by %s is not added again', async (_what, lostAnswer) => {
    const { client, calls } = counted((command, call) => {
      if (command.constructor.name !== 'UpdateCommand' || call > 1) return undefined;
      // Applied, then the answer is lost on its way back: the consumer cannot tell from the call.
      return local.client.send(command as never).then(() => {
        throw lostAnswer();
      });
    });
    const batch = iotBatch(10);
    const out = await consumer(client)(batch);
    expect(out.batchItemFailures).toEqual([]);
    // Sent again, and refused by its condition: the first was applied.
    expect(calls.UpdateCommand).toBe(2);
    const bytes = batch.Records.reduce((n, r) => n + Buffer.from(r.kinesis.data, 'base64').length, 0);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 10, bytes } });
    // A second chunk for the same minute still adds (the check is per chunk, not per counter).
    await consumer(local.client)(iotBatch(5, { firstId: 100 }));
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 15, bytes: expect.any(Number) } });
  });

  it.each([
    ['an error not worth retrying', () => Object.assign(new Error('User is not authorized to perform dynamodb:UpdateItem'), { name: 'AccessDeniedException', $fault: 'client' }), 1],
    ['throttling past its retries', () => Object.assign(new Error('Rate exceeded'), { name: 'ProvisionedThroughputExceededException' }), 10],
  ])('a counter increment that fails with %s takes back the events it did not count: reported, and their redelivery counts them once', async (_what, failure, attempts) => {
    let failing = true;
    const { client, calls } = counted((command) => {
      if (command.constructor.name !== 'UpdateCommand' || !failing) return undefined;
      throw failure();
    });
    const batch = iotBatch(10);
    const first = await consumer(client)(batch);
    expect(first.batchItemFailures).toHaveLength(10);
    // Given up within its attempts (MAX_WRITE_ATTEMPTS, 10), not waited out for ever.
    expect(calls.UpdateCommand).toBe(attempts);
    expect(await counters()).toEqual({});
    expect((await table()).filter((i) => String(i.pk).startsWith('event#'))).toEqual([]);
    failing = false;
    expect((await consumer(client)(batch)).batchItemFailures).toEqual([]);
    const bytes = batch.Records.reduce((n, r) => n + Buffer.from(r.kinesis.data, 'base64').length, 0);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 10, bytes } });
    await consumer(local.client)(batch);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 10, bytes } });
  });

  it('a counter increment applied and then given up on keeps its events: its token on the counter says it was counted', async () => {
    const { client } = counted((command, call) => {
      if (command.constructor.name !== 'UpdateCommand') return undefined;
      // The first attempt is applied and its answer lost; every later one is throttled until the retries run out.
      if (call === 1) return local.client.send(command as never).then(() => { throw Object.assign(new Error('Request timed out'), { name: 'TimeoutError' }); });
      throw Object.assign(new Error('Rate exceeded'), { name: 'ProvisionedThroughputExceededException' });
    });
    const batch = iotBatch(10);
    expect((await consumer(client)(batch)).batchItemFailures).toHaveLength(10);
    expect((await table()).filter((i) => String(i.pk).startsWith('event#'))).toHaveLength(10);
    expect((await consumer(local.client)(batch)).batchItemFailures).toEqual([]);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 10, bytes: expect.any(Number) } });
  });

  it('an endpoint that stops answering between the event items and the counters is waited out, past MAX_WRITE_ATTEMPTS: counted once, nothing reported', async () => {
    let refusals = 15;
    const { client, calls } = counted((command) => {
      if (command.constructor.name !== 'UpdateCommand' || refusals === 0) return undefined;
      refusals--;
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4569'), { code: 'ECONNREFUSED' });
    });
    const batch = iotBatch(10);
    expect((await consumer(client)(batch)).batchItemFailures).toEqual([]);
    expect(calls.UpdateCommand).toBe(16);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 10, bytes: expect.any(Number) } });
  });

  it('only the events of the counter that failed are taken back: the other counters\' events stay counted', async () => {
    const early = iotBatch(6, { minute: 40 });
    const late = iotBatch(4, { minute: 41, firstId: 100 });
    const batch = { Records: [...early.Records, ...late.Records] };
    let failing = true;
    const { client } = counted((command) => {
      const key = JSON.stringify((command.input as { Key?: unknown }).Key ?? '');
      if (command.constructor.name !== 'UpdateCommand' || !failing || !key.includes('13:41')) return undefined;
      throw Object.assign(new Error('not authorized'), { name: 'AccessDeniedException', $fault: 'client' });
    });
    expect((await consumer(client)(batch)).batchItemFailures.length).toBeGreaterThan(0);
    expect(await counters()).toEqual({ 'count#iot#telemetry 2026-11-22T13:40': { events: 6, bytes: expect.any(Number) } });
    expect((await table()).filter((i) => String(i.pk).startsWith('event#'))).toHaveLength(6);
    failing = false;
    expect((await consumer(client)(batch)).batchItemFailures).toEqual([]);
    expect(await counters()).toEqual({
      'count#iot#telemetry 2026-11-22T13:40': { events: 6, bytes: expect.any(Number) },
      'count#iot#telemetry 2026-11-22T13:41': { events: 4, bytes: expect.any(Number) },
    });
  });

  it('when taking the events back fails too, the failure says their counts are lost', async () => {
    const { client } = counted((command) => {
      if (command.constructor.name === 'UpdateCommand') throw Object.assign(new Error('not authorized'), { name: 'AccessDeniedException', $fault: 'client' });
      const deletes = command.constructor.name === 'BatchWriteCommand'
        && JSON.stringify((command.input as { RequestItems: unknown }).RequestItems).includes('"DeleteRequest"');
      if (deletes) throw Object.assign(new Error('delete refused'), { name: 'AccessDeniedException', $fault: 'client' });
      return undefined;
    });
    const t = capturedTelemetry();
    let out: Awaited<ReturnType<ReturnType<typeof consumer>>>;
    try {
      out = await consumer(client, { logger: t.logger, metrics: t.metrics })(iotBatch(3));
    } finally {
      t.restore();
    }
    expect(out.batchItemFailures).toHaveLength(3);
    expect(JSON.stringify(t.lines)).toContain('taking back the event items it did not count failed too (delete refused): those events\' counts are lost');
  });
});

describe('metadata consumer: failures', () => {
  it('skips and logs malformed records (counted, never reported for retry)', async () => {
    // Malformed user records of an aggregate are skipped one by one; an aggregate of none holds nothing to skip.
    const kpl = { ...event.Records[0], kinesis: { ...event.Records[0].kinesis, sequenceNumber: '9', data: aggregatedRecord([{ partitionKey: 'd', data: '{"event_id":"x"}' }, { partitionKey: 'd', data: '{"cut' }]).toString('base64') } };
    const emptyKpl = { ...event.Records[0], kinesis: { ...event.Records[0].kinesis, sequenceNumber: '11', data: aggregatedRecord([]).toString('base64') } };
    // The KPL's magic with no valid aggregate after it is a plain record, refused for what it is.
    const magicOnly = { ...event.Records[0], kinesis: { ...event.Records[0].kinesis, sequenceNumber: '10', data: Buffer.from([0xf3, 0x89, 0x9a, 0xc2, 1, 2]).toString('base64') } };
    const invalid = { ...event.Records[0], kinesis: { ...event.Records[0].kinesis, sequenceNumber: '8', data: b64({ event_id: 'x' }) } };
    const t = capturedTelemetry();
    let out;
    try {
      out = await createMetadataConsumer({ pipeline: 'iot', tableName: local.tableName, ttlDays: 30, dynamo: transactional(local).client, now: () => NOW, logger: t.logger, metrics: t.metrics })({
        Records: [event.Records[3], kpl, invalid, magicOnly, emptyKpl],
      });
    } finally {
      t.restore();
    }
    expect(out).toEqual({ batchItemFailures: [] });
    const skipped = t.lines.filter((l) => l.message === 'malformed record skipped');
    expect(skipped.map((l) => [l.sequenceNumber, l.subsequenceNumber])).toEqual([
      [event.Records[3].kinesis.sequenceNumber, undefined], ['9', 0], ['9', 1], ['8', undefined], ['10', undefined],
    ]);
    expect(String(skipped[0].reason)).toMatch(/^json \(syntax\)/);
    expect(String(skipped[1].reason)).toMatch(/^schema \(required\): \/event_type is required; .*; \/event_id must match format "uuid"$/);
    expect(String(skipped[2].reason)).toMatch(/^json \(syntax\)/);
    expect(String(skipped[3].reason)).toMatch(/^schema \(required\): \/event_type is required; .*; \/event_id must match format "uuid"$/);
    expect(String(skipped[4].reason)).toMatch(/^encoding \(utf8\)/);
    expect(t.lines.filter((l) => l.message === 'KPL-aggregated record holds no user records').map((l) => l.sequenceNumber)).toEqual(['11']);
    expect(t.lines.find((l) => l.message === 'batch recorded')).toMatchObject({ records: 5, userRecords: 5, malformed: 5, recorded: 0 });
    expect(t.lines.find((l) => 'MalformedRecords' in l)).toMatchObject({ MalformedRecords: 5, EventsRecorded: 0, pipeline: 'iot' });
    expect(await local.scan()).toEqual([]);
  });

  it('the recorder tallies each Kinesis record: its user records and how many were skipped, in batch order', async () => {
    const kpl = { ...event.Records[0], kinesis: { ...event.Records[0].kinesis, sequenceNumber: '9', data: aggregatedRecord([event.Records[0], event.Records[3], event.Records[1]].map((r) => ({ partitionKey: 'd', data: Buffer.from(r.kinesis.data, 'base64') }))).toString('base64') } };
    const emptyKpl = { ...event.Records[0], kinesis: { ...event.Records[0].kinesis, sequenceNumber: '11', data: aggregatedRecord([]).toString('base64') } };
    const record = createMetadataRecorder({ pipeline: 'iot', tableName: local.tableName, ttlDays: 30, dynamo: local.client, now: () => NOW, sleep: async () => {}, ...quietTelemetry() });
    const out = await record({ Records: [event.Records[3], kpl, emptyKpl, event.Records[2]] });
    expect(out).toEqual({
      batchItemFailures: [],
      tallies: [{ userRecords: 1, skipped: 1 }, { userRecords: 3, skipped: 1 }, { userRecords: 0, skipped: 0 }, { userRecords: 1, skipped: 0 }],
    });
  });

  it('skips a record the lake transform fails though the schema accepts it: the table records the events the lake gets', async () => {
    // An unpaired surrogate, which UTF-8 (and so Parquet) cannot hold: valid JSON and valid by the schema, failed by the transform.
    const record = JSON.parse(Buffer.from(event.Records[0].kinesis.data, 'base64').toString('utf8')) as Record<string, unknown>;
    const text = JSON.stringify({ ...record, device_model: 'X' }).replace('"X"', '"\\ud800"');
    const lone = { ...event.Records[0], kinesis: { ...event.Records[0].kinesis, sequenceNumber: '7', data: Buffer.from(text).toString('base64') } };
    const t = capturedTelemetry();
    let out;
    try {
      out = await createMetadataConsumer({ pipeline: 'iot', tableName: local.tableName, ttlDays: 30, dynamo: transactional(local).client, now: () => NOW, logger: t.logger, metrics: t.metrics })({ Records: [lone] });
    } finally {
      t.restore();
    }
    expect(out).toEqual({ batchItemFailures: [] });
    const skipped = t.lines.filter((l) => l.message === 'malformed record skipped');
    expect(skipped.map((l) => String(l.reason))).toEqual(['encoding (utf16): /device_model holds an unpaired surrogate (\\uD800–\\uDFFF), which UTF-8 cannot encode']);
    expect(await local.scan()).toEqual([]);
  });

  it('retries throttled and conflicting writes with backoff, then succeeds', async () => {
    const { client } = transactional(local, { throttleNext: 2, conflictNext: 2 });
    const out = await consumer(client)(event);
    expect(out.batchItemFailures).toEqual([]);
    expect(await counters()).toEqual(EXPECTED_COUNTERS);
  });

  it('reports the failed chunk and every later record when throttling outlasts the retries; the retry completes exactly once', async () => {
    const healthy = transactional(local).client;
    let transactions = 0;
    // Two transactions succeed, then DynamoDB throttles everything.
    const flaky = {
      send: async (command: { constructor: { name: string } }) => {
        if (command.constructor.name === 'TransactWriteCommand' && ++transactions > 2) {
          const err = new Error('Rate exceeded');
          err.name = 'ProvisionedThroughputExceededException';
          throw err;
        }
        return healthy.send(command as never);
      },
    } as unknown as DynamoDBDocumentClient;
    const out = await consumer(flaky, { eventsPerTransaction: 1 })(event);
    const valid = [0, 1, 2, 4].map((i) => event.Records[i].kinesis.sequenceNumber);
    expect(out.batchItemFailures).toEqual([{ itemIdentifier: valid[2] }, { itemIdentifier: valid[3] }]);

    // Lambda resumes at the lowest reported sequence number.
    const resumeAt = event.Records.findIndex((r) => r.kinesis.sequenceNumber === out.batchItemFailures[0].itemIdentifier);
    const retry = await consumer(healthy, { eventsPerTransaction: 1 })({ Records: event.Records.slice(resumeAt) });
    expect(retry.batchItemFailures).toEqual([]);
    // And an at-least-once redelivery of the whole batch changes nothing.
    await consumer(healthy)(event);
    expect(await counters()).toEqual(EXPECTED_COUNTERS);
  });

  it('a user record that fails to write reports its whole KPL-aggregated record; the retry writes the rest and dedups its written siblings', async () => {
    const healthy = transactional(local).client;
    let transactions = 0;
    // Two transactions succeed (the plain record, the aggregate's first user record), then DynamoDB throttles everything.
    const flaky = {
      send: async (command: { constructor: { name: string } }) => {
        if (command.constructor.name === 'TransactWriteCommand' && ++transactions > 2) {
          throw Object.assign(new Error('Rate exceeded'), { name: 'ProvisionedThroughputExceededException' });
        }
        return healthy.send(command as never);
      },
    } as unknown as DynamoDBDocumentClient;
    const aggregate = aggregateOf([event.Records[1], event.Records[2]]);
    const batch: KinesisStreamEvent = { Records: [event.Records[0], aggregate, event.Records[4]] };
    const out = await consumer(flaky, { eventsPerTransaction: 1 })(batch);
    expect(out.batchItemFailures).toEqual([{ itemIdentifier: aggregate.kinesis.sequenceNumber }, { itemIdentifier: event.Records[4].kinesis.sequenceNumber }]);
    expect(await counters()).toEqual({
      'count#iot#telemetry 2026-11-22T13:40': { events: 1, bytes: sizes[0] },
      'count#iot#alert 2026-11-22T13:41': { events: 1, bytes: sizes[1] },
    });

    // Lambda resumes at the aggregate: its first user record is a duplicate now, the rest are written once.
    const t = capturedTelemetry();
    try {
      const retry = await createMetadataConsumer({ pipeline: 'iot', tableName: local.tableName, ttlDays: 30, dynamo: healthy, now: () => NOW, logger: t.logger, metrics: t.metrics })({ Records: batch.Records.slice(1) });
      expect(retry.batchItemFailures).toEqual([]);
    } finally {
      t.restore();
    }
    expect(t.lines.find((l) => l.message === 'batch recorded')).toMatchObject({ records: 2, userRecords: 3, recorded: 2, duplicates: 1, malformed: 0 });
    expect(await counters()).toEqual(EXPECTED_COUNTERS);
    await consumer(healthy)(batch);
    expect(await counters()).toEqual(EXPECTED_COUNTERS);
  });

  it('reports every valid record when DynamoDB is unavailable for the whole invocation', async () => {
    const out = await consumer(faulty(local, { throttleAlways: true }))(event);
    expect(out.batchItemFailures.map((f) => f.itemIdentifier)).toEqual([0, 1, 2, 4].map((i) => event.Records[i].kinesis.sequenceNumber));
  });

  it('retries within a third of the time the invocation has left, then reports the batch', async () => {
    const retriesWith = async (context?: { getRemainingTimeInMillis(): number }): Promise<{ failed: number; retries: number }> => {
      const t = capturedTelemetry();
      try {
        const out = await createMetadataConsumer({
          pipeline: 'iot', tableName: local.tableName, ttlDays: 30, dynamo: faulty(local, { throttleAlways: true }), now: () => NOW, sleep: async () => {},
          logger: t.logger, metrics: t.metrics,
        })(event, context);
        const line = t.lines.find((l) => l.message === 'batch recorded') as { retries: number };
        return { failed: out.batchItemFailures.length, retries: line.retries };
      } finally {
        t.restore();
      }
    };
    // A 20 s budget lets the store back off several times; 300 ms left (a 100 ms budget) stops it before the first long wait.
    const unbounded = await retriesWith();
    const nearlyOut = await retriesWith({ getRemainingTimeInMillis: () => 300 });
    expect(unbounded.failed).toBe(4);
    expect(nearlyOut.failed).toBe(4);
    expect(nearlyOut.retries).toBeLessThan(unbounded.retries);
    expect(retryBudgetFor(20_000)).toBe(20_000);
    expect(retryBudgetFor(20_000, { getRemainingTimeInMillis: () => 15_000 })).toBe(5_000);
    expect(retryBudgetFor(20_000, { getRemainingTimeInMillis: () => 900_000 })).toBe(20_000);
    expect(retryBudgetFor(20_000, { getRemainingTimeInMillis: () => -5 })).toBe(0);
  });

  it('retries until a deadline on the monotonic clock: the wall clock set forward or back an hour while it backs off neither ends nor stretches them', async () => {
    const realNow = Date.now.bind(Date);
    // The same backoff every time (0.9 of each ceiling: 45, 90, 180, 360, 720, 1,440 ms, …), so runs compare retry for retry.
    const random = jest.spyOn(Math, 'random').mockReturnValue(0.9);
    let jump = 0;
    const wallClock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + jump);
    const retriesWith = async (jumpMs: number, context?: { getRemainingTimeInMillis(): number }): Promise<number> => {
      jump = 0;
      const t = capturedTelemetry();
      try {
        await createMetadataConsumer({
          pipeline: 'iot', tableName: local.tableName, ttlDays: 30, dynamo: faulty(local, { throttleAlways: true }), now: () => NOW,
          // The wall clock jumps at the first backoff, once the deadline is set.
          sleep: async () => {
            jump = jumpMs;
          },
          logger: t.logger, metrics: t.metrics,
        })(event, context);
        return (t.lines.find((l) => l.message === 'batch recorded') as { retries: number }).retries;
      } finally {
        t.restore();
      }
    };
    try {
      // 20 s to retry in: set forward an hour, the deadline had passed after the first backoff.
      expect(await retriesWith(3_600_000)).toBe(await retriesWith(0));
      // 1 s to retry in (3 s left): set back an hour, the backoffs past it went on to the attempts' limit.
      const withinASecond = await retriesWith(0, { getRemainingTimeInMillis: () => 3_000 });
      expect(withinASecond).toBeLessThan(await retriesWith(0));
      expect(await retriesWith(-3_600_000, { getRemainingTimeInMillis: () => 3_000 })).toBe(withinASecond);
    } finally {
      wallClock.mockRestore();
      random.mockRestore();
    }
  });

  it('is configured from the environment', () => {
    expect(() => metadataConsumerFromEnv({})).toThrow(/SLUICE_PIPELINE/);
    expect(() => metadataConsumerFromEnv({ SLUICE_PIPELINE: 'iot' })).toThrow(/SLUICE_METADATA_TABLE/);
    expect(() => metadataConsumerFromEnv({ SLUICE_PIPELINE: 'iot', SLUICE_METADATA_TABLE: 't', SLUICE_METADATA_TTL_DAYS: 'soon' })).toThrow(/SLUICE_METADATA_TTL_DAYS/);
    expect(typeof metadataConsumerFromEnv({ SLUICE_PIPELINE: 'iot', SLUICE_METADATA_TABLE: 't', AWS_REGION: 'us-east-1' })).toBe('function');
    expect(() => metadataConsumerFromEnv({ SLUICE_PIPELINE: 'iot', SLUICE_METADATA_TABLE: 't', SLUICE_DYNAMO_TIMEOUT_MS: '0' })).toThrow(/SLUICE_DYNAMO_TIMEOUT_MS/);
  });
});

describe('metadata consumer: a DynamoDB endpoint that accepts connections and never answers', () => {
  let server: http.Server;
  let endpoint: string;
  beforeAll(async () => {
    server = http.createServer(() => { /* never answers */ });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('the table client fails a call with TimeoutError once its timeout passes', async () => {
    const client = metadataTableClient(200, { endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 1 });
    try {
      await expect(client.send(new DescribeTableCommand({ TableName: 't' }))).rejects.toMatchObject({ name: 'TimeoutError' });
    } finally {
      client.destroy();
    }
  }, 15_000);

  it('the handler built from the Lambda environment reports the batch for retry instead of waiting for the function timeout', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, { POWERTOOLS_LOG_LEVEL: 'SILENT', AWS_ENDPOINT_URL_DYNAMODB: endpoint, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local' });
    try {
      const handler = metadataConsumerFromEnv({ SLUICE_PIPELINE: 'iot', SLUICE_METADATA_TABLE: 't', SLUICE_DYNAMO_TIMEOUT_MS: '200' });
      // 3 s left: a retry budget of 1 s, which 200 ms calls fit in and an unanswered one never would.
      const out = await handler(event, { getRemainingTimeInMillis: () => 3_000 });
      expect(out.batchItemFailures.length).toBeGreaterThan(0);
    } finally {
      process.env = saved;
    }
  }, 15_000);
});

// Keep the fixture honest: it is what Lambda's Kinesis event source mapping delivers.
it('fixture: Kinesis ESM records carry eventID <shard>:<sequence>', () => {
  for (const r of event.Records as KinesisStreamRecord[]) expect(r.eventID).toBe(`shardId-000000000006:${r.kinesis.sequenceNumber}`);
});

describe('metadata consumer: keys from ids a schema does not bound', () => {
  // The shipped schemas bound their ids (uuid, maxLength 64); a user's schema may not.
  const schema = {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    type: 'object',
    'x-sluice': { version: '1.0.0', idField: 'id', eventTimeField: 'at', partitionFields: ['kind'], entityField: 'who', pii: {} },
    required: ['id', 'at', 'kind'],
    additionalProperties: false,
    properties: { id: { type: 'string' }, at: { type: 'string', format: 'date-time' }, kind: { type: 'string' }, who: { type: 'string' } },
  };
  const open: PipelineSchema = { pipeline: 'open' as PipelineSchema['pipeline'], model: describeSchema('open', schema), validate: compileValidator(schema) };
  const factsOf = (record: object): EventFacts => {
    const r = { ...event.Records[0], kinesis: { ...event.Records[0].kinesis, data: b64(record) } };
    const [facts] = eventFacts(open, r);
    if ('reason' in facts) throw new Error(facts.reason);
    return facts;
  };
  const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

  it('keeps two long ids that begin alike apart: the second event is not taken for a duplicate, nor its entity for the first\'s', () => {
    const base = { at: '2026-11-22T13:40:00Z', kind: 'view' };
    const a = factsOf({ ...base, id: `${'x'.repeat(600)}-a`, who: `${'u'.repeat(600)}-a` });
    const b = factsOf({ ...base, id: `${'x'.repeat(600)}-b`, who: `${'u'.repeat(600)}-b` });
    expect(a.eventId).not.toBe(b.eventId);
    expect(a.entity).not.toBe(b.entity);
    // Short ids are keyed as sent.
    expect(factsOf({ ...base, id: 'e-1', who: 'u-1' })).toMatchObject({ eventId: 'e-1', entity: 'u-1' });
  });

  it('keys every id within DynamoDB\'s 2,048-byte partition key, in well-formed UTF-16 (no surrogate pair cut in half)', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme', minLength: 500, maxLength: 700 }), fc.string({ unit: 'binary', maxLength: 20 }), (head, tail) => {
      const id = head + tail;
      if (!id.isWellFormed()) return;
      const facts = factsOf({ id, at: '2026-11-22T13:40:00Z', kind: 'view', who: id });
      for (const key of [metadataKeys.event('open', facts.eventId).pk, metadataKeys.entity('open', facts.entity!).pk]) {
        expect(bytes(key)).toBeLessThanOrEqual(2048);
        expect(key.isWellFormed()).toBe(true);
      }
      expect(facts.eventType.isWellFormed()).toBe(true);
    }), { numRuns: 200 });
    // The worst cases outright: an astral character across the cut, and three-byte characters throughout.
    const astral = factsOf({ id: `${'a'.repeat(511)}😀😀`, at: '2026-11-22T13:40:00Z', kind: 'view', who: `${'a'.repeat(511)}😀` });
    expect(astral.eventId.isWellFormed() && astral.entity!.isWellFormed()).toBe(true);
    expect(bytes(metadataKeys.event('open', factsOf({ id: 'ࠀ'.repeat(5000), at: '2026-11-22T13:40:00Z', kind: 'view' }).eventId).pk)).toBeLessThanOrEqual(2048);
  });
});

describe('metadata consumer: shards at once, and errors that are not throttling (TransactWriteItems, as in AWS)', () => {
  const consumerLogging = (dynamo: DynamoDBDocumentClient) => {
    const t = capturedTelemetry();
    const run = async (records: KinesisStreamRecord[]) => {
      try {
        const out = await createMetadataConsumer({ pipeline: 'iot', tableName: local.tableName, ttlDays: 30, dynamo, now: () => NOW, sleep: async () => {}, logger: t.logger, metrics: t.metrics })({ Records: records });
        return { out, line: t.lines.find((l) => l.message === 'batch recorded')! };
      } finally {
        t.restore();
      }
    };
    return run;
  };

  it('two shards that conflict on one counter and one entity: the conflicts are retried (retries, not failures), each event counts once, the newer event wins last-seen', async () => {
    // Shard A holds the device's newer event (13:41:01) and a 13:40 telemetry; shard B its older one (13:40:00), the same counter.
    const [r0, r1, , , r4] = event.Records;
    const [a, b] = [transactional(local, { conflictNext: 2 }), transactional(local, { conflictNext: 1 })];
    const t = capturedTelemetry();
    let outs;
    try {
      const shard = (dynamo: DynamoDBDocumentClient) => createMetadataConsumer({ pipeline: 'iot', tableName: local.tableName, ttlDays: 30, dynamo, now: () => NOW, sleep: async () => {}, logger: t.logger, metrics: t.metrics });
      outs = await Promise.all([shard(a.client)({ Records: [r1, r4] }), shard(b.client)({ Records: [r0] })]);
    } finally {
      t.restore();
    }
    expect(outs).toEqual([{ batchItemFailures: [] }, { batchItemFailures: [] }]);
    const lines = t.lines.filter((l) => l.message === 'batch recorded').sort((x, y) => Number(y.records) - Number(x.records));
    expect(lines).toEqual([
      expect.objectContaining({ records: 2, recorded: 2, duplicates: 0, failed: 0, retries: 2 }),
      expect.objectContaining({ records: 1, recorded: 1, duplicates: 0, failed: 0, retries: 1 }),
    ]);
    const expected = { 'count#iot#telemetry 2026-11-22T13:40': EXPECTED_COUNTERS['count#iot#telemetry 2026-11-22T13:40'], 'count#iot#alert 2026-11-22T13:41': EXPECTED_COUNTERS['count#iot#alert 2026-11-22T13:41'] };
    expect(await counters()).toEqual(expected);
    const lastSeen = async () => (await table()).find((i) => i.pk === 'entity#iot#dev-0000a1b2');
    expect(await lastSeen()).toMatchObject({ last_event_time: '2026-11-22T13:41:01.000Z', last_event_id: '5a4d0a3d-7e1f-4f9c-8ca8-000000000001' });
    // The older event's shard redelivered after the newer one was written: last-seen does not move back, nothing counts twice.
    await Promise.all([consumerLogging(transactional(local).client)([r0]), consumerLogging(transactional(local).client)([r1, r4])]);
    expect(await counters()).toEqual(expected);
    expect(await lastSeen()).toMatchObject({ last_event_time: '2026-11-22T13:41:01.000Z' });
  });

  it('a cancellation that names a recorded event and a conflicting counter drops the duplicate and writes the rest once', async () => {
    await consumer(transactional(local).client)({ Records: [event.Records[0]] });
    const healthy = transactional(local).client;
    let first = true;
    const mixed = {
      send: async (command: TransactWriteCommand) => {
        if (command instanceof TransactWriteCommand && first) {
          first = false;
          const items = command.input.TransactItems ?? [];
          throw new TransactionCanceledException({
            message: 'Transaction cancelled', $metadata: {},
            CancellationReasons: items.map((_, i) => ({ Code: i === 0 ? 'ConditionalCheckFailed' : i === items.length - 1 ? 'TransactionConflict' : 'None' })),
          });
        }
        return healthy.send(command as never);
      },
    } as unknown as DynamoDBDocumentClient;
    const { out, line } = await consumerLogging(mixed)(event.Records);
    expect(out.batchItemFailures).toEqual([]);
    expect(line).toMatchObject({ recorded: 3, duplicates: 1, malformed: 1 });
    expect(await counters()).toEqual(EXPECTED_COUNTERS);
  });

  it.each([
    ['AccessDeniedException', () => Object.assign(new Error('User is not authorized to perform dynamodb:PutItem'), { name: 'AccessDeniedException', $fault: 'client' })],
    ['ResourceNotFoundException', () => Object.assign(new Error('Requested resource not found'), { name: 'ResourceNotFoundException', $fault: 'client' })],
    ['ValidationException', () => Object.assign(new Error('One or more parameter values were invalid'), { name: 'ValidationException', $fault: 'client' })],
    ['TransactionCanceledException (ValidationError)', () => new TransactionCanceledException({ message: 'Transaction cancelled', $metadata: {}, CancellationReasons: [{ Code: 'ValidationError', Message: 'Item size has exceeded the maximum allowed size' }] })],
  ])('%s: not retried in the invocation; every valid record is reported (Lambda retries, then the on-failure queue), the invocation does not fail', async (_name, error) => {
    const calls: string[] = [];
    const refusing = {
      send: async (command: { constructor: { name: string } }) => {
        calls.push(command.constructor.name);
        throw error();
      },
    } as unknown as DynamoDBDocumentClient;
    const { out, line } = await consumerLogging(refusing)(event.Records);
    expect(out.batchItemFailures.map((f) => f.itemIdentifier)).toEqual([0, 1, 2, 4].map((i) => event.Records[i].kinesis.sequenceNumber));
    expect(calls).toEqual(['TransactWriteCommand']);
    expect(line).toMatchObject({ recorded: 0, failed: 4, retries: 0 });
    expect(await local.scan()).toEqual([]);
  });
});
