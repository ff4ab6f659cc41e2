/**
 * `sluice put` for Kinesis-sourced pipelines against kinesis-mock (the twin's Kinesis emulator), and
 * `--verify` across lake and search with a stand-in for the twin's readers: it consumes the stream
 * and writes Parquet and `_bulk` bodies the way the twin does.
 */
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import * as path from 'node:path';
import {
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  type KinesisClient,
} from '@aws-sdk/client-kinesis';
import { kinesisClient } from '../../lib/local/aws-clients';
import { startKinesis, type RunningService } from '../../lib/local/emulators';
import { openSearchDir } from '../../lib/local/paths';
import { pipelineSchema, transformRecord } from '../../transforms/shared';
import { validators } from '../../transforms/shared/generated';
import { deliverToLake, hungServer, registerTwin, sluice, tempDataDir } from './helpers';

let kinesis: RunningService;
let client: KinesisClient;
let dataDir: string;

async function createStream(name: string): Promise<void> {
  await client.send(new CreateStreamCommand({ StreamName: name, ShardCount: 2 }));
  for (let i = 0; i < 100; i++) {
    const { StreamDescriptionSummary } = await client.send(new DescribeStreamSummaryCommand({ StreamName: name }));
    if (StreamDescriptionSummary?.StreamStatus === 'ACTIVE') return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`stream ${name} never became ACTIVE`);
}

/** Every record in the stream so far, with its partition key. */
async function readStream(name: string): Promise<Array<{ partitionKey: string; data: Buffer }>> {
  const { Shards } = await client.send(new ListShardsCommand({ StreamName: name }));
  const out: Array<{ partitionKey: string; data: Buffer }> = [];
  for (const shard of Shards ?? []) {
    let { ShardIterator: iterator } = await client.send(new GetShardIteratorCommand({ StreamName: name, ShardId: shard.ShardId, ShardIteratorType: 'TRIM_HORIZON' }));
    for (let page = 0; iterator && page < 20; page++) {
      const response = await client.send(new GetRecordsCommand({ ShardIterator: iterator }));
      for (const r of response.Records ?? []) out.push({ partitionKey: r.PartitionKey ?? '', data: Buffer.from(r.Data ?? []) });
      if ((response.Records ?? []).length === 0) break;
      iterator = response.NextShardIterator;
    }
  }
  return out;
}

