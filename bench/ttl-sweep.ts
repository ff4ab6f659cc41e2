/**
 * The twin's TTL sweep of its metadata table (lib/local/ttl-sweep.ts), as the twin runs it: dynalite on a data dir,
 * items shaped like the metadata consumer's event items, a share of them expired. Against a floor measured in the
 * same run: a plain paged Scan of the same keys and TTLs (no filter, no deletes, no pause between pages), which is
 * what reading the table costs at least. The sweep filters the expired items in the Scan (fewer items answered),
 * pauses after each page as long as the page took, and deletes each expired item with a conditional DeleteItem of
 * its own.
 *
 * Run: node bin/run-ts.js bench/ttl-sweep.ts [--quick]. Prints a table; never fails on timing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BatchWriteItemCommand, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { dynamoClient } from '../lib/local/aws-clients';
import { startDynamo } from '../lib/local/emulators';
import { freePort } from '../lib/local/ports';
import { ensureMetadataTable } from '../lib/local/twin';
import { sweepExpiredItems } from '../lib/local/ttl-sweep';
import { METADATA_TABLE_KEYS } from '../transforms/shared/metadata-table';
import { machine, QUICK, table } from './report';

const ITEMS = QUICK ? 20_000 : 100_000;
const EXPIRED_SHARE = 0.1;
const TABLE = 'sluice-bench-metadata';

async function main(): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-ttl-'));
  const dynamo = await startDynamo({ port: await freePort(), dataDir });
  const client = dynamoClient(dynamo.endpoint);
  try {
    const { partitionKey, sortKey, ttlAttribute } = METADATA_TABLE_KEYS;
    await ensureMetadataTable(client, TABLE);
    const nowSeconds = Math.floor(Date.now() / 1000);
    const writeStarted = performance.now();
    let batch: Array<Record<string, AttributeValue>> = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const items = batch;
      batch = [];
      await client.send(new BatchWriteItemCommand({ RequestItems: { [TABLE]: items.map((Item) => ({ PutRequest: { Item } })) } }));
    };
    for (let i = 0; i < ITEMS; i++) {
      const at = new Date().toISOString();
      // An event item of about the size the metadata consumer writes (~330 bytes).
      batch.push({
        [partitionKey]: { S: `event#clickstream#${crypto.randomUUID()}` },
        [sortKey]: { S: 'event' },
        pipeline: { S: 'clickstream' },
        event_type: { S: 'page_view' },
        event_time: { S: at },
        arrival_time: { S: at },
        shard_id: { S: 'shardId-000000000000' },
        sequence_number: { S: '49650000000000000000000000000000000000000000000000000000' },
        size_bytes: { N: '412' },
        partition_path: { S: 'event_type=page_view/year=2026/month=12/day=06/hour=01' },
        entity: { S: `user-${i % 5000}` },
        [ttlAttribute]: { N: String(i < ITEMS * EXPIRED_SHARE ? nowSeconds - 60 : nowSeconds + 30 * 86_400) },
      });
      if (batch.length === 25) await flush();
    }
    await flush();
    const writeSeconds = (performance.now() - writeStarted) / 1000;

    // The floor: every page of keys and TTLs, nothing else.
    const floorStarted = performance.now();
    let floorScanned = 0;
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await client.send(new ScanCommand({
        TableName: TABLE, Limit: 500, ProjectionExpression: '#p, #s, #t',
        ExpressionAttributeNames: { '#p': partitionKey, '#s': sortKey, '#t': ttlAttribute }, ExclusiveStartKey: startKey,
      }));
      floorScanned += page.ScannedCount ?? 0;
      startKey = page.LastEvaluatedKey;
    } while (startKey !== undefined);
    const floorSeconds = (performance.now() - floorStarted) / 1000;

    const rows: Array<Array<string | number>> = [['floor: paged Scan of keys and ttl', floorScanned.toLocaleString('en-US'), 0, floorSeconds.toFixed(1), Math.round(floorScanned / floorSeconds).toLocaleString('en-US'), '1.00']];
    for (const label of [`sweep, ${EXPIRED_SHARE * 100} % expired`, 'sweep again, none expired']) {
      const began = performance.now();
      const r = await sweepExpiredItems({ client, tableName: TABLE, ttlAttribute, keyAttributes: [partitionKey, sortKey] });
      const seconds = (performance.now() - began) / 1000;
      rows.push([label, r.scanned.toLocaleString('en-US'), r.deleted.toLocaleString('en-US'), seconds.toFixed(1), Math.round(r.scanned / seconds).toLocaleString('en-US'), (seconds / floorSeconds).toFixed(2)]);
    }
    console.log(`\nTTL sweep of the twin's metadata table (dynalite on a data dir, ${ITEMS.toLocaleString('en-US')} event items written in ${writeSeconds.toFixed(1)} s; ${machine()})\n`);
    console.log(table(['pass', 'items scanned', 'deleted', 's', 'items/s scanned', '× floor time'], rows));
    console.log('\nThe sweep pauses after each page as long as the page took (half of dynalite left to delivery); each expired item is a DeleteItem of its own.');
  } finally {
    client.destroy();
    await dynamo.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
