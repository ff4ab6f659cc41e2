import * as path from 'node:path';
import { PutRecordBatchCommand } from '@aws-sdk/client-firehose';
import { resourceNames } from '../../lib/config';
import { readSchema } from '../../lib/schema';
import { badRecordBytes, createRng } from '../../lib/schema/sample';
import { firehoseClient } from '../../lib/local/aws-clients';
import { FaultInjector } from '../../lib/local/faults';
import { configWith, dlqMessages, errorLines, rawOf, removeDir, sampleRecordBytes, sorted, startFaultTwin, type FaultTwin } from './helpers';

/**
 * The dead-letter queue cannot be written while the twin stops, with a fresh error object still being routed. The
 * stop ends all the same; the object's records are not in the DLQ, and the twin says so (leftInS3().notYetRouted),
 * rather than leaving them out of every count. The next start routes them.
 */
describe('faults: the DLQ cannot be written while the twin stops', () => {
  const config = configWith({ 'app-events': { source: 'direct-put', destinations: ['lake'] } });
  const stream = resourceNames(config, 'app-events').lakeDeliveryStream;
  const schema = readSchema('app-events');
  const rng = createRng(33);
  let dlqDown = true;
  const faults = new FaultInjector({ dlq: { decide: () => dlqDown } });
  let run: FaultTwin | undefined;
  let dataDir: string | undefined;

  afterAll(async () => {
    dlqDown = false;
    await run?.stop();
    removeDir(dataDir);
  }, 60_000);

  test('the error object given up on is named at the stop, and routed at the next start', async () => {
    run = await startFaultTwin(config, { faults });
    dataDir = run.dataDir;
    const bad = [badRecordBytes(schema, 'malformed-json', rng), badRecordBytes(schema, 'unknown-enum', rng)];
    const firehose = firehoseClient(run.twin.endpoints.firehose, { maxAttempts: 1 });
    const out = await firehose.send(new PutRecordBatchCommand({
      DeliveryStreamName: stream, Records: [...sampleRecordBytes(schema, rng, 5), ...bad].map((Data) => ({ Data })),
    }));
    expect(out.FailedPutCount).toBe(0);

    // The stop comes while the router is retrying the fresh error object (three invocations failed already).
    const routerFailures = () => run!.log.filter((l) => /^sluice: failure router on s3:\/\/sluice-dev-data\/errors\/app-events\/.*could not be sent after 5 attempts/.test(l)).length;
    for (const deadline = Date.now() + 45_000; routerFailures() < 3 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 100));
    expect(routerFailures()).toBeGreaterThanOrEqual(3);
    const before = routerFailures();
    await run.stop();
    // Three tries once the stop began, whatever failed before it (the one under way when it began is the first; one
    // that failed just before the stop set in may add a line).
    expect(routerFailures() - before).toBeGreaterThanOrEqual(3);
    expect(routerFailures() - before).toBeLessThanOrEqual(4);

    const errors = errorLines(dataDir, run.twin.bucket, 'errors/app-events/');
    expect(sorted(errors.map(rawOf))).toEqual(sorted(bad.map((b) => b.toString())));
    const files = [...new Set(errors.map((e) => path.join(dataDir!, 's3', run!.twin.bucket, e.key)))].sort();
    expect((await run.twin.dlqCount()).records).toBe(0);
    expect(run.twin.leftInS3()).toEqual({ unreadableLines: 0, damagedObjects: 0, files: [], notYetRouted: files });
    expect(run.log).toContainEqual(expect.stringMatching(/is routed to the DLQ when the twin starts again on this data dir$/));

    // The next start on the data dir routes it, once the DLQ can be written again.
    dlqDown = false;
    run = await startFaultTwin(config, { faults, dataDir });
    await run.twin.settle(30_000);
    expect(sorted(dlqMessages(dataDir, config).map((m) => Buffer.from(m.rawData ?? '', 'base64').toString()))).toEqual(sorted(bad.map((b) => b.toString())));
    await run.stop();
    expect(run.twin.leftInS3().notYetRouted).toEqual([]);
    expect((await run.twin.dlqCount()).records).toBe(2);
  }, 90_000);
});
