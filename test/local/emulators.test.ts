import { spawn } from 'child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, truncateSync, utimesSync, writeFileSync } from 'fs';
import { mkdir, mkdtemp, rm, writeFile } from 'fs/promises';
import * as http from 'http';
import * as net from 'net';
import { connect as tlsConnect } from 'tls';
import { tmpdir } from 'os';
import * as path from 'path';
import { CreateTableCommand, DescribeTableCommand, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import {
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  KinesisClient,
  ListShardsCommand,
  ListStreamsCommand,
  PutRecordCommand,
  PutRecordsCommand,
  ShardIteratorType,
} from '@aws-sdk/client-kinesis';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import {
  dynamoClient,
  dynamoDocumentClient,
  firehoseClient,
  kinesisClient,
} from '../../lib/local/aws-clients';
import {
  base64Problem,
  KINESIS_BOOTSTRAP,
  KINESIS_SOURCE_PATCHES,
  KINESIS_STATE_WARN_BYTES,
  kinesisCodeCacheDir,
  kinesisStateWatch,
  patchKinesisSource,
  RunningService,
  startDynamo,
  startKinesis,
} from '../../lib/local/emulators';
import { ephemeralRangeStart, freePort } from '../../lib/local/ports';
import fc from 'fast-check';
import { awsJsonRequest, rawExchange, refusedWebPages, webPageCases } from './web-page';

// Each kinesis-mock start costs about a second; a loaded machine may need more.
jest.setTimeout(120_000);

const tempDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sluice-emulators-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await check();
    if (result !== undefined) return result;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Holds a port the way another program would, so a start on it must fail; it accepts connections and never answers. */
async function occupyPort(): Promise<{ port: number; release(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    release: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      return closed;
    },
  };
}

/** Every listening TCP socket, from the kernel's socket tables (Linux only): IPv4 addresses dotted, IPv6 ones `ipv6:<hex>`. */
function listeningTable(): Array<{ address: string; port: number; inode: string }> {
  const rows: Array<{ address: string; port: number; inode: string }> = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (!fields[1] || fields[3] !== '0A') continue; // 0A = LISTEN
      const [hexAddress, hexPort] = fields[1].split(':');
      const address = hexAddress.length === 8 ? (hexAddress.match(/../g) ?? []).reverse().map((byte) => parseInt(byte, 16)).join('.') : `ipv6:${hexAddress}`;
      rows.push({ address, port: parseInt(hexPort, 16), inode: fields[9] });
    }
  }
  return rows;
}

/** Addresses a TCP port is listening on (Linux only). */
function listeningAddresses(port: number): string[] {
  return listeningTable().filter((row) => row.port === port).map((row) => row.address);
}

/** The address:port of each TCP socket a process listens on, from its open files (Linux only). */
function listeningSockets(pid: number): string[] {
  const inodes = new Set(readdirSync(`/proc/${pid}/fd`).map((fd) => /^socket:\[(\d+)\]$/.exec(readlinkSafe(`/proc/${pid}/fd/${fd}`))?.[1]));
  return listeningTable().filter((row) => inodes.has(row.inode)).map((row) => `${row.address}:${row.port}`);
}

function readlinkSafe(file: string): string {
  try {
    return readlinkSync(file);
  } catch {
    return ''; // closed since it was listed
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // An exited child of a parent that is gone may linger as a zombie until it is reaped.
  const stat = `/proc/${pid}/stat`;
  return !existsSync(stat) || readFileSync(stat, 'utf8').split(') ')[1]?.[0] !== 'Z';
}

async function createActiveStream(client: KinesisClient, streamName: string, shardCount = 1): Promise<void> {
  await client.send(new CreateStreamCommand({ StreamName: streamName, ShardCount: shardCount }));
  await eventually(`stream ${streamName} to become ACTIVE`, async () => {
    const { StreamDescriptionSummary } = await client.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
    return StreamDescriptionSummary?.StreamStatus === 'ACTIVE' ? true : undefined;
  });
}

/** Each shard's records from TRIM_HORIZON (one GetRecords), their data as UTF-8, by shard id in ListShards' order. */
async function readShards(client: KinesisClient, streamName: string): Promise<Record<string, Array<{ partitionKey?: string; data: string }>>> {
  const { Shards } = await client.send(new ListShardsCommand({ StreamName: streamName }));
  const shards: Record<string, Array<{ partitionKey?: string; data: string }>> = {};
  for (const shard of Shards ?? []) {
    const { ShardIterator } = await client.send(
      new GetShardIteratorCommand({ StreamName: streamName, ShardId: shard.ShardId, ShardIteratorType: 'TRIM_HORIZON' }),
    );
    const { Records } = await client.send(new GetRecordsCommand({ ShardIterator }));
    shards[shard.ShardId as string] = (Records ?? []).map((record) => ({ partitionKey: record.PartitionKey, data: Buffer.from(record.Data ?? []).toString('utf8') }));
  }
  return shards;
}

/** Every record's data, shard after shard. */
async function readAll(client: KinesisClient, streamName: string): Promise<string[]> {
  return Object.values(await readShards(client, streamName)).flat().map((record) => record.data);
}

async function putRecords(client: KinesisClient, streamName: string, payloads: string[]): Promise<void> {
  const result = await client.send(
    new PutRecordsCommand({
      StreamName: streamName,
      Records: payloads.map((payload, i) => ({ Data: Buffer.from(payload), PartitionKey: `key-${i}` })),
    }),
  );
  expect(result.FailedRecordCount).toBe(0);
}

describe('freePort', () => {
  it('returns a port that can be bound on loopback', async () => {
    const port = await freePort();
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(port).toBeGreaterThan(0);
  });

  // The OS gives ports of its ephemeral range to outgoing connections: one picked there could be taken
  // before the emulator binds it (it happened in CI: kinesis-mock failed with EADDRINUSE).
  it('picks ports outside the range the OS gives to outgoing connections', async () => {
    const start = ephemeralRangeStart();
    // Below a range that starts under ~2000 there is no room: the OS picks then (not the case on Linux's default 32768).
    const roomBelow = Math.min(start, 32_768) - 1 - 1024 >= 1000;
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(1024);
      if (roomBelow) expect(port).toBeLessThan(start);
    }
    expect(new Set(ports).size).toBeGreaterThan(1);
  });

});

describe('local AWS clients', () => {
  it.each([
    ['kinesis', kinesisClient],
    ['dynamodb', dynamoClient],
    ['firehose', firehoseClient],
  ] as const)('%s: HTTP/1.1 handler, dummy credentials, local region', async (_service, factory) => {
    const client = factory('http://127.0.0.1:1');
    try {
      expect(client.config.requestHandler).toBeInstanceOf(NodeHttpHandler);
      await expect(client.config.credentials()).resolves.toMatchObject({ accessKeyId: 'local', secretAccessKey: 'local' });
      await expect(client.config.region()).resolves.toBe(process.env.AWS_REGION || 'us-east-1');
      await expect(client.config.maxAttempts()).resolves.toBe(3);
    } finally {
      client.destroy();
    }
  });

  it('gives the document client the same settings', async () => {
    const client = dynamoDocumentClient('http://127.0.0.1:1', { maxAttempts: 1 });
    try {
      expect(client.config.requestHandler).toBeInstanceOf(NodeHttpHandler);
      await expect(client.config.maxAttempts()).resolves.toBe(1);
    } finally {
      client.destroy();
    }
  });
});

