/**
 * Shared by the CLI tests: running `sluice` in-process with its output captured, a data dir laid out
 * like the twin's, and a miniature of the twin's lake path (transform → Parquet under the Firehose
 * prefix) for records the tests hand it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import * as path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { loadConfig, type SluiceConfig } from '../../lib/config';
import { run } from '../../lib/cli/main';
import type { FirehoseBackend, FunctionAnswer, IngestResult, LocalDeliveryStream } from '../../lib/local/firehose-api';
import { ParquetWriter } from '../../lib/local/parquet-writer';
import { localBucketName } from '../../lib/local/paths';
import { readLiveTwinRecord, schemaFingerprint, writeTwinRecord, type TwinRecord } from '../../lib/local/twin-record';
import { partitionPath } from '../../lib/schema';
import { pipelineSchema, transformRecord } from '../../transforms/shared';

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `sluice <argv>` in this process; stdout and stderr as the user would see them. */
export async function sluice(...argv: string[]): Promise<CliResult> {
  return capture(run, argv);
}

/**
 * Runs `sluice <argv>` with every module loaded afresh, as a new process would: nothing held in
 * memory by an earlier run (e.g. the twin's DLQ visibility timeouts) carries over.
 */
export async function sluiceAfresh(...argv: string[]): Promise<CliResult> {
  let result: CliResult | undefined;
  // The whole run is inside the isolated registry: a command's module is loaded when the command runs.
  await jest.isolateModulesAsync(async () => {
    result = await capture((require('../../lib/cli/main') as typeof import('../../lib/cli/main')).run, argv);
  });
  return result!;
}

async function capture(runCli: typeof run, argv: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const stdout = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out.push(String(chunk));
    return true;
  });
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err.push(String(chunk));
    return true;
  });
  const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => {
    out.push(`${a.join(' ')}\n`);
  });
  const error = jest.spyOn(console, 'error').mockImplementation((...a: unknown[]) => {
    err.push(`${a.join(' ')}\n`);
  });
  try {
    const code = await runCli(argv);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
    log.mockRestore();
    error.mockRestore();
  }
}

export const config: SluiceConfig = loadConfig();

const tempDirs: string[] = [];
/** Whether a twin process other than this one (a test's fake registers this pid) runs on `dir`: its file stops it after this cleanup. */
function twinRunsOn(dir: string): boolean {
  const pid = readLiveTwinRecord(dir)?.pid;
  return pid !== undefined && pid !== process.pid;
}
// Each test file loads its own copy of this module: its dirs go when its tests are done. This hook runs before the
// file's own: a dir a twin still runs on is the file's to remove once it has stopped the twin.
afterAll(() => {
  for (const dir of tempDirs.splice(0)) {
    if (twinRunsOn(dir)) continue;
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // A twin a test left running may still write there: the system's temp cleaning takes what is left.
    }
  }
});

/** A new empty dir under the system temp dir, removed after the test file's tests. */
export function tempDataDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-cli-'));
  tempDirs.push(dir);
  return dir;
}

/**
 * Runs the `sluice` binary in a process of its own with `env` added, to its end. For what a test's process.env cannot
 * change in this process: os.tmpdir(), for one, reads the real environment's TMPDIR.
 */
export function sluiceBinary(argv: readonly string[], env: NodeJS.ProcessEnv): CliResult {
  const run = spawnSync(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), ...argv], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  return { code: run.status ?? -1, stdout: run.stdout, stderr: run.stderr };
}

/** `sluiceBinary` with a temp dir (`TMPDIR`) that cannot take a folder: a file, as a read-only mount is to root too. */
export function sluiceWithUnusableTempDir(...argv: string[]): CliResult & { readonly tempDir: string } {
  const tempDir = path.join(tempDataDir(), 'tmp');
  fs.writeFileSync(tempDir, '');
  return { ...sluiceBinary(argv, { TMPDIR: tempDir }), tempDir };
}

/**
 * The data dir's twin.json, as a twin writes it when it starts, naming the endpoints a test runs in its
 * place (a bare Firehose API, kinesis-mock): `put` and `replay` send only to the twin running on the data dir.
 */
export function registerTwin(dataDir: string, endpoints: { firehose?: string; kinesis?: string }, overrides: Partial<TwinRecord> = {}): void {
  writeTwinRecord({
    pid: process.pid,
    startedAt: new Date().toISOString(),
    dataDir,
    // A port nothing listens on stands for the endpoint a test does not run.
    endpoints: { firehose: endpoints.firehose ?? 'http://127.0.0.1:9', kinesis: endpoints.kinesis ?? 'http://127.0.0.1:9' },
    names: { prefix: config.prefix, env: config.env },
    schemas: Object.fromEntries(Object.keys(config.pipelines).map((p) => [p, schemaFingerprint(p)])),
    sources: Object.fromEntries(Object.entries(config.pipelines).map(([p, c]) => [p, c.source])),
    ...overrides,
  });
}

