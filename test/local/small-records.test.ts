import { randomUUID } from 'node:crypto';
import { PutRecordBatchCommand } from '@aws-sdk/client-firehose';
import { resourceNames } from '../../lib/config';
import { firehoseClient } from '../../lib/local/aws-clients';
import { configWith, dlqMessages, lakeColumn, removeDir, sorted, startFaultTwin, type FaultTwin } from '../faults/helpers';

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
    const firehose = firehoseClient(run.twin.endpoints.firehose, { maxAttempts: 1 });
    const ids: string[] = [];
    try {
      for (let call = 0; call < 20; call++) {
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
    // A flush once 1 MiB is buffered (after 17 calls) and one at the end: the first invocation holds 8,388 records.
    await run.twin.settle(60_000);
    expect(dlqMessages(run.dataDir, config)).toEqual([]);
    expect(sorted(await lakeColumn(run.dataDir, config, 'app_events'))).toEqual(sorted(ids));
  }, 120_000);
});
