import { randomUUID } from 'node:crypto';
import { PutRecordBatchCommand } from '@aws-sdk/client-firehose';
import { resourceNames, type SluiceConfig } from '../../lib/config';
import { firehoseClient } from '../../lib/local/aws-clients';
import { configWith, dlqMessages, lakeColumn, removeDir, sorted, startFaultTwin, type FaultTwin } from '../faults/helpers';

/** `calls` PutRecordBatch calls of 500 valid 125-byte app-events records, each accepted whole; returns their event ids. */
async function putSmallRecords(run: FaultTwin, config: SluiceConfig, calls: number): Promise<string[]> {
  const firehose = firehoseClient(run.twin.endpoints.firehose, { maxAttempts: 1 });
  const ids: string[] = [];
  try {
    for (let call = 0; call < calls; call++) {
      const records = Array.from({ length: 500 }, () => {
        const id = randomUUID();
        ids.push(id);
        return { Data: Buffer.from(JSON.stringify({ event_id: id, user_id: 'u', event_type: 'login', timestamp: '2026-11-22T10:00:00.000Z' })) };
      });
      const out = await firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: resourceNames(config, 'app-events').lakeDeliveryStream, Records: records }));
      expect(out.FailedPutCount).toBe(0);
    }
  } finally {
    firehose.destroy();
  }
  return ids;
}

/**
 * Many small valid records in one flush, with the default configuration (1 MiB processor buffer):
 * over 8,000 records of 125 bytes go to the transform in one invocation, and its response (each
 * record enriched, in base64, with its id and partition keys) must still fit Lambda's 6 MB. It did not
 * while the twin gave the transform the 224-character ids PutRecordBatch answers with, where Firehose
 * gives its transform 56-digit ones: about 500 of those 8,388 valid records failed as response-size and went to the DLQ.
 */
describe('many small records in one flush', () => {
  const config = configWith({ 'app-events': { source: 'direct-put', destinations: ['lake'] } }, ['local.bufferIntervalSeconds=900']);
  let run: FaultTwin | undefined;

  afterAll(async () => {
    await run?.stop();
    removeDir(run?.dataDir);
  }, 60_000);

  test('10,000 valid 125-byte records all become rows; none reaches the DLQ', async () => {
    run = await startFaultTwin(config);
    const ids = await putSmallRecords(run, config, 20);
    // A flush once 1 MiB is buffered (after 17 calls) and one at the end: the first invocation holds 8,388 records.
    await run.twin.settle(60_000);
    expect(dlqMessages(run.dataDir, config)).toEqual([]);
    expect(sorted(await lakeColumn(run.dataDir, config, 'app_events'))).toEqual(sorted(ids));
  }, 120_000);
});

/**
 * A processor buffer larger than the transform's response can answer (Firehose accepts up to 3 MB, the
 * response is limited to 6 MB and small records triple in it): the twin warns when it starts, and the
 * records past the response budget fail as response-size and reach the DLQ, whose reason says they are
 * safe to replay. Nothing is lost: rows and dead letters add up to what was sent.
 */
describe('a processor buffer too large for the response', () => {
  const config = configWith(
    { 'app-events': { source: 'direct-put', destinations: ['lake'], transform: { processorBufferMiB: 3 } } },
    ['local.bufferIntervalSeconds=900', 'local.bufferSizeMiB=8'],
  );
  let run: FaultTwin | undefined;

  afterAll(async () => {
    await run?.stop();
    removeDir(run?.dataDir);
  }, 60_000);

  test('the twin warns at start; the records past the budget go to the DLQ as response-size, safe to replay', async () => {
    run = await startFaultTwin(config);
    const warnings = run.log.filter((l) => l.startsWith('sluice: warning: pipelines.app-events.transform.processorBufferMiB is 3'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/over Lambda's 6 MB response limit.*At most \d\.\d fits/);
    // 3 MiB of 125-byte records: one 3 MiB invocation when the twin flushes.
    const ids = await putSmallRecords(run, config, 51);
    await run.twin.settle(60_000);
    const rows = await lakeColumn(run.dataDir, config, 'app_events');
    const dead = dlqMessages(run.dataDir, config);
    expect(dead.length).toBeGreaterThan(1000);
    expect(rows.length).toBeGreaterThan(1000);
    expect(rows.length + dead.length).toBe(ids.length);
    expect(new Set(dead.map((m) => `${m.errorType} ${m.errorCode}`))).toEqual(new Set(['processing-failed Lambda.ProcessingFailedStatus']));
    expect(String((dead[0] as { reason?: unknown }).reason)).toMatch(/safe to replay/);
  }, 120_000);
});