/** What query and replay say, on stderr, of a folder that is no twin's data dir. */
export function notTwinDataDir(dir: string): string {
  return `sluice: ${dir} is not a twin data dir: it holds none of what a twin keeps there (s3/ for the lake, dlq/ for dead letters, firehose/, twin.json …); `
    + `pass the twin's data dir (the one \`npx sluice local up\` uses, .sluice by default) with --data-dir or SLUICE_DATA_DIR, or start the twin with \`npx sluice local up --data-dir ${dir}\`\n`;
}

/** A stack-free, no-stack-trace check: user-facing errors name the problem without "at file.ts:1". */
export function expectNoStackTrace(text: string): void {
  expect(text).not.toMatch(/\n\s+at .+:\d+:\d+/);
}

/**
 * The twin's lake path for a batch of producer records, as `sluice local up` runs it: the transform
 * (lake mode), then Parquet per partition under `<data-dir>/s3/<bucket>/data/<pipeline>/…`.
 * Answers how many records landed. `withoutColumns` writes files as an older schema without those columns did.
 */
export async function deliverToLake(
  dataDir: string, pipeline: string, records: readonly Buffer[], arrivalMs = Date.now(), { withoutColumns = [] }: { withoutColumns?: readonly string[] } = {},
): Promise<number> {
  const schema = pipelineSchema(pipeline);
  const byPartition = new Map<string, Buffer[]>();
  for (const data of records) {
    const outcome = transformRecord(schema, data, { arrivalMs }, { destination: 'lake', piiHashKey: 'test-key', processedAt: new Date(arrivalMs) });
    if (outcome.result !== 'Ok' || !outcome.partitionKeys) continue;
    const prefix = partitionPath(schema.model, outcome.partitionKeys);
    const list = byPartition.get(prefix) ?? [];
    list.push(outcome.data);
    byPartition.set(prefix, list);
  }
  const model = { ...schema.model, tableColumns: schema.model.tableColumns.filter((c) => !withoutColumns.includes(c.name)) };
  const writer = await ParquetWriter.open(model, { workDir: path.join(dataDir, 'tmp-parquet'), threads: 1 });
  let rows = 0;
  try {
    for (const [prefix, batch] of byPartition) {
      // Written aside and renamed into place, as the twin's object store does: readers never see half a file.
      const file = path.join(dataDir, 's3', localBucketName(config), prefix, `sluice-dev-${pipeline}-lake-1-${randomUUID()}.parquet`);
      const staged = path.join(dataDir, 'tmp-parquet', `${randomUUID()}.parquet`);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const written = await writer.convert(batch, staged);
      if (written.rows > 0) fs.renameSync(staged, file);
      rows += written.rows;
    }
  } finally {
    await writer.close();
  }
  return rows;
}

/** Rows of one Parquet file, read by DuckDB directly (not through the twin's tables). */
export async function rowsIn(file: string): Promise<number> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    return Number((await connection.runAndReadAll(`SELECT count(*) FROM read_parquet('${file}')`)).getRows()[0][0]);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

export interface IngestedRecord {
  readonly streamName: string;
  readonly data: Buffer;
}

/**
 * A Firehose backend with the stack's delivery streams (DirectPut for direct-put pipelines,
 * KinesisStreamAsSource otherwise). Tests script failures with `decide`; `onIngest` sees what was
 * acknowledged (e.g. to deliver it to the lake).
 */
export class RecordingBackend implements FirehoseBackend {
  readonly acknowledged: IngestedRecord[] = [];
  calls = 0;
  decide: (data: Buffer, call: number, index: number) => IngestResult = () => ({ ok: true });
  onIngest?: (streamName: string, records: Buffer[]) => Promise<void>;
  /** The twin's functions its endpoint runs (Lambda's Invoke), by name; `invocations` counts the calls. */
  readonly functions = new Map<string, (payload: unknown) => Promise<FunctionAnswer>>();
  invocations = 0;
  private readonly streams: LocalDeliveryStream[];

  constructor(cfg: SluiceConfig = config) {
    this.streams = Object.entries(cfg.pipelines).map(([name, p]) => {
      const stream = `${cfg.prefix}-${cfg.env}-${name}-lake`;
      return {
        name: stream,
        arn: `arn:aws:firehose:us-east-1:000000000000:deliverystream/${stream}`,
        type: p.source === 'direct-put' ? 'DirectPut' : 'KinesisStreamAsSource',
        createdAt: new Date(),
        destinations: [],
      };
    });
  }