describe("kinesis-mock's saved state", () => {
  it('is warned about as the twin starts once it is 128 MiB or more: it keeps every record put and cannot pass ~512 MiB', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'sluice-kinesis-state-'));
    try {
      expect(kinesisStateWatch(dataDir)()).toBeUndefined(); // no state yet
      await mkdir(path.join(dataDir, 'kinesis'));
      const file = path.join(dataDir, 'kinesis', 'kinesis-data.json');
      await writeFile(file, '');
      truncateSync(file, KINESIS_STATE_WARN_BYTES - 1); // sparse: no disk used
      expect(kinesisStateWatch(dataDir)()).toBeUndefined();
      truncateSync(file, 300 * 1024 * 1024);
      expect(kinesisStateWatch(dataDir)()).toBe(`${file} holds 300 MiB: kinesis-mock keeps every record put to the streams since this data dir was made (it does not`
        + " apply a stream's retention) and writes them whole every 5 s; at about 512 MiB its saves fail and the state no longer loads."
        + ' Once what was sent is delivered (a stop flushes), start again on a new --data-dir (or move this one away)');
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe("kinesis-mock's saved state, watched while the twin runs", () => {
  it('is warned about once it grows to the threshold after the start, then again only each time it has doubled', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'sluice-kinesis-state-'));
    try {
      const MiB = 1024 * 1024;
      const check = kinesisStateWatch(dataDir, 8 * MiB);
      expect(check()).toBeUndefined(); // no state yet
      await mkdir(path.join(dataDir, 'kinesis'));
      const file = path.join(dataDir, 'kinesis', 'kinesis-data.json');
      await writeFile(file, '');
      truncateSync(file, 8 * MiB - 1); // sparse: no disk used
      expect(check()).toBeUndefined();
      truncateSync(file, 9 * MiB);
      expect(check()).toMatch(/^.*kinesis-data\.json holds 9 MiB: kinesis-mock keeps every record put/);
      expect(check()).toBeUndefined(); // said once, not each minute
      truncateSync(file, 15 * MiB);
      expect(check()).toBeUndefined();
      truncateSync(file, 16 * MiB);
      expect(check()).toMatch(/holds 16 MiB/);
      truncateSync(file, 40 * MiB);
      expect(check()).toMatch(/holds 40 MiB/);
      truncateSync(file, 63 * MiB);
      expect(check()).toBeUndefined();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe("base64Problem, the Kinesis guard's check of a Data string, as its bootstrap embeds it", () => {
  const embedded = new Function(`return ${base64Problem.toString()};`)() as typeof base64Problem;
  const lastNonPad = 'Invalid last non-pad Base64 character dectected';

  it("answers AWS's reasons: the length first, then the first character out of place, then the padding; standard padded base64 passes, '' included", () => {
    expect(embedded('Foo')).toBe('Base64 encoded length is expected a multiple of 4 bytes but found: 3');
    expect(embedded('string')).toBe('Base64 encoded length is expected a multiple of 4 bytes but found: 6');
    // kinesalite's cases, recorded from AWS.
    expect(embedded('23456')).toBe('Base64 encoded length is expected a multiple of 4 bytes but found: 5');
    expect(embedded('=+/=')).toBe("Invalid Base64 character: '='");
    expect(embedded('+/+=')).toBe(lastNonPad);
    expect(embedded('a*b\n')).toBe("Invalid Base64 character: '*'");
    expect(embedded('ab😀')).toBe("Invalid Base64 character: '😀'");
    expect(embedded('YQ==YQ==')).toBe("Invalid Base64 character: '='");
    for (const value of ['YR==', 'YWJ=', 'Y===', '====']) expect(embedded(value)).toBe(lastNonPad);
    for (const value of ['', 'YQ==', 'YWI=', 'YWJj', '+/+/']) expect(embedded(value)).toBeUndefined();
  });

  it("property: passes exactly what Node's decoder reads back as the same text, with kinesalite's reasons for the rest", () => {
    const text = fc.string({ unit: fc.constantFrom('A', 'Q', 'g', 'w', 'z', '9', '+', '/', '=', '*', '-', '_', ' ', '\n', 'é', '😀'), maxLength: 12 });
    const encoded = fc.uint8Array({ maxLength: 10 }).map((bytes) => Buffer.from(bytes).toString('base64'));
    fc.assert(fc.property(fc.oneof(text, encoded), (value) => {
      const canonical = Buffer.from(value, 'base64').toString('base64') === value;
      const bad = /[^A-Za-z0-9+/=]|=[^=]/u.exec(value);
      const expected = value.length % 4 !== 0 ? `Base64 encoded length is expected a multiple of 4 bytes but found: ${value.length}`
        : bad !== null ? `Invalid Base64 character: '${[...bad[0]][0]}'`
          : canonical ? undefined : lastNonPad;
      expect(embedded(value)).toBe(expected);
    }), { numRuns: 3000 });
  });
});

describe("patchKinesisSource, the source patches of kinesis-mock's main.js", () => {
  it('finds a place, once, for every patch in the installed kinesis-mock (another version of kinesis-local needs them written again)', () => {
    const installed = readFileSync(require.resolve('kinesis-local/main.js'), 'utf8');
    const { source, applied, missing } = patchKinesisSource(installed, KINESIS_SOURCE_PATCHES);
    expect(missing).toEqual([]);
    expect(applied).toEqual(KINESIS_SOURCE_PATCHES.map((patch) => patch.name));
    for (const patch of KINESIS_SOURCE_PATCHES) expect(source.split(patch.replace)).toHaveLength(2);
  });

  it("applies a patch only where its text occurs exactly once, and inserts the replacement as written ('$' sequences too)", () => {
    const patches = [
      { name: 'once', find: 'var a = 1;', replace: "var a = '$&$1$$';" },
      { name: 'twice', find: 'b();', replace: 'c();' },
      { name: 'absent', find: 'd();', replace: 'e();' },
    ];
    expect(patchKinesisSource('var a = 1; b(); b();', patches)).toEqual({
      source: "var a = '$&$1$$'; b(); b();",
      applied: ['once'],
      missing: ['twice', 'absent'],
    });
  });
});

describe("kinesis-mock, patched (KINESIS_SOURCE_PATCHES) and as published", () => {
  // The patch changes how a request's records are grouped by shard; what a producer and a reader see must not change.
  it('puts every record in the same shard, in the same order, with the same answers', async () => {
    const started = await Promise.all([startKinesis({ port: 0 }), startKinesis({ port: 0, sourcePatches: [] })]);
    const clients = started.map((mock) => kinesisClient(mock.endpoint));
    try {
      expect(started.map((mock) => mock.sourcePatches)).toEqual([
        { applied: KINESIS_SOURCE_PATCHES.map((patch) => patch.name), missing: [] },
        { applied: [], missing: [] },
      ]);
      // Records spread over four shards by partition key and by explicit hash key (the last shard's range), in
      // requests of several sizes, one after another and two at once.
      const batches = [7, 300, 1, 120, 45].map((size, b) => Array.from({ length: size }, (_, i) => ({
        Data: Buffer.from(`{"b":${b},"i":${i}}`),
        PartitionKey: `key-${(b * 31 + i * 7) % 23}`,
        ...(i % 5 === 4 ? { ExplicitHashKey: (2n ** 128n - 1n - BigInt(i)).toString() } : {}),
      })));
      const seen = await Promise.all(clients.map(async (client) => {
        await createActiveStream(client, 'grouped', 4);
        const put = async (records: typeof batches[number]) => (await client.send(new PutRecordsCommand({ StreamName: 'grouped', Records: records }))).Records ?? [];
        const answers = [await put(batches[0]), await put(batches[1]), ...(await Promise.all([put(batches[2]), put(batches[3])])), await put(batches[4])];
        return { answers: answers.map((records) => records.map((r) => r.ShardId ?? r.ErrorCode)), shards: Object.fromEntries(Object.entries(await readShards(client, 'grouped')).map(([shard, records]) => [shard, records.map((r) => `${r.partitionKey} ${r.data}`)])) };
      }));
      expect(Object.values(seen[0].shards).flat()).toHaveLength(473);
      expect(Object.values(seen[0].shards).filter((records) => records.length > 0)).toHaveLength(4);
      // Two requests at once may be taken in either order: within a shard, their records are compared as sets.
      const byRequest = (records: string[]) => records.map((r) => r.replace(/^key-\d+ /u, '')).sort();
      expect(seen[1].answers).toEqual(seen[0].answers);
      for (const shard of Object.keys(seen[0].shards)) {
        expect(byRequest(seen[1].shards[shard])).toEqual(byRequest(seen[0].shards[shard]));
        const inOrder = (records: string[]) => records.filter((r) => !/"b":[23],/u.test(r));
        expect(inOrder(seen[1].shards[shard])).toEqual(inOrder(seen[0].shards[shard]));
      }
    } finally {
      for (const client of clients) client.destroy();
      await Promise.all(started.map((mock) => mock.stop()));
    }
  });

  // trace-log-context(-skip) and data-base64 change how answers are made; what a reader sees must not change.
  it('answers GetShardIterator and GetRecords alike: every iterator type, small Limits, binary Data of every padding', async () => {
    const started = await Promise.all([startKinesis({ port: 0 }), startKinesis({ port: 0, sourcePatches: [] })]);
    const clients = started.map((mock) => kinesisClient(mock.endpoint));
    try {
      // Bytes that are no UTF-8, of lengths 1–200 (base64 with 0, 1 and 2 '='), a few empty-looking ones included.
      const payloads = Array.from({ length: 200 }, (_, i) => Buffer.from(Array.from({ length: i + 1 }, (_, j) => (i * 37 + j * 101) % 256)));
      const seen = await Promise.all(clients.map(async (client) => {
        await createActiveStream(client, 'read');
        await client.send(new PutRecordsCommand({ StreamName: 'read', Records: payloads.map((Data, i) => ({ Data, PartitionKey: `key-${i % 13}` })) }));
        const { Shards } = await client.send(new ListShardsCommand({ StreamName: 'read' }));
        const ShardId = Shards?.[0]?.ShardId;
        const iterator = async (type: ShardIteratorType, more: { StartingSequenceNumber?: string; Timestamp?: Date } = {}) =>
          (await client.send(new GetShardIteratorCommand({ StreamName: 'read', ShardId, ShardIteratorType: type, ...more }))).ShardIterator;
        // Everything a reader sees but the sequence numbers and arrival times, which differ between two streams.
        const page = async (ShardIterator: string | undefined, Limit: number) => {
          const out = await client.send(new GetRecordsCommand({ ShardIterator, Limit }));
          return {
            records: (out.Records ?? []).map((r) => [Buffer.from(r.Data ?? []).toString('base64'), r.PartitionKey, r.EncryptionType]),
            sequenceNumbers: (out.Records ?? []).map((r) => r.SequenceNumber as string),
            next: out.NextShardIterator,
            childShards: out.ChildShards,
          };
        };
        const pages = [];
        const sequenceNumbers: string[] = [];
        let next = await iterator('TRIM_HORIZON');
        for (const limit of [1, 7, 50, 3, 10_000, 5]) {
          const got = await page(next, limit);
          pages.push({ ...got, sequenceNumbers: undefined, next: got.next !== undefined });
          sequenceNumbers.push(...got.sequenceNumbers);
          next = got.next;
        }
        const at = [];
        for (const k of [0, 1, 99, 198, 199]) {
          for (const type of ['AT_SEQUENCE_NUMBER', 'AFTER_SEQUENCE_NUMBER'] as const) {
            at.push((await page(await iterator(type, { StartingSequenceNumber: sequenceNumbers[k] }), 3)).records);
          }
        }
        const missing = await iterator('AT_SEQUENCE_NUMBER', { StartingSequenceNumber: sequenceNumbers[0].replace(/\d$/u, (d) => String((Number(d) + 5) % 10)) })
          .then(() => 'answered', (err: Error) => err.name);
        await new Promise((resolve) => setTimeout(resolve, 20));
        const byTime = [(await page(await iterator('AT_TIMESTAMP', { Timestamp: new Date(0) }), 10_000)).records.length,
          (await page(await iterator('AT_TIMESTAMP', { Timestamp: new Date() }), 10_000)).records.length];
        const latest = await iterator('LATEST');
        const before = (await page(latest, 10)).records;
        await putRecords(client, 'read', ['{"late":1}', '{"late":2}']);
        const after = (await page(latest, 10)).records;
        return { pages, count: sequenceNumbers.length, at, missing, byTime, before, after };
      }));
      expect(seen[0].count).toBe(200);
      expect(seen[0].at.flat()).toHaveLength(22);
      expect(seen[0].after).toHaveLength(2);
      expect(seen[1]).toEqual(seen[0]);
    } finally {
      for (const client of clients) client.destroy();
      await Promise.all(started.map((mock) => mock.stop()));
    }
  });

  it('says which patches found no place (another main.js), and runs with the others', async () => {
    const mock = await startKinesis({ port: 0, sourcePatches: [...KINESIS_SOURCE_PATCHES, { name: 'elsewhere', find: 'no such text in main.js', replace: '' }] });
    const client = kinesisClient(mock.endpoint);
    try {
      expect(mock.sourcePatches).toEqual({ applied: KINESIS_SOURCE_PATCHES.map((patch) => patch.name), missing: ['elsewhere'] });
      await createActiveStream(client, 'unpatched');
      await putRecords(client, 'unpatched', ['{"n":1}']);
      expect(await readAll(client, 'unpatched')).toEqual(['{"n":1}']);
    } finally {
      client.destroy();
      await mock.stop();
    }
  });

  it('loads its main.js as published, every patch named missing, when the patched file does not compile', async () => {
    const broken = { name: 'broken', find: KINESIS_SOURCE_PATCHES[0].find, replace: `${KINESIS_SOURCE_PATCHES[0].find} ((` };
    const mock = await startKinesis({ port: 0, sourcePatches: [broken, ...KINESIS_SOURCE_PATCHES.slice(1)] });
    const client = kinesisClient(mock.endpoint);
    try {
      expect(mock.sourcePatches).toEqual({ applied: [], missing: ['broken', ...KINESIS_SOURCE_PATCHES.slice(1).map((patch) => patch.name)] });
      await createActiveStream(client, 'as-published');
      await putRecords(client, 'as-published', ['{"n":2}']);
      expect(await readAll(client, 'as-published')).toEqual(['{"n":2}']);
    } finally {
      client.destroy();
      await mock.stop();
    }
  });
});

describe('kinesis-mock', () => {
  let kinesis: RunningService;
  let client: KinesisClient;

  beforeAll(async () => {
    kinesis = await startKinesis({ port: 0 });
    client = kinesisClient(kinesis.endpoint);
  });
  afterAll(async () => {
    client?.destroy();
    await kinesis?.stop();
  });

  /** Sends `body` as a JSON request of Kinesis's `target` operation, as an SDK would, and answers the status and the parsed body. */
  const send = async (target: string, body: unknown) => {
    const text = JSON.stringify(body);
    const request = awsJsonRequest(kinesis.port, `Kinesis_20131202.${target}`).replace('Content-Length: 2\r\n\r\n{}', `Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
    const [answer] = await rawExchange(kinesis.port, [request], 1);
    return { status: answer.status, ...JSON.parse(answer.body) };
  };

  it('reports an endpoint on loopback, on the free port it picked for port 0', () => {
    expect(kinesis.port).toBeGreaterThanOrEqual(1024);
    expect(kinesis).toMatchObject({ name: 'kinesis-mock', endpoint: `http://127.0.0.1:${kinesis.port}` });
    expect(kinesis.stateDir).toBeUndefined();
  });

  const onLinux = existsSync('/proc/net/tcp') ? it : it.skip;
  onLinux('listens on 127.0.0.1 only, although kinesis-mock itself binds every interface', () => {
    expect(listeningAddresses(kinesis.port)).toEqual(['127.0.0.1']);
    // Its TLS port too, which the OS picked as it bound it.
    const sockets = listeningSockets(kinesis.pid as number);
    expect(sockets).toHaveLength(2);
    expect(sockets).toContain(`127.0.0.1:${kinesis.port}`);
    for (const socket of sockets) expect(socket).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  onLinux('closes connections to its TLS port unread: nothing of Sluice uses it, and a web page past the certificate warning got any origin allowed there', async () => {
    const tls = listeningSockets(kinesis.pid as number).map((s) => Number(s.split(':')[1])).find((port) => port !== kinesis.port);
    expect(tls).toBeDefined();
    const { secureConnect, closed } = await new Promise<{ secureConnect: boolean; closed: boolean }>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: tls as number, rejectUnauthorized: false });
      let secure = false;
      socket.once('secureConnect', () => {
        secure = true;
        socket.write('POST / HTTP/1.1\r\nHost: evil.example.com\r\nOrigin: http://evil.example.com\r\nContent-Length: 2\r\n\r\n{}');
      });
      socket.on('error', () => undefined);
      socket.once('close', () => resolve({ secureConnect: secure, closed: true }));
      setTimeout(() => resolve({ secureConnect: secure, closed: false }), 5_000);
    });
    expect({ secureConnect, closed }).toEqual({ secureConnect: false, closed: true });
    // The plain port still serves.
    await client.send(new ListStreamsCommand({}));
  });

  it('refuses what a web page sends (kinesis-mock itself allows any origin), and still serves the SDK on the same connection', async () => {
    expect(await webPageCases(kinesis.port, 'Kinesis_20131202.ListStreams')).toEqual(refusedWebPages(200));
  });

  it('property: the guard frames requests however their bytes arrive: an SDK request split anywhere is answered, and whole ones one after another on a kept-alive connection are all answered', async () => {
    const request = awsJsonRequest(kinesis.port, 'Kinesis_20131202.ListStreams');
    await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 1, max: request.length - 1 }), { minLength: 1, maxLength: 3 }), async (cuts) => {
      // The first request in pieces, then whole ones on the same kept-alive connection.
      const points = [...new Set(cuts)].sort((a, b) => a - b);
      const pieces = [0, ...points].map((from, i) => request.slice(from, points[i] ?? request.length));
      const answers = await rawExchange(kinesis.port, [pieces.join(''), request, request], 3, true);
      const split = await rawExchange(kinesis.port, pieces, 1);
      return answers.map((a) => a.status).join() === '200,200,200' && split.map((a) => a.status).join() === '200';
    }), { numRuns: 8 });
  });

  it('a body larger than one read passes the guard on a kept-alive SDK connection', async () => {
    await createActiveStream(client, 'big-bodies');
    const payloads = Array.from({ length: 60 }, (_, i) => JSON.stringify({ n: i, pad: 'x'.repeat(4000) }));
    await putRecords(client, 'big-bodies', payloads.slice(0, 30));
    await putRecords(client, 'big-bodies', payloads.slice(30));
    expect(await readAll(client, 'big-bodies')).toEqual(payloads);
  });

  it('refuses a PutRecords of more than 500 records with ValidationException, as AWS does (kinesis-mock itself takes it), storing none of them', async () => {
    await createActiveStream(client, 'batch-limit');
    const records = (n: number) => Array.from({ length: n }, (_, i) => ({ Data: Buffer.from(`{"n":${i}}`), PartitionKey: `key-${i}` }));
    await expect(client.send(new PutRecordsCommand({ StreamName: 'batch-limit', Records: records(501) }))).rejects.toMatchObject({
      name: 'ValidationException',
      message: expect.stringMatching(/at 'records' failed to satisfy constraint: Member must have length less than or equal to 500/),
    });
    expect(await readAll(client, 'batch-limit')).toEqual([]);
    // The limit itself passes, on a new connection of the same client.
    const accepted = await client.send(new PutRecordsCommand({ StreamName: 'batch-limit', Records: records(500) }));
    expect(accepted.FailedRecordCount).toBe(0);
    expect(await readAll(client, 'batch-limit')).toHaveLength(500);
  });

  describe('partition keys AWS refuses (kinesis-mock answers SerializationException for a missing one, InvalidArgumentException for an empty or long one)', () => {
    const message = (value: string, at: string, constraint: string) => `1 validation error detected: Value ${value} at '${at}' failed to satisfy constraint: Member must ${constraint}`;
    const long = 'k'.repeat(257);
    const cases: Array<[string, string | undefined, string, string]> = [
      ['missing', undefined, 'null', 'not be null'],
      ['empty', '', "''", 'have length greater than or equal to 1'],
      ['of 257 characters', long, `'${long}'`, 'have length less than or equal to 256'],
    ];
    const data = (text: string) => Buffer.from(text);

    it.each(cases)('a PutRecords with a record whose PartitionKey is %s is refused whole with ValidationException in AWS\'s words, none of it stored', async (_what, key, value, constraint) => {
      const stream = `pk-batch-${value.length}`;
      await createActiveStream(client, stream);
      const records = [{ Data: data('good'), PartitionKey: 'k' }, { Data: data('bad'), PartitionKey: key as string }];
      await expect(client.send(new PutRecordsCommand({ StreamName: stream, Records: records }))).rejects.toMatchObject({
        name: 'ValidationException',
        message: message(value, 'records.2.member.partitionKey', constraint),
      });
      expect(await readAll(client, stream)).toEqual([]);
    });

    it.each(cases)('a PutRecord whose PartitionKey is %s is refused with ValidationException in AWS\'s words, nothing stored', async (_what, key, value, constraint) => {
      const stream = `pk-single-${value.length}`;
      await createActiveStream(client, stream);
      await expect(client.send(new PutRecordCommand({ StreamName: stream, Data: data('bad'), PartitionKey: key as string }))).rejects.toMatchObject({
        name: 'ValidationException',
        message: message(value, 'partitionKey', constraint),
      });
      expect(await readAll(client, stream)).toEqual([]);
    });

    it('a PartitionKey of 256 characters, the limit, is stored, by PutRecords and PutRecord', async () => {
      await createActiveStream(client, 'pk-limit');
      const key = 'k'.repeat(256);
      expect((await client.send(new PutRecordsCommand({ StreamName: 'pk-limit', Records: [{ Data: data('batch'), PartitionKey: key }] }))).FailedRecordCount).toBe(0);
      await client.send(new PutRecordCommand({ StreamName: 'pk-limit', Data: data('single'), PartitionKey: key }));
      expect(await readAll(client, 'pk-limit')).toEqual(['batch', 'single']);
    });

    it('lists the errors as AWS does: null as missing, in record order after the batch size, at most 10; a PartitionKey that is no string is kinesis-mock\'s SerializationException, as AWS\'s', async () => {
      const at = (i: number) => `records.${i}.member.partitionKey`;
      const mixed = [{ Data: '', PartitionKey: '' }, { Data: '', PartitionKey: 'ok' }, { Data: '', PartitionKey: null }, { Data: '' }, { Data: '', PartitionKey: long }];
      expect(await send('PutRecords', { StreamName: 'pk-none', Records: mixed })).toEqual({
        status: 400,
        __type: 'ValidationException',
        message: '4 validation errors detected: ' + [
          message("''", at(1), 'have length greater than or equal to 1'),
          message('null', at(3), 'not be null'),
          message('null', at(4), 'not be null'),
          message(`'${long}'`, at(5), 'have length less than or equal to 256'),
        ].map((m) => m.replace('1 validation error detected: ', '')).join('; '),
      });
      const over = await send('PutRecords', { StreamName: 'pk-none', Records: Array.from({ length: 501 }, () => ({ Data: '', PartitionKey: '' })) });
      expect(over.message).toMatch(/^10 validation errors detected: Value '\[501 records\]' at 'records' failed to satisfy constraint: Member must have length less than or equal to 500; Value '' at 'records\.1\.member\.partitionKey'/);
      expect(over.message).toContain(at(9));
      expect(over.message).not.toContain(at(10));
      expect(await send('PutRecord', { StreamName: 'pk-none', Data: '', PartitionKey: null })).toMatchObject({ status: 400, __type: 'ValidationException', message: message('null', 'partitionKey', 'not be null') });
      // AWS decodes the body before it validates it: a member of the wrong type is a SerializationException first.
      expect(await send('PutRecords', { StreamName: 'pk-none', Records: [{ Data: '', PartitionKey: '' }, { Data: '', PartitionKey: 5 }] })).toMatchObject({ status: 400, __type: 'SerializationException' });
      expect(await send('PutRecord', { StreamName: 'pk-none', Data: 5, PartitionKey: '' })).toMatchObject({ status: 400, __type: 'SerializationException' });
    });
  });
  describe('records, data and hash keys AWS refuses (kinesis-mock answers 200 for no records, SerializationException for no data, a 500 with an empty body or InvalidArgumentException for a hash key out of its pattern, and fails a record over 10 MiB only as over the stream\'s maximum record size)', () => {
    const violation = (value: string, at: string, constraint: string) => `Value ${value} at '${at}' failed to satisfy constraint: Member must ${constraint}`;
    const pattern = 'satisfy regular expression pattern: 0|([1-9]\\d{0,38})';
    const overMax = 10 * 1024 * 1024 + 1;
    const buffer = (n: number) => `'java.nio.HeapByteBuffer[pos=0 lim=${n} cap=${n}]'`;
    // What each bad record holds, and AWS's complaint about it at `member`: its path, as 'records.2.member.data'.
    const cases: Array<[string, { Data?: Uint8Array; ExplicitHashKey?: string }, (member: string) => string]> = [
      ['no Data', {}, (at) => violation('null', `${at}data`, 'not be null')],
      ['an empty ExplicitHashKey', { Data: Buffer.from('bad'), ExplicitHashKey: '' }, (at) => violation("''", `${at}explicitHashKey`, pattern)],
      ['an ExplicitHashKey with a leading zero', { Data: Buffer.from('bad'), ExplicitHashKey: '01' }, (at) => violation("'01'", `${at}explicitHashKey`, pattern)],
      ['an ExplicitHashKey that is no number', { Data: Buffer.from('bad'), ExplicitHashKey: 'abc' }, (at) => violation("'abc'", `${at}explicitHashKey`, pattern)],
      ['Data over 10 MiB', { Data: Buffer.alloc(overMax, 'x') }, (at) => violation(buffer(overMax), `${at}data`, 'have length less than or equal to 10485760')],
    ];

    it.each(cases)('a PutRecords with a record of %s is refused whole with ValidationException in AWS\'s words, none of it stored', async (what, record, complaint) => {
      const stream = `bad-batch-${cases.findIndex(([name]) => name === what)}`;
      await createActiveStream(client, stream);
      const records = [{ Data: Buffer.from('good'), PartitionKey: 'k' }, { ...record, PartitionKey: 'k' }] as Array<{ Data: Uint8Array; PartitionKey: string }>;
      await expect(client.send(new PutRecordsCommand({ StreamName: stream, Records: records }))).rejects.toMatchObject({
        name: 'ValidationException',
        message: `1 validation error detected: ${complaint('records.2.member.')}`,
      });
      expect(await readAll(client, stream)).toEqual([]);
    });

    it.each(cases)('a PutRecord of %s is refused with ValidationException in AWS\'s words, nothing stored', async (what, record, complaint) => {
      const stream = `bad-single-${cases.findIndex(([name]) => name === what)}`;
      await createActiveStream(client, stream);
      await expect(client.send(new PutRecordCommand({ StreamName: stream, PartitionKey: 'k', ...record } as { StreamName: string; PartitionKey: string; Data: Uint8Array }))).rejects.toMatchObject({
        name: 'ValidationException',
        message: `1 validation error detected: ${complaint('')}`,
      });
      expect(await readAll(client, stream)).toEqual([]);
    });

    it('a PutRecords with no records, or Records missing or null, is refused with ValidationException in AWS\'s words; a record\'s errors come in AWS\'s order: partition key, hash key, data', async () => {
      await createActiveStream(client, 'bad-records');
      await expect(client.send(new PutRecordsCommand({ StreamName: 'bad-records', Records: [] }))).rejects.toMatchObject({
        name: 'ValidationException',
        message: `1 validation error detected: ${violation("'[]'", 'records', 'have length greater than or equal to 1')}`,
      });
      const noRecords = { status: 400, __type: 'ValidationException', message: `1 validation error detected: ${violation('null', 'records', 'not be null')}` };
      expect(await send('PutRecords', { StreamName: 'bad-records' })).toEqual(noRecords);
      expect(await send('PutRecords', { StreamName: 'bad-records', Records: null })).toEqual(noRecords);
      expect(await send('PutRecords', { StreamName: 'bad-records', Records: [{ PartitionKey: 'ok', Data: '' }, { Data: null, ExplicitHashKey: '-1', PartitionKey: '' }] })).toEqual({
        status: 400,
        __type: 'ValidationException',
        message: '3 validation errors detected: ' + [
          violation("''", 'records.2.member.partitionKey', 'have length greater than or equal to 1'),
          violation("'-1'", 'records.2.member.explicitHashKey', pattern),
          violation('null', 'records.2.member.data', 'not be null'),
        ].join('; '),
      });
      expect(await send('PutRecord', { StreamName: 'bad-records', Data: null, ExplicitHashKey: '1'.repeat(40), PartitionKey: 'k' })).toEqual({
        status: 400,
        __type: 'ValidationException',
        message: `2 validation errors detected: ${violation(`'${'1'.repeat(40)}'`, 'explicitHashKey', pattern)}; ${violation('null', 'data', 'not be null')}`,
      });
      // Data of 10 MiB, the limit, is no error: the record's only one is its key's (and kinesis-mock never reads the body).
      const limit = Buffer.alloc(10 * 1024 * 1024).toString('base64');
      expect(await send('PutRecords', { StreamName: 'bad-records', Records: [{ PartitionKey: '', Data: limit }] })).toMatchObject({
        status: 400,
        message: `1 validation error detected: ${violation("''", 'records.1.member.partitionKey', 'have length greater than or equal to 1')}`,
      });
      expect(await readAll(client, 'bad-records')).toEqual([]);
    });

    it('a valid body passes the guard untouched: the hash key bounds and empty data are stored; data over the stream\'s 1 MiB, a hash key over 2^128-1, are kinesis-mock\'s to refuse, as AWS refuses them after validation', async () => {
      await createActiveStream(client, 'good-records');
      const mib = 'm'.repeat(1024 * 1024);
      const top = (2n ** 128n - 1n).toString();
      const batch = await client.send(new PutRecordsCommand({
        StreamName: 'good-records',
        Records: [
          { Data: Buffer.from('zero'), PartitionKey: 'k', ExplicitHashKey: '0' },
          { Data: Buffer.from('top'), PartitionKey: 'k', ExplicitHashKey: top },
          { Data: new Uint8Array(), PartitionKey: 'k' },
          { Data: Buffer.from(`${mib}!`), PartitionKey: 'k' },
        ],
      }));
      expect(batch.FailedRecordCount).toBe(1);
      expect(batch.Records?.[3]).toMatchObject({ ErrorCode: 'InvalidArgumentException', ErrorMessage: expect.stringMatching(/max record size/) });
      await client.send(new PutRecordCommand({ StreamName: 'good-records', Data: Buffer.from('single'), PartitionKey: 'k', ExplicitHashKey: '340282366920938463463374607431768211455' }));
      await expect(client.send(new PutRecordCommand({ StreamName: 'good-records', Data: Buffer.from('over'), PartitionKey: 'k', ExplicitHashKey: (2n ** 128n).toString() }))).rejects.toMatchObject({
        name: 'InvalidArgumentException',
      });
      expect(await readAll(client, 'good-records')).toEqual(['zero', 'top', '', 'single']);
    });
  });
  describe("Data that is no base64 (kinesis-mock stores a value of a wrong length, read leniently, and answers a 500 with an empty body for a character outside the alphabet)", () => {
    const blob = (value: string, reason: string) => ({ status: 400, __type: 'SerializationException', Message: `'${value}' can not be converted to a Blob: ${reason}` });
    const length = (n: number) => `Base64 encoded length is expected a multiple of 4 bytes but found: ${n}`;
    beforeAll(() => createActiveStream(client, 'bad-base64'));

    it("is refused with AWS's SerializationException, in its words, a PutRecords whole, and nothing stored", async () => {
      expect(await send('PutRecords', { StreamName: 'bad-base64', Records: [{ Data: 'YQ==', PartitionKey: 'k' }, { Data: 'Foo', PartitionKey: 'k' }] })).toEqual(blob('Foo', length(3)));
      expect(await send('PutRecord', { StreamName: 'bad-base64', Data: 'string', PartitionKey: 'k' })).toEqual(blob('string', length(6)));
      expect(await send('PutRecord', { StreamName: 'bad-base64', Data: 'a*bc', PartitionKey: 'k' })).toEqual(blob('a*bc', "Invalid Base64 character: '*'"));
      expect(await send('PutRecords', { StreamName: 'bad-base64', Records: [{ Data: 'ab=c', PartitionKey: 'k' }] })).toEqual(blob('ab=c', "Invalid Base64 character: '='"));
      expect(await send('PutRecord', { StreamName: 'bad-base64', Data: 'YR==', PartitionKey: 'k' })).toEqual(blob('YR==', 'Invalid last non-pad Base64 character dectected'));
      // The error type in the header too, as an SDK reads it first.
      const text = JSON.stringify({ StreamName: 'bad-base64', Data: 'Foo', PartitionKey: 'k' });
      const request = awsJsonRequest(kinesis.port, 'Kinesis_20131202.PutRecord').replace('Content-Length: 2\r\n\r\n{}', `Content-Length: ${text.length}\r\n\r\n${text}`);
      expect((await rawExchange(kinesis.port, [request], 1))[0].headers).toContain('x-amzn-errortype: serializationexception');
      expect(await readAll(client, 'bad-base64')).toEqual([]);
    });

    it('comes before the validation errors (AWS decodes a body before it validates it); the first such record is named; a wrong type elsewhere does not hide it', async () => {
      expect(await send('PutRecord', { StreamName: 'bad-base64', Data: 'ab=c', PartitionKey: '', ExplicitHashKey: 'x' })).toEqual(blob('ab=c', "Invalid Base64 character: '='"));
      const records = [{ Data: 'YQ==', PartitionKey: '' }, { Data: 'Foo', PartitionKey: 'k' }, { Data: 'a*bc', PartitionKey: 'k' }];
      expect(await send('PutRecords', { StreamName: 'bad-base64', Records: records })).toEqual(blob('Foo', length(3)));
      const over = Array.from({ length: 501 }, (_, i) => ({ Data: i === 300 ? 'a*bc' : 'YQ==', PartitionKey: 'k' }));
      expect(await send('PutRecords', { StreamName: 'bad-base64', Records: over })).toEqual(blob('a*bc', "Invalid Base64 character: '*'"));
      expect(await send('PutRecords', { StreamName: 'bad-base64', Records: [{ Data: 'YQ==', PartitionKey: 5 }, { Data: 'a*bc', PartitionKey: 'k' }] })).toEqual(blob('a*bc', "Invalid Base64 character: '*'"));
      expect(await readAll(client, 'bad-base64')).toEqual([]);
    });

    it("quotes at most 1,000 characters of a long value, then '...' (AWS quotes it whole); a length it gives is the whole value's", async () => {
      const long = 'x'.repeat(4001);
      expect(await send('PutRecord', { StreamName: 'bad-base64', Data: long, PartitionKey: 'k' })).toEqual(blob(`${'x'.repeat(1000)}...`, length(4001)));
      const badChar = `${'A'.repeat(2000)}*AAA`;
      expect(await send('PutRecords', { StreamName: 'bad-base64', Records: [{ Data: badChar, PartitionKey: 'k' }] })).toEqual(blob(`${'A'.repeat(1000)}...`, "Invalid Base64 character: '*'"));
    });

    it("standard padded base64 passes untouched, '' included", async () => {
      await createActiveStream(client, 'good-base64');
      const datas = ['', 'YQ==', 'YWI=', 'YWJj', Buffer.from('+/+/', 'base64').toString('base64')];
      const batch = await send('PutRecords', { StreamName: 'good-base64', Records: datas.map((Data) => ({ Data, PartitionKey: 'k' })) });
      expect(batch).toMatchObject({ status: 200, FailedRecordCount: 0 });
      expect(await send('PutRecord', { StreamName: 'good-base64', Data: 'YWJjZA==', PartitionKey: 'k' })).toMatchObject({ status: 200 });
      expect(await readAll(client, 'good-base64')).toEqual(['', 'a', 'ab', 'abc', Buffer.from('+/+/', 'base64').toString('utf8'), 'abcd']);
    });
  });
  it('a held PutRecords body that is no JSON goes on to kinesis-mock, which refuses it as AWS would, and the guard serves the next request', async () => {
    const broken = '{"StreamName":"x","Records":[{"Data":';
    const request = awsJsonRequest(kinesis.port, 'Kinesis_20131202.PutRecords').replace('Content-Length: 2\r\n\r\n{}', `Content-Length: ${broken.length}\r\n\r\n${broken}`);
    const [answer] = await rawExchange(kinesis.port, [request], 1);
    expect(answer.status).toBeGreaterThanOrEqual(400);
    expect(answer.status).toBeLessThan(500);
    expect(answer.body).not.toMatch(/ValidationException/);
    await client.send(new ListStreamsCommand({}));
  });

  it('a PutRecords body held until whole is answered however its bytes arrive, and the connection serves the next request', async () => {
    await createActiveStream(client, 'held-bodies');
    const body = JSON.stringify({ StreamName: 'held-bodies', Records: [{ Data: Buffer.from('{"n":1}').toString('base64'), PartitionKey: 'k' }] });
    const request = awsJsonRequest(kinesis.port, 'Kinesis_20131202.PutRecords').replace('Content-Length: 2\r\n\r\n{}', `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    const bodyStart = request.indexOf('\r\n\r\n') + 4;
    // Cut inside the head, at the body's first byte, and inside the body; then a whole ListStreams on the same connection.
    const pieces = [request.slice(0, bodyStart - 10), request.slice(bodyStart - 10, bodyStart), request.slice(bodyStart, bodyStart + 7), request.slice(bodyStart + 7)];
    const answers = await rawExchange(kinesis.port, [pieces.join('')], 1);
    const split = await rawExchange(kinesis.port, [...pieces.slice(0, 3), pieces[3] + awsJsonRequest(kinesis.port, 'Kinesis_20131202.ListStreams')], 2);
    expect([...answers, ...split].map((a) => a.status)).toEqual([200, 200, 200]);
    expect(JSON.parse(split[0].body)).toMatchObject({ FailedRecordCount: 0 });
    expect(await readAll(client, 'held-bodies')).toEqual(['{"n":1}', '{"n":1}']);
  });

  it('property: PutRecords bodies held until whole, among other requests on one connection, split anywhere: all answered in order, an over-limit one last refused and none of it stored', async () => {
    await createActiveStream(client, 'held-mixed');
    const putRequest = (payloads: string[]) => {
      const body = JSON.stringify({ StreamName: 'held-mixed', Records: payloads.map((p, i) => ({ Data: Buffer.from(p).toString('base64'), PartitionKey: `k${i}` })) });
      return awsJsonRequest(kinesis.port, 'Kinesis_20131202.PutRecords').replace('Content-Length: 2\r\n\r\n{}', `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    };
    const listStreams = awsJsonRequest(kinesis.port, 'Kinesis_20131202.ListStreams');
    let run = 0;
    const request = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 })); // 0: a ListStreams; n: a PutRecords of n records
    await fc.assert(fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 3 }), fc.boolean(), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }), async (kinds, overLimit, at) => {
      run += 1;
      const puts = kinds.filter((n) => n > 0).map((n, p) => Array.from({ length: n }, (_, i) => `{"run":${run},"put":${p},"i":${i}}`));
      let p = 0;
      const requests = kinds.map((n) => (n === 0 ? listStreams : putRequest(puts[p++])));
      if (overLimit) requests.push(putRequest(Array.from({ length: 501 }, (_, i) => `{"run":${run},"over":${i}}`)));
      // Pipelined: the requests' bytes one after another, cut anywhere (inside heads, bodies, or across requests).
      const bytes = requests.join('');
      const points = [...new Set(at.map((x) => Math.floor(x * (bytes.length - 1)) + 1))].sort((a, b) => a - b);
      const pieces = [0, ...points].map((from, i) => bytes.slice(from, points[i] ?? bytes.length));
      const answers = await rawExchange(kinesis.port, pieces, requests.length);
      const stored = (await readAll(client, 'held-mixed')).filter((d) => d.startsWith(`{"run":${run},`));
      if (!overLimit) {
        // Every request answered, in order; every record stored, in order.
        expect(answers.map((a) => a.status)).toEqual(requests.map(() => 200));
        expect(answers.map((a) => /FailedRecordCount/.test(a.body))).toEqual(kinds.map((n) => n > 0));
        expect(stored).toEqual(puts.flat());
        return;
      }
      // The refusal ends the connection: it comes last, and none of the over-limit records is stored. A refusal drops
      // the chunk it came in, and may overtake kinesis-mock's answer to a pipelined request before it (no SDK
      // pipelines), so of the requests before it a prefix is stored.
      expect(answers.length).toBeGreaterThanOrEqual(1);
      expect(answers.map((a) => a.status)).toEqual([...answers.slice(1).map(() => 200), 400]);
      expect(JSON.parse(answers[answers.length - 1].body)).toMatchObject({ __type: 'ValidationException' });
      expect(puts.flat().slice(0, stored.length)).toEqual(stored);
    }), { numRuns: 12 });
  });

  it('round-trips records: CreateStream, ACTIVE, PutRecords, GetRecords', async () => {
    await createActiveStream(client, 'round-trip');
    const payloads = ['{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}'];
    await putRecords(client, 'round-trip', payloads);

    expect(await readAll(client, 'round-trip')).toEqual(payloads);
  });

  it('keeps streams and records across a restart on the same data dir', async () => {
    const dataDir = await tempDir();
    const first = await startKinesis({ port: 0, dataDir });
    const firstClient = kinesisClient(first.endpoint);
    try {
      expect(first.stateDir).toBe(path.join(dataDir, 'kinesis'));
      await createActiveStream(firstClient, 'durable');
      await putRecords(firstClient, 'durable', ['a', 'b']);
    } finally {
      // The connection stays open on purpose: stop() must still flush promptly.
      await first.stop();
      firstClient.destroy();
    }
    expect(existsSync(path.join(dataDir, 'kinesis', 'kinesis-data.json'))).toBe(true);

    const second = await startKinesis({ port: 0, dataDir });
    const secondClient = kinesisClient(second.endpoint);
    try {
      expect(await readAll(secondClient, 'durable')).toEqual(['a', 'b']);
    } finally {
      secondClient.destroy();
      await second.stop();
    }
  });

  it('keeps V8\'s code cache for its main.js, and uses it at the next start; a damaged one costs only the compile, and is written anew; writing one prunes other versions\' caches no start used for 30 days; a folder that cannot be made, only the cache', async () => {
    // By default beside the installed packages, as build tools keep theirs; here a folder of its own, which no other start shares.
    expect(kinesisCodeCacheDir()).toBe(path.resolve(__dirname, '../../node_modules/.cache/sluice'));
    const dir = path.join(await tempDir(), 'cache');
    const caches = () => (existsSync(dir) ? readdirSync(dir).filter((f) => /^kinesis-mock-[0-9a-f]{32}\.v8cache$/.test(f)) : []);
    /** Starts kinesis-mock, checks it answers, runs `then` while it runs, and stops it. */
    const running = async (then: () => Promise<void>) => {
      const mock = await startKinesis({ port: 0, codeCacheDir: dir });
      const mockClient = kinesisClient(mock.endpoint);
      try {
        await mockClient.send(new ListStreamsCommand({}));
        await then();
      } finally {
        mockClient.destroy();
        await mock.stop();
      }
    };
    // Written once it has started, by a start that found none; the folder made for it.
    let file = '';
    await running(async () => {
      [file] = await eventually('the code cache', async () => (caches().length === 1 ? caches() : undefined));
    });
    file = path.join(dir, file);
    expect(statSync(file).size).toBeGreaterThan(1_000_000);
    // Damaged: bytes changed inside it, its size kept (a disk's fault, a write a crash cut short). V8 checks only the
    // cache's header and size: given it, V8 crashes the process (SIGTRAP) or runs what the bytes say. Not given it: the
    // start compiles as without one, answers, and writes a whole cache in its place.
    const damaged = readFileSync(file);
    damaged.fill(0x5a, Math.floor(damaged.length * 0.3), Math.floor(damaged.length * 0.3) + 64);
    writeFileSync(file, damaged);
    // Beside it, other versions' caches (Node.js, kinesis-mock) and partials: a start that writes its cache deletes those
    // no start has used for 30 days (a start marks its cache used by its modification time) and partials over an hour
    // old, those a writer that died left; the others stay. One it cannot delete (here a folder) does not stop the start.
    const aged = (name: string, days: number): string => {
      const at = (Date.now() - days * 24 * 3600 * 1000) / 1000;
      utimesSync(path.join(dir, name), at, at);
      return name;
    };
    const other = (name: string, days: number): string => {
      writeFileSync(path.join(dir, name), 'x');
      return aged(name, days);
    };
    mkdirSync(path.join(dir, 'kinesis-mock-undeletable.v8cache'));
    writeFileSync(path.join(dir, 'kinesis-mock-undeletable.v8cache', 'inside'), 'x');
    const kept = [
      other('kinesis-mock-node22.v8cache', 29),
      other(`${path.basename(file)}.123.tmp`, 0.01),
      aged('kinesis-mock-undeletable.v8cache', 31),
      other('notes.txt', 90),
    ];
    const pruned = [other('kinesis-mock-node18.v8cache', 31), other(`${path.basename(file)}.456.tmp`, 0.1)];
    await running(async () => {
      await eventually('the cache written anew', async () => (!readFileSync(file).equals(damaged) || undefined));
      await eventually('the unused caches pruned', async () => (pruned.every((name) => !existsSync(path.join(dir, name))) || undefined));
    });
    expect(statSync(file).size).toBeGreaterThan(1_000_000);
    expect(readdirSync(dir).sort()).toEqual([...kept, path.basename(file)].sort());
    await Promise.all(kept.map((name) => rm(path.join(dir, name), { recursive: true })));
    // Whole: used, so not written again (the write would come a second after the start); marked used (once a day at most).
    aged(path.basename(file), 2);
    const whole = statSync(file);
    await running(() => new Promise((resolve) => setTimeout(resolve, 2_000)));
    expect(statSync(file).ino).toBe(whole.ino);
    expect(statSync(file).mtimeMs).toBeGreaterThan(whole.mtimeMs + 24 * 3600 * 1000);
    // A folder that cannot be made (node_modules read-only, a file in its place): kinesis-mock starts and answers as
    // without a cache, and leaves nothing behind.
    const inFile = path.join(dir, path.basename(file), 'cache');
    const unwritable = await startKinesis({ port: 0, codeCacheDir: inFile });
    const unwritableClient = kinesisClient(unwritable.endpoint);
    try {
      await unwritableClient.send(new ListStreamsCommand({}));
      // Past the second after which a start writes its cache: still running.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await unwritableClient.send(new ListStreamsCommand({}));
      expect(readdirSync(dir)).toEqual([path.basename(file)]);
    } finally {
      unwritableClient.destroy();
      await unwritable.stop();
    }
  });

  it('keeps running while its saves fail (a full or read-only disk), says when they fail and work again, and stop() says a final save failed', async () => {
    const dataDir = await tempDir();
    const problems: string[] = [];
    const kinesis = await startKinesis({ port: 0, dataDir, persistIntervalSeconds: 1, onSaveProblem: (line) => problems.push(line) });
    const client = kinesisClient(kinesis.endpoint);
    // A directory where the bootstrap writes <state>.saving makes every save fail (EISDIR), as root's chmod cannot.
    const obstruction = path.join(dataDir, 'kinesis', 'kinesis-data.json.saving');
    let stopped: unknown;
    try {
      await createActiveStream(client, 'unsaved');
      await mkdir(obstruction);
      await eventually('a failed save', async () => (problems.length >= 1 ? true : undefined), 20_000);
      // Still serving, with what it acknowledged.
      await putRecords(client, 'unsaved', ['kept']);
      expect(await readAll(client, 'unsaved')).toEqual(['kept']);
      await rm(obstruction, { recursive: true });
      await eventually('a save that works again', async () => (problems.length >= 2 ? true : undefined), 20_000);
      await mkdir(obstruction);
    } finally {
      client.destroy();
      stopped = await kinesis.stop().then(() => undefined, (error: unknown) => error);
    }
    const file = path.join(dataDir, 'kinesis', 'kinesis-data.json');
    expect(problems.slice(0, 2)).toEqual([
      `kinesis-mock: could not save its streams to ${file} (EISDIR); they stay in memory, and its next save (every 5 s, and at shutdown) writes them whole`,
      `kinesis-mock: saved its streams again to ${file}`,
    ]);
    expect(String(stopped)).toMatch(/could not write its final save to .*kinesis-data\.json \(EISDIR\): its streams hold what it saved last; records it acknowledged since are lost/);
    // Each run of failures is said once, not at every save.
    expect(problems.filter((l) => l.includes('could not save')).length).toBeLessThanOrEqual(2);
  }, 60_000);

  it('leaves no timer behind once stopped, so the process that ran it exits at once', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const dataDir = await tempDir();
    const before = timers();
    const own = await startKinesis({ port: 0, dataDir });
    await own.stop();
    expect(timers()).toBeLessThanOrEqual(before);
  });

  it('refuses a port in use and names it', async () => {
    const held = await occupyPort();
    try {
      await expect(startKinesis({ port: held.port })).rejects.toThrow(
        `kinesis-mock cannot listen on 127.0.0.1:${held.port}: the port is already in use`,
      );
    } finally {
      await held.release();
    }
  });

  /**
   * `startKinesis({ port: 0 })` whose first pick is `taken` (which the free-port checks then find free), and every
   * later pick a real free port; the picks are pushed to `picks`.
   */
  function startKinesisFirstPicking(taken: number, picks: number[]): Promise<RunningService> {
    return new Promise<RunningService>((resolve, reject) => {
      jest.isolateModules(() => {
        jest.doMock('../../lib/local/ports', () => {
          const ports = jest.requireActual('../../lib/local/ports');
          const freePort = async (): Promise<number> => {
            picks.push(picks.length === 0 ? taken : await ports.freePort());
            return picks[picks.length - 1];
          };
          const listenProblem = async (host: string, port: number) => (port === taken ? undefined : ports.listenProblem(host, port));
          return { ...ports, freePort, listenProblem };
        });
        const isolated = require('../../lib/local/emulators') as typeof import('../../lib/local/emulators');
        isolated.startKinesis({ port: 0 }).then(resolve, reject);
      });
    });
  }

  it('port 0 picks again when the free port it picked is taken before kinesis-mock binds it', async () => {
    const held = await occupyPort();
    const picks: number[] = [];
    try {
      // The first pick is a port another process binds between the checks and kinesis-mock's own bind
      // (so the checks find it free); the second, a real free one.
      const running = await startKinesisFirstPicking(held.port, picks);
      try {
        expect(picks).toHaveLength(2);
        expect(picks[0]).toBe(held.port);
        expect(running.port).toBe(picks[1]);
        const client = kinesisClient(running.endpoint);
        try {
          await expect(client.send(new ListStreamsCommand({}))).resolves.toMatchObject({ StreamNames: [] });
        } finally {
          client.destroy();
        }
      } finally {
        await running.stop();
      }
    } finally {
      await held.release();
    }
  });

  it('port 0 picks again when the port is taken first by a program that answers ListStreams (not taken for kinesis-mock answering)', async () => {
    // Another program (say another twin's kinesis-mock) binds the picked port first and answers the readiness probe.
    const squatter = http.createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        response.writeHead(200, { 'Content-Type': 'application/x-amz-json-1.1' });
        response.end(JSON.stringify({ StreamNames: ['not-mine'], HasMoreStreams: false }));
      });
    });
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const taken = (squatter.address() as net.AddressInfo).port;
    const picks: number[] = [];
    try {
      const running = await startKinesisFirstPicking(taken, picks);
      try {
        expect(running.port).not.toBe(taken);
        expect(picks).toHaveLength(2);
        expect(isRunning(running.pid as number)).toBe(true);
      } finally {
        await running.stop();
      }
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  });

  it('explains a failed start with the last lines the child wrote', async () => {
    // The same port twice passes the free-port checks, then the mock's second bind fails. The mock
    // usually exits at once, but sometimes stays up without answering: either way the error carries its output.
    const port = await freePort();
    const start = startKinesis({ port, tlsPort: port, readyTimeoutMs: 10_000 });
    await expect(start).rejects.toThrow(
      new RegExp(`kinesis-mock (exited \\(code 1\\) before it answered|did not answer ListStreams) on http://127\\.0\\.0\\.1:${port}`),
    );
    await expect(start).rejects.toThrow(/Last output:\n.*\[stderr\].*Address already in use/);
  });

  it('says when it had to be killed: records acknowledged just before may be lost', async () => {
    const dataDir = await tempDir();
    const mock = await startKinesis({ port: 0, dataDir, stopGraceMs: 1 });
    // Stopped, it cannot act on SIGTERM however late the 1 ms grace's timer fires on a loaded machine: only SIGKILL ends it.
    process.kill(mock.pid as number, 'SIGSTOP');
    await expect(mock.stop()).rejects.toThrow(/^kinesis-mock did not stop by itself \(killed\), perhaps before its final save: records acknowledged in the 5 s before the stop may be lost/);
  });

  it('gives up after readyTimeoutMs', async () => {
    await expect(startKinesis({ port: 0, readyTimeoutMs: 1 })).rejects.toThrow(
      /kinesis-mock did not answer ListStreams on http:\/\/127\.0\.0\.1:\d+ within 1 ms/,
    );
  });

  it.each([['', 'is empty'], ['{"streams":', 'is cut short'], ['   \n', 'is empty']])('names a saved state file it cannot load (%j) instead of failing with a stack trace', async (content, problem) => {
    const dataDir = await tempDir();
    await mkdir(path.join(dataDir, 'kinesis'));
    await writeFile(path.join(dataDir, 'kinesis', 'kinesis-data.json'), content);
    await expect(startKinesis({ port: 0, dataDir })).rejects.toThrow(
      `kinesis-mock's saved streams ${path.join(dataDir, 'kinesis', 'kinesis-data.json')} ${problem} (a save was cut off): move it away`,
    );
  });

  it('asks for a data dir when persistence is on', async () => {
    await expect(startKinesis({ persist: true })).rejects.toThrow(/no dataDir was given/);
  });

  describe('its state file, written through the bootstrap as kinesis-mock writes it', () => {
    /** Runs the bootstrap with `main` in kinesis-mock's place; returns the state file's content after it exits. */
    async function stateAfter(main: string, prepare?: (dir: string) => Promise<void>): Promise<string> {
      const dir = await tempDir();
      await writeFile(path.join(dir, 'kinesis-data.json'), '{"streams":"before"}');
      await prepare?.(dir);
      await writeFile(path.join(dir, 'main.js'), main);
      const child = spawn(process.execPath, ['-e', KINESIS_BOOTSTRAP], {
        env: { PATH: process.env.PATH, SLUICE_BIND_HOST: '127.0.0.1', SLUICE_KINESIS_MAIN: path.join(dir, 'main.js'), PERSIST_PATH: dir, PERSIST_FILE_NAME: 'kinesis-data.json' },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      await new Promise((resolve) => child.once('exit', resolve));
      return readFileSync(path.join(dir, 'kinesis-data.json'), 'utf8');
    }
    // kinesis-mock's writer: createWriteStream (which truncates), write() calls, end(), then destroy() at once.
    const save = (exitWhen: 'mid-save' | 'after-end') => `const fs = require('fs');
const s = fs.createWriteStream(require('path').join(process.env.PERSIST_PATH, process.env.PERSIST_FILE_NAME), { flags: 'w' });
s.once('open', () => {
  s.write('{"streams":');
  ${exitWhen === 'mid-save' ? 'process.exit(143);' : `s.write('"after"}'); s.end(); s.destroy(); process.exit(143);`}
});`;

    it('keeps the previous state when the process exits in the middle of a save', async () => {
      expect(await stateAfter(save('mid-save'))).toBe('{"streams":"before"}');
    });

    it('holds the whole new state once end() is called, even if the process exits right after', async () => {
      expect(await stateAfter(save('after-end'))).toBe('{"streams":"after"}');
    });

    /** Runs the bootstrap with `main` in kinesis-mock's place, sends it SIGTERM once `main` says "up", and returns the state and stderr after it exits. */
    async function stateAfterSigterm(main: string, env: Record<string, string> = {}): Promise<{ state: string; stderr: string; ms: number }> {
      const dir = await tempDir();
      await writeFile(path.join(dir, 'kinesis-data.json'), '{"streams":"before"}');
      await writeFile(path.join(dir, 'main.js'), main);
      const child = spawn(process.execPath, ['-e', KINESIS_BOOTSTRAP], {
        env: { PATH: process.env.PATH, SLUICE_BIND_HOST: '127.0.0.1', SLUICE_KINESIS_MAIN: path.join(dir, 'main.js'), PERSIST_PATH: dir, PERSIST_FILE_NAME: 'kinesis-data.json', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let [stdout, stderr] = ['', ''];
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise((resolve) => child.once('exit', resolve));
      await new Promise<void>((resolve) => child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()).includes('up') && resolve()));
      const started = Date.now();
      child.kill('SIGTERM');
      await exited;
      return { state: readFileSync(path.join(dir, 'kinesis-data.json'), 'utf8'), stderr, ms: Date.now() - started };
    }

    // A shutdown that reaches its final save late, as on a loaded machine (the old bootstrap exited 8 s
    // after SIGTERM, losing what was acknowledged since the last periodic save).
    it('waits for a final save that comes 9 s after SIGTERM', async () => {
      const main = `const fs = require('fs');
const keepAlive = setInterval(() => undefined, 1000);
process.on('SIGTERM', () => setTimeout(() => {
  const s = fs.createWriteStream(require('path').join(process.env.PERSIST_PATH, process.env.PERSIST_FILE_NAME));
  s.once('ready', () => { s.write('{"streams":"after"}'); s.end(() => { clearInterval(keepAlive); }); });
}, 9000));
process.stdout.write('up\\n');`;
      const { state, stderr } = await stateAfterSigterm(main);
      expect({ state, stderr }).toEqual({ state: '{"streams":"after"}', stderr: '' });
    }, 20_000);

    it('exits by itself when its shutdown hangs, and says what that may have cost', async () => {
      const main = `setInterval(() => undefined, 1000); process.on('SIGTERM', () => undefined); process.stdout.write('up\\n');`;
      const { state, stderr, ms } = await stateAfterSigterm(main, { SLUICE_KINESIS_LAST_RESORT_MS: '300' });
      expect(state).toBe('{"streams":"before"}');
      expect(stderr).toMatch(/^kinesis-mock: still running 300 ms after SIGTERM; exiting \(if its final save had not run, records acknowledged since its last save are lost\)\n$/);
      expect(ms).toBeLessThan(10_000);
    });

    // kinesis-mock's own writer has no 'error' listener: an error event would crash it, and its restart would load the
    // previous save, losing what it had acknowledged since (seen with a data dir made read-only for a few seconds).
    it('a save that cannot be written (a full or read-only disk) leaves the previous state, says so once, and the next save writes it all', async () => {
      const dir = await tempDir();
      await writeFile(path.join(dir, 'kinesis-data.json'), '{"streams":"before"}');
      // The bootstrap writes <state>.saving first: a directory there makes that write fail (EISDIR) until it goes.
      await mkdir(path.join(dir, 'kinesis-data.json.saving'));
      await writeFile(path.join(dir, 'main.js'), `const fs = require('fs');
const path = require('path');
const file = path.join(process.env.PERSIST_PATH, process.env.PERSIST_FILE_NAME);
const state = () => fs.readFileSync(file, 'utf8');
const save = (text, then) => { const s = fs.createWriteStream(file); s.once('ready', () => { s.write(text); s.end(then); }); };
const seen = [];
save('{"streams":"first"}', () => {
  seen.push(state());
  save('{"streams":"second"}', () => {
    seen.push(state());
    fs.rmdirSync(file + '.saving');
    save('{"streams":"third"}', () => { seen.push(state()); fs.writeFileSync(path.join(process.env.PERSIST_PATH, 'seen.json'), JSON.stringify(seen)); });
  });
});`);
      const child = spawn(process.execPath, ['-e', KINESIS_BOOTSTRAP], {
        env: { PATH: process.env.PATH, SLUICE_BIND_HOST: '127.0.0.1', SLUICE_KINESIS_MAIN: path.join(dir, 'main.js'), PERSIST_PATH: dir, PERSIST_FILE_NAME: 'kinesis-data.json' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      // 'close', not 'exit': its output read to the end.
      const code = await new Promise((resolve) => child.once('close', resolve));
      expect(code).toBe(0);
      // The two failed saves left the previous state; the one after wrote its own.
      expect(JSON.parse(readFileSync(path.join(dir, 'seen.json'), 'utf8'))).toEqual(['{"streams":"before"}', '{"streams":"before"}', '{"streams":"third"}']);
      const file = path.join(dir, 'kinesis-data.json');
      expect(stderr).toBe(`kinesis-mock: could not save its streams to ${file} (EISDIR); they stay in memory, and its next save (every 5 s, and at shutdown) writes them whole\n`
        + `kinesis-mock: saved its streams again to ${file}\n`);
    });
  });

  describe('does not outlive its parent', () => {
    /** Starts kinesis-mock from a separate Node process and returns that process and the mock's pid. */
    async function startInOtherProcess(then: 'exit' | 'wait'): Promise<{ parentPid: number; mockPid: number }> {
      const dir = await tempDir();
      const script = path.join(dir, 'parent.js');
      await writeFile(
        script,
        `const { startKinesis } = require(${JSON.stringify(path.resolve(__dirname, '../../lib/local/emulators.ts'))});
startKinesis({ port: 0 }).then((kinesis) => {
  process.stdout.write(kinesis.pid + '\\n');
  if (${JSON.stringify(then)} === 'exit') process.exit(0);
});`,
      );
      const parent = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const mockPid = await new Promise<number>((resolve, reject) => {
        let out = '';
        parent.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes('\n')) resolve(Number(out.trim()));
        });
        parent.once('exit', (code) => reject(new Error(`parent exited with ${code} before kinesis-mock started`)));
      });
      return { parentPid: parent.pid as number, mockPid };
    }

    it('stops when the parent exits', async () => {
      const { mockPid } = await startInOtherProcess('exit');
      await eventually('kinesis-mock to stop', async () => (isRunning(mockPid) ? undefined : true), 15_000);
    });

    it('stops when the parent is killed outright', async () => {
      const { parentPid, mockPid } = await startInOtherProcess('wait');
      expect(isRunning(mockPid)).toBe(true);
      process.kill(parentPid, 'SIGKILL');
      await eventually('kinesis-mock to stop', async () => (isRunning(mockPid) ? undefined : true), 15_000);
    });

    // kinesis-mock slower to start than its parent to go: it binds its plain port once the parent has closed the channel
    // (after it read that, or before: the send is then tried and fails), and on SIGTERM makes its final save and exits.
    it.each([
      ['after it saw the channel close', `process.once('disconnect', listen);`],
      ['before it saw the channel close (the send fails)', `while (!fs.existsSync(closed)); listen();`],
    ])('stops as an orphan does (its final save, exit 0), not on an uncaught IPC error, when the parent is gone as it starts listening: %s', async (_, whenListening) => {
      const dir = await tempDir();
      const [closed, saved] = [path.join(dir, 'closed'), path.join(dir, 'saved')];
      const port = await freePort();
      await writeFile(path.join(dir, 'main.js'), `const fs = require('fs');
const closed = ${JSON.stringify(closed)};
const listen = () => require('net').createServer().listen(${port});
process.on('SIGTERM', () => { fs.writeFileSync(${JSON.stringify(saved)}, ''); process.exit(0); });
${whenListening}`);
      const child = spawn(process.execPath, ['-e', KINESIS_BOOTSTRAP], {
        env: { PATH: process.env.PATH, SLUICE_BIND_HOST: '127.0.0.1', SLUICE_KINESIS_MAIN: path.join(dir, 'main.js'), KINESIS_MOCK_PLAIN_PORT: String(port) },
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      });
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (code, signal) => resolve([code, signal])));
      // The channel closes from the parent's end, as when the parent dies.
      await new Promise<void>((resolve) => child.once('spawn', () => resolve()));
      child.disconnect();
      await writeFile(closed, '');
      const [code, signal] = await exited;
      expect({ code, signal, stderr, saved: existsSync(saved) }).toEqual({ code: 0, signal: null, stderr: '', saved: true });
    });
  });
});

