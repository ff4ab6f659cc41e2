/**
 * The twin's Kinesis event source mapping: batching, retries, bisection, partial batch responses,
 * record age and the on-failure destination, checked through what the handler is invoked with and
 * what the destination (a DlqFile, as the twin wires it) receives. Mostly against MemoryKinesis;
 * the last test runs against kinesis-mock.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  PutRecordsCommand,
  type KinesisClient,
} from '@aws-sdk/client-kinesis';
import type { KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { kinesisClient } from '../../lib/local/aws-clients';
import { DlqFile } from '../../lib/local/dlq-file';
import { startKinesis, type RunningService } from '../../lib/local/emulators';
import {
  EventSourceMapping,
  queueDestination,
  type EventSourceMappingOptions,
  type KinesisHandlerResponse,
  type KinesisInvocationRecord,
} from '../../lib/local/event-source-mapping';
import type { RecordTally } from '../../transforms/metadata-consumer/handler';
import { MemoryKinesis } from '../../lib/local/shard-reader';
import { aggregatedRecord } from '../kpl-encoder';

const STREAM = 'sluice-local-clickstream';
const SHARD0 = 'shardId-000000000000';
const SHARD1 = 'shardId-000000000001';
const FUNCTION = 'sluice-local-metadata-consumer';

const decode = (data: string): string => Buffer.from(data, 'base64').toString('utf8');
const datas = (event: KinesisStreamEvent): string[] => event.Records.map((r) => decode(r.kinesis.data));

let dataDir: string;
const mappings: EventSourceMapping[] = [];
beforeEach(() => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'sluice-esm-'));
});
afterEach(async () => {
  await Promise.all(mappings.splice(0).map((mapping) => mapping.stop()));
  rmSync(dataDir, { recursive: true, force: true });
});

/** A mapping with quick polling and no retry delay, whose invocations and destination are recorded. */
function mapping(
  client: EventSourceMappingOptions['client'],
  handler: EventSourceMappingOptions['handler'],
  options: Partial<EventSourceMappingOptions> = {},
): { esm: EventSourceMapping; invocations: KinesisStreamEvent[]; failures: KinesisInvocationRecord[] } {
  const invocations: KinesisStreamEvent[] = [];
  const failures: KinesisInvocationRecord[] = [];
  const esm = new EventSourceMapping({
    client,
    streamName: STREAM,
    dataDir,
    functionName: FUNCTION,
    handler: async (event, context) => {
      invocations.push(event);
      return handler(event, context);
    },
    onFailure: async (record) => {
      failures.push(record);
    },
    pollIntervalMs: 10,
    minCallGapMs: 0,
    retryDelayMs: 0,
    onError: () => undefined,
    ...options,
  });
  mappings.push(esm);
  return { esm, invocations, failures };
}

async function run(esm: EventSourceMapping): Promise<void> {
  await esm.start();
  await esm.drain({ timeoutMs: 10_000 });
}