  listDeliveryStreams(): ReadonlyArray<LocalDeliveryStream> {
    return this.streams;
  }

  findDeliveryStream(name: string): LocalDeliveryStream | undefined {
    return this.streams.find((s) => s.name === name);
  }

  async ingest(streamName: string, records: ReadonlyArray<{ recordId: string; data: Buffer; arrivalTimestamp: number }>): Promise<IngestResult[]> {
    const call = ++this.calls;
    const results = records.map((r, i) => this.decide(r.data, call, i));
    const accepted = records.filter((_, i) => results[i].ok).map((r) => Buffer.from(r.data));
    for (const data of accepted) this.acknowledged.push({ streamName, data });
    if (this.onIngest && accepted.length > 0) await this.onIngest(streamName, accepted);
    return results;
  }

  async invokeFunction(name: string, payload: unknown): Promise<FunctionAnswer | undefined> {
    this.invocations++;
    return this.functions.get(name)?.(payload);
  }

  reset(): void {
    this.acknowledged.length = 0;
    this.calls = 0;
    this.decide = () => ({ ok: true });
    this.onIngest = undefined;
  }
}

/** The JSON of what a backend acknowledged. */
export function acknowledgedJson(backend: RecordingBackend): Array<Record<string, unknown>> {
  return backend.acknowledged.map((r) => JSON.parse(r.data.toString('utf8')) as Record<string, unknown>);
}

/**
 * This process's environment with no AWS credentials but a container credentials endpoint at `uri` (the SDK's chain takes
 * a loopback AWS_CONTAINER_CREDENTIALS_FULL_URI): no keys, profile, config files or web identity.
 */
export function onlyContainerCredentials(uri: string): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI']) delete env[name];
  return {
    ...env,
    AWS_CONFIG_FILE: path.join(__dirname, 'no-such-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(__dirname, 'no-such-aws-credentials'),
    AWS_CONTAINER_CREDENTIALS_FULL_URI: uri,
  };
}

/**
 * A server that takes connections, reads the requests and never answers: its port, how many connections it took, whether
 * every connection has closed (waited for up to 10 s; a busy machine may take a while to tell), and a close.
 */
export async function hungServer(): Promise<{ port: number; connections: () => number; allClosed: () => Promise<boolean>; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createTcpServer((socket) => {
    connections++;
    socket.resume();
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => connections,
    allClosed: async () => {
      for (const deadline = Date.now() + 10_000; sockets.size > 0 && Date.now() < deadline;) await new Promise((resolve) => setTimeout(resolve, 20));
      return sockets.size === 0;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface HungCredentialsRun {
  /** What the binary printed on stderr before the Ctrl-C. */
  readonly beforeCtrlC: string;
  /** Its exit status after the Ctrl-C (null if a signal ended it), and all it printed on stderr. */
  readonly code: number | null;
  readonly stderr: string;
  /** How long it took to exit after the Ctrl-C. */
  readonly exitMs: number;
  /** The port of the container credentials endpoint that never answered. */
  readonly port: number;
}

/**
 * The real `sluice` binary (`argv`, with --aws) whose only credential source, a container credentials endpoint, takes the
 * request and never answers: once it has asked that endpoint and said on stderr that it is still waiting (after
 * `noticeAfterMs`, through SLUICE_CREDENTIALS_NOTICE_MS), a Ctrl-C (SIGINT).
 */
export async function ctrlCWhileCredentialsHang(argv: readonly string[], noticeAfterMs = 1000): Promise<HungCredentialsRun> {
  const hung = await hungServer();
  try {
    const env = { ...onlyContainerCredentials(`http://127.0.0.1:${hung.port}/v1/credentials`), AWS_REGION: 'eu-west-1', SLUICE_CREDENTIALS_NOTICE_MS: String(noticeAfterMs) };
    const child = spawn(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), ...argv], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    // Guards, not waits: a binary that never asks, never says so, or never ends fails the test instead of outliving it.
    for (const deadline = Date.now() + 30_000; !(hung.connections() > 0 && /still waiting/.test(stderr)) && child.exitCode === null && Date.now() < deadline;) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const beforeCtrlC = stderr;
    const signalled = Date.now();
    child.kill('SIGINT');
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const code = await exited.finally(() => clearTimeout(guard));
    return { beforeCtrlC, code, stderr, exitMs: Date.now() - signalled, port: hung.port };
  } finally {
    await hung.close();
  }
}
