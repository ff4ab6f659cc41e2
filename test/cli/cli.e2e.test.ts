/**
 * The CLI as a user runs it: `sluice local up` as a child process on free ports, then each other
 * command as its own `node bin/sluice.js …` process against it, checked through what a user sees
 * (exit status, stdout, stderr) and the twin's public files. One twin for the whole file; the tests
 * run in order and build on each other, as a session at a terminal would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DlqFile } from '../../lib/local/dlq-file';
import { toSqsBody } from '../../transforms/shared/sqs-body';
import { freePort } from '../../lib/local/ports';
import { localBucketName } from '../../lib/local/paths';
import { readSchema } from '../../lib/schema';
import { createRng, sampleRecord } from '../../lib/schema/sample';
import { dedupeKeyOf, reasonFor, type DlqMessage } from '../../transforms/failure-router/handler';
import { failureReason } from '../../transforms/shared';
import { config, tempDataDir } from './helpers';
import { within } from '../within';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'bin/sluice.js');

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

let dataDir: string;
let env: NodeJS.ProcessEnv;
let firehosePort: number;
let twin: ChildProcess;
let twinExit: Promise<number | null>;
const twinOut: string[] = [];
const twinErr: string[] = [];

/** `sluice <args>` as a new process, as a user (or a script) runs it. */
function start(...args: string[]): { child: ChildProcess; stderrSoFar: () => string; result: Promise<Run> } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr!.on('data', (chunk: Buffer) => err.push(chunk));
  const result = new Promise<Run>((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      const run = { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
      // Whatever a command prints, Node's warnings (the AWS SDK's Node-version notice among them) are not part of it.
      if (/NodeVersionSupportWarning|\(node:\d+\) \w*Warning/.test(run.stderr)) reject(new Error(`sluice ${args.join(' ')} printed a warning:\n${run.stderr}`));
      else resolve(run);
    });
  });
  return { child, stderrSoFar: () => Buffer.concat(err).toString('utf8'), result };
}

const sluice = (...args: string[]): Promise<Run> => start(...args).result;

/** The footer of `sluice query`: "N rows · read R of T Parquet files · …". */
function filesRead(footer: string): { read: number; total: number } {
  const m = /read (\d+) of (\d+) Parquet files/.exec(footer);
  if (!m) throw new Error(`no files-read statistics in: ${footer}`);
  return { read: Number(m[1]), total: Number(m[2]) };
}

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const dlq = () => new DlqFile({ dataDir, queue: 'sluice-dev-dlq' });