describe('dynalite', () => {
  async function createActiveTable(endpoint: string, tableName: string): Promise<void> {
    const client = dynamoClient(endpoint);
    try {
      await client.send(
        new CreateTableCommand({
          TableName: tableName,
          AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
          KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
          BillingMode: 'PAY_PER_REQUEST',
        }),
      );
      await eventually(`table ${tableName} to become ACTIVE`, async () => {
        const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
        return Table?.TableStatus === 'ACTIVE' ? true : undefined;
      });
    } finally {
      client.destroy();
    }
  }

  it('refuses what a web page sends (dynalite itself allows any origin), and still serves the SDK on the same connection', async () => {
    const dynamo = await startDynamo({ port: await freePort() });
    try {
      expect(await webPageCases(dynamo.port, 'DynamoDB_20120810.ListTables')).toEqual(refusedWebPages(200));
    } finally {
      await dynamo.stop();
    }
  });

  it('serves CreateTable, PutItem and GetItem in memory on loopback', async () => {
    const dynamo = await startDynamo({ port: await freePort() });
    const client = dynamoClient(dynamo.endpoint);
    try {
      expect(dynamo).toMatchObject({ name: 'dynalite', endpoint: `http://127.0.0.1:${dynamo.port}` });
      expect(dynamo.stateDir).toBeUndefined();
      if (existsSync('/proc/net/tcp')) expect(listeningAddresses(dynamo.port)).toEqual(['127.0.0.1']);

      await createActiveTable(dynamo.endpoint, 'metadata');
      await client.send(
        new PutItemCommand({ TableName: 'metadata', Item: { pk: { S: 'record-1' }, bytes: { N: '42' } } }),
      );
      const { Item } = await client.send(new GetItemCommand({ TableName: 'metadata', Key: { pk: { S: 'record-1' } } }));
      expect(Item).toEqual({ pk: { S: 'record-1' }, bytes: { N: '42' } });
    } finally {
      client.destroy();
      await dynamo.stop();
    }
  });

  it('keeps tables and items across a restart on the same data dir', async () => {
    const dataDir = await tempDir();
    const port = await freePort();
    const first = await startDynamo({ port, dataDir });
    const firstClient = dynamoDocumentClient(first.endpoint);
    try {
      expect(first.stateDir).toBe(path.join(dataDir, 'dynamodb'));
      await createActiveTable(first.endpoint, 'durable');
      await firstClient.send(new PutCommand({ TableName: 'durable', Item: { pk: 'a', note: 'kept', dropped: undefined } }));
    } finally {
      firstClient.destroy();
      await first.stop();
    }

    const second = await startDynamo({ port, dataDir });
    const secondClient = dynamoDocumentClient(second.endpoint);
    try {
      const { Item } = await secondClient.send(new GetCommand({ TableName: 'durable', Key: { pk: 'a' } }));
      expect(Item).toEqual({ pk: 'a', note: 'kept' });
    } finally {
      secondClient.destroy();
      await second.stop();
    }
  });

  it('refuses a data dir another instance holds, instead of crashing on the first request', async () => {
    const dataDir = await tempDir();
    const first = await startDynamo({ port: await freePort(), dataDir });
    try {
      await expect(startDynamo({ port: await freePort(), dataDir })).rejects.toThrow(
        `dynalite cannot open its LevelDB store in ${path.join(dataDir, 'dynamodb')}`,
      );
    } finally {
      await first.stop();
    }
  });

  it('refuses a port in use and names it', async () => {
    const held = await occupyPort();
    try {
      await expect(startDynamo({ port: held.port })).rejects.toThrow(
        `dynalite cannot listen on 127.0.0.1:${held.port}: the port is already in use`,
      );
    } finally {
      await held.release();
    }
  });
});
