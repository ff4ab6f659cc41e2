import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { loadConfig } from '../../lib/config';
import { dynamoDocumentClient, kinesisClient } from '../../lib/local/aws-clients';
import { LocalAthena } from '../../lib/local/athena';
import { startKinesis } from '../../lib/local/emulators';
import { startTwin } from '../../lib/local/twin';
import { readSchema } from '../../lib/schema';
import { createRng, sampleRecord } from '../../lib/schema/sample';

const STREAM = 'sluice-dev-iot';
const DEVICES = 4;

/** The event id of the n-th event put: a UUID that sorts as n does. */
const eventId = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

/** Puts `count` iot events numbered from `from`, the device id their partition key. */
async function putEvents(endpoint: string, from: number, count: number): Promise<void> {
  const rng = createRng(from + 1);
  const client = kinesisClient(endpoint);
  try {
    const events = Array.from({ length: count }, (_, i) => ({
      ...sampleRecord(readSchema('iot'), rng), event_id: eventId(from + i), device_id: `dev-0000000${(from + i) % DEVICES}`,
    }));
    const out = await client.send(new PutRecordsCommand({
      StreamName: STREAM, Records: events.map((e) => ({ PartitionKey: e.device_id, Data: Buffer.from(`${JSON.stringify(e)}\n`) })),
    }));
    expect(out.FailedRecordCount ?? 0).toBe(0);
  } finally {
    client.destroy();
  }
}

// The twin stopped with records in its stream, started with another shard count: the parent is closed under them.
describe('the twin resharding a stream that holds records it has not read', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-reshard-'));
  });
  afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  // A split (1 → 2); test/local/shard-reader.test.ts follows a merge made by UpdateShardCount too.
  test('every record is delivered once, each key from the parent before its children, and a restart reads neither again', async () => {
    const [from, to, parent] = [1, 2, 'shardId-000000000000'];
    const ports = { firehose: 0, kinesis: 0, dynamo: 0 };
    const config = (shards: number) => loadConfig([`pipelines={"iot":{"shards":${shards}}}`, 'local.bufferIntervalSeconds=1']);
    const first = await startTwin({ config: config(from), dataDir, ports, pollIntervalMs: 100, log: () => undefined });
    await putEvents(first.endpoints.kinesis, 0, 40);
    await first.stop();

    // Put while no twin reads: the consumers' checkpoints are in the middle of shard 0 when the reshard closes it.
    const emulator = await startKinesis({ port: 0, dataDir });
    await putEvents(emulator.endpoint, 40, 60);
    await emulator.stop();

    const lines: string[] = [];
    const resharded = await startTwin({ config: config(to), dataDir, ports, pollIntervalMs: 100, log: (line) => lines.push(line) });
    try {
      expect(lines.some((l) => l.includes(`resharded from ${from} to ${to} open shard`))).toBe(true);
      await putEvents(resharded.endpoints.kinesis, 100, 60);
      await resharded.settle(60_000);
    } finally {
      await resharded.stop();
    }

    // Started again on the same shards: the parent, read to its end, is not read again; the children go on from their checkpoints.
    const again = await startTwin({ config: config(to), dataDir, ports, pollIntervalMs: 100, log: () => undefined });
    try {
      await putEvents(again.endpoints.kinesis, 160, 40);
      await again.settle(60_000);
      const doc = dynamoDocumentClient(again.endpoints.dynamo);
      const items = await doc.send(new ScanCommand({
        TableName: again.metadataTable, FilterExpression: 'begins_with(pk, :p)', ExpressionAttributeValues: { ':p': 'event#iot#' },
      }));
      expect(items.Items).toHaveLength(200);
      // The consumer invoked each record once: 40 of the 200 in this run.
      expect(again.summary().find((s) => s.pipeline === 'iot')?.metadata?.recordsSucceeded).toBe(40);
      expect(again.summary().find((s) => s.pipeline === 'iot')?.lake?.received).toBe(40);
    } finally {
      await again.stop();
    }

    const athena = await LocalAthena.open(dataDir, config(to));
    try {
      const counts = await athena.query('SELECT count(*), count(DISTINCT event_id) FROM iot');
      expect(counts.rows).toEqual([[200n, 200n]]);
      // Per device, every row from the parent shard was processed no later than the first from a child.
      const rows = await athena.query('SELECT device_id, sluice.shard_id, sluice.processed_at FROM iot');
      const byDevice = new Map<string, Array<{ shard: string; at: number }>>();
      for (const [device, shard, at] of rows.rows as Array<[string, string, unknown]>) {
        const list = byDevice.get(device) ?? [];
        list.push({ shard, at: new Date(String(at)).getTime() });
        byDevice.set(device, list);
      }
      expect(byDevice.size).toBe(DEVICES);
      for (const list of byDevice.values()) {
        const fromParent = list.filter((r) => r.shard === parent);
        const fromChildren = list.filter((r) => r.shard !== parent);
        expect(fromParent).toHaveLength(25);
        expect(fromChildren).toHaveLength(25);
        expect(Math.max(...fromParent.map((r) => r.at))).toBeLessThanOrEqual(Math.min(...fromChildren.map((r) => r.at)));
      }
    } finally {
      athena.close();
    }
  }, 240_000);
});
