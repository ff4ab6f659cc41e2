import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { resourceNames } from '../../lib/config';
import { readSchema } from '../../lib/schema';
import { createRng, sampleRecord } from '../../lib/schema/sample';
import { dynamoDocumentClient, kinesisClient } from '../../lib/local/aws-clients';
import { FaultInjector } from '../../lib/local/faults';
import { configWith, removeDir, sorted, startFaultTwin, type FaultTwin } from './helpers';

/**
 * DynamoDB throttles the metadata consumer. A write still throttled when the consumer's retry
 * budget runs out is reported as a batch item failure and the event source mapping retries from
 * there; an invocation that outlives its timeout (a slow answer) fails whole and is bisected; a
 * request applied whose answer is lost is sent again by the SDK. Each event is recorded once: its
 * item exists, and the per-minute counters add up exactly.
 */
describe('faults: DynamoDB throttles the metadata consumer and loses answers', () => {
  const config = configWith({ iot: { shards: 1, destinations: ['metadata'], consumer: { batchSize: 40, timeoutSeconds: 6 } } });
  let run: FaultTwin | undefined;

  afterAll(async () => {
    await run?.stop();
    removeDir(run?.dataDir);
  }, 60_000);

  test('partial batch failures and bisection recover; event items and counters are exact', async () => {
    const schema = readSchema('iot');
    const rng = createRng(9);
    const records = Array.from({ length: 200 }, () => sampleRecord(schema, rng));
    const data = records.map((r) => Buffer.from(JSON.stringify(r)));
    const ids = records.map((r) => String(r.event_id));
    // The write of E1's event item (and the others in its BatchWriteItem) is throttled until the consumer's retry budget
    // (2 s of the 6 s timeout) runs out: a partial failure. Right after E2's, counter updates are throttled as long: the
    // events are written, their counts not yet. E3's is answered after 6.5 s, past the timeout: the invocation fails
    // whole and is bisected.
    const [e1, e2, e3] = [ids[30], ids[90], ids[150]];
    const since = new Map<string, number>();
    let countersThrottledUntil = 0;
    let e3Slowed = false;
    let lostAnswers = 0;
    const random = createRng(4);
    const faults = new FaultInjector({
      dynamo: {
        decide: ({ operation, body }) => {
          const now = Date.now();
          // dynalite has no transactions: the consumer writes event items with BatchWriteItem (25 at a time).
          const writes = (id: string) => operation === 'BatchWriteItem' && body.includes(`"event#iot#${id}"`);
          if (writes(e1)) {
            if (!since.has(e1)) since.set(e1, now);
            // Throttled until the consumer has given up on it once (a store attempt's own SDK retries can outlast
            // a fixed window, and then the write simply succeeds late); 10 s at most.
            const gaveUp = (run?.twin.summary()[0].metadata?.partialFailures ?? 0) > 0;
            if (!gaveUp && now - since.get(e1)! < 10_000) return 'ProvisionedThroughputExceededException';
          }
          if (writes(e2) && !since.has(e2)) {
            since.set(e2, now);
            countersThrottledUntil = now + 3000;
            return undefined;
          }
          if (writes(e3) && !e3Slowed) {
            e3Slowed = true;
            return { delayMs: 6500 };
          }
          if (operation === 'UpdateItem' && body.includes('"count#iot#') && now < countersThrottledUntil) return 'ThrottlingException';
          // Some counter increments and writes are applied and their answers lost: the SDK sends them again.
          if (operation === 'UpdateItem' && body.includes('"count#iot#') && random() < 0.3) {
            lostAnswers++;
            return 'AnswerLost';
          }
          if (operation === 'BatchWriteItem' && random() < 0.1) return 'AnswerLost';
          // And a little throttling everywhere, which the SDK's own retries absorb.
          return random() < 0.02 ? 'ProvisionedThroughputExceededException' : undefined;
        },
      },
    });
    run = await startFaultTwin(config, { faults });

    const kinesis = kinesisClient(run.twin.endpoints.kinesis);
    const out = await kinesis.send(new PutRecordsCommand({
      StreamName: resourceNames(config, 'iot').stream,
      Records: data.map((Data, i) => ({ Data, PartitionKey: String(records[i].device_id) })),
    }));
    expect(out.FailedRecordCount ?? 0).toBe(0);
    await run.twin.settle(45_000);

    // Expected: one event item per record; counters per event type and minute; each device's newest event.
    const expectedCounters = new Map<string, { events: number; bytes: number }>();
    const newest = new Map<string, { time: string; id: string }>();
    records.forEach((r, i) => {
      const key = `count#iot#${String(r.event_type)} ${new Date(String(r.event_time)).toISOString().slice(0, 16)}`;
      const c = expectedCounters.get(key) ?? { events: 0, bytes: 0 };
      expectedCounters.set(key, { events: c.events + 1, bytes: c.bytes + data[i].length });
      const device = String(r.device_id);
      const seen = newest.get(device);
      const time = new Date(String(r.event_time)).toISOString();
      if (!seen || seen.time < time || (seen.time === time && seen.id < ids[i])) newest.set(device, { time, id: ids[i] });
    });

    const doc = dynamoDocumentClient(run.twin.endpoints.dynamo);
    const scan = async () => {
      const items: Array<Record<string, unknown>> = [];
      let start: Record<string, unknown> | undefined;
      do {
        const page = await doc.send(new ScanCommand({ TableName: run!.twin.metadataTable, ExclusiveStartKey: start }));
        items.push(...(page.Items ?? []));
        start = page.LastEvaluatedKey;
      } while (start);
      return items;
    };
    const counters = (items: Array<Record<string, unknown>>) => new Map(items
      .filter((i) => String(i.pk).startsWith('count#'))
      .map((i) => [`${String(i.pk)} ${String(i.sk)}`, { events: Number(i.events), bytes: Number(i.bytes) }]));
    // An invocation cut off by its timeout keeps running here (Lambda would stop it): let it finish.
    let items = await scan();
    for (const deadline = Date.now() + 10_000; Date.now() < deadline && !sameCounters(counters(items), expectedCounters);) {
      await new Promise((r) => setTimeout(r, 250));
      items = await scan();
    }

    const events = items.filter((i) => String(i.pk).startsWith('event#'));
    expect(sorted(events.map((e) => String(e.event_id)))).toEqual(sorted(ids));
    expect(Object.fromEntries(counters(items))).toEqual(Object.fromEntries(expectedCounters));
    const entities = items.filter((i) => String(i.pk).startsWith('entity#'));
    expect(Object.fromEntries(entities.map((e) => [String(e.entity), String(e.last_event_id)])))
      .toEqual(Object.fromEntries([...newest].map(([device, n]) => [device, n.id])));

    // Nothing gave up, and both recovery paths really ran.
    expect((await run.twin.dlqCount()).consumer).toBe(0);
    const metadata = run.twin.summary()[0].metadata!;
    expect(metadata.batchesToDestination).toBe(0);
    expect(metadata.partialFailures).toBeGreaterThanOrEqual(1);
    expect(metadata.bisections).toBeGreaterThanOrEqual(1);
    expect(faults.injected().dynamo).toBeGreaterThan(6);
    expect(lostAnswers).toBeGreaterThan(0);
  }, 60_000);
});

function sameCounters(a: Map<string, { events: number; bytes: number }>, b: Map<string, { events: number; bytes: number }>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k)?.events === v.events && b.get(k)?.bytes === v.bytes);
}
