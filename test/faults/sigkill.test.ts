import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PutRecordBatchCommand } from '@aws-sdk/client-firehose';
import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { resourceNames } from '../../lib/config';
import { checkpointPath } from '../../lib/local/shard-reader';
import { readSchema } from '../../lib/schema';
import { badRecordBytes, createRng, sampleRecord } from '../../lib/schema/sample';
import { firehoseClient, kinesisClient } from '../../lib/local/aws-clients';
import { configWith, dlqMessages, errorLines, eventIdOf, lakeColumn, rawOf, removeDir, repeated, sampleRecordBytes, sorted, startLocalUp, waitForExit, type LocalUpProcess } from './helpers';
import { within } from '../within';

/**
 * `sluice local up` is killed (SIGKILL) with records in flight, then started again on the same data
 * dir. What README's "What a crash can lose" promises: nothing acknowledged. Records acknowledged by
 * the Firehose API are in the write-ahead log; records in the Kinesis stream are in kinesis-mock's
 * state, which it persists when the twin dies; an error object written just before the crash
 * reaches the DLQ at the next start.
 */
describe('faults: SIGKILL mid-flight, then a restart on the same data dir', () => {
  const pipelines = {
    'app-events': { source: 'direct-put', destinations: ['lake'] },
    iot: { shards: 1, destinations: ['lake'] },
  };
  const config = configWith(pipelines);
  const args = ['--buffer-interval', '60', '-c', `pipelines=${JSON.stringify(pipelines)}`];
  let dataDir: string | undefined;
  let up: LocalUpProcess | undefined;

  afterAll(async () => {
    up?.child.kill('SIGKILL');
    removeDir(dataDir);
  });

  test('loses no acknowledged record and duplicates none', async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-sigkill-'));
    up = await startLocalUp(dataDir, args);
    const firehose = firehoseClient(up.endpoints.firehose, { maxAttempts: 1 });
    const appSchema = readSchema('app-events');
    const iotSchema = readSchema('iot');
    const rng = createRng(23);
    const acknowledged: Buffer[] = [];
    const unanswered: Buffer[] = [];
    const putBatch = async (records: Buffer[]) => {
      try {
        const out = await firehose.send(new PutRecordBatchCommand({
          DeliveryStreamName: resourceNames(config, 'app-events').lakeDeliveryStream, Records: records.map((Data) => ({ Data })),
        }));
        acknowledged.push(...records.filter((_, i) => !out.RequestResponses?.[i]?.ErrorCode));
      } catch {
        // Unanswered: the process died with the request in flight. Its records may or may not have been
        // taken (as with AWS, a client retries them and may duplicate them); none was acknowledged.
        unanswered.push(...records);
      }
    };
    const good = () => sampleRecordBytes(appSchema, rng, 100);
    const bad = [badRecordBytes(appSchema, 'malformed-json', rng), badRecordBytes(appSchema, 'unknown-enum', rng)];
    await putBatch([...good(), ...bad]);
    await putBatch(good());
    expect(acknowledged).toHaveLength(202);

    const iot = Array.from({ length: 300 }, () => sampleRecord(iotSchema, rng));
    const put = await kinesisClient(up.endpoints.kinesis).send(new PutRecordsCommand({
      StreamName: resourceNames(config, 'iot').stream,
      Records: iot.map((r) => ({ Data: Buffer.from(JSON.stringify(r)), PartitionKey: String(r.device_id) })),
    }));
    expect(put.FailedRecordCount ?? 0).toBe(0);
    // Killed after the iot lake stream has read (and logged) the stream to its end, before any delivery (60 s buffers).
    const lastSequence = BigInt(put.Records![put.Records!.length - 1].SequenceNumber!);
    const checkpoints = checkpointPath(dataDir, resourceNames(config, 'iot').lakeDeliveryStream, resourceNames(config, 'iot').stream);
    const readUpTo = () => {
      try {
        const doc = JSON.parse(fs.readFileSync(checkpoints, 'utf8')) as { shards: Record<string, { sequenceNumber?: string }> };
        return Object.values(doc.shards).some((s) => s.sequenceNumber !== undefined && BigInt(s.sequenceNumber) >= lastSequence);
      } catch {
        return false;
      }
    };
    for (const deadline = Date.now() + 15_000; !readUpTo();) {
      if (Date.now() > deadline) throw new Error(`the iot lake stream did not read the stream within 15 s:\n${up.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }

    const inFlight = Array.from({ length: 4 }, () => putBatch(good()));
    await new Promise((r) => setTimeout(r, 5));
    up.child.kill('SIGKILL');
    await Promise.all(inFlight);
    expect(await up.exited).toEqual({ code: null, signal: 'SIGKILL' });
    await waitForExit(up.children);
    expect(await lakeColumn(dataDir, config, 'app_events')).toEqual([]);

    // An error object the crash left without its DLQ message (Firehose wrote it; the router had not run).
    const orphan = badRecordBytes(appSchema, 'missing-required', rng);
    const orphanKey = 'errors/app-events/processing-failed/2026/11/22/10/sluice-dev-app-events-lake-1-2026-11-22-10-00-00-0b7d3c1e-6a52-4c1e-9d0c-2f4b6e8a1c3d';
    const orphanFile = path.join(dataDir, 's3', 'sluice-dev-data', ...orphanKey.split('/'));
    fs.mkdirSync(path.dirname(orphanFile), { recursive: true });
    fs.writeFileSync(orphanFile, `${JSON.stringify({
      attemptsMade: 1, arrivalTimestamp: Date.parse('2026-11-22T10:00:00Z'), errorCode: 'Lambda.ProcessingFailedStatus',
      errorMessage: 'ProcessingFailed status set for record', attemptEndingTimestamp: Date.parse('2026-11-22T10:00:01Z'),
      rawData: orphan.toString('base64'), lambdaArn: 'arn:aws:lambda:us-east-1:000000000000:function:sluice-dev-app-events-lake-transform',
    })}\n`);

    // What a crash while DuckDB wrote a Parquet file leaves: a temp file the restart removes.
    const leftover = path.join(dataDir, 's3', '.tmp', '6f1d2c3b-0a9e-4b8d-8c7f-5e4d3c2b1a09.parquet');
    fs.mkdirSync(path.dirname(leftover), { recursive: true });
    fs.writeFileSync(leftover, 'PAR1');

    up = await startLocalUp(dataDir, args);
    expect(fs.existsSync(leftover)).toBe(false);
    up.child.kill('SIGTERM');
    const exit = await within(up.exited, 45_000, 'still running after 45 s');
    expect([exit, up.output()]).toEqual([{ code: 0, signal: null }, expect.stringContaining('SIGTERM: flushing')]);

    // Every acknowledged record once; beyond them, only records of requests the crash left unanswered.
    const apps = await lakeColumn(dataDir, config, 'app_events');
    expect(repeated(apps)).toEqual([]);
    const acknowledgedIds = acknowledged.filter((b) => !bad.includes(b)).map(eventIdOf);
    const maybe = new Set(unanswered.map(eventIdOf));
    expect(sorted(apps.filter((id) => !maybe.has(id)))).toEqual(sorted(acknowledgedIds));
    const iotRows = await lakeColumn(dataDir, config, 'iot');
    expect(repeated(iotRows)).toEqual([]);
    expect(sorted(iotRows)).toEqual(sorted(iot.map((r) => String(r.event_id))));
    const errors = errorLines(dataDir, 'sluice-dev-data', 'errors/');
    expect(sorted(errors.map(rawOf))).toEqual(sorted([...bad, orphan].map((b) => b.toString())));
    const dlq = dlqMessages(dataDir, config);
    expect(sorted(dlq.map((m) => Buffer.from(m.rawData ?? '', 'base64').toString()))).toEqual(sorted([...bad, orphan].map((b) => b.toString())));
  }, 150_000);

  test('a Kinesis producer that keeps sending while the twin dies: every record kinesis-mock acknowledged is delivered after the restart', async () => {
    removeDir(dataDir);
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-sigkill-kinesis-'));
    const iotOnly = { iot: { shards: 1, destinations: ['lake'] } };
    const iotArgs = ['--buffer-interval', '60', '-c', `pipelines=${JSON.stringify(iotOnly)}`];
    const iotConfig = configWith(iotOnly);
    up = await startLocalUp(dataDir, iotArgs);
    const kinesis = kinesisClient(up.endpoints.kinesis, { maxAttempts: 1 });
    const schema = readSchema('iot');
    const rng = createRng(29);
    const acknowledged: string[] = [];
    const unanswered: string[] = [];
    let stopAt = Infinity;
    // As `sluice put` does: batches back to back, and after a failure, again.
    const producer = (async () => {
      while (Date.now() < stopAt) {
        const records = Array.from({ length: 50 }, () => sampleRecord(schema, rng));
        try {
          const out = await kinesis.send(new PutRecordsCommand({
            StreamName: resourceNames(iotConfig, 'iot').stream,
            Records: records.map((r) => ({ Data: Buffer.from(JSON.stringify(r)), PartitionKey: String(r.device_id) })),
          }));
          records.forEach((r, i) => (out.Records?.[i]?.ErrorCode ? unanswered : acknowledged).push(String(r.event_id)));
        } catch {
          unanswered.push(...records.map((r) => String(r.event_id)));
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    })();
    while (acknowledged.length < 500) await new Promise((r) => setTimeout(r, 20));
    up.child.kill('SIGKILL');
    expect(await up.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const killedOutput = up.output();
    // The producer goes on until kinesis-mock, left alone, has exited.
    await waitForExit(up.children);
    stopAt = Date.now();
    await producer;
    kinesis.destroy();

    up = await startLocalUp(dataDir, iotArgs);
    // Wait until the lake stream has read everything acknowledged (its checkpoint), then flush with SIGTERM.
    const checkpoints = checkpointPath(dataDir, resourceNames(iotConfig, 'iot').lakeDeliveryStream, resourceNames(iotConfig, 'iot').stream);
    const readCount = () => {
      try {
        return fs.statSync(checkpoints).mtimeMs;
      } catch {
        return 0;
      }
    };
    for (const deadline = Date.now() + 5000; readCount() === 0 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1500));
    up.child.kill('SIGTERM');
    const exit = await within(up.exited, 45_000, 'still running after 45 s');
    expect([exit, up.output()]).toEqual([{ code: 0, signal: null }, expect.stringContaining('SIGTERM: flushing')]);

    const rows = await lakeColumn(dataDir, iotConfig, 'iot');
    expect(repeated(rows)).toEqual([]);
    const delivered = new Set(rows);
    const missing = acknowledged.filter((id) => !delivered.has(id));
    // On failure, what both runs printed (kinesis-mock's own lines included) says where they went.
    expect({ missing: missing.length, of: acknowledged.length, killed: killedOutput.slice(-3000), restarted: up.output().slice(-3000) })
      .toEqual({ missing: 0, of: acknowledged.length, killed: expect.any(String), restarted: expect.any(String) });
    const sent = new Set([...acknowledged, ...unanswered]);
    expect(rows.filter((id) => !sent.has(id))).toEqual([]);
  }, 180_000);
});

