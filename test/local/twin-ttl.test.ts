import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PutItemCommand, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { loadConfig } from '../../lib/config';
import { dynamoClient } from '../../lib/local/aws-clients';
import { startDynamo } from '../../lib/local/emulators';
import { freePort } from '../../lib/local/ports';
import { ensureMetadataTable, metadataTableName, startTwin } from '../../lib/local/twin';
import { METADATA_TABLE_KEYS } from '../../transforms/shared/metadata-table';

// kinesis-mock's start costs seconds on a loaded machine.
jest.setTimeout(120_000);

const { partitionKey, sortKey, ttlAttribute } = METADATA_TABLE_KEYS;

function item(pk: string, ttlSeconds?: number): Record<string, AttributeValue> {
  return { [partitionKey]: { S: pk }, [sortKey]: { S: 'event' }, ...(ttlSeconds === undefined ? {} : { [ttlAttribute]: { N: String(ttlSeconds) } }) };
}

describe("the twin applies the metadata table's TTL, which dynalite does not", () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ttl-'));
  });
  afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  test('items expired before the start and while it runs are deleted; the others stay; the stop ends the sweeping', async () => {
    const config = loadConfig(['pipelines={"iot":{}}']);
    const tableName = metadataTableName(config);
    const nowS = Math.floor(Date.now() / 1000);
    // Written by an earlier run, as the metadata consumer writes them: one expired since.
    const before = await startDynamo({ port: await freePort(), dataDir });
    const earlier = dynamoClient(before.endpoint);
    await ensureMetadataTable(earlier, tableName);
    for (const i of [item('expired-before', nowS - 3600), item('future', nowS + 86_400), item('no-ttl')]) await earlier.send(new PutItemCommand({ TableName: tableName, Item: i }));
    earlier.destroy();
    await before.stop();

    const lines: string[] = [];
    const twin = await startTwin({ config, dataDir, ports: { firehose: 0, kinesis: 0, dynamo: 0 }, ttlSweepIntervalMs: 100, log: (line) => lines.push(line) });
    const client = dynamoClient(twin.endpoints.dynamo);
    const keys = async () => ((await client.send(new ScanCommand({ TableName: tableName }))).Items ?? []).map((i) => i[partitionKey].S).sort();
    try {
      // Until each sweep has said what it deleted: a stop right after the deletes would cut it short of saying so.
      const deletions = () => lines.filter((l) => l.includes('expired item')).length;
      await until(async () => deletions() === 1);
      expect(await keys()).not.toContain('expired-before');
      await client.send(new PutItemCommand({ TableName: tableName, Item: item('expired-while-running', nowS - 1) }));
      await until(async () => deletions() === 2);
      expect(await keys()).toEqual(['future', 'no-ttl']);
    } finally {
      client.destroy();
      await twin.stop();
    }
    expect(lines.filter((l) => l.includes('expired item'))).toEqual([
      expect.stringMatching(new RegExp(`^sluice: deleted 1 expired item \\(TTL\\) of 3 in the metadata table ${tableName}, in [\\d.]+ s$`)),
      expect.stringMatching(new RegExp(`^sluice: deleted 1 expired item \\(TTL\\) of 3 in the metadata table ${tableName}, in [\\d.]+ s$`)),
    ]);
    // Nothing of the sweeper outlives the stop: dynalite closed, and no sweep said it failed.
    expect(lines.filter((l) => l.includes('TTL sweep failed'))).toEqual([]);
  });
});

async function until(condition: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}
