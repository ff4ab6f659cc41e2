import * as fs from 'node:fs';
import * as path from 'node:path';
import { PutRecordBatchCommand } from '@aws-sdk/client-firehose';
import { resourceNames } from '../../lib/config';
import { readSchema } from '../../lib/schema';
import { badRecordBytes, createRng } from '../../lib/schema/sample';
import { firehoseClient } from '../../lib/local/aws-clients';
import { FaultInjector } from '../../lib/local/faults';
import { configWith, dlqMessages, errorLines, eventIdOf, lakeColumn, rawOf, removeDir, repeated, sampleRecordBytes, sorted, startFaultTwin, type FaultTwin } from './helpers';

/**
 * The disk under the data dir is full, then read-only, for a while. Records that arrive then are
 * refused with an error that says why (nothing is acknowledged that could be lost); records already
 * acknowledged wait in the write-ahead log and are delivered, once, when the disk recovers — while
 * the twin runs, or at its next start when it was stopped meanwhile.
 */
describe('faults: the disk is full or read-only for a while', () => {
  const config = configWith({ 'app-events': { source: 'direct-put', destinations: ['lake'] } });
  const stream = resourceNames(config, 'app-events').lakeDeliveryStream;
  const schema = readSchema('app-events');
  const rng = createRng(21);
  const good = (n: number) => sampleRecordBytes(schema, rng, n);
  const faults = new FaultInjector();
  let run: FaultTwin | undefined;
  let dataDir: string | undefined;
  const acknowledged: Buffer[] = [];
  const bad: Buffer[] = [];

  afterAll(async () => {
    faults.healStorage();
    await run?.stop();
    removeDir(dataDir);
  }, 60_000);

  const put = async (records: Buffer[]) => {
    const firehose = firehoseClient(run!.twin.endpoints.firehose, { maxAttempts: 1 });
    const out = await firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: stream, Records: records.map((Data) => ({ Data })) }));
    const responses = out.RequestResponses ?? [];
    acknowledged.push(...records.filter((_, i) => !responses[i]?.ErrorCode));
    return responses;
  };

  test('while it runs: refused with a clear error, then every acknowledged record delivered once', async () => {
    run = await startFaultTwin(config, { faults });
    dataDir = run.dataDir;
    bad.push(badRecordBytes(schema, 'malformed-json', rng), badRecordBytes(schema, 'unknown-enum', rng));
    expect((await put([...good(300), ...bad])).every((r) => !r.ErrorCode)).toBe(true);

    // The disk fills up before the buffer is delivered (1 s interval).
    faults.failStorage('ENOSPC');
    const refused = good(50);
    const answers = await put(refused);
    expect(answers.map((r) => r.ErrorCode)).toEqual(refused.map(() => 'ServiceUnavailableException'));
    expect(answers[0].ErrorMessage).toMatch(/could not write its write-ahead log \(ENOSPC: no space left on device, write '.*\/firehose\/sluice-dev-app-events-lake\/wal\/\d+\.log'\); these records were not accepted/);

    // Delivery keeps trying (a second failed write) and says why, naming the object it could not write. Waited for,
    // not slept on: on a busy machine 2.5 s can hold a single try (the first comes at the 1 s interval, and
    // converting to Parquet is DuckDB's work).
    const refusedWrites = faults.injected().storage;
    const saysWhy = () => run!.log.some((l) => /app-events lake: (convert to Parquet for|write) s3:\/\/sluice-dev-data\/data\/app-events\/.*ENOSPC: no space left on device/.test(l));
    const triedAgain = () => faults.injected().storage >= refusedWrites + 2;
    for (const deadline = Date.now() + 20_000; !(saysWhy() && triedAgain()) && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 100));
    expect(saysWhy()).toBe(true);
    expect(triedAgain()).toBe(true);
    expect(await lakeColumn(run.dataDir, config, 'app_events')).toEqual([]);
    expect(run.twin.summary()[0].lake?.pending).toBe(302);

    faults.healStorage();
    expect((await put(refused)).every((r) => !r.ErrorCode)).toBe(true);
    await run.twin.settle(30_000);

    const lake = await lakeColumn(run.dataDir, config, 'app_events');
    expect(repeated(lake)).toEqual([]);
    expect(sorted(lake)).toEqual(sorted(acknowledged.filter((b) => !bad.includes(b)).map(eventIdOf)));
    const errors = errorLines(run.dataDir, run.twin.bucket, 'errors/app-events/');
    expect(sorted(errors.map(rawOf))).toEqual(sorted(bad.map((b) => b.toString())));
    expect(dlqMessages(run.dataDir, config)).toHaveLength(2);
    expect(faults.injected().storage).toBeGreaterThan(2);
  }, 60_000);

  test('when it stops on a read-only disk: the stop ends and says so; the next start delivers what was acknowledged', async () => {
    const before = acknowledged.length;
    expect((await put(good(120))).every((r) => !r.ErrorCode)).toBe(true);
    faults.failStorage('EROFS');
    await run!.stop();
    expect(run!.log.join('\n')).toMatch(/120 records could not be delivered before stopping \(EROFS: read-only file system, .*\); they stay in the write-ahead log/);
    expect(await lakeColumn(dataDir!, config, 'app_events')).toHaveLength(before - bad.length);

    faults.healStorage();
    run = await startFaultTwin(config, { dataDir });
    expect(run.twin.summary()[0].lake?.recovered).toBe(120);
    await run.twin.settle(30_000);
    const lake = await lakeColumn(dataDir!, config, 'app_events');
    expect(repeated(lake)).toEqual([]);
    expect(sorted(lake)).toEqual(sorted(acknowledged.filter((b) => !bad.includes(b)).map(eventIdOf)));
    // The first run's temporary files did not outlive it.
    expect(fs.readdirSync(path.join(dataDir!, 's3', '.tmp'))).toEqual([]);
  }, 60_000);
});
