import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PutRecordBatchCommand } from '@aws-sdk/client-firehose';
import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { resourceNames } from '../../lib/config';
import { readSchema } from '../../lib/schema';
import { badRecordBytes, createRng, sampleRecord } from '../../lib/schema/sample';
import { firehoseClient, kinesisClient } from '../../lib/local/aws-clients';
import { configWith, dlqMessages, errorLines, eventIdOf, lakeColumn, rawOf, removeDir, repeated, sampleRecordBytes, sorted, startLocalUp, type LocalUpProcess } from './helpers';
import { within } from '../within';

/**
 * `sluice local up` gets SIGTERM while records are in flight: buffered (a 60 s buffer interval, so
 * nothing is delivered before the signal), still in the Kinesis stream, and in PutRecordBatch calls
 * not yet answered. It stops taking records, delivers every acknowledged one, and exits 0.
 */
describe('faults: SIGTERM while records are in flight', () => {
  const pipelines = {
    'app-events': { source: 'direct-put', destinations: ['lake'] },
    iot: { shards: 1, destinations: ['lake'] },
  };
  const config = configWith(pipelines);
  let dataDir: string | undefined;
  let up: LocalUpProcess | undefined;

  afterAll(async () => {
    up?.child.kill('SIGKILL');
    removeDir(dataDir);
  });

  test('exits 0 and every acknowledged record is a Parquet row or an error object', async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-sigterm-'));
    up = await startLocalUp(dataDir, ['--buffer-interval', '60', '-c', `pipelines=${JSON.stringify(pipelines)}`], undefined, ['--require', path.join(__dirname, 'stop-listeners.js')]);
    // It takes SIGTERM and Ctrl-C before it says it runs: a SIGTERM sent on reading that line is a stop, not a death by
    // the signal (a CI run saw one so, in sigkill.test.ts, when the listeners came just after the line).
    expect(up.output()).toMatch(/^stop-listeners: SIGTERM [1-9]\d* SIGINT [1-9]\d*$/mu);
    const firehose = firehoseClient(up.endpoints.firehose, { maxAttempts: 1 });
    const kinesis = kinesisClient(up.endpoints.kinesis);
    const appSchema = readSchema('app-events');
    const iotSchema = readSchema('iot');
    const rng = createRng(17);
    const acknowledged: Buffer[] = [];
    const putBatch = async (records: Buffer[]) => {
      try {
        const out = await firehose.send(new PutRecordBatchCommand({
          DeliveryStreamName: resourceNames(config, 'app-events').lakeDeliveryStream, Records: records.map((Data) => ({ Data })),
        }));
        acknowledged.push(...records.filter((_, i) => !out.RequestResponses?.[i]?.ErrorCode));
      } catch {
        // Not answered (the endpoint closed): nothing of it was acknowledged.
      }
    };
    const good = () => sampleRecordBytes(appSchema, rng, 100);
    const bad = [badRecordBytes(appSchema, 'malformed-json', rng), badRecordBytes(appSchema, 'missing-required', rng)];

    await putBatch([...good(), ...bad]);
    await putBatch(good());
    const iot = Array.from({ length: 300 }, () => sampleRecord(iotSchema, rng));
    const put = await kinesis.send(new PutRecordsCommand({
      StreamName: resourceNames(config, 'iot').stream,
      Records: iot.map((r) => ({ Data: Buffer.from(JSON.stringify(r)), PartitionKey: String(r.device_id) })),
    }));
    expect(put.FailedRecordCount ?? 0).toBe(0);
    expect(acknowledged).toHaveLength(202);

    // More batches in flight as the signal arrives: each is acknowledged in full, refused, or unanswered.
    const inFlight = Array.from({ length: 4 }, () => putBatch(good()));
    up.child.kill('SIGTERM');
    await Promise.all(inFlight);
    const exit = await within(up.exited, 40_000, 'still running after 40 s');
    expect([exit, up.output()]).toEqual([{ code: 0, signal: null }, expect.stringContaining('SIGTERM: flushing')]);

    const apps = await lakeColumn(dataDir, config, 'app_events');
    const goodAcknowledged = acknowledged.filter((b) => !bad.includes(b)).map(eventIdOf);
    expect(repeated(apps)).toEqual([]);
    expect(sorted(apps)).toEqual(sorted(goodAcknowledged));
    const iotRows = await lakeColumn(dataDir, config, 'iot');
    expect(repeated(iotRows)).toEqual([]);
    expect(sorted(iotRows)).toEqual(sorted(iot.map((r) => String(r.event_id))));
    const errors = errorLines(dataDir, 'sluice-dev-data', 'errors/');
    expect(sorted(errors.map(rawOf))).toEqual(sorted(bad.map((b) => b.toString())));
    expect(dlqMessages(dataDir, config)).toHaveLength(2);
  }, 60_000);
});
