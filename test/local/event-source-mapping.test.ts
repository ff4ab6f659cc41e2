import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { KinesisStreamEvent } from 'aws-lambda';
import { EventSourceMapping, type KinesisInvocationRecord } from '../../lib/local/event-source-mapping';
import { MemoryKinesis } from '../../lib/local/shard-reader';

const STREAM = 'sluice-local-iot';
const SHARD = 'shardId-000000000000';
const dataOf = (event: KinesisStreamEvent) => event.Records.map((r) => Buffer.from(r.kinesis.data, 'base64').toString());

let dataDir: string;
let kinesis: MemoryKinesis;
beforeEach(() => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'sluice-esm-'));
  kinesis = new MemoryKinesis();
  kinesis.createStream(STREAM, 1);
});
afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

function mapping(handler: (e: KinesisStreamEvent) => Promise<{ batchItemFailures: Array<{ itemIdentifier: string }> } | void>, destination: KinesisInvocationRecord[], extra: Partial<ConstructorParameters<typeof EventSourceMapping>[0]> = {}) {
  return new EventSourceMapping({
    client: kinesis, streamName: STREAM, dataDir, functionName: 'consumer', handler,
    batchSize: 10, pollIntervalMs: 10, minCallGapMs: 0, retryDelayMs: 1,
    onFailure: async (r) => { destination.push(r); },
    onError: () => undefined,
    ...extra,
  });
}

describe('local event source mapping', () => {
  test('a poison record is isolated by bisecting; only its batch metadata reaches the destination; the rest succeed once', async () => {
    for (let i = 0; i < 8; i++) kinesis.putRecord(STREAM, 'k', i === 5 ? 'poison' : `ok-${i}`, { shardId: SHARD });
    const succeeded: string[] = [];
    const destination: KinesisInvocationRecord[] = [];
    const esm = mapping(async (event) => {
      const data = dataOf(event);
      if (data.includes('poison')) throw new Error('cannot process');
      succeeded.push(...data);
    }, destination, { bisectBatchOnFunctionError: true, maxRetryAttempts: 2 });
    await esm.start();
    await esm.drain({ timeoutMs: 10_000 });
    await esm.stop();
    expect(succeeded.sort()).toEqual(['ok-0', 'ok-1', 'ok-2', 'ok-3', 'ok-4', 'ok-6', 'ok-7']);
    expect(destination).toHaveLength(1);
    const info = destination[0].KinesisBatchInfo;
    expect(info.batchSize).toBe(1);
    expect(info.shardId).toBe(SHARD);
    expect(info.startSequenceNumber).toBe(info.endSequenceNumber);
    expect(destination[0].requestContext.condition).toBe('RetryAttemptsExhausted');
    expect(JSON.stringify(destination[0])).not.toContain('poison'); // metadata only, as AWS's SQS destination
    expect(esm.stats().bisections).toBeGreaterThan(0);
  });

  test('a partial batch failure retries from the failed record onwards, not the whole batch', async () => {
    for (let i = 0; i < 6; i++) kinesis.putRecord(STREAM, 'k', `r${i}`, { shardId: SHARD });
    const calls: string[][] = [];
    let failedOnce = false;
    const esm = mapping(async (event) => {
      const data = dataOf(event);
      calls.push(data);
      const at = data.indexOf('r3');
      if (at >= 0 && !failedOnce) {
        failedOnce = true;
        return { batchItemFailures: [{ itemIdentifier: event.Records[at].kinesis.sequenceNumber }] };
      }
      return { batchItemFailures: [] };
    }, [], { reportBatchItemFailures: true, maxRetryAttempts: 3 });
    await esm.start();
    await esm.drain({ timeoutMs: 10_000 });
    await esm.stop();
    expect(calls[0]).toEqual(['r0', 'r1', 'r2', 'r3', 'r4', 'r5']);
    expect(calls[1]).toEqual(['r3', 'r4', 'r5']);
    expect(esm.stats().recordsSucceeded).toBe(6);
  });

  test('batches respect batchSize and build the Kinesis event shape', async () => {
    for (let i = 0; i < 25; i++) kinesis.putRecord(STREAM, `pk${i}`, `r${i}`, { shardId: SHARD });
    const events: KinesisStreamEvent[] = [];
    const esm = mapping(async (event) => { events.push(event); }, []);
    await esm.start();
    await esm.drain({ timeoutMs: 10_000 });
    await esm.stop();
    expect(events.every((e) => e.Records.length <= 10)).toBe(true);
    expect(events.flatMap(dataOf)).toEqual(Array.from({ length: 25 }, (_, i) => `r${i}`));
    const r = events[0].Records[0];
    expect(r).toMatchObject({ eventSource: 'aws:kinesis', eventVersion: '1.0', eventName: 'aws:kinesis:record' });
    expect(r.kinesis).toMatchObject({ kinesisSchemaVersion: '1.0', partitionKey: 'pk0' });
    expect(r.eventID).toBe(`${SHARD}:${r.kinesis.sequenceNumber}`);
  });
});
