/**
 * Shared by the fault tests (test/faults/): a twin with only the pipelines a test needs, and the
 * public surfaces they check — Parquet rows through SQL, error objects, DLQ lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig, resourceNames, type SluiceConfig } from '../../lib/config';
import { LocalAthena } from '../../lib/local/athena';
import type { FaultInjector } from '../../lib/local/faults';
import { startTwin, type Twin } from '../../lib/local/twin';
import { sampleRecord, type Rng } from '../../lib/schema/sample';

/** The configuration with only `pipelines` (each merged onto pipelineDefaults) and 1 s buffers. */
export function configWith(pipelines: Record<string, object>, overrides: readonly string[] = []): SluiceConfig {
  return loadConfig(['local.bufferIntervalSeconds=1', `pipelines=${JSON.stringify(pipelines)}`, ...overrides]);
}

export interface FaultTwin {
  readonly twin: Twin;
  readonly dataDir: string;
  /** What the twin logged, one line each. */
  readonly log: string[];
  stop(): Promise<void>;
}

export async function startFaultTwin(
  config: SluiceConfig,
  options: { faults?: FaultInjector; openSearchUrl?: string; dataDir?: string } = {},
): Promise<FaultTwin> {
  const dataDir = options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-faults-'));
  const log: string[] = [];
  const twin = await startTwin({
    config, dataDir, ports: { firehose: 0, kinesis: 0, dynamo: 0 }, pollIntervalMs: 100,
    faults: options.faults, openSearchUrl: options.openSearchUrl, log: (line) => log.push(line),
  });
  let stopped = false;
  return {
    twin, dataDir, log,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await twin.stop();
    },
  };
}

/** The error-record lines of every object under `prefix` in the twin's bucket, with the object key. */
export function errorLines(dataDir: string, bucket: string, prefix: string): Array<Record<string, unknown> & { key: string }> {
  const root = path.join(dataDir, 's3', bucket);
  const dir = path.join(root, prefix);
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .flatMap((e) => {
      const file = path.join(e.parentPath, e.name);
      const key = path.relative(root, file).split(path.sep).join('/');
      return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => ({ ...(JSON.parse(l) as Record<string, unknown>), key }));
    });
}

/** The record bytes an error line carries. */
export function rawOf(line: Record<string, unknown>): string {
  return Buffer.from(String(line.rawData), 'base64').toString('utf8');
}

/** The DLQ bodies of the records queue (not the consumer's). */
export function dlqMessages(dataDir: string, config: SluiceConfig): Array<{ dedupeKey: string; pipeline: string; errorType: string; errorCode: string; rawData?: string }> {
  const queue = resourceNames(config, Object.keys(config.pipelines)[0]).dlq;
  const file = path.join(dataDir, 'dlq', `${queue}.jsonl`);
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as ReturnType<typeof dlqMessages>[number]);
}

/** One column of a lake table, through Athena SQL (DuckDB over the twin's Parquet). */
export async function lakeColumn(dataDir: string, config: SluiceConfig, table: string, column = 'event_id'): Promise<string[]> {
  if (!fs.existsSync(path.join(dataDir, 's3'))) return [];
  const athena = await LocalAthena.open(dataDir, config);
  try {
    const result = await athena.query(`SELECT ${column} FROM ${table}`);
    return result.rows.map((r) => String(r[0]));
  } finally {
    athena.close();
  }
}

/** `count` valid records of `schema`, as the bytes a producer sends. */
export function sampleRecordBytes(schema: object, rng: Rng, count: number): Buffer[] {
  return Array.from({ length: count }, () => Buffer.from(JSON.stringify(sampleRecord(schema, rng))));
}

/** The event id of a record's bytes. */
export function eventIdOf(record: Buffer): string {
  return String((JSON.parse(record.toString()) as { event_id: string }).event_id);
}

/** Values that occur more than once. */
export function repeated(values: readonly string[]): string[] {
  const seen = new Set<string>();
  const twice = new Set<string>();
  for (const v of values) (seen.has(v) ? twice : seen).add(v);
  return [...twice];
}

export function sorted(values: Iterable<string>): string[] {
  return [...values].sort();
}

export function removeDir(dir: string | undefined): void {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}

/** What the fake OpenSearch answers for one item of a `_bulk` request, by the document's event_id and how many times it was answered before: an HTTP status (2xx = indexed). */
export type BulkItemScript = (eventId: string, attempt: number) => number;
/** What it answers for a whole `_bulk` request, before looking at items: a status, or undefined to go on. */
export type BulkRequestScript = (request: number) => number | undefined;

export interface FakeOpenSearch {
  readonly url: string;
  /** Per document event_id, the statuses it was answered, in order. */
  readonly answers: Map<string, number[]>;
  /** Per document event_id, when it was answered (epoch ms), in order. */
  readonly answeredAt: Map<string, number[]>;
  /** Every `_bulk` request: its status and item count, and when it came. */
  readonly requests: Array<{ status: number; items: number; at: number }>;
  close(): Promise<void>;
}