describe('EventSourceMapping', () => {
  let kinesis: MemoryKinesis;
  beforeEach(() => {
    kinesis = new MemoryKinesis();
    kinesis.createStream(STREAM, 2);
  });

  test('invokes with the real KinesisStreamEvent shape', async () => {
    const arrival = new Date('2026-11-22T10:00:00.123Z');
    const put = kinesis.putRecord(STREAM, 'user-42', '{"event":"click"}', { shardId: SHARD1, arrival });
    const { esm, invocations } = mapping(kinesis, async () => undefined, { maxRecordAgeSeconds: -1 });
    await run(esm);
    expect(invocations).toHaveLength(1);
    expect(invocations[0]).toEqual({
      Records: [
        {
          kinesis: {
            kinesisSchemaVersion: '1.0',
            partitionKey: 'user-42',
            sequenceNumber: put.sequenceNumber,
            data: Buffer.from('{"event":"click"}').toString('base64'),
            approximateArrivalTimestamp: 1795341600.123,
          },
          eventSource: 'aws:kinesis',
          eventVersion: '1.0',
          eventID: `${SHARD1}:${put.sequenceNumber}`,
          eventName: 'aws:kinesis:record',
          invokeIdentityArn: `arn:aws:iam::000000000000:role/${FUNCTION}-role`,
          awsRegion: 'us-east-1',
          eventSourceARN: `arn:aws:kinesis:us-east-1:000000000000:stream/${STREAM}`,
        },
      ],
    });
    expect(esm.functionArn).toBe(`arn:aws:lambda:us-east-1:000000000000:function:${FUNCTION}`);
  });

  test('batches up to batchSize records per invocation, per shard, in order', async () => {
    for (let i = 0; i < 25; i++) kinesis.putRecord(STREAM, 'k', `a${i}`, { shardId: SHARD0 });
    for (let i = 0; i < 4; i++) kinesis.putRecord(STREAM, 'k', `b${i}`, { shardId: SHARD1 });
    const { esm, invocations } = mapping(kinesis, async () => undefined, { batchSize: 10 });
    await run(esm);
    const shard0 = invocations.filter((e) => e.Records[0].eventID.startsWith(SHARD0)).map(datas);
    expect(shard0.map((batch) => batch.length)).toEqual([10, 10, 5]);
    expect(shard0.flat()).toEqual(Array.from({ length: 25 }, (_, i) => `a${i}`));
    expect(invocations.filter((e) => e.Records[0].eventID.startsWith(SHARD1)).map(datas)).toEqual([['b0', 'b1', 'b2', 'b3']]);
    // Every batch holds records of one shard only.
    for (const event of invocations) expect(new Set(event.Records.map((r) => r.eventID.split(':')[0])).size).toBe(1);
    expect(esm.stats()).toMatchObject({ invocations: 4, recordsSucceeded: 29, retries: 0 });
  });

  test('waits for the batching window, from the first record buffered, before invoking with a partial batch', async () => {
    // The window is measured on a clock the test steps, so a busy machine's late timers can slow the test but not
    // blur the outcomes apart: invoked before the window closes (ignored), or not once it has (waited twice, or
    // measured from a later record).
    let clock = 1_000_000;
    const { esm, invocations } = mapping(kinesis, async () => undefined, { batchSize: 100, batchWindowSeconds: 1, now: () => clock });
    const shard = () => esm.stats().reader.shards.find((s) => s.shardId === SHARD0);
    /** Waits until the reader has looked at its buffer again a few times (each GetRecords call is followed by a look). */
    const readerLooked = async () => {
      const calls = shard()?.getRecordsCalls ?? 0;
      await waitFor(() => (shard()?.getRecordsCalls ?? 0) >= calls + 3, 10_000);
    };
    kinesis.putRecord(STREAM, 'k', 'first', { shardId: SHARD0 });
    await esm.start();
    await waitFor(() => shard()?.buffered === 1, 10_000);
    clock += 500;
    kinesis.putRecord(STREAM, 'k', 'second', { shardId: SHARD0 });
    await waitFor(() => shard()?.buffered === 2, 10_000);
    clock += 499;
    await readerLooked();
    expect(invocations).toEqual([]);
    // The window closes 1 s after the first record was buffered, whatever came since.
    clock += 1;
    await waitFor(() => invocations.length > 0, 10_000);
    expect(invocations.map(datas)).toEqual([['first', 'second']]);
  });

  test('a full batch does not wait for the window', async () => {
    for (let i = 0; i < 5; i++) kinesis.putRecord(STREAM, 'k', `r${i}`, { shardId: SHARD0 });
    const started = Date.now();
    const { esm, invocations } = mapping(kinesis, async () => undefined, { batchSize: 5, batchWindowSeconds: 300 });
    await esm.start();
    // A tenth of the 300 s window, not a second: far enough from it that a busy machine's delays cannot blur the two.
    await waitFor(() => invocations.length > 0, 30_000);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(invocations.map(datas)).toEqual([['r0', 'r1', 'r2', 'r3', 'r4']]);
  });

  test('a handler that fails once is retried with the same batch, then succeeds', async () => {
    for (let i = 0; i < 3; i++) kinesis.putRecord(STREAM, 'k', `r${i}`, { shardId: SHARD0 });
    let calls = 0;
    const { esm, invocations, failures } = mapping(kinesis, async () => {
      if (calls++ === 0) throw new Error('DynamoDB throttled');
    });
    await run(esm);
    expect(invocations.map(datas)).toEqual([
      ['r0', 'r1', 'r2'],
      ['r0', 'r1', 'r2'],
    ]);
    expect(failures).toEqual([]);
    expect(esm.stats()).toMatchObject({ invocations: 2, failedInvocations: 1, retries: 1, recordsSucceeded: 3, batchesToOnFailure: 0 });
  });

  test('bisect isolates a poison record: only its metadata reaches the DLQ, every other record succeeds once', async () => {
    const put = Array.from({ length: 16 }, (_, i) => kinesis.putRecord(STREAM, `k${i}`, i === 11 ? 'poison' : `ok-${i}`, { shardId: SHARD0 }));
    for (let i = 0; i < 5; i++) kinesis.putRecord(STREAM, 'other', `other-${i}`, { shardId: SHARD1 });
    const succeeded: string[] = [];
    const dlq = new DlqFile({ dataDir, queue: 'sluice-local-consumer-dlq' });
    const { esm, invocations } = mapping(
      kinesis,
      async (event) => {
        if (datas(event).includes('poison')) throw new Error('cannot parse record');
        succeeded.push(...datas(event));
      },
      { batchSize: 16, bisectBatchOnFunctionError: true, maxRetryAttempts: 2, onFailure: queueDestination(dlq) },
    );
    await run(esm);

    const expected = [...Array.from({ length: 16 }, (_, i) => `ok-${i}`).filter((d) => d !== 'ok-11'), ...Array.from({ length: 5 }, (_, i) => `other-${i}`)];
    expect([...succeeded].sort()).toEqual([...expected].sort());
    // In order per shard, even across bisected halves.
    expect(succeeded.filter((d) => d.startsWith('ok-'))).toEqual(expected.filter((d) => d.startsWith('ok-')));

    const lines = readFileSync(dlq.path, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1);
    const record = JSON.parse(lines[0]) as KinesisInvocationRecord;
    expect(record).toEqual({
      requestContext: {
        requestId: expect.stringMatching(/^[0-9a-f-]{36}$/),
        functionArn: `arn:aws:lambda:us-east-1:000000000000:function:${FUNCTION}`,
        condition: 'RetryAttemptsExhausted',
        approximateInvokeCount: 3,
      },
      responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
      version: '1.0',
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      KinesisBatchInfo: {
        shardId: SHARD0,
        startSequenceNumber: put[11].sequenceNumber,
        endSequenceNumber: put[11].sequenceNumber,
        approximateArrivalOfFirstRecord: expect.stringMatching(/Z$/),
        approximateArrivalOfLastRecord: expect.stringMatching(/Z$/),
        batchSize: 1,
        streamArn: `arn:aws:kinesis:us-east-1:000000000000:stream/${STREAM}`,
      },
    });
    // Metadata only: the record itself is not in the message.
    expect(lines[0]).not.toContain(Buffer.from('poison').toString('base64'));
    expect(lines[0]).not.toContain('poison');
    // 16 → 8+8 → 4+4 → 2+2 → 1+1: four bisections on the way down to the poison record.
    expect(esm.stats()).toMatchObject({ bisections: 4, retries: 2, batchesToOnFailure: 1, recordsToOnFailure: 1, recordsSucceeded: 20 });
    expect(invocations.filter((e) => datas(e).includes('poison')).map((e) => e.Records.length)).toEqual([16, 8, 4, 2, 1, 1, 1]);
  });

  test('without bisect, an exhausted batch goes to the destination whole and the shard moves on', async () => {
    for (let i = 0; i < 4; i++) kinesis.putRecord(STREAM, 'k', i === 1 ? 'poison' : `r${i}`, { shardId: SHARD0 });
    const { esm, invocations, failures } = mapping(
      kinesis,
      async (event) => {
        if (datas(event).includes('poison')) throw new Error('bad');
      },
      { batchSize: 2, maxRetryAttempts: 1 },
    );
    await run(esm);
    expect(invocations.map(datas)).toEqual([['r0', 'poison'], ['r0', 'poison'], ['r2', 'r3']]);
    expect(failures.map((f) => [f.KinesisBatchInfo.batchSize, f.requestContext.approximateInvokeCount, f.requestContext.condition])).toEqual([
      [2, 2, 'RetryAttemptsExhausted'],
    ]);
  });

  test('a partial batch failure resumes at the lowest failed sequence number', async () => {
    const put = Array.from({ length: 8 }, (_, i) => kinesis.putRecord(STREAM, 'k', `r${i}`, { shardId: SHARD0 }));
    let calls = 0;
    const { esm, invocations, failures } = mapping(
      kinesis,
      async (): Promise<KinesisStreamBatchResponse> =>
        calls++ === 0
          ? { batchItemFailures: [{ itemIdentifier: put[6].sequenceNumber }, { itemIdentifier: put[4].sequenceNumber }] }
          : { batchItemFailures: [] },
      { batchSize: 8, reportBatchItemFailures: true, bisectBatchOnFunctionError: true },
    );
    await run(esm);
    expect(invocations.map(datas)).toEqual([
      ['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7'],
      ['r4', 'r5', 'r6', 'r7'],
    ]);
    expect(invocations[1].Records[0].kinesis.sequenceNumber).toBe(put[4].sequenceNumber);
    expect(failures).toEqual([]);
    expect(esm.stats()).toMatchObject({ partialFailures: 1, retries: 1, bisections: 0, recordsSucceeded: 8 });
  });

  test('counts records as the delivery streams do, by the function\'s tallies: a KPL-aggregated record once per user record, handled or sent to the destination', async () => {
    const three = aggregatedRecord(['u0', 'u1', 'u2'].map((data) => ({ partitionKey: 'k', data })));
    const two = aggregatedRecord(['v0', 'v1'].map((data) => ({ partitionKey: 'k', data })));
    const plain = kinesis.putRecord(STREAM, 'k', 'plain', { shardId: SHARD0 });
    const aggregate = kinesis.putRecord(STREAM, 'k', three, { shardId: SHARD0 });
    const empty = kinesis.putRecord(STREAM, 'k', aggregatedRecord([]), { shardId: SHARD0 });
    const poison = kinesis.putRecord(STREAM, 'k', two, { shardId: SHARD0 });
    // What the metadata consumer tallies once it has de-aggregated them; one of the three user records malformed.
    const tallies = new Map<string, RecordTally>([
      [plain.sequenceNumber, { userRecords: 1, skipped: 0 }],
      [aggregate.sequenceNumber, { userRecords: 3, skipped: 1 }],
      [empty.sequenceNumber, { userRecords: 0, skipped: 0 }],
      [poison.sequenceNumber, { userRecords: 2, skipped: 0 }],
    ]);
    const { esm, invocations, failures } = mapping(
      kinesis,
      async (event): Promise<KinesisHandlerResponse> => ({
        batchItemFailures: event.Records.filter((r) => r.kinesis.sequenceNumber === poison.sequenceNumber).map((r) => ({ itemIdentifier: r.kinesis.sequenceNumber })),
        tallies: event.Records.map((r) => tallies.get(r.kinesis.sequenceNumber)!),
      }),
      { batchSize: 10, reportBatchItemFailures: true, maxRetryAttempts: 1 },
    );
    await run(esm);
    // The mapping hands the function the aggregates whole, as Lambda's does: de-aggregating is the function's job.
    expect(invocations[0].Records).toHaveLength(4);
    expect(Buffer.from(invocations[0].Records[1].kinesis.data, 'base64')).toEqual(three);
    expect(failures.map((f) => f.KinesisBatchInfo.batchSize)).toEqual([1]);
    // 1 plain + 3 user records (1 skipped) + none in the empty aggregate succeeded; the failed aggregate's 2 user records went to the destination.
    expect(esm.stats()).toMatchObject({ recordsSucceeded: 4, recordsSkipped: 1, batchesToOnFailure: 1, recordsToOnFailure: 2 });
  });

  test('counts a skipped record once it is done: not from an answer after the timeout, nor in the part of a batch that is retried', async () => {
    const put = ['r0', 'bad1', 'r2', 'bad3'].map((data) => kinesis.putRecord(STREAM, 'k', data, { shardId: SHARD0 }));
    let calls = 0;
    const { esm, invocations } = mapping(
      kinesis,
      async (event): Promise<KinesisHandlerResponse> => {
        const call = ++calls;
        // The first answer comes after the function's timeout: the mapping throws it away, tallies and all.
        if (call === 1) await new Promise((resolve) => setTimeout(resolve, 300));
        return {
          batchItemFailures: call === 2 ? [{ itemIdentifier: put[2].sequenceNumber }] : [],
          tallies: datas(event).map((data) => ({ userRecords: 1, skipped: data.startsWith('bad') ? 1 : 0 })),
        };
      },
      { batchSize: 10, reportBatchItemFailures: true, functionTimeoutSeconds: 0.1 },
    );
    await run(esm);
    expect(invocations.map(datas)).toEqual([['r0', 'bad1', 'r2', 'bad3'], ['r0', 'bad1', 'r2', 'bad3'], ['r2', 'bad3']]);
    // bad3 was tallied skipped by all three answers; it counts once, when it was done.
    expect(esm.stats()).toMatchObject({ invocations: 3, failedInvocations: 1, partialFailures: 1, recordsSucceeded: 4, recordsSkipped: 2 });
  });

  test.each([
    ['an empty itemIdentifier', { batchItemFailures: [{ itemIdentifier: '' }] }],
    ['an unknown itemIdentifier', { batchItemFailures: [{ itemIdentifier: '123' }] }],
    ['a misspelt key', { batchItemFailures: [{ itemId: 'x' }] }],
  ])('%s fails the whole batch', async (_name, response) => {
    for (let i = 0; i < 3; i++) kinesis.putRecord(STREAM, 'k', `r${i}`, { shardId: SHARD0 });
    let calls = 0;
    const { esm, invocations } = mapping(kinesis, async () => (calls++ === 0 ? (response as unknown as KinesisStreamBatchResponse) : undefined), {
      reportBatchItemFailures: true,
    });
    await run(esm);
    expect(invocations.map(datas)).toEqual([
      ['r0', 'r1', 'r2'],
      ['r0', 'r1', 'r2'],
    ]);
  });

  test('batchItemFailures are ignored unless ReportBatchItemFailures is on', async () => {
    const put = kinesis.putRecord(STREAM, 'k', 'r0', { shardId: SHARD0 });
    const { esm, invocations } = mapping(kinesis, async () => ({ batchItemFailures: [{ itemIdentifier: put.sequenceNumber }] }));
    await run(esm);
    expect(invocations).toHaveLength(1);
  });

  test('records older than MaximumRecordAgeInSeconds go to the destination as RecordAgeExceeded', async () => {
    let offsetMs = 0;
    const now = (): number => Date.now() + offsetMs;
    kinesis.putRecord(STREAM, 'k', 'stuck-0', { shardId: SHARD0 });
    kinesis.putRecord(STREAM, 'k', 'stuck-1', { shardId: SHARD0 });
    const { esm, invocations, failures } = mapping(
      kinesis,
      async (event) => {
        if (datas(event)[0].startsWith('stuck')) {
          // The records are a minute and a bit old by the next attempt.
          offsetMs = 61_000;
          throw new Error('still failing');
        }
      },
      { maxRecordAgeSeconds: 60, maxRetryAttempts: -1, now },
    );
    await run(esm);
    expect(invocations.map(datas)).toEqual([['stuck-0', 'stuck-1']]);
    expect(failures).toHaveLength(1);
    expect(failures[0].requestContext).toMatchObject({ condition: 'RecordAgeExceeded', approximateInvokeCount: 1 });
    expect(failures[0].responseContext.functionError).toBe('Unhandled');
    expect(failures[0].KinesisBatchInfo.batchSize).toBe(2);

    // The shard moved on: a fresh record is invoked normally.
    kinesis.putRecord(STREAM, 'k', 'fresh', { shardId: SHARD0, arrival: new Date(now()) });
    await esm.drain({ timeoutMs: 5000 });
    expect(invocations.map(datas).at(-1)).toEqual(['fresh']);
  });

  test('records already too old are never invoked', async () => {
    kinesis.putRecord(STREAM, 'k', 'ancient', { shardId: SHARD0, arrival: new Date(Date.now() - 120_000) });
    kinesis.putRecord(STREAM, 'k', 'recent', { shardId: SHARD0 });
    const { esm, invocations, failures } = mapping(kinesis, async () => undefined, { maxRecordAgeSeconds: 60 });
    await run(esm);
    expect(invocations.map(datas)).toEqual([['recent']]);
    expect(failures.map((f) => [f.requestContext.condition, f.requestContext.approximateInvokeCount, f.KinesisBatchInfo.batchSize])).toEqual([
      ['RecordAgeExceeded', 0, 1],
    ]);
    expect(failures[0].responseContext).toEqual({ statusCode: 200, executedVersion: '$LATEST' });
  });

  test('a handler slower than the function timeout counts as a failure', async () => {
    kinesis.putRecord(STREAM, 'k', 'slow', { shardId: SHARD0 });
    let calls = 0;
    const { esm, failures } = mapping(
      kinesis,
      async () => {
        if (calls++ === 0) await new Promise((resolve) => setTimeout(resolve, 300));
      },
      { functionTimeoutSeconds: 0.05, maxRetryAttempts: 0 },
    );
    await run(esm);
    expect(failures.map((f) => f.responseContext.functionError)).toEqual(['Unhandled']);
  });

  test("gives the handler Lambda's clock: the time left before the function timeout, Infinity without one", async () => {
    kinesis.putRecord(STREAM, 'k', 'clocked', { shardId: SHARD0 });
    const seen: number[][] = [];
    const clocked = async (_event: KinesisStreamEvent, context: { getRemainingTimeInMillis(): number }) => {
      const first = context.getRemainingTimeInMillis();
      await new Promise((resolve) => setTimeout(resolve, 30));
      seen.push([first, context.getRemainingTimeInMillis()]);
    };
    const timed = mapping(kinesis, clocked, { functionTimeoutSeconds: 2 });
    await run(timed.esm);
    await timed.esm.stop();
    const [[atStart, later]] = seen;
    expect(atStart).toBeGreaterThan(1_000);
    expect(atStart).toBeLessThanOrEqual(2_000);
    expect(later).toBeLessThanOrEqual(atStart - 25);

    rmSync(dataDir, { recursive: true, force: true });
    kinesis.putRecord(STREAM, 'k', 'unclocked', { shardId: SHARD0 });
    const untimed = mapping(kinesis, clocked);
    await run(untimed.esm);
    expect(seen[seen.length - 1]).toEqual([Infinity, Infinity]);
  });

  test('the time left is counted as the timeout is, on the monotonic clock: the wall clock set back an hour mid-invocation gives no more', async () => {
    kinesis.putRecord(STREAM, 'k', 'clocked', { shardId: SHARD0 });
    const realNow = Date.now.bind(Date);
    let setBack = 0;
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - setBack);
    const seen: number[] = [];
    try {
      const timed = mapping(kinesis, async (_event: KinesisStreamEvent, context: { getRemainingTimeInMillis(): number }) => {
        setBack = 3_600_000;
        seen.push(context.getRemainingTimeInMillis());
      }, { functionTimeoutSeconds: 2 });
      await run(timed.esm);
      await timed.esm.stop();
    } finally {
      clock.mockRestore();
    }
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeGreaterThan(1_000);
    expect(seen[0]).toBeLessThanOrEqual(2_000);
  });

  test('checkpoints persist: no re-invocation after a clean stop, re-invocation after a crash mid-batch', async () => {
    kinesis.putRecord(STREAM, 'k', 'done', { shardId: SHARD0 });
    const first = mapping(kinesis, async () => undefined);
    await run(first.esm);
    await first.esm.stop();
    expect(first.invocations.map(datas)).toEqual([['done']]);

    const second = mapping(kinesis, async () => undefined);
    await run(second.esm);
    await second.esm.stop();
    expect(second.invocations).toEqual([]);

    // A batch that keeps failing (retries forever) when the process goes down is not checkpointed...
    kinesis.putRecord(STREAM, 'k', 'in-flight', { shardId: SHARD0 });
    let failing = true;
    const third = mapping(kinesis, async () => {
      if (failing) throw new Error('down');
    });
    await third.esm.start();
    await waitFor(() => third.invocations.length >= 2);
    await third.esm.stop();

    // ...so the next start invokes it again, and only it.
    failing = false;
    const fourth = mapping(kinesis, async () => undefined);
    await run(fourth.esm);
    expect(fourth.invocations.map(datas)).toEqual([['in-flight']]);
    // The mapping's own consumer name: its checkpoints sit apart from other readers of the stream.
    expect(readFileSync(path.join(dataDir, 'kinesis-checkpoints', `lambda-${FUNCTION}`, `${STREAM}.json`), 'utf8')).toContain(SHARD0);
  });

  test('settings outside AWS ranges are refused with the allowed range', () => {
    const make = (options: Partial<EventSourceMappingOptions>): EventSourceMapping =>
      new EventSourceMapping({ client: kinesis, streamName: STREAM, dataDir, functionName: FUNCTION, handler: async () => undefined, ...options });
    expect(() => make({ batchSize: 0 })).toThrow('batchSize must be an integer 1–10,000, got 0');
    expect(() => make({ maxRecordAgeSeconds: 30 })).toThrow('maxRecordAgeSeconds must be an integer 60–604,800 (or -1 for no limit), got 30');
    expect(() => make({ batchWindowSeconds: 301 })).toThrow('batchWindowSeconds must be 0–300');
    expect(() => make({ maxRetryAttempts: -2 })).toThrow('maxRetryAttempts');
    expect(() => make({ parallelizationFactor: 11 })).toThrow('parallelizationFactor');
    expect(() => make({ parallelizationFactor: 2 })).not.toThrow();
  });
});

