import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { BatchWriteItemCommand, CreateTableCommand, PutItemCommand, ScanCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { dynamoClient } from '../../lib/local/aws-clients';
import { startDynamo, type RunningService } from '../../lib/local/emulators';
import { freePort } from '../../lib/local/ports';
import { sweepExpiredItems, TtlSweeper, type TtlSweepOptions } from '../../lib/local/ttl-sweep';
import { METADATA_TABLE_KEYS } from '../../transforms/shared/metadata-table';

const { partitionKey, sortKey, ttlAttribute } = METADATA_TABLE_KEYS;
/** The tests' clock: a fixed instant, so TTLs are "past" and "future" whatever the machine's date. */
const NOW_MS = Date.UTC(2030, 0, 1);
const NOW_S = NOW_MS / 1000;

let dynamo: RunningService;
let client: DynamoDBClient;
let tableCounter = 0;

beforeAll(async () => {
  dynamo = await startDynamo({ port: await freePort() });
  client = dynamoClient(dynamo.endpoint, { maxAttempts: 1 });
});
afterAll(async () => {
  client.destroy();
  await dynamo.stop();
});

async function newTable(): Promise<string> {
  const tableName = `ttl-sweep-${++tableCounter}`;
  await client.send(new CreateTableCommand({
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: partitionKey, AttributeType: 'S' }, { AttributeName: sortKey, AttributeType: 'S' }],
    KeySchema: [{ AttributeName: partitionKey, KeyType: 'HASH' }, { AttributeName: sortKey, KeyType: 'RANGE' }],
  }));
  await new Promise((r) => setTimeout(r, 50)); // dynalite's CREATING lasts 10 ms
  return tableName;
}

function item(pk: string, ttl?: AttributeValue): Record<string, AttributeValue> {
  return { [partitionKey]: { S: pk }, [sortKey]: { S: 'event' }, payload: { S: 'x'.repeat(100) }, ...(ttl ? { [ttlAttribute]: ttl } : {}) };
}

async function putAll(tableName: string, items: Array<Record<string, AttributeValue>>): Promise<void> {
  for (let i = 0; i < items.length; i += 25) {
    await client.send(new BatchWriteItemCommand({ RequestItems: { [tableName]: items.slice(i, i + 25).map((Item) => ({ PutRequest: { Item } })) } }));
  }
}

async function keysIn(tableName: string): Promise<string[]> {
  const keys: string[] = [];
  let ExclusiveStartKey: Record<string, AttributeValue> | undefined;
  do {
    const page = await client.send(new ScanCommand({ TableName: tableName, ExclusiveStartKey }));
    for (const i of page.Items ?? []) keys.push(i[partitionKey].S!);
    ExclusiveStartKey = page.LastEvaluatedKey;
  } while (ExclusiveStartKey);
  return keys.sort();
}

/** The real client, with a hook before each call: counts them, and may act or fail before the call goes out. */
function watchedClient(before: (command: { constructor: { name: string } }) => void | Promise<void>): DynamoDBClient {
  return { send: async (command: never) => { await before(command); return client.send(command); } } as unknown as DynamoDBClient;
}

function options(tableName: string, extra: Partial<TtlSweepOptions> = {}): TtlSweepOptions {
  return { client, tableName, ttlAttribute, keyAttributes: [partitionKey, sortKey], now: () => NOW_MS, pageGapMs: 0, ...extra };
}

test('a sweep deletes the items whose TTL is a Number of epoch seconds in the past, and leaves the rest as DynamoDB does', async () => {
  const tableName = await newTable();
  await putAll(tableName, [
    item('past', { N: String(NOW_S - 1) }),
    item('long-past', { N: String(NOW_S - 86_400 * 365) }),
    item('fractional-past', { N: String(NOW_S - 0.5) }),
    item('now', { N: String(NOW_S) }),
    item('future', { N: String(NOW_S + 60) }),
    item('absent'),
    item('string', { S: String(NOW_S - 60) }),
    item('string-set', { SS: [String(NOW_S - 60)] }),
    item('more-than-five-years-past', { N: String(NOW_S - 6 * 365 * 86_400) }),
    item('milliseconds', { N: String(NOW_MS) }),
  ]);
  const result = await sweepExpiredItems(options(tableName));
  expect(result).toEqual({ scanned: 10, deleted: 3, stopped: false });
  // Milliseconds read as seconds are far in the future; a value over five years old DynamoDB takes for something else.
  expect(await keysIn(tableName)).toEqual(['absent', 'milliseconds', 'more-than-five-years-past', 'now', 'string', 'string-set', 'future'].sort());
});