beforeAll(async () => {
  kinesis = await startKinesis({ port: 0 });
  client = kinesisClient(kinesis.endpoint);
  await createStream('sluice-dev-iot');
  await createStream('sluice-dev-clickstream');
}, 120_000);
afterAll(async () => {
  client?.destroy();
  await kinesis?.stop();
});
beforeEach(() => {
  dataDir = tempDataDir();
  registerTwin(dataDir, { kinesis: kinesis.endpoint });
});
afterEach(() => {
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('sluice put (Kinesis-sourced pipeline)', () => {
  test('sends generated records with PutRecords, keyed by the record\'s entity', async () => {
    const { code, stdout } = await sluice('put', 'iot', '--count', '25', '--endpoint-kinesis', kinesis.endpoint, '--data-dir', dataDir);
    expect(code).toBe(0);
    expect(stdout).toMatch(/iot: 25 records → Kinesis stream sluice-dev-iot/);
    const records = await readStream('sluice-dev-iot');
    expect(records).toHaveLength(25);
    for (const r of records) {
      const json = JSON.parse(r.data.toString()) as { device_id: string };
      expect(validators.iot(json)).toBe(true);
      expect(r.partitionKey).toBe(json.device_id);
    }
  });

  test('a stream that does not exist is a usage error that says so', async () => {
    const { code, stderr } = await sluice('put', 'transactions', '--endpoint-kinesis', kinesis.endpoint, '--data-dir', dataDir);
    expect(code).toBe(2);
    expect(stderr).toMatch(/the twin's Kinesis API: not found \(Kinesis stream sluice-dev-transactions\)/);
    expect(stderr).toContain(`start the twin with \`npx sluice local up --data-dir ${dataDir}\``);
  });

  test('--verify waits for both the lake rows and the search documents (the twin\'s _bulk bodies without OPENSEARCH_URL)', async () => {
    // Stand-in for the twin's lake and search readers of the clickstream stream.
    const seen = new Set<string>();
    const schema = pipelineSchema('clickstream');
    let polling: Promise<void> | undefined;
    let files = 0;
    const poll = async (): Promise<void> => {
      const fresh = (await readStream('sluice-dev-clickstream')).filter((r) => !seen.has(r.data.toString()));
      for (const r of fresh) seen.add(r.data.toString());
      if (fresh.length === 0) return;
      await deliverToLake(dataDir, 'clickstream', fresh.map((r) => r.data));
      const bulk: string[] = [];
      for (const r of fresh) {
        const out = transformRecord(schema, r.data, { arrivalMs: Date.now() }, { destination: 'search', piiHashKey: 'k', processedAt: new Date() });
        if (out.result === 'Ok') bulk.push(JSON.stringify({ index: { _index: `clickstream-${new Date().toISOString().slice(0, 10)}`, _id: out.id } }), out.data.toString().trim());
      }
      // As lib/local/search-sink.ts lays them out: <data-dir>/opensearch/<pipeline>/<index>/<n>.ndjson
      const dir = path.join(openSearchDir(dataDir), 'clickstream', `clickstream-${new Date().toISOString().slice(0, 10)}`);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, `${String(++files).padStart(8, '0')}.ndjson`), `${bulk.join('\n')}\n`);
    };
    const timer = setInterval(() => {
      polling ??= poll().finally(() => {
        polling = undefined;
      });
    }, 200);
    try {
      const { code, stdout, stderr } = await sluice('put', 'clickstream', '--count', '15', '--verify', '--timeout', '30s', '--poll', '250ms',
        '--endpoint-kinesis', kinesis.endpoint, '--data-dir', dataDir);
      expect(stderr).toBe('');
      expect(code).toBe(0);
      expect(stdout).toMatch(/verify lake \(sluice_dev\.clickstream\): 15\/15 after/);
      expect(stdout).toMatch(/verify search \(_bulk bodies under .*\/opensearch\/clickstream\): 15\/15 after/);
      expect(stdout).toMatch(/PASS: 15 of 15 records queryable after/);
    } finally {
      clearInterval(timer);
      await polling;
    }
  });
});

describe('sluice put --verify: search verification failing after the lake verified', () => {
  test('keeps the lake\'s result: in --json\'s verify.results, and as its line in the text, before the reason', async () => {
    const seen = new Set<string>();
    let polling: Promise<void> | undefined;
    // The lake's stand-in reader only; where the twin puts its _bulk bodies is a file, so reading them fails (ENOTDIR).
    fs.mkdirSync(openSearchDir(dataDir), { recursive: true });
    fs.writeFileSync(path.join(openSearchDir(dataDir), 'clickstream'), 'not a folder');
    const poll = async (): Promise<void> => {
      const fresh = (await readStream('sluice-dev-clickstream')).filter((r) => !seen.has(r.data.toString()));
      for (const r of fresh) seen.add(r.data.toString());
      if (fresh.length > 0) await deliverToLake(dataDir, 'clickstream', fresh.map((r) => r.data));
    };
    const timer = setInterval(() => {
      polling ??= poll().finally(() => {
        polling = undefined;
      });
    }, 200);
    try {
      const args = ['put', 'clickstream', '--count', '5', '--verify', '--timeout', '30s', '--poll', '250ms', '--endpoint-kinesis', kinesis.endpoint, '--data-dir', dataDir];
      const json = await sluice(...args, '--json');
      expect(json.code).toBe(1);
      const summary = JSON.parse(json.stdout) as { verify: { passed: boolean; error: string; results: Array<{ where: string; passed: boolean; found: number; expected: number }> } };
      expect(summary.verify).toMatchObject({ passed: false, error: expect.stringMatching(/ENOTDIR/) });
      expect(summary.verify.results).toEqual([expect.objectContaining({ where: 'lake (sluice_dev.clickstream)', passed: true, found: 5, expected: 5 })]);
      expect(json.stderr).toMatch(/^sluice: 5 of 5 records accepted; verify lake \(sluice_dev\.clickstream\): 5\/5; verify could not run: .*ENOTDIR/);
      const text = await sluice(...args);
      expect(text.code).toBe(1);
      expect(text.stdout).toMatch(/verify lake \(sluice_dev\.clickstream\): 5\/5 after/);
    } finally {
      clearInterval(timer);
      await polling;
    }
  }, 120_000);
});

describe('sluice put --verify (a pipeline with a search destination): the documents are looked for where the twin puts them, before anything is sent', () => {
  const sent = async () => (await readStream('sluice-dev-clickstream')).length;
  const put = (...extra: string[]) => sluice('put', 'clickstream', '--count', '5', '--verify', '--timeout', '20s', '--endpoint-kinesis', kinesis.endpoint, '--data-dir', dataDir, ...extra);
  const record = (openSearch?: string) => registerTwin(dataDir, { kinesis: kinesis.endpoint }, {
    endpoints: { firehose: 'http://127.0.0.1:9', kinesis: kinesis.endpoint, openSearch: openSearch ?? null },
  });

  test('a twin writing _bulk files, an OPENSEARCH_URL here: refused, naming both and what to do', async () => {
    record();
    const before = await sent();
    const { code, stdout, stderr } = await put('--endpoint-opensearch', 'http://user:secret@127.0.0.1:9200/');
    expect({ code, stdout }).toEqual({ code: 2, stdout: '' });
    expect(stderr).toMatch(/^sluice: the twin on data dir .+ writes clickstream's search documents to _bulk files under .+\/opensearch \(it was started without OPENSEARCH_URL\), so --verify would not find them at http:\/\/127\.0\.0\.1:9200: nothing was sent\. Unset OPENSEARCH_URL and --endpoint-opensearch to verify from those files, or restart the twin with OPENSEARCH_URL=http:\/\/127\.0\.0\.1:9200\n$/);
    expect(stderr).not.toContain('secret');
    expect(await sent()).toBe(before);
  });

  test('a twin indexing into an OpenSearch, none (or another) here: refused, naming the twin\'s', async () => {
    record('http://127.0.0.1:9200');
    const before = await sent();
    const none = await put();
    expect({ code: none.code, stderr: none.stderr }).toEqual({
      code: 2,
      stderr: expect.stringMatching(/indexes clickstream's search documents into OpenSearch at http:\/\/127\.0\.0\.1:9200: nothing was sent\. Pass OPENSEARCH_URL=http:\/\/127\.0\.0\.1:9200 \(or --endpoint-opensearch http:\/\/127\.0\.0\.1:9200\) so --verify looks there\n$/),
    });
    const other = await put('--endpoint-opensearch', 'http://127.0.0.1:9201');
    expect({ code: other.code, stderr: other.stderr }).toEqual({ code: 2, stderr: expect.stringMatching(/into OpenSearch at http:\/\/127\.0\.0\.1:9200, not http:\/\/127\.0\.0\.1:9201: nothing was sent\./) });
    expect(await sent()).toBe(before);
  });

  test('one OpenSearch spelled two ways (localhost, 127.0.0.1 or [::1]; a default port or none) is the same: it is asked, not refused', async () => {
    // A port just freed: nothing listens there, so each put that gets past the comparison fails at its probe.
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = server.address() as { port: number };
        server.close(() => resolve(free));
      });
    });
    const before = await sent();
    for (const [twins, here] of [
      [`http://127.0.0.1:${port}`, `http://localhost:${port}`],
      [`http://127.0.0.1:${port}`, `http://[::1]:${port}/`],
      [`http://localhost:${port}`, `http://127.0.0.1:${port}`],
      ['http://localhost', 'http://127.0.0.1:80'],
    ]) {
      record(twins);
      const { code, stdout, stderr } = await put('--endpoint-opensearch', here);
      expect({ twins, here, code, stdout }).toEqual({ twins, here, code: 2, stdout: '' });
      expect(stderr).not.toMatch(/search documents into OpenSearch at/);
      // Asked, and nothing answers there (nothing listens; where ::1 is not configured, it cannot be reached).
      expect(stderr).toMatch(/^sluice: .+: nothing was sent\n$/);
    }
    // Another scheme or port on loopback is another OpenSearch still.
    for (const here of [`https://localhost:${port}`, `http://localhost:${port + 1}`]) {
      record(`http://127.0.0.1:${port}`);
      const { code, stderr } = await put('--endpoint-opensearch', here);
      expect({ code, stderr }).toEqual({ code: 2, stderr: expect.stringMatching(new RegExp(`into OpenSearch at http://127\\.0\\.0\\.1:${port}, not ${here.replace(/\./g, '\\.')}: nothing was sent\\.`)) });
    }
    expect(await sent()).toBe(before);
  });

  test('the same OpenSearch on both sides, not answering: the put fails with nothing sent', async () => {
    // A port just freed: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = server.address() as { port: number };
        server.close(() => resolve(free));
      });
    });
    record(`http://127.0.0.1:${port}`);
    const before = await sent();
    const { code, stdout, stderr } = await put('--endpoint-opensearch', `http://127.0.0.1:${port}`);
    expect({ code, stdout }).toEqual({ code: 2, stdout: '' });
    expect(stderr).toMatch(new RegExp(`^sluice: nothing is listening on 127\\.0\\.0\\.1:${port}.*: nothing was sent\\n$`));
    expect(await sent()).toBe(before);
  });

  test('the same OpenSearch on both sides, taking the request and never answering: given up at --timeout, nothing sent', async () => {
    const hung = await hungServer();
    try {
      record(`http://127.0.0.1:${hung.port}`);
      const before = await sent();
      const { code, stdout, stderr } = await sluice('put', 'clickstream', '--count', '5', '--verify', '--timeout', '2s', '--endpoint-kinesis', kinesis.endpoint,
        '--data-dir', dataDir, '--endpoint-opensearch', `http://127.0.0.1:${hung.port}`);
      expect({ code, stdout, stderr }).toEqual({ code: 2, stdout: '', stderr: `sluice: OpenSearch at http://127.0.0.1:${hung.port} did not answer within 2.0 s: nothing was sent; is it running there?\n` });
      expect(hung.connections()).toBeGreaterThan(0);
      expect(await sent()).toBe(before);
    } finally {
      await hung.close();
    }
  });
});