/**
 * A tiny OpenSearch on 127.0.0.1 that accepts the index template, holds no index before the first `_bulk`, and answers `_bulk` by script:
 * whole-request failures (429, 5xx) first, then a status per item as OpenSearch's bulk API does.
 */
export async function startFakeOpenSearch(script: { request?: BulkRequestScript; item?: BulkItemScript }): Promise<FakeOpenSearch> {
  const answers = new Map<string, number[]>();
  const answeredAt = new Map<string, number[]>();
  const requests: FakeOpenSearch['requests'] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.method === 'PUT' && req.url?.startsWith('/_index_template/')) return send(200, { acknowledged: true });
      // The template's fields put to existing indices: like a cluster that has none of the pipeline's yet.
      if (req.method === 'PUT' && req.url?.endsWith('/_mapping')) return send(404, { error: { type: 'index_not_found_exception', reason: `no such index [${req.url}]` }, status: 404 });
      if (req.method !== 'POST' || req.url !== '/_bulk') return send(404, { error: `no route ${req.method} ${req.url}` });
      const lines = Buffer.concat(chunks).toString('utf8').split('\n').filter((l) => l !== '');
      const actions = lines.filter((_, i) => i % 2 === 0).map((l) => (JSON.parse(l) as { index: { _index: string; _id: string } }).index);
      // Scripted and recorded by the document's event_id: its _id is Firehose's record id, new for every send.
      const eventIds = lines.filter((_, i) => i % 2 === 1).map((l) => String((JSON.parse(l) as { event_id?: unknown }).event_id));
      const whole = script.request?.(requests.length);
      if (whole !== undefined) {
        requests.push({ status: whole, items: actions.length, at: Date.now() });
        return send(whole, { error: { type: whole === 429 ? 'es_rejected_execution_exception' : 'service_unavailable', reason: 'scripted' }, status: whole });
      }
      requests.push({ status: 200, items: actions.length, at: Date.now() });
      let errors = false;
      const items = actions.map((a, i) => {
        const id = eventIds[i];
        const seen = answers.get(id) ?? [];
        const status = script.item?.(id, seen.length) ?? 201;
        answers.set(id, [...seen, status]);
        answeredAt.set(id, [...(answeredAt.get(id) ?? []), Date.now()]);
        if (status >= 300) {
          errors = true;
          const type = status === 429 ? 'es_rejected_execution_exception' : status >= 500 ? 'unavailable_shards_exception' : 'mapper_parsing_exception';
          return { index: { _index: a._index, _id: a._id, status, error: { type, reason: `scripted ${status}` } } };
        }
        return { index: { _index: a._index, _id: a._id, status, result: 'created' } };
      });
      return send(200, { took: 1, errors, items });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    answers,
    answeredAt,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** `sluice local up` running as a child process, as a user starts it. */
export interface LocalUpProcess {
  readonly child: ChildProcess;
  readonly endpoints: { readonly firehose: string; readonly kinesis: string };
  /** Its children (kinesis-mock), which outlive a SIGKILL of the twin by a moment to persist their state. */
  readonly children: number[];
  /** What it printed so far (stdout and stderr). */
  output(): string;
  /** Resolves when it exits. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const SLUICE_BIN = path.resolve(__dirname, '..', '..', 'bin', 'sluice.js');

/** Starts `node bin/sluice.js local up` on free ports and resolves once it prints that it is running. */
export async function startLocalUp(dataDir: string, args: readonly string[], timeoutMs = 45_000, nodeArgs: readonly string[] = []): Promise<LocalUpProcess> {
  const child = spawn(process.execPath, [...nodeArgs, SLUICE_BIN, 'local', 'up', '--data-dir', dataDir,
    '--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0', ...args], {
    cwd: path.resolve(__dirname, '..', '..'),
    env: { ...process.env, SLUICE_FAULTS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout?.on('data', (chunk: Buffer) => { text += chunk.toString(); });
  child.stderr?.on('data', (chunk: Buffer) => { text += chunk.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const deadline = Date.now() + timeoutMs;
  while (!/^Running\./m.test(text)) {
    const done = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 100))]);
    if (done) throw new Error(`sluice local up exited (${JSON.stringify(done)}) before running:\n${text}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`sluice local up did not start within ${timeoutMs} ms:\n${text}`);
    }
  }
  const url = (label: string) => {
    const match = new RegExp(`${label.replace(/[()]/g, '\\$&')}.*?(http://[\\w.]+:\\d+)`).exec(text);
    if (!match) throw new Error(`no ${label} endpoint in:\n${text}`);
    return match[1];
  };
  const children = fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter((s) => s !== '').map(Number);
  return {
    child, children, exited,
    endpoints: { firehose: url('Firehose API (AWS JSON 1.1)'), kinesis: url('Kinesis (kinesis-mock)') },
    output: () => text,
  };
}

/** Whether process `pid` runs (a zombie, exited and not yet reaped, does not). */
export function processRuns(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Waits until none of `pids` runs any more (a zombie counts as gone). */
export async function waitForExit(pids: readonly number[], timeoutMs = 40_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; pids.some(processRuns);) {
    if (Date.now() > deadline) throw new Error(`processes ${pids.filter(processRuns).join(', ')} still running after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