test('a sweep pages through a table larger than one page, and deletes every expired item', async () => {
  const tableName = await newTable();
  const items = Array.from({ length: 330 }, (_, i) => item(`e${String(i).padStart(4, '0')}`, { N: String(i % 3 === 0 ? NOW_S + 3600 : NOW_S - 3600) }));
  await putAll(tableName, items);
  let scans = 0;
  const result = await sweepExpiredItems(options(tableName, {
    pageSize: 40,
    client: watchedClient((c) => { if (c.constructor.name === 'ScanCommand') scans++; }),
  }));
  expect(scans).toBeGreaterThanOrEqual(9);
  expect(result).toEqual({ scanned: 330, deleted: 220, stopped: false });
  expect(await keysIn(tableName)).toEqual(items.filter((_, i) => i % 3 === 0).map((i) => i[partitionKey].S).sort());
});

test('an item written again with a later TTL after its page was read stays (the delete is conditional)', async () => {
  const tableName = await newTable();
  await putAll(tableName, [item('refreshed', { N: String(NOW_S - 10) }), item('expired', { N: String(NOW_S - 10) })]);
  let refreshed = false;
  const result = await sweepExpiredItems(options(tableName, {
    client: watchedClient(async (c) => {
      if (c.constructor.name !== 'DeleteItemCommand' || refreshed) return;
      refreshed = true;
      await client.send(new PutItemCommand({ TableName: tableName, Item: item('refreshed', { N: String(NOW_S + 86_400) }) }));
    }),
  }));
  expect(result.deleted).toBe(1);
  expect(await keysIn(tableName)).toEqual(['refreshed']);
});

test('the sweeper sweeps at start, then again each interval, by its clock', async () => {
  const tableName = await newTable();
  await putAll(tableName, [item('soon', { N: String(NOW_S + 60) }), item('gone', { N: String(NOW_S - 60) })]);
  let now = NOW_MS;
  const lines: string[] = [];
  let sweeps = 0;
  const sweeper = new TtlSweeper({
    ...options(tableName, { now: () => now }),
    client: watchedClient((c) => { if (c.constructor.name === 'ScanCommand') sweeps++; }),
    intervalMs: 5,
    log: (line) => lines.push(line),
  });
  sweeper.start();
  try {
    // Until each sweep has said what it deleted: a stop right after the deletes would cut the sweep short of saying it.
    await until(async () => lines.length === 1);
    expect(await keysIn(tableName)).toEqual(['soon']);
    const before = sweeps;
    now += 120_000;
    await until(async () => lines.length === 2);
    expect(await keysIn(tableName)).toEqual([]);
    expect(sweeps).toBeGreaterThan(before);
  } finally {
    await sweeper.stop();
  }
  expect(lines).toEqual([
    expect.stringMatching(new RegExp(`^sluice: deleted 1 expired item \\(TTL\\) of 2 in the metadata table ${tableName}, in [\\d.]+ s$`)),
    expect.stringMatching(new RegExp(`^sluice: deleted 1 expired item \\(TTL\\) of 1 in the metadata table ${tableName}, in [\\d.]+ s$`)),
  ]);
});

test('stop() during a sweep ends it between two calls, and nothing is called after', async () => {
  const tableName = await newTable();
  await putAll(tableName, Array.from({ length: 300 }, (_, i) => item(`x${i}`, { N: String(NOW_S - 1) })));
  let calls = 0;
  let stopping: Promise<void> | undefined;
  const sweeper = new TtlSweeper({
    ...options(tableName, { pageSize: 50, pageGapMs: 0 }),
    client: watchedClient((c) => {
      calls++;
      // Once the sweep is well under way: after its second page's first delete.
      if (c.constructor.name === 'DeleteItemCommand' && calls === 53) stopping = sweeper.stop();
    }),
    intervalMs: 1,
    log: () => undefined,
  });
  sweeper.start();
  await until(async () => stopping !== undefined);
  await stopping;
  const callsAtStop = calls;
  await new Promise((r) => setTimeout(r, 50));
  expect(calls).toBe(callsAtStop);
  // Two Scans, the first page's 50 deletes, and the deletes already sent with the one that stopped it (8 at once at most).
  expect(calls).toBeLessThanOrEqual(2 + 50 + 8);
  const left = (await keysIn(tableName)).length;
  expect(left).toBeGreaterThan(200);
  expect(left).toBeLessThan(300);
});

test('stop() while dynalite does not answer ends the call in flight at once, rather than wait for its timeout', async () => {
  // A DynamoDB endpoint that takes the request and never answers (a stalled dynalite).
  const sockets: net.Socket[] = [];
  const stalled = net.createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => stalled.listen(0, '127.0.0.1', resolve));
  const stalledClient = dynamoClient(`http://127.0.0.1:${(stalled.address() as net.AddressInfo).port}`, { maxAttempts: 1 });
  let scans = 0;
  const sweeper = new TtlSweeper({
    ...options('stalled'),
    client: stalledClient,
    intervalMs: 60 * 60_000,
    log: () => undefined,
  });
  stalled.on('connection', () => scans++);
  try {
    sweeper.start();
    await until(async () => scans === 1);
    const began = performance.now();
    await sweeper.stop();
    expect(performance.now() - began).toBeLessThan(5_000);
  } finally {
    stalledClient.destroy();
    sockets.forEach((socket) => socket.destroy());
    await new Promise((resolve) => stalled.close(resolve));
  }
}, 60_000);