beforeAll(async () => {
  dataDir = tempDataDir();
  firehosePort = await freePort();
  // Kinesis and DynamoDB on ports the twin picks (0), as a user running two twins would: kinesis-mock binds its
  // port a second after the twin starts, and a port picked here could be taken by then.
  env = { ...process.env, SLUICE_DATA_DIR: dataDir, SLUICE_FIREHOSE_PORT: String(firehosePort), SLUICE_KINESIS_PORT: '0', SLUICE_DYNAMO_PORT: '0' };
  // What a user's shell has: none of the test setup's quieting (bin/sluice.js does its own), no other endpoints.
  for (const name of ['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED', 'POWERTOOLS_LOG_LEVEL', 'POWERTOOLS_METRICS_DISABLED', 'OPENSEARCH_URL', 'SLUICE_FIREHOSE_ENDPOINT', 'SLUICE_KINESIS_ENDPOINT']) {
    delete env[name];
  }
  // Its own process group, as a command in a terminal: Ctrl-C reaches the whole group.
  twin = spawn(process.execPath, [BIN, 'local', 'up', '--buffer-interval', '1'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  twin.stdout!.on('data', (chunk: Buffer) => twinOut.push(chunk.toString('utf8')));
  twin.stderr!.on('data', (chunk: Buffer) => twinErr.push(chunk.toString('utf8')));
  twinExit = new Promise((resolve) => twin.once('exit', (code) => resolve(code)));
  let exited = false;
  void twinExit.then(() => (exited = true));
  await until('`sluice local up` to say it is running', async () => {
    if (exited) throw new Error(`sluice local up exited:\n${twinOut.join('')}\n${twinErr.join('')}`);
    return /Running\./.test(twinOut.join('')) ? true : undefined;
  }, 60_000);
}, 90_000);

afterAll(async () => {
  if (twin?.pid !== undefined && twin.exitCode === null && twin.signalCode === null) {
    process.kill(-twin.pid, 'SIGKILL');
    await twinExit;
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('sluice against `sluice local up`, each command its own process', () => {
  test('local up prints its endpoints on the ports its environment variables name (0: one it picked)', () => {
    const out = twinOut.join('');
    expect(out).toMatch(new RegExp(`Sluice local twin — data dir ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    expect(out).toMatch(new RegExp(`Firehose API \\(AWS JSON 1\\.1\\)\\s+http://127\\.0\\.0\\.1:${firehosePort}`));
    expect(out).toMatch(/Kinesis \(kinesis-mock\)\s+http:\/\/127\.0\.0\.1:[1-9]\d*\n/);
    expect(out).toMatch(/DynamoDB \(dynalite\)\s+http:\/\/127\.0\.0\.1:[1-9]\d*\n/);
    expect(out).toMatch(/app-events\s+direct-put\s+—\s+sluice-dev-app-events-lake\s+lake/);
  });

  test('before any record: query reads empty tables, replay has nothing to replay, and its --dry-run makes no dlq/', async () => {
    const query = await sluice('query', 'SELECT count(*) AS n FROM app_events', '--csv');
    expect([query.code, query.stdout.split('\r\n').slice(0, 2)]).toEqual([0, ['n', '0']]);
    expect(fs.existsSync(path.join(dataDir, 'dlq'))).toBe(false);
    const replay = await sluice('replay', '--dry-run');
    expect([replay.code, replay.stderr]).toEqual([0, '']);
    expect(replay.stdout).toMatch(/\nnothing to replay\n$/);
    expect(fs.existsSync(path.join(dataDir, 'dlq'))).toBe(false);
  });

  test('put app-events --count 200 --verify: PASS with the counts; paced by --rate, with progress on stderr', async () => {
    const { code, stdout, stderr } = await sluice('put', 'app-events', '--count', '200', '--rate', '100/s', '--verify', '--progress');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^app-events: 200 records → Firehose delivery stream sluice-dev-app-events-lake \(the local twin at \//);
    expect(stdout).toMatch(/accepted 200 · failed 0 · retried 0 · \d/);
    expect(stdout).toMatch(/verify lake \(sluice_dev\.app_events\): 200\/200 after \d/);
    expect(stdout).toMatch(/\nPASS: 200 of 200 records queryable after [\d.]+ m?s\n$/);
    // Two seconds of sending at 100/s: progress lines, on stderr only (a verify query that takes over 250 ms, as on
    // a loaded machine, shows its own).
    expect(stderr).toMatch(/sluice-dev-app-events-lake: sent \d+\/200 · accepted \d+ · \d+ records\/s/);
    expect(stderr.split('\n').filter((l) => l !== '' && !/^(sluice-dev-app-events-lake: sent|verify lake|DuckDB: running · \d+ s$)/.test(l))).toEqual([]);
  });

  const goodIds = [randomUUID(), randomUUID(), randomUUID()];
  const now = () => new Date().toISOString();

  test('put --file: each line sent as written; the bad ones are named and end up in the dead-letter queue', async () => {
    const good = goodIds.map((id, i) => JSON.stringify({ event_id: id, user_id: `e2e-${i}`, event_type: 'signup', timestamp: now() }));
    const bad = [
      JSON.stringify({ event_id: randomUUID(), event_type: 'login', timestamp: now() }), // no user_id
      JSON.stringify({ event_id: randomUUID(), user_id: 'e2e-9', event_type: 'teleport', timestamp: now() }), // not in the enum
      '{"event_id": "truncated', // not JSON
    ];
    const file = path.join(dataDir, 'records.ndjson');
    fs.writeFileSync(file, `${[good[0], bad[0], good[1], bad[1], bad[2], good[2]].join('\n')}\n`);

    const { code, stdout } = await sluice('put', 'app-events', '--file', file, '--verify');
    expect(code).toBe(0);
    expect(stdout).toMatch(/app-events: 6 records → Firehose delivery stream/);
    expect(stdout).toMatch(/accepted 6 · failed 0/);
    expect(stdout).toMatch(/3 records will fail the transform and go to the dead-letter queue \(`npx sluice replay`\):/);
    expect(stdout).toMatch(/×1 {2}schema \(required\): \/user_id is required/);
    expect(stdout).toMatch(/PASS: 3 of 3 records queryable/);

    // The twin routes their error objects to the DLQ file, one message per record.
    const messages = await until('3 dead-letter messages', async () => {
      const text = fs.existsSync(dlq().path) ? fs.readFileSync(dlq().path, 'utf8') : '';
      const lines = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as DlqMessage);
      return lines.length >= 3 ? lines : undefined;
    });
    expect(messages).toHaveLength(3);
    expect(messages.map((m) => [m.pipeline, m.errorType])).toEqual(Array(3).fill(['app-events', 'processing-failed']));
    expect(messages.map((m) => Buffer.from(m.rawData!, 'base64').toString()).sort()).toEqual([...bad].sort());
  });

  test('query --json shows the rows; files read of files total under every result', async () => {
    const ids = goodIds.map((id) => `'${id}'`).join(', ');
    const { code, stdout, stderr } = await sluice('query', `SELECT event_id, user_id, event_type FROM sluice_dev.app_events WHERE event_id IN (${ids}) ORDER BY user_id`, '--json');
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual(goodIds.map((id, i) => ({ event_id: id, user_id: `e2e-${i}`, event_type: 'signup' })));
    expect(stderr).toMatch(/^3 rows · read \d+ of \d+ Parquet files · [\d.]+ m?s\n$/);
  });

  test('query --csv: a WHERE on partition columns reads fewer files than the whole table', async () => {
    const hour = new Date();
    const partition = `event_type = 'signup' AND year = ${hour.getUTCFullYear()} AND month = ${hour.getUTCMonth() + 1} AND day = ${hour.getUTCDate()}`;
    const [all, pruned] = await Promise.all([
      sluice('query', 'SELECT count(*) AS n FROM app_events', '--csv'),
      sluice('query', `SELECT count(*) AS n FROM app_events WHERE ${partition}`, '--csv'),
    ]);
    expect([all.code, pruned.code]).toEqual([0, 0]);
    expect(all.stdout).toBe('n\r\n203\r\n');
    expect(Number(pruned.stdout.split('\r\n')[1])).toBeGreaterThanOrEqual(3);
    const whole = filesRead(all.stderr);
    const some = filesRead(pruned.stderr);
    expect(whole.read).toBe(whole.total);
    expect(some.total).toBe(whole.total);
    expect(some.read).toBeGreaterThan(0);
    expect(some.read).toBeLessThan(whole.read);
  });

  // A record whose transform invocation failed (Lambda.FunctionError) though the record itself is
  // fine: the message the failure router sends for it, as it would after such a failure.
  const rng = createRng(20261122);
  const iotRecord = JSON.stringify(sampleRecord(readSchema('iot'), rng, { now: new Date() }));
  const iotId = (JSON.parse(iotRecord) as { event_id: string }).event_id;

  test('replay --dry-run: what would be replayed, the rest by reason; nothing put, nothing deleted', async () => {
    expect(failureReason('iot', Buffer.from(iotRecord))).toBe('');
    const source = { bucket: localBucketName(config), key: `errors/iot/processing-failed/2026/11/22/10/sluice-dev-iot-lake-1-2026-11-22-10-00-00-${randomUUID()}`, line: 1 };
    const line = { errorCode: 'Lambda.FunctionError', errorMessage: 'The Lambda function was successfully invoked but it returned an error result.', rawData: Buffer.from(iotRecord).toString('base64') };
    const message: DlqMessage = {
      dedupeKey: dedupeKeyOf(source.bucket, source.key, source.line),
      pipeline: 'iot',
      errorType: 'processing-failed',
      ...line,
      reason: reasonFor({ pipeline: 'iot', errorType: 'processing-failed' }, line),
      source,
      attemptsMade: 4,
      arrivalTimestamp: Date.now() - 60_000,
    };
    await dlq().send([toSqsBody(message)]);
    expect(await dlq().count()).toBe(4);

    const { code, stdout, stderr } = await sluice('replay', '--dry-run');
    expect(code).toBe(1);
    expect(stdout).toMatch(/^replay --dry-run: 4 dead-letter messages from sluice-dev-dlq \(/);
    expect(stdout).toMatch(/would replay \(passes the schema now\)\s+1/);
    expect(stdout).toMatch(/still failing \(kept\)\s+3/);
    expect(stdout).toMatch(/would replay by pipeline: iot 1/);
    expect(stdout).toMatch(/app-events\s+still-failing\s+1\s+schema \(required\): \/user_id is required/);
    expect(stdout).toMatch(/app-events\s+still-failing\s+1\s+schema \(enum\): \/event_type/);
    expect(stderr).toBe('sluice: 3 of 4 dead-letter messages would not be replayed; they stay in the queue\n');
    expect(await dlq().count()).toBe(4);
  });

  test('replay re-puts the record that passes, deletes only its message; a second run puts nothing', async () => {
    const first = await sluice('replay');
    expect(first.code).toBe(1);
    expect(first.stdout).toMatch(/replayed \(message deleted\)\s+1/);
    expect(first.stdout).toMatch(/still failing \(kept\)\s+3/);
    expect(first.stdout).toMatch(/replayed by pipeline: iot 1/);
    expect(first.stderr).toBe('sluice: 3 of 4 dead-letter messages not replayed; they stay in the queue\n');
    expect(await dlq().count()).toBe(3);

    const second = await sluice('replay', '--json');
    expect(second.code).toBe(1);
    const report = JSON.parse(second.stdout) as { read: number; outcomes: Record<string, number> };
    expect(report).toMatchObject({ read: 3, outcomes: { 'still-failing': 3 } });
    expect(Object.keys(report.outcomes)).toEqual(['still-failing']);
    expect(await dlq().count()).toBe(3);
  });

  test('put iot --count 100 --verify: Kinesis PutRecords, then queryable; the replayed record is there once', async () => {
    // iot has one shard: once these are queryable, the replayed record (sent before them) was delivered too.
    const { code, stdout } = await sluice('put', 'iot', '--count', '100', '--verify');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^iot: 100 records → Kinesis stream sluice-dev-iot \(the local twin at /);
    expect(stdout).toMatch(/accepted 100 · failed 0/);
    expect(stdout).toMatch(/PASS: 100 of 100 records queryable after/);

    const replayed = await sluice('query', `SELECT count(*) AS copies FROM iot WHERE event_id = '${iotId}'`, '--json');
    expect(replayed.code).toBe(0);
    expect(JSON.parse(replayed.stdout)).toEqual([{ copies: 1 }]);
  });

  let loadSent = 0;

  test('put --duration: a steady load until the time is up, or Ctrl-C, which stops sending, still reports and verifies, and exits 130', async () => {
    const twinSaidBefore = { out: twinOut.length, err: twinErr.length };
    const load = start('put', 'transactions', '--duration', '5m', '--rate', '40/s', '--verify', '--progress');
    await until('the load to report progress', async () => (/sent \d+ · accepted \d+/.test(load.stderrSoFar()) ? true : undefined));
    load.child.kill('SIGINT');
    const { code, stdout, stderr } = await load.result;
    // All shown when it is not 130; the twin's lines say whether kinesis-mock went away meanwhile (a restart refuses calls).
    const twin = [...twinOut.slice(twinSaidBefore.out), ...twinErr.slice(twinSaidBefore.err)].join('');
    expect({ code, stdout, stderr, twin }).toEqual({ code: 130, stdout: expect.any(String), stderr: expect.any(String), twin: expect.any(String) });
    expect(stderr).toMatch(/sluice-dev-transactions: sent \d+ · accepted \d+ · \d+ records\/s · \d+ m \d+ s left/);
    const sent = /^transactions: (\d+) records → Kinesis stream sluice-dev-transactions/.exec(stdout);
    loadSent = Number(sent?.[1]);
    // Paced: about a second's worth at 40/s before the first progress line (fewer on a busy machine: how many is put's
    // pacing tests' to say, not this one's), far from five minutes' worth.
    expect(loadSent).toBeGreaterThan(0);
    expect(loadSent).toBeLessThan(1000);
    expect(stdout).toMatch(new RegExp(`accepted ${loadSent} · failed 0`));
    expect(stdout).toMatch(new RegExp(`verified: ${loadSent} of ${loadSent} records sent before Ctrl-C queryable after`));
    expect(stdout).not.toMatch(/PASS/);
    expect(stderr).toMatch(new RegExp(`\\nsluice: interrupted \\(Ctrl-C\\) after [\\d.]+ m?s of 5 m: ${loadSent} records sent\\n$`));
  });

  test('Ctrl-C: local up delivers what it acknowledged, prints the summary and exits 0; then nothing is listening', async () => {
    // Records still in the stream and in buffers when Ctrl-C comes.
    const last = await sluice('put', 'iot', '--count', '20');
    expect(last.code).toBe(0);
    // A terminal sends Ctrl-C's SIGINT to the whole foreground process group, the twin's emulators included.
    process.kill(-twin.pid!, 'SIGINT');
    const code = await within(twinExit, 45_000, 'hung');
    const out = twinOut.join('');
    // The stop line alone on stderr: stdout holds the endpoints and the summary.
    expect(twinErr.join('')).toBe('\nSIGINT: flushing… (Ctrl-C again exits at once and leaves the rest for the next start)\n');
    expect(code).toBe(0);
    expect(out).not.toMatch(/flushing/);
    expect(out).toMatch(/\napp-events\s+206\s+203\s+3\s+0\s+0\s+\d+\s/);
    expect(out).toMatch(/\niot\s+121\s+121\s+0\s+0\s+0\s+\d+\s/);
    expect(out).toMatch(new RegExp(`\\ntransactions\\s+${loadSent}\\s+${loadSent}\\s+0\\s+0\\s+0\\s+\\d+\\s`));
    expect(out).toMatch(/DLQ messages: 3 failed records, 0 consumer batches/);

    const after = await sluice('put', 'app-events', '--count', '1');
    expect(after.code).toBe(2);
    expect(after.stderr).toBe(`sluice: nothing is listening on 127.0.0.1:${firehosePort}: start the twin with \`npx sluice local up\`\n`);
  }, 90_000);
});