describe('EventSourceMapping against kinesis-mock', () => {
  let kinesis: RunningService;
  let client: KinesisClient;
  beforeAll(async () => {
    kinesis = await startKinesis({ port: 0 });
    client = kinesisClient(kinesis.endpoint);
  });
  afterAll(async () => {
    client?.destroy();
    await kinesis?.stop();
  });

  test('a poison record ends up as one DLQ line whose sequence number finds it again in the stream', async () => {
    await client.send(new CreateStreamCommand({ StreamName: STREAM, ShardCount: 2 }));
    while ((await client.send(new DescribeStreamSummaryCommand({ StreamName: STREAM }))).StreamDescriptionSummary?.StreamStatus !== 'ACTIVE') {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const records = Array.from({ length: 300 }, (_, i) => ({ PartitionKey: `user-${i % 13}`, Data: Buffer.from(i === 123 ? 'poison' : `{"n":${i}}`) }));
    await client.send(new PutRecordsCommand({ StreamName: STREAM, Records: records.slice(0, 150) }));
    await client.send(new PutRecordsCommand({ StreamName: STREAM, Records: records.slice(150) }));

    const succeeded: string[] = [];
    const dlq = new DlqFile({ dataDir, queue: 'sluice-local-consumer-dlq' });
    const { esm } = mapping(
      client,
      async (event) => {
        if (datas(event).includes('poison')) throw new Error('cannot parse');
        succeeded.push(...datas(event));
      },
      { batchSize: 100, bisectBatchOnFunctionError: true, maxRetryAttempts: 1, onFailure: queueDestination(dlq), pollIntervalMs: 50 },
    );
    await run(esm);
    expect(succeeded).toHaveLength(299);
    expect(new Set(succeeded).size).toBe(299);

    const [message] = await dlq.receive(10);
    const info = (JSON.parse(message.body) as KinesisInvocationRecord).KinesisBatchInfo;
    expect(info.batchSize).toBe(1);
    // How a replay finds the record: the metadata points into the stream.
    const { ShardIterator } = await client.send(
      new GetShardIteratorCommand({ StreamName: STREAM, ShardId: info.shardId, ShardIteratorType: 'AT_SEQUENCE_NUMBER', StartingSequenceNumber: info.startSequenceNumber }),
    );
    const found = await client.send(new GetRecordsCommand({ ShardIterator, Limit: 1 }));
    expect(Buffer.from(found.Records?.[0].Data ?? []).toString()).toBe('poison');
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('an invocation that times out', () => {
  test('is not run beside the retry of its shard: the shard waits for it to end, its writes land before the next batch\'s, and none after stop()', async () => {
    const kinesis = new MemoryKinesis();
    kinesis.createStream(STREAM, 1);
    kinesis.putRecord(STREAM, 'k', 'r0');
    kinesis.putRecord(STREAM, 'k', 'r1');
    const effects: string[] = [];
    let running = 0;
    let mostRunning = 0;
    let calls = 0;
    const { esm } = mapping(kinesis, async (event) => {
      running++;
      mostRunning = Math.max(mostRunning, running);
      try {
        // The first call outlives the function's timeout (50 ms), then writes.
        if (calls++ === 0) await new Promise((resolve) => setTimeout(resolve, 300));
        effects.push(datas(event).join());
      } finally {
        running--;
      }
    }, { functionTimeoutSeconds: 0.05, batchSize: 1, maxRetryAttempts: 3 });
    await esm.start();
    await esm.drain({ timeoutMs: 5000 });
    await esm.stop();
    expect(mostRunning).toBe(1);
    // At least once, in order: the timed-out call's write, its retry's, then the next batch.
    expect(effects).toEqual(['r0', 'r0', 'r1']);
    const atStop = [...effects];
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(effects).toEqual(atStop);
  });
});

describe('an invocation that times out on a shard closed by a reshard', () => {
  /** Each reshapes a stream whose shard 0 holds the record 'parent'; returns the shard that descends from it. */
  const reshards: Array<{ reshard: string; shards: number; descendant: (kinesis: MemoryKinesis) => string }> = [
    { reshard: 'a split', shards: 1, descendant: (kinesis) => kinesis.splitShard(STREAM, SHARD0)[0] },
    { reshard: 'a merge', shards: 2, descendant: (kinesis) => kinesis.mergeShards(STREAM, SHARD0, SHARD1) },
    // The child in between is empty: it is never invoked, so only the grandchild can wait.
    { reshard: 'two splits', shards: 1, descendant: (kinesis) => kinesis.splitShard(STREAM, kinesis.splitShard(STREAM, SHARD0)[0])[0] },
  ];
  test.each(reshards)('is not run beside the first invocation of a shard made from it by $reshard: that waits for it to end, as their keys are the same', async ({ shards, descendant }) => {
    const kinesis = new MemoryKinesis();
    kinesis.createStream(STREAM, shards);
    kinesis.putRecord(STREAM, 'k', 'parent', { shardId: SHARD0 });
    kinesis.putRecord(STREAM, 'k', 'child', { shardId: descendant(kinesis) });
    const effects: string[] = [];
    let running = 0;
    let mostRunning = 0;
    const { esm, failures } = mapping(kinesis, async (event) => {
      running++;
      mostRunning = Math.max(mostRunning, running);
      try {
        // The parent's last batch outlives the function's timeout (50 ms), then writes; out of retries, it goes to the destination.
        if (datas(event).includes('parent')) await new Promise((resolve) => setTimeout(resolve, 300));
        effects.push(datas(event).join());
      } finally {
        running--;
      }
    }, { functionTimeoutSeconds: 0.05, maxRetryAttempts: 0 });
    await esm.start();
    await esm.drain({ timeoutMs: 5000 });
    await esm.stop();
    expect(failures.map((f) => f.KinesisBatchInfo.shardId)).toEqual([SHARD0]);
    expect(mostRunning).toBe(1);
    expect(effects).toEqual(['parent', 'child']);
  });
});