test('stop() while the sweeper waits for its next sweep returns at once, and it sweeps no more', async () => {
  const tableName = await newTable();
  let scans = 0;
  const sweeper = new TtlSweeper({
    ...options(tableName),
    client: watchedClient((c) => { if (c.constructor.name === 'ScanCommand') scans++; }),
    intervalMs: 60 * 60_000,
    log: () => undefined,
  });
  sweeper.start();
  await until(async () => scans === 1);
  await sweeper.stop();
  await sweeper.stop();
  expect(scans).toBe(1);
});

test('a failing sweep is said once, retried at the next interval, and said to work again when it does', async () => {
  const tableName = await newTable();
  await putAll(tableName, [item('expired', { N: String(NOW_S - 1) })]);
  let failures = 3;
  const lines: string[] = [];
  const sweeper = new TtlSweeper({
    ...options(tableName),
    client: watchedClient(() => {
      if (failures > 0) {
        failures--;
        throw new Error('connect ECONNREFUSED 127.0.0.1:4569');
      }
    }),
    intervalMs: 5,
    log: (line) => lines.push(line),
  });
  sweeper.start();
  try {
    await until(async () => lines.length === 3);
    expect(await keysIn(tableName)).toEqual([]);
  } finally {
    await sweeper.stop();
  }
  expect(lines).toEqual([
    "sluice: the metadata table's TTL sweep failed (connect ECONNREFUSED 127.0.0.1:4569): its expired items stay until a sweep works; it is tried again every interval, and this is not said again until one has worked",
    `sluice: the metadata table's TTL sweep works again (${tableName})`,
    expect.stringMatching(new RegExp(`^sluice: deleted 1 expired item \\(TTL\\) of 1 in the metadata table ${tableName}, in [\\d.]+ s$`)),
  ]);
});

test('a sweep a stop cut short after a failed one is not said to work again: it has not', async () => {
  const tableName = await newTable();
  await putAll(tableName, [item('expired', { N: String(NOW_S - 1) })]);
  let scans = 0;
  let stopping: Promise<void> | undefined;
  const lines: string[] = [];
  const sweeper: TtlSweeper = new TtlSweeper({
    ...options(tableName),
    client: watchedClient(async (c) => {
      if (c.constructor.name !== 'ScanCommand') return;
      scans++;
      if (scans === 1) throw new Error('connect ECONNREFUSED 127.0.0.1:4569');
      // The second sweep's Scan answers, and a stop comes before its deletes (a tick later, once the sweep is the one
      // the sweeper runs, so the stop waits for it).
      await Promise.resolve();
      stopping = sweeper.stop();
    }),
    intervalMs: 5,
    log: (line) => lines.push(line),
  });
  sweeper.start();
  await until(async () => stopping !== undefined);
  await stopping;
  expect(lines).toEqual([expect.stringMatching(/^sluice: the metadata table's TTL sweep failed \(connect ECONNREFUSED/)]);
  expect(await keysIn(tableName)).toEqual(['expired']);
});

test('a sweeper that waits for its next sweep, or pauses between pages, does not keep the process alive', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ttl-sweep-'));
  try {
    const script = path.join(dir, 'sweeper.ts');
    // A table of two pages that never ends: the process is left with the sweeper's pause and nothing else.
    fs.writeFileSync(script, `
      import { TtlSweeper } from ${JSON.stringify(path.resolve(__dirname, '../../lib/local/ttl-sweep'))};
      const pages = process.argv[2] === 'pages';
      const client = { send: async () => ({ Items: [], ScannedCount: 1, LastEvaluatedKey: pages ? { pk: { S: 'next' } } : undefined }) };
      new TtlSweeper({ client: client as never, tableName: 't', ttlAttribute: 'ttl', keyAttributes: ['pk'], pageGapMs: 3_600_000, log: () => undefined }).start();
      setTimeout(() => process.stdout.write('swept\\n'), 200);
    `);
    for (const mode of ['interval', 'pages']) {
      const run = spawnSync(process.execPath, [path.resolve(__dirname, '../../bin/run-ts.js'), script, mode], { encoding: 'utf8', timeout: 30_000 });
      expect({ mode, status: run.status, stdout: run.stdout, stderr: run.stderr }).toEqual({ mode, status: 0, stdout: 'swept\n', stderr: '' });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

async function until(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}
