/**
 * `sluice replay` against the twin's dead-letter file (lib/local/dlq-file.ts), its S3 (error objects a
 * pointer message names) and its Firehose endpoint; then against SQS, DynamoDB and Firehose mocks.
 */
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { BatchGetCommand, BatchWriteCommand, DynamoDBDocumentClient, type BatchGetCommandInput, type BatchWriteCommandInput } from '@aws-sdk/lib-dynamodb';
import { AthenaClient, GetQueryExecutionCommand, GetQueryResultsCommand, StartQueryExecutionCommand } from '@aws-sdk/client-athena';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { FirehoseClient, PutRecordBatchCommand, PutRecordCommand } from '@aws-sdk/client-firehose';
import { ChangeMessageVisibilityBatchCommand, DeleteMessageBatchCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient, type AwsClientStub } from 'aws-sdk-client-mock';
import { awsReplayLedger, rawDataAt, ReadLaterError } from '../../lib/cli/dead-letters';
import { DlqFile } from '../../lib/local/dlq-file';
import { ObjectStore } from '../../lib/local/object-store';
import { readSchema } from '../../lib/schema';
import { createRng, sampleRecord } from '../../lib/schema/sample';
import { startFirehoseApi, type RunningFirehoseApi } from '../../lib/local/firehose-api';
import { localBucketName } from '../../lib/local/paths';
import { TWIN_DATA_DIR_HEADER } from '../../lib/local/twin-record';
import { MAX_ERROR_LINE_BYTES, type DlqMessage } from '../../transforms/failure-router/handler';
import { config, ctrlCWhileCredentialsHang, notTwinDataDir, RecordingBackend, registerTwin, sluice, sluiceAfresh, tempDataDir } from './helpers';
import { validatorFingerprint } from '../../lib/schema/fingerprint';

const backend = new RecordingBackend();
let api: RunningFirehoseApi;
/** The data dir in a RegExp: the hints name it (a plain `local up` would start a twin on another). */
const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
let dataDir: string;
let dlq: DlqFile;

const appEvent = (n: number, extra: Record<string, unknown> = {}) => JSON.stringify({
  event_id: `0b6b5a2e-1111-4000-8000-${String(n).padStart(12, '0')}`, user_id: `user-${n}`, event_type: 'purchase', amount: 12.5, currency: 'EUR', timestamp: '2026-11-22T09:30:00Z', ...extra,
});
const missingUser = JSON.stringify({ event_id: '0b6b5a2e-1111-4000-8000-000000000099', event_type: 'login', timestamp: '2026-11-22T09:30:00Z' });
const badIot = JSON.stringify({ event_id: '0b6b5a2e-2222-4000-8000-000000000001', event_type: 'telemetry' });

function message(n: number, pipeline: string, raw: string | undefined, extra: Partial<DlqMessage> = {}): DlqMessage {
  return {
    dedupeKey: `dedupe-${n}`,
    pipeline,
    errorType: 'processing-failed',
    errorCode: 'Lambda.FunctionError',
    errorMessage: 'The Lambda function was invoked but it returned an error.',
    reason: 'the record passes the schema now',
    ...(raw !== undefined ? { rawData: Buffer.from(raw).toString('base64') } : {}),
    source: { bucket: localBucketName(config), key: `errors/${pipeline}/processing-failed/2026/11/22/09/x`, line: n },
    attemptsMade: 4,
    arrivalTimestamp: 1_795_000_000_000,
    ...extra,
  };
}

/** The error object a pointer message points at: Firehose processing-failed lines. */
const POINTER = { bucket: localBucketName(config), key: 'errors/app-events/processing-failed/2026/11/22/09/sluice-dev-app-events-lake-1-2026-11-22-09-31-00-abc', line: 2 };

async function seedQueue(): Promise<void> {
  const object = path.join(dataDir, 's3', POINTER.bucket, ...POINTER.key.split('/'));
  fs.mkdirSync(path.dirname(object), { recursive: true });
  const errorLine = (raw: string) => JSON.stringify({ attemptsMade: 4, arrivalTimestamp: 1_795_000_000_000, errorCode: 'Lambda.FunctionError', errorMessage: 'timeout', attemptEndingTimestamp: 1_795_000_100_000, rawData: Buffer.from(raw).toString('base64'), lambdaArn: 'arn:aws:lambda:us-east-1:000000000000:function:t' });
  fs.writeFileSync(object, `${errorLine(appEvent(50))}\n${errorLine(appEvent(2))}\n`);
  await dlq.send([
    JSON.stringify(message(1, 'app-events', appEvent(1))),
    JSON.stringify(message(2, 'app-events', undefined, { pointer: POINTER })),
    JSON.stringify(message(3, 'app-events', appEvent(1))), // the same record as message 1 (its search delivery failed too)
    JSON.stringify(message(4, 'app-events', missingUser, { reason: 'schema (required): /user_id is required' })),
    JSON.stringify(message(5, 'app-events', '{"event_id":"x","sluice":{}}', { errorType: 'format-conversion-failed', errorCode: 'DataFormatConversion.MalformedData', reason: 'Parquet conversion failed: …' })),
    'hello, not JSON',
    JSON.stringify(message(7, 'iot', badIot, { reason: 'schema (required)' })),
  ]);
}

beforeAll(async () => {
  api = await startFirehoseApi({ port: 0, backend });
});
afterAll(async () => {
  await api.close();
});
beforeEach(async () => {
  backend.reset();
  dataDir = tempDataDir();
  dlq = new DlqFile({ dataDir, queue: 'sluice-dev-dlq' });
  registerTwin(dataDir, { firehose: api.url });
  await seedQueue();
});
afterEach(() => {
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** Runs `during` with stdout as `stdout` says: a terminal `columns` wide, or not a terminal at all (a file, a pipe). */
async function withStdout<T>(stdout: { isTTY: boolean; columns: number }, during: () => Promise<T>): Promise<T> {
  const own = (['isTTY', 'columns'] as const).map((name) => [name, Object.getOwnPropertyDescriptor(process.stdout, name)] as const);
  for (const [name] of own) Object.defineProperty(process.stdout, name, { value: stdout[name], configurable: true, writable: true });
  try {
    return await during();
  } finally {
    for (const [name, descriptor] of own) {
      if (descriptor) Object.defineProperty(process.stdout, name, descriptor);
      else delete (process.stdout as { isTTY?: boolean; columns?: number })[name];
    }
  }
}

const replay = (...args: string[]) => sluice('replay', ...args, '--data-dir', dataDir, '--endpoint-firehose', api.url);
/** A later run, as a new process: the first run's hold on the messages it kept is gone. */
const replayAgain = (...args: string[]) => sluiceAfresh('replay', ...args, '--data-dir', dataDir, '--endpoint-firehose', api.url);
const remaining = () => fs.readFileSync(dlq.path, 'utf8');

describe('sluice replay (twin)', () => {
  test('the "not replayed, by reason" table shows the 10 most frequent reasons and counts the rest', async () => {
    fs.writeFileSync(dlq.path, '');
    // Records that fail the schema for a field of their own name: one reason each (3 of /junk0, 2 of /junk1, 1 of the rest).
    const junk = (field: number, n: number) => JSON.stringify(message(100 + n, 'app-events', appEvent(100 + n, { [`junk${field}`]: 1 })));
    await dlq.send([junk(0, 0), junk(0, 1), junk(0, 2), junk(1, 3), junk(1, 4), ...Array.from({ length: 12 }, (_, i) => junk(2 + i, 5 + i))]);
    const { code, stdout } = await replay('--dry-run');
    expect(code).toBe(1);
    // It counts messages (a record failed by both its lake and its search delivery has two), and says so.
    expect(stdout).toMatch(/^outcome +messages *$/m);
    const table = stdout.slice(stdout.indexOf('not replayed, by reason'));
    expect(table).toMatch(/^pipeline +outcome +messages +reason *$/m);
    const rows = table.split('\n').filter((line) => /app-events\s+still-failing/.test(line));
    expect(rows).toHaveLength(10);
    expect(rows[0]).toMatch(/still-failing\s+3\s+.*\/junk0\b/);
    expect(rows[1]).toMatch(/still-failing\s+2\s+.*\/junk1\b/);
    // 17 messages: 3 + 2 + 8 shown, 4 more for 4 other reasons.
    expect(table).toMatch(/^… and 4 more messages for 4 other reasons \(--json lists every message\)$/m);
    const json = await replayAgain('--dry-run', '--json');
    expect((JSON.parse(json.stdout) as { messages: unknown[] }).messages).toHaveLength(17);
  });

  test('a long reason wraps within its column to stdout\'s width (a terminal\'s, else 80): the row stays under its headings, the reason whole', async () => {
    fs.writeFileSync(dlq.path, '');
    const why = `Parquet conversion failed: the value of /amount cannot be read as decimal(18,2) (s3://${POINTER.bucket}/${POINTER.key})`;
    await dlq.send([JSON.stringify(message(1, 'app-events', '{"event_id":"x"}', { errorType: 'format-conversion-failed', errorCode: 'DataFormatConversion.MalformedData', reason: why }))]);
    const { reason } = (JSON.parse((await replayAgain('--dry-run', '--json')).stdout) as { messages: Array<{ reason: string }> }).messages[0];
    for (const { stdout: terminal, width } of [{ stdout: { isTTY: true, columns: 60 }, width: 60 }, { stdout: { isTTY: false, columns: 200 }, width: 80 }]) {
      const { stdout } = await withStdout(terminal, () => replayAgain('--dry-run'));
      const table = stdout.slice(stdout.indexOf('not replayed, by reason\n')).trimEnd().split('\n').slice(1);
      expect({ terminal, longer: table.filter((line) => line.length > width) }).toEqual({ terminal, longer: [] });
      const at = table[0].indexOf('reason');
      expect(table[2].slice(0, at)).toMatch(/^app-events +not-replayable +1 +$/);
      // It goes on over lines of its own, in the reason column only; nothing of it is left out but the spaces it broke at.
      expect(table.length).toBeGreaterThan(4);
      expect(table.slice(3).map((line) => line.slice(0, at).trim())).toEqual(table.slice(3).map(() => ''));
      expect(table.slice(2).map((line) => line.slice(at)).join('').replace(/ /g, '')).toBe(reason.replace(/ /g, ''));
    }
  });

  test('--json\'s elapsedMs counts on the monotonic clock: the wall clock set back an hour at the first put takes nothing off it', async () => {
    const realNow = Date.now.bind(Date);
    let setBack = 0;
    const wallClock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - setBack);
    backend.onIngest = async () => {
      backend.onIngest = undefined;
      setBack = 3_600_000;
    };
    try {
      const { stdout } = await replay('--json');
      const report = JSON.parse(stdout) as { outcomes: Record<string, number>; elapsedMs: number };
      expect(report.outcomes.replayed).toBe(2);
      expect(setBack).toBe(3_600_000);
      expect(report.elapsedMs).toBeGreaterThanOrEqual(0);
      expect(report.elapsedMs).toBeLessThan(60_000);
    } finally {
      wallClock.mockRestore();
      backend.onIngest = undefined;
    }
  });

  test('re-puts the records that pass now, deletes only their messages, reports the rest by reason', async () => {
    const { code, stdout, stderr } = await replay();
    expect(code).toBe(1);
    expect(stderr).toBe('sluice: 4 of 7 dead-letter messages not replayed; they stay in the queue\n');
    // Message 1's record once (message 3 is the same record), message 2's from the error object it points at.
    expect(backend.acknowledged.map((r) => [r.streamName, r.data.toString()])).toEqual([
      ['sluice-dev-app-events-lake', appEvent(1)],
      ['sluice-dev-app-events-lake', appEvent(2)],
    ]);
    expect(stdout).toMatch(/replay: 7 dead-letter messages from sluice-dev-dlq/);
    expect(stdout).toMatch(/replayed \(message deleted\)\s+2/);
    expect(stdout).toMatch(/duplicate of a replayed record \(message deleted\)\s+1/);
    expect(stdout).toMatch(/still failing \(kept\)\s+2/);
    expect(stdout).toMatch(/replayed by pipeline: app-events 2/);
    // The reasons wrap to stdout's width: read as one line, each row gives its whole reason.
    const reasons = stdout.replace(/\s+/g, ' ');
    expect(reasons).toMatch(/app-events still-failing 1 schema \(required\): \/user_id is required/);
    expect(reasons).toMatch(/iot still-failing 1 schema \(required\): \/event_time is required; \/device_id is required/);
    expect(reasons).toMatch(/app-events not-replayable 1 format-conversion-failed holds the transformed record/);
    expect(reasons).toMatch(/\? unreadable 1 the message body is not JSON/);
    expect(await new DlqFile({ dataDir, queue: 'sluice-dev-dlq' }).count()).toBe(4);
  });

  test('a record with two messages replayed in two runs (--max) is put once: the ledger holds the record too', async () => {
    // Messages 1 and 3 carry one record. --max 1 replays message 1 alone; the next run meets message 3.
    expect((await replay('--max', '1')).code).toBe(0);
    expect(backend.acknowledged.map((r) => r.data.toString())).toEqual([appEvent(1)]);
    const second = await replayAgain('--json');
    const report = JSON.parse(second.stdout) as { messages: Array<{ dedupeKey?: string; outcome: string; reason: string }> };
    expect(report.messages.find((m) => m.dedupeKey === 'dedupe-3')).toMatchObject({ outcome: 'duplicate', reason: 'the same record was replayed by an earlier run; message deleted' });
    expect(backend.acknowledged.map((r) => r.data.toString())).toEqual([appEvent(1), appEvent(2)]);
    // 1 and 2 replayed, 3 deleted as the same record; 4–7 stay.
    expect(await new DlqFile({ dataDir, queue: 'sluice-dev-dlq' }).count()).toBe(4);
  });

  test('a replayed record that fails again (a new failure, after the replay) is replayed again, not taken for a duplicate', async () => {
    const before = Date.now();
    expect((await replay('--max', '1')).code).toBe(0);
    expect(backend.acknowledged.map((r) => r.data.toString())).toEqual([appEvent(1)]);
    // The re-put failed too (OpenSearch down, say): a new error object and message, for a record Firehose received
    // during that replay's put, before the replay recorded it (and by a clock a few seconds behind this one).
    const arrivalTimestamp = before - 5000;
    await dlq.send([JSON.stringify(message(30, 'app-events', appEvent(1), { arrivalTimestamp, source: { bucket: 'sluice-dev-data', key: 'errors/app-events/processing-failed/2026/12/03/07/y', line: 1 } }))]);
    const second = await replayAgain('--json');
    const report = JSON.parse(second.stdout) as { messages: Array<{ dedupeKey?: string; outcome: string }> };
    expect(report.messages.find((m) => m.dedupeKey === 'dedupe-30')?.outcome).toBe('replayed');
    // Message 3 (the same record, failed before the first replay) is still the duplicate.
    expect(report.messages.find((m) => m.dedupeKey === 'dedupe-3')?.outcome).toBe('duplicate');
    expect(backend.acknowledged.map((r) => r.data.toString()).filter((d) => d === appEvent(1))).toHaveLength(2);
    // An arrival the router could not read (0): maybe a new failure, so put again rather than deleted.
    await dlq.send([JSON.stringify(message(31, 'app-events', appEvent(1), { arrivalTimestamp: 0, source: { bucket: 'sluice-dev-data', key: 'errors/app-events/processing-failed/2026/12/03/07/z', line: 1 } }))]);
    const third = JSON.parse((await replayAgain('--json')).stdout) as { messages: Array<{ dedupeKey?: string; outcome: string }> };
    expect(third.messages.find((m) => m.dedupeKey === 'dedupe-31')?.outcome).toBe('replayed');
  });

  test('a malformed or hostile pointer fails its own message only; the others are replayed', async () => {
    await dlq.send([
      JSON.stringify(message(20, 'app-events', undefined, { pointer: 's3://sluice-dev-data/errors/x' as never })),
      JSON.stringify(message(21, 'app-events', undefined, { pointer: { bucket: '../..', key: 'etc/passwd', line: 1 } })),
      JSON.stringify(message(22, 'app-events', undefined, { pointer: { bucket: POINTER.bucket, key: '../../../etc/passwd', line: 1 } })),
      JSON.stringify(message(23, 'app-events', undefined, { pointer: { ...POINTER, line: 0 } })),
      JSON.stringify(message(24, 'app-events', appEvent(24))),
    ]);
    const { code, stdout } = await replay('--json');
    expect(code).toBe(1);
    const report = JSON.parse(stdout) as { messages: Array<{ dedupeKey?: string; outcome: string; reason: string }> };
    const by = (key: string) => report.messages.find((m) => m.dedupeKey === key);
    expect(report.messages.filter((m) => m.outcome === 'unreadable' && m.reason.startsWith('pointer is not'))).toHaveLength(2);
    expect(by('dedupe-21')).toEqual(expect.objectContaining({ outcome: 'not-replayable', reason: expect.stringMatching(/^the pointer's bucket "\.\.\/\.\." must be 3–63 characters/) }));
    expect(by('dedupe-22')).toEqual(expect.objectContaining({ outcome: 'not-replayable', reason: 'the pointer names no error object: the key has a ".." path segment' }));
    // The valid messages before and after them: replayed.
    expect(by('dedupe-24')?.outcome).toBe('replayed');
    expect(by('dedupe-2')?.outcome).toBe('replayed');
    expect(backend.acknowledged.map((r) => r.data.toString())).toEqual(expect.arrayContaining([appEvent(1), appEvent(2), appEvent(24)]));
  });

  test('a pointer to an error line over the cap that lines are read to: not replayable with the reason, not read whole; the next line is replayed', async () => {
    const key = 'errors/app-events/processing-failed/2026/11/22/09/overlong';
    const object = path.join(dataDir, 's3', POINTER.bucket, ...key.split('/'));
    fs.mkdirSync(path.dirname(object), { recursive: true });
    const line = (data: Buffer) => JSON.stringify({ attemptsMade: 1, arrivalTimestamp: 1_795_000_000_000, errorCode: 'Lambda.FunctionError', errorMessage: 'x', rawData: data.toString('base64') });
    const giant = line(Buffer.alloc(MAX_ERROR_LINE_BYTES, 'x'));
    fs.writeFileSync(object, `${giant}\n${line(Buffer.from(appEvent(26)))}\n`);
    await dlq.send([
      JSON.stringify(message(25, 'app-events', undefined, { pointer: { bucket: POINTER.bucket, key, line: 1 } })),
      JSON.stringify(message(26, 'app-events', undefined, { pointer: { bucket: POINTER.bucket, key, line: 2 } })),
    ]);
    const { code, stdout } = await replay('--json');
    expect(code).toBe(1);
    const report = JSON.parse(stdout) as { messages: Array<{ dedupeKey?: string; outcome: string; reason: string }> };
    const by = (k: string) => report.messages.find((m) => m.dedupeKey === k);
    expect(by('dedupe-25')).toEqual(expect.objectContaining({
      outcome: 'not-replayable',
      reason: `s3://${POINTER.bucket}/${key} line 1 is ${giant.length} bytes, longer than the ${MAX_ERROR_LINE_BYTES} bytes an error line is read to: not a Firehose error record (a record is at most 1,000 KiB); look at it in S3`,
    }));
    expect(by('dedupe-26')?.outcome).toBe('replayed');
    expect(backend.acknowledged.map((r) => r.data.toString())).toContain(appEvent(26));
  });

  test('a pointer\'s object is read as it arrives and only to its line; a gzip one replaced while read, or a connection dropped mid-read, is this message\'s problem, said so', async () => {
    const line = (n: number) => JSON.stringify({ attemptsMade: 1, arrivalTimestamp: 1, errorCode: 'Lambda.FunctionError', errorMessage: 'x', rawData: Buffer.from(appEvent(n)).toString('base64') });
    const body = Buffer.from(Array.from({ length: 2000 }, (_, i) => line(i + 1)).join('\n'));
    let produced = 0;
    const chunks = async function* (bytes: Buffer): AsyncGenerator<Uint8Array> {
      for (let at = 0; at < bytes.length; at += 4096) {
        produced += Math.min(4096, bytes.length - at);
        yield bytes.subarray(at, at + 4096);
      }
    };
    const key = 'errors/app-events/processing-failed/2026/11/22/09/streamed';
    expect(Buffer.from(await rawDataAt(async () => ({ body: chunks(body), etag: '"1"' }), { bucket: POINTER.bucket, key, line: 3 }), 'base64').toString()).toBe(appEvent(3));
    expect(produced).toBeLessThan(body.length / 10);

    // Replaced between the read that checks the gzip data and the one that reads the line: S3's 412, one message kept.
    const gz = gzipSync(body);
    const pins: Array<unknown> = [];
    const replaced = async (_b: string, _k: string, pin?: { etag?: string }) => {
      pins.push(pin);
      if (pin?.etag !== undefined) throw Object.assign(new Error('At least one of the pre-conditions you specified did not hold'), { name: 'PreconditionFailed', $fault: 'client', $metadata: { httpStatusCode: 412 } });
      return { body: chunks(gz), etag: '"before"' };
    };
    await expect(rawDataAt(replaced, { bucket: POINTER.bucket, key: `${key}.gz`, line: 3 })).rejects.toMatchObject({
      exitCode: 1,
      message: expect.stringMatching(/^s3:\/\/.+\/streamed\.gz could not be read: ObjectChangedError: it changed after its gzip data was checked \(S3 answered PreconditionFailed to If-Match "before"\)/),
    });
    expect(pins).toEqual([undefined, { etag: '"before"' }]);

    // The connection dropping while the object streams: a clear reason, and the message is kept (a UserError, not a crash).
    const dropped = async function* (): AsyncGenerator<Uint8Array> {
      yield body.subarray(0, 100);
      throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    };
    await expect(rawDataAt(async () => ({ body: dropped(), etag: '"1"' }), { bucket: POINTER.bucket, key, line: 3 })).rejects.toMatchObject({
      exitCode: 1,
      message: expect.stringMatching(/^s3:\/\/.+\/streamed could not be read to line 3: S3 dropped the connection \(ECONNRESET\)/),
    });
    // Both are for a later run to read again, not a message no run can replay.
    await expect(rawDataAt(async () => ({ body: dropped(), etag: '"1"' }), { bucket: POINTER.bucket, key, line: 3 })).rejects.toBeInstanceOf(ReadLaterError);
    await expect(rawDataAt(replaced, { bucket: POINTER.bucket, key: `${key}.gz`, line: 3 })).rejects.toBeInstanceOf(ReadLaterError);
    // The same while a gzip object is read through to check it, before any line is given.
    const droppedGz = async function* (): AsyncGenerator<Uint8Array> {
      yield gz.subarray(0, 100);
      throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    };
    await expect(rawDataAt(async () => ({ body: droppedGz(), etag: '"1"' }), { bucket: POINTER.bucket, key: `${key}.gz`, line: 3 })).rejects.toMatchObject({
      exitCode: 1,
      message: expect.stringMatching(/^s3:\/\/.+\/streamed\.gz could not be read to line 3: S3 dropped the connection \(ECONNRESET\)/),
    });
  });

  test('a pointer\'s gzip object replaced while replay reads it: kept as retry-later, not counted as not replayable; the next run replays it', async () => {
    fs.writeFileSync(dlq.path, '');
    const key = 'errors/app-events/processing-failed/2026/11/22/09/replaced.gz';
    const object = path.join(dataDir, 's3', POINTER.bucket, ...key.split('/'));
    fs.mkdirSync(path.dirname(object), { recursive: true });
    const errorLine = JSON.stringify({ attemptsMade: 1, arrivalTimestamp: 1_795_000_000_000, errorCode: 'Lambda.FunctionError', errorMessage: 'x', rawData: Buffer.from(appEvent(30)).toString('base64') });
    fs.writeFileSync(object, gzipSync(errorLine));
    await dlq.send([JSON.stringify(message(30, 'app-events', undefined, { pointer: { bucket: POINTER.bucket, key, line: 1 } }))]);
    // A new object moved over it once the first read (the gzip check) has it open: the second read, pinned to the first's ETag, finds another.
    const readObject = ObjectStore.prototype.readObject;
    const replacing = jest.spyOn(ObjectStore.prototype, 'readObject').mockImplementation(async function (this: ObjectStore, bucket, k, pin) {
      const read = await readObject.call(this, bucket, k, pin);
      if (pin === undefined) {
        fs.writeFileSync(`${object}.new`, gzipSync(errorLine));
        fs.renameSync(`${object}.new`, object);
      }
      return read;
    });
    let first;
    try {
      first = await replay('--json');
    } finally {
      replacing.mockRestore();
    }
    expect(first.code).toBe(1);
    const report = JSON.parse(first.stdout) as { outcomes: Record<string, number>; messages: Array<{ outcome: string; reason: string }> };
    expect(report.outcomes).toEqual({ 'retry-later': 1 });
    expect(report.messages[0].reason).toMatch(/^s3:\/\/.+\/replaced\.gz could not be read: ObjectChangedError: it changed after its gzip data was checked/);
    expect(backend.acknowledged).toHaveLength(0);
    expect(await dlq.count()).toBe(1);

    const second = await replayAgain('--json');
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ outcomes: { replayed: 1 } });
    expect(backend.acknowledged.map((r) => r.data.toString())).toEqual([appEvent(30)]);
  });

  test('one replay at a time per dead-letter file: a second is refused while the first runs; a lock whose process is gone is taken over', async () => {
    const lock = path.join(dataDir, 'dlq', 'sluice-dev-dlq.replay.pid');
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      fs.writeFileSync(lock, `${other.pid}\n`);
      const refused = await replay();
      expect(refused.code).toBe(2);
      expect(refused.stderr).toBe(`sluice: another sluice replay (pid ${other.pid}) is replaying sluice-dev-dlq; wait for it to finish, or stop it: two at once would put the same records twice (${lock})\n`);
      expect(backend.acknowledged).toHaveLength(0);
    } finally {
      other.kill('SIGKILL');
      await new Promise((resolve) => other.once('exit', resolve));
    }
    const after = await replay();
    expect(after.code).toBe(1);
    expect(backend.acknowledged).toHaveLength(2);
    expect(fs.existsSync(lock)).toBe(false);
  });

  /** A replay of 30 more messages whose entry point goes away after its first batch. */
  async function replayCutOffByTheTwinStopping(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    await dlq.send(Array.from({ length: 30 }, (_, i) => JSON.stringify(message(100 + i, 'app-events', appEvent(100 + i)))));
    const own = await startFirehoseApi({ port: 0, backend });
    registerTwin(dataDir, { firehose: own.url });
    backend.onIngest = async () => {
      backend.onIngest = undefined;
      setImmediate(() => void own.close());
    };
    const run = await sluice('replay', '-p', 'app-events', '--data-dir', dataDir, '--endpoint-firehose', own.url, ...args);
    await own.close();
    return run;
  }

  test('cut off by the twin stopping, it says what it had already replayed', async () => {
    const { code, stderr } = await replayCutOffByTheTwinStopping();
    expect(code).toBe(2);
    const [summary, reason] = stderr.trimEnd().split('\n');
    const [, read, replayed, left] = /^sluice: replay stopped after reading (\d+) messages: (\d+) replayed and 1 already replayed or duplicate \(their messages deleted\); (\d+) messages stay in the queue$/.exec(summary) ?? [];
    expect(Number(replayed)).toBe(backend.acknowledged.length);
    expect(Number(left)).toBe(await dlq.count());
    expect(Number(left)).toBe(37 - Number(replayed) - 1);
    expect(Number(replayed)).toBeGreaterThan(0);
    expect(Number(read)).toBeLessThan(35);
    expect(reason).toMatch(/^sluice: nothing is listening/);
  });

  test('cut off with --json, it prints the report of the messages read so far, and the stop line and reason on stderr', async () => {
    const { code, stdout, stderr } = await replayCutOffByTheTwinStopping('--json');
    expect(code).toBe(2);
    const report = JSON.parse(stdout) as { read: number; outcomes: Record<string, number>; messages: Array<{ outcome: string }>; stopped: string };
    const [summary, reason] = stderr.trimEnd().split('\n');
    expect(`sluice: ${report.stopped}`).toBe(summary);
    expect(report.messages).toHaveLength(report.read);
    expect(report.outcomes.replayed).toBe(backend.acknowledged.length);
    expect(report.outcomes['put-failed']).toBeGreaterThan(0);
    expect(reason).toMatch(/^sluice: nothing is listening/);
  });

  test('replays the whole queue when deleting compacts the file and renumbers its lines', async () => {
    // Only replayable messages (a message kept in flight holds compaction off): the file compacts once
    // 1,000 lines, and half of them, are deleted.
    const seeded = await dlq.receive(10);
    await dlq.delete(seeded.map((m) => m.receiptHandle));
    const n = 2_100;
    await dlq.send(Array.from({ length: n }, (_, i) => JSON.stringify(message(100 + i, 'app-events', appEvent(100 + i)))));
    const { code, stdout } = await replayAgain('--json');
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as { read: number; outcomes: Record<string, number> };
    expect(report).toMatchObject({ read: n, outcomes: { replayed: n } });
    expect(new Set(backend.acknowledged.map((r) => r.data.toString())).size).toBe(n);
    expect(await new DlqFile({ dataDir, queue: 'sluice-dev-dlq' }).count()).toBe(0);
  }, 120_000);

  test('running it twice does not duplicate records', async () => {
    await replay();
    expect(backend.acknowledged).toHaveLength(2);
    const second = await replayAgain('--json');
    expect(second.code).toBe(1);
    expect(backend.acknowledged).toHaveLength(2);
    const report = JSON.parse(second.stdout) as { read: number; outcomes: Record<string, number> };
    expect(report.read).toBe(4);
    expect(report.outcomes).toEqual({ 'still-failing': 2, 'not-replayable': 1, unreadable: 1 });
  });

  test('a duplicate message whose delete was lost is not re-put by the next run: the run that deleted it marked its key', async () => {
    fs.writeFileSync(dlq.path, '');
    // Both deliveries of one record failed moments before the replay: too close to it for the record ledger alone to
    // tell the duplicate from a new failure of the replayed put.
    const arrivalTimestamp = Date.now();
    const duplicate = JSON.stringify(message(3, 'app-events', appEvent(1), { arrivalTimestamp }));
    await dlq.send([JSON.stringify(message(1, 'app-events', appEvent(1), { arrivalTimestamp })), duplicate]);
    const first = JSON.parse((await replay('--json')).stdout) as { outcomes: Record<string, number> };
    expect(first.outcomes).toEqual({ replayed: 1, duplicate: 1 });
    expect(await new DlqFile({ dataDir, queue: 'sluice-dev-dlq' }).count()).toBe(0);

    // The duplicate's delete was lost: the queue hands it out again.
    await dlq.send([duplicate]);
    const second = JSON.parse((await replayAgain('--json')).stdout) as { messages: Array<{ dedupeKey?: string; outcome: string }> };
    expect(second.messages.find((m) => m.dedupeKey === 'dedupe-3')?.outcome).toBe('already-replayed');
    expect(backend.acknowledged.map((r) => r.data.toString())).toEqual([appEvent(1)]);
  });

  test('a message whose record a previous run re-put (its delete was lost) is deleted, not re-put', async () => {
    // What a run that re-put message 1's record and lost the delete leaves: the record's mark, then the message's.
    await dlq.claim(`replayed#record#app-events#${createHash('sha256').update(appEvent(1)).digest('hex')}@${Date.now()}`);
    await dlq.claim('replayed#dedupe-1');
    const { stdout } = await replay('--json');
    const report = JSON.parse(stdout) as { messages: Array<{ dedupeKey?: string; outcome: string }> };
    expect(report.messages.find((m) => m.dedupeKey === 'dedupe-1')?.outcome).toBe('already-replayed');
    // Message 3 carries the same record: a duplicate of that replay, deleted too.
    expect(report.messages.find((m) => m.dedupeKey === 'dedupe-3')?.outcome).toBe('duplicate');
    expect(backend.acknowledged.map((r) => r.data.toString())).toEqual([appEvent(2)]);
    expect(await new DlqFile({ dataDir, queue: 'sluice-dev-dlq' }).count()).toBe(4);
  });

  test('a record only its lake delivery failed, with the twin indexing into an OpenSearch replay is not told of: kept (retry-later), not put', async () => {
    const twins = 'http://127.0.0.1:9201';
    registerTwin(dataDir, { firehose: api.url }, { endpoints: { firehose: api.url, kinesis: 'http://127.0.0.1:9', openSearch: twins } });
    const record = JSON.stringify(sampleRecord(readSchema('clickstream'), createRng(43)));
    fs.writeFileSync(dlq.path, '');
    await dlq.send([JSON.stringify(message(1, 'clickstream', record, { source: { bucket: localBucketName(config), key: 'errors/clickstream/processing-failed/2026/11/22/09/x', line: 1 } }))]);
    const { code, stdout } = await replay('--pipeline', 'clickstream', '--json');
    expect(code).toBe(1);
    expect((JSON.parse(stdout) as { messages: Array<{ outcome: string; reason: string }> }).messages).toEqual([expect.objectContaining({
      outcome: 'retry-later',
      reason: `only its lake delivery failed, and whether OpenSearch has it could not be looked up: the twin indexes clickstream's documents into OpenSearch at ${twins}: pass OPENSEARCH_URL=${twins} (or --endpoint-opensearch) so replay looks there`,
    })]);
    expect(backend.acknowledged).toHaveLength(0);
  });

  test('a record only its lake delivery failed, lately, is kept (retry-later) for as long as the running twin\'s own buffer interval says (local up --buffer-interval), not the configuration\'s', async () => {
    // The twin delivers every 600 s (`local up --buffer-interval 600`); the configuration says 2 s.
    registerTwin(dataDir, { firehose: api.url }, { bufferIntervalSeconds: 600 });
    const record = JSON.stringify(sampleRecord(readSchema('clickstream'), createRng(44)));
    const arrived = Date.now() - 100_000;
    fs.writeFileSync(dlq.path, '');
    await dlq.send([JSON.stringify(message(1, 'clickstream', record, {
      source: { bucket: localBucketName(config), key: 'errors/clickstream/processing-failed/2026/11/22/09/x', line: 1 }, arrivalTimestamp: arrived,
    }))]);
    const { code, stdout } = await replay('--pipeline', 'clickstream', '--json');
    expect(code).toBe(1);
    const [only] = (JSON.parse(stdout) as { messages: Array<{ outcome: string; reason: string }> }).messages;
    expect(only.outcome).toBe('retry-later');
    // Its 600 s and the twin's 5 s for delivering.
    expect(only.reason).toMatch(new RegExp(`^only its lake delivery failed, 1 m 4[01] s after it arrived; OpenSearch may still hold it in a buffer: run replay again from ${new Date(arrived + 605_000).toISOString()}$`));
    expect(backend.acknowledged).toHaveLength(0);
  });

  test('--dry-run puts and deletes nothing', async () => {
    const before = remaining();
    const { code, stdout } = await replay('--dry-run');
    expect(code).toBe(1);
    expect(backend.calls).toBe(0);
    expect(remaining()).toBe(before);
    expect(await new DlqFile({ dataDir, queue: 'sluice-dev-dlq' }).count()).toBe(7);
    expect(stdout).toMatch(/replay --dry-run: 7 dead-letter messages/);
    expect(stdout).toMatch(/would replay \(passes the schema now\)\s+2/);
    // Nothing is deleted in a dry run, and the report says so.
    expect(stdout).toMatch(/duplicate of a record to replay \(message would be deleted\)\s+1/);
    expect(stdout).not.toMatch(/\(message deleted\)/);

    await dlq.claim('replayed#dedupe-2');
    const known = await replayAgain('--dry-run', '--json');
    const report = JSON.parse(known.stdout) as { messages: Array<{ dedupeKey?: string; outcome: string; reason: string }> };
    expect(report.messages.find((m) => m.dedupeKey === 'dedupe-2')).toMatchObject({ outcome: 'already-replayed', reason: 'replayed by an earlier run; message would be deleted' });
    expect((await replayAgain('--dry-run')).stdout).toMatch(/already replayed \(message would be deleted\)\s+1/);
    expect(await new DlqFile({ dataDir, queue: 'sluice-dev-dlq' }).count()).toBe(7);
  });

  test('--pipeline leaves other pipelines\' messages alone; --max bounds the messages read', async () => {
    const iot = await replay('--pipeline', 'iot', '--json');
    expect(JSON.parse(iot.stdout)).toMatchObject({ read: 1, outcomes: { 'still-failing': 1 } });
    expect(backend.calls).toBe(0);

    const two = await replayAgain('--max', '2', '--json');
    expect(two.code).toBe(0);
    expect(JSON.parse(two.stdout)).toMatchObject({ read: 2, outcomes: { replayed: 2 } });
  });

  test('records the entry point does not accept stay in the queue; exit 1', async () => {
    backend.decide = () => ({ ok: false, errorCode: 'ServiceUnavailableException', errorMessage: 'Slow down.' });
    const { code, stdout } = await replay('--pipeline', 'app-events', '--max-attempts', '2', '--json');
    expect(code).toBe(1);
    const report = JSON.parse(stdout) as { outcomes: Record<string, number> };
    expect(report.outcomes['put-failed']).toBe(2);
    expect(await new DlqFile({ dataDir, queue: 'sluice-dev-dlq' }).count()).toBe(6); // only the duplicate went
  });

  test('a second copy of a message (one dedupe key, as a standard queue can deliver it) whose record\'s put fails does not mark that key: the next run re-puts the record', async () => {
    fs.writeFileSync(dlq.path, '');
    const copy = JSON.stringify(message(1, 'app-events', appEvent(1)));
    await dlq.send([copy, copy]);
    backend.decide = () => ({ ok: false, errorCode: 'ServiceUnavailableException', errorMessage: 'Slow down.' });
    const failed = await replay('--max-attempts', '1', '--json');
    expect(JSON.parse(failed.stdout)).toMatchObject({ outcomes: { 'put-failed': 1, duplicate: 1 } });
    backend.reset();
    const again = await replayAgain('--json');
    expect(JSON.parse(again.stdout)).toMatchObject({ outcomes: { replayed: 1 } });
    expect(backend.acknowledged.map((r) => r.data.toString())).toEqual([appEvent(1)]);
  });

  test('the twin runs an older schema than `npm run generate` wrote since: refused before anything is put, unless --force; a dry run notes it', async () => {
    const loaded = { sha256: 'the validator before the fix', generatedAt: '2026-11-22T08:00:00.000Z', version: '1.0.0' };
    registerTwin(dataDir, { firehose: api.url }, { startedAt: '2026-11-22T08:05:00.000Z', schemas: { 'app-events': loaded } });
    const before = remaining();
    const refused = await replay();
    expect(refused.code).toBe(2);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(new RegExp(`^sluice: the twin at \\S+ \\(pid ${process.pid}, started 2026-11-2[12] \\d\\d:\\d\\d:00\\) validates app-events with the schema generated 2026-11-2[12] \\d\\d:\\d\\d:00; \`npm run generate\` has written a newer one since \\(\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\), so the records would fail again and come back as new dead letters; nothing was replayed\\. Restart it \\(\`npx sluice local up --data-dir ${escapeRegExp(dataDir)}\`\\) to replay against the fixed schema, or pass --force to replay against the schema it runs\\n$`));
    expect(backend.calls).toBe(0);
    expect(remaining()).toBe(before);

    // Another pipeline's replay is not held up by it.
    expect((await replay('--pipeline', 'iot')).stderr).not.toMatch(/newer one/);

    const dryRun = await replayAgain('--dry-run');
    expect(dryRun.code).toBe(1);
    expect(dryRun.stderr).toMatch(/^sluice: note: the twin at .* validates app-events with the schema generated .*"would replay" counts are against the newer one; the twin would fail those records again: restart it \(`npx sluice local up --data-dir \S+`\) before replaying\n/);
    expect(dryRun.stdout).toMatch(/would replay \(passes the schema now\)\s+2/);

    const forced = await replayAgain('--force');
    expect(forced.stderr).toMatch(/^sluice: warning: the twin at .* validates app-events with the schema generated .*; replaying anyway \(--force\)/);
    expect(backend.acknowledged).toHaveLength(2);

    // A twin started after the fix: nothing to say.
    registerTwin(dataDir, { firehose: api.url });
    expect((await replayAgain('--dry-run')).stderr).not.toMatch(/newer one/);
  });

  test('re-puts only to the twin running on the data dir: another twin on the port is refused before any put', async () => {
    const other = tempDataDir();
    const twin = await startFirehoseApi({ port: 0, backend, headers: { [TWIN_DATA_DIR_HEADER]: encodeURIComponent(other) } });
    try {
      const before = remaining();
      const { code, stderr } = await sluice('replay', '--data-dir', dataDir, '--endpoint-firehose', twin.url);
      expect(code).toBe(2);
      expect(stderr).toMatch(new RegExp(`^sluice: the twin answering at ${twin.url.replace(/\./g, '\\.')} runs on data dir ${other.replace(/\./g, '\\.')}, not `));
      expect(backend.calls).toBe(0);
      expect(remaining()).toBe(before);
    } finally {
      await twin.close();
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  test('a pipeline whose records the twin does not take stays in the queue with the reason; the others are replayed and reported', async () => {
    // The twin registered in beforeEach takes Kinesis records at another port than this command is told to use.
    const iotRecord = JSON.stringify(sampleRecord(readSchema('iot'), createRng(5)));
    await dlq.send([JSON.stringify(message(60, 'iot', iotRecord))]);
    const { code, stdout, stderr } = await replay('--json', '--endpoint-kinesis', 'http://127.0.0.1:4568');
    expect(code).toBe(1);
    expect(stderr).toMatch(/not replayed; they stay in the queue\n$/);
    const report = JSON.parse(stdout) as { messages: Array<{ pipeline: string; outcome: string; reason: string }> };
    expect(report.messages.filter((r) => r.pipeline === 'iot' && r.outcome === 'put-failed').map((r) => r.reason))
      .toEqual([expect.stringMatching(/takes Kinesis records at http:\/\/127\.0\.0\.1:9, not /)]);
    expect(report.messages.filter((r) => r.outcome === 'replayed').length).toBeGreaterThan(0);
    expect(backend.calls).toBeGreaterThan(0);
    expect(remaining()).toContain(Buffer.from(iotRecord).toString('base64'));
  });

  test('-c env=prod on a dev twin\'s data dir: a note says its queue is not there, instead of "nothing to replay" alone', async () => {
    const { code, stdout, stderr } = await replay('-c', 'env=prod');
    expect(code).toBe(0);
    expect(stdout).toMatch(/nothing to replay/);
    expect(stderr).toBe(`sluice: note: ${path.join(dataDir, 'dlq')} has no sluice-prod-dlq.jsonl (it has sluice-dev-dlq.jsonl): was the twin run with other settings (-c env=…, prefix)?\n`);
    expect((await replay('--dry-run')).stderr).not.toMatch(/note/);
  });

  test('what dead letters and the data dir\'s path put in the report prints escaped, as text or as --json; --json parses back to the exact values', async () => {
    const hostileDir = fs.mkdtempSync(path.join(tempDataDir(), 'twin\u001b]0;pwned\u0007\u009b2J-'));
    const key = 'x\u009b31m\u007f';
    await new DlqFile({ dataDir: hostileDir, queue: 'sluice-dev-dlq' }).send([
      JSON.stringify(message(1, 'app-events', appEvent(1, { [key]: 1 }))),
      JSON.stringify(message(2, 'app\u009b2Jevents', appEvent(2))),
    ]);
    // eslint-disable-next-line no-control-regex
    const terminalControl = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
    try {
      const text = await sluice('replay', '--dry-run', '--data-dir', hostileDir);
      expect(text.code).toBe(1);
      expect(text.stdout).not.toMatch(terminalControl);
      expect(text.stdout).toContain('twin\\u001b]0;pwned\\u0007\\u009b2J-');
      // Its reason may wrap, at a space: read as one line.
      expect(text.stdout.replace(/\s+/g, ' ')).toContain('/x\\u009b31m\\u007f is not a field of the schema');
      // A new process's run: the first one's hold on the messages it kept is gone.
      const json = await sluiceAfresh('replay', '--dry-run', '--json', '--data-dir', hostileDir);
      expect(json.stdout).not.toMatch(terminalControl);
      const report = JSON.parse(json.stdout) as { queue: string; messages: Array<{ pipeline: string; reason: string }> };
      expect(report.queue).toContain(hostileDir);
      expect(report.messages).toEqual([
        expect.objectContaining({ pipeline: 'app-events', reason: expect.stringContaining(`/${key} is not a field of the schema`) }),
        expect.objectContaining({ pipeline: 'app\u009b2Jevents', reason: 'pipeline "app\u009b2Jevents" is not configured here' }),
      ]);
    } finally {
      fs.rmSync(path.dirname(hostileDir), { recursive: true, force: true });
    }
  });

  test('a twin that has failed no record yet: nothing to replay, exit 0, and nothing made in its data dir', async () => {
    const fresh = tempDataDir();
    try {
      registerTwin(fresh, { firehose: api.url });
      for (const args of [['--dry-run'], []]) {
        const { code, stdout, stderr } = await sluice('replay', ...args, '--data-dir', fresh, '--endpoint-firehose', api.url);
        expect([code, stderr]).toEqual([0, '']);
        expect(stdout).toMatch(/nothing to replay\n$/);
        expect(fs.readdirSync(fresh)).toEqual(['twin.json']);
      }
    } finally {
      fs.rmSync(fresh, { recursive: true, force: true });
    }
  });

  test('a directory that is no twin\'s data dir, a missing one, or a file exits 2, and --dry-run makes nothing in it', async () => {
    const other = tempDataDir();
    try {
      for (const args of [['--dry-run'], []]) {
        const notTwin = await sluice('replay', ...args, '--data-dir', other);
        expect([notTwin.code, notTwin.stdout]).toEqual([2, '']);
        expect(notTwin.stderr).toBe(notTwinDataDir(other));
        expect(fs.readdirSync(other)).toEqual([]);
      }
      const nope = path.join(other, 'nope');
      const missing = await sluice('replay', '--data-dir', nope);
      expect(missing.code).toBe(2);
      // A plain `local up` would start a twin on .sluice: the hint names the data dir given.
      expect(missing.stderr).toBe(`sluice: no twin data dir at ${nope}: start the twin with \`npx sluice local up --data-dir ${nope}\` (or pass --data-dir / SLUICE_DATA_DIR)\n`);
      const file = path.join(other, 'not-a-dir');
      fs.writeFileSync(file, 'x');
      const notDir = await sluice('replay', '--data-dir', file);
      expect([notDir.code, notDir.stderr]).toEqual([2, `sluice: the data dir ${file} is not a directory: pass the twin's data dir (the one \`npx sluice local up\` uses) with --data-dir or SLUICE_DATA_DIR\n`]);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });
  test('SIGTERM is taken as Ctrl-C is: the batch in hand is recorded and its messages deleted, then exit 143; an answer that takes long is said to be waited for', async () => {
    const seeded = await dlq.receive(10);
    await dlq.delete(seeded.map((m) => m.receiptHandle));
    await dlq.send([1, 2, 3].map((n) => JSON.stringify(message(n, 'app-events', appEvent(n)))));
    const { code, stderr } = await replayInterruptedAtFirstPut('SIGTERM', 2_000);
    expect(backend.acknowledged).toHaveLength(3);
    expect(await dlq.count()).toBe(0);
    expect(stderr).toBe('sluice: stopping once the batch in hand is done; SIGTERM again to quit at once\n'
      + 'sluice: interrupted (SIGTERM): replay stopped after reading 3 messages: 3 replayed (their messages deleted); no message is left in the queue\n');
    expect(code).toBe(143);
  }, 60_000);
});

/**
 * `sluice replay -p app-events` in its own process, so the signal is a real one: it arrives once the entry point has
 * taken the first batch, `answerAfterMs` before the answer does.
 */
async function replayInterruptedAtFirstPut(signal: 'SIGINT' | 'SIGTERM' = 'SIGINT', answerAfterMs = 500, ...extraArgs: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), 'replay', '-p', 'app-events', '--data-dir', dataDir, '--endpoint-firehose', api.url, ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  backend.onIngest = async () => {
    backend.onIngest = undefined;
    child.kill(signal);
    await new Promise((resolve) => setTimeout(resolve, answerAfterMs));
  };
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  return { code, stdout, stderr };
}

  test('Ctrl-C while a batch is being re-put: the batch is recorded and its messages deleted, then exit 130; the next run puts no record twice', async () => {
    await dlq.send(Array.from({ length: 40 }, (_, i) => JSON.stringify(message(200 + i, 'app-events', appEvent(200 + i)))));
    const { code, stderr } = await replayInterruptedAtFirstPut();
    expect(backend.acknowledged.length).toBeGreaterThan(0);

    await replayAgain('-p', 'app-events');
    const puts = backend.acknowledged.map((r) => r.data.toString());
    // Every replayable record (message 3 is message 1's record) put exactly once over both runs.
    expect(new Set(puts).size).toBe(42);
    expect(puts).toHaveLength(42);
    // The first batch (seeded messages 1-7 and three of the 40; 8 are app-events'): 5 replayed, 1 duplicate deleted,
    // 4 kept; 37 not read.
    expect(stderr).toMatch(/^sluice: interrupted \(Ctrl-C\): replay stopped after reading 8 messages: 5 replayed and 1 already replayed or duplicate \(their messages deleted\); 41 messages stay in the queue$/m);
    expect(code).toBe(130);
  }, 60_000);

  test('Ctrl-C during the last batch: it does not say messages stay in the queue when none do', async () => {
    const seeded = await dlq.receive(10);
    await dlq.delete(seeded.map((m) => m.receiptHandle));
    await dlq.send([1, 2, 3].map((n) => JSON.stringify(message(n, 'app-events', appEvent(n)))));
    const { code, stderr } = await replayInterruptedAtFirstPut();
    expect(backend.acknowledged).toHaveLength(3);
    expect(await dlq.count()).toBe(0);
    expect(stderr).toBe('sluice: interrupted (Ctrl-C): replay stopped after reading 3 messages: 3 replayed (their messages deleted); no message is left in the queue\n');
    expect(code).toBe(130);
  }, 60_000);

  test('with --json, an interrupted run\'s report says so (interrupted, and what it had done), as put\'s does', async () => {
    const seeded = await dlq.receive(10);
    await dlq.delete(seeded.map((m) => m.receiptHandle));
    await dlq.send([1, 2, 3].map((n) => JSON.stringify(message(n, 'app-events', appEvent(n)))));
    const { code, stdout } = await replayInterruptedAtFirstPut('SIGINT', 500, '--json');
    expect(code).toBe(130);
    const report = JSON.parse(stdout) as { read: number; interrupted?: boolean; stopped?: string };
    expect(report).toMatchObject({ read: 3, interrupted: true, stopped: 'replay stopped after reading 3 messages: 3 replayed (their messages deleted); no message is left in the queue' });
  }, 60_000);

describe('sluice replay --aws', () => {
  // Mocked here, not at the top: the twin tests above use real clients.
  let cfn: AwsClientStub<CloudFormationClient>;
  let sqs: AwsClientStub<SQSClient>;
  let dynamo: AwsClientStub<DynamoDBDocumentClient>;
  let firehose: AwsClientStub<FirehoseClient>;
  const QUEUE = 'https://sqs.eu-west-1.amazonaws.com/123456789012/sluice-dev-dlq';
  const TABLE = 'sluice-dev-metadata';
  /** The ledger item of a replayed app-events record. */
  const recordPk = (raw: string) => `replayed#record#app-events#${createHash('sha256').update(raw).digest('hex')}`;
  const order: string[] = [];
  const savedEnv = { ...process.env };

  beforeAll(() => {
    process.env.AWS_REGION = 'eu-west-1';
    // The caller's credentials are asked first (a stage of their own, before the mocked clients): from the environment.
    process.env.AWS_ACCESS_KEY_ID = 'AKIDEXAMPLE';
    process.env.AWS_SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
    cfn = mockClient(CloudFormationClient);
    sqs = mockClient(SQSClient);
    dynamo = mockClient(DynamoDBDocumentClient);
    firehose = mockClient(FirehoseClient);
  });
  afterAll(() => {
    process.env = { ...savedEnv };
    for (const m of [cfn, sqs, dynamo, firehose]) m.restore();
  });
  beforeEach(() => {
    order.length = 0;
    for (const m of [cfn, sqs, dynamo, firehose]) m.reset();
    cfn.on(DescribeStacksCommand).resolves({
      Stacks: [{ StackName: 'sluice-dev', StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: [
        { OutputKey: 'DlqUrl', OutputValue: QUEUE }, { OutputKey: 'MetadataTableName', OutputValue: 'sluice-dev-metadata' },
      ] }],
    });
    sqs.on(ReceiveMessageCommand)
      .resolvesOnce({ Messages: [
        { MessageId: 'm-1', ReceiptHandle: 'rh-1', Body: JSON.stringify(message(1, 'app-events', appEvent(1))) },
        { MessageId: 'm-4', ReceiptHandle: 'rh-4', Body: JSON.stringify(message(4, 'app-events', missingUser)) },
      ] })
      .resolves({});
    sqs.on(DeleteMessageBatchCommand).callsFake(async () => {
      order.push('delete');
      return { Successful: [{ Id: '0' }], Failed: [] };
    });
    sqs.on(ChangeMessageVisibilityBatchCommand).resolves({ Successful: [], Failed: [] });
    dynamo.on(BatchWriteCommand).callsFake(async () => {
      order.push('ledger');
      return {};
    });
    firehose.on(PutRecordCommand).callsFake(async () => {
      order.push('put');
      return { RecordId: 'r-1' };
    });
  });

  test('receives from the stack\'s queue, re-puts, records the replay, then deletes; failing messages become visible again', async () => {
    ledgerHolds();
    const { code, stdout } = await sluice('replay', '--aws');
    expect(code).toBe(1);
    expect(sqs.commandCalls(ReceiveMessageCommand)[0].args[0].input).toEqual({ QueueUrl: QUEUE, MaxNumberOfMessages: 10, VisibilityTimeout: 300, WaitTimeSeconds: 2, MessageSystemAttributeNames: ['SentTimestamp'] });
    // One strongly consistent read for the batch: its messages' dedupe keys and the records they carry.
    expect(dynamo.commandCalls(BatchGetCommand).map((c) => c.args[0].input)).toEqual([{
      RequestItems: { [TABLE]: {
        Keys: ['replayed#dedupe-1', 'replayed#dedupe-4', recordPk(appEvent(1)), recordPk(missingUser)].map((pk) => ({ pk, sk: 'replayed' })),
        ConsistentRead: true, ProjectionExpression: '#a0, #a1', ExpressionAttributeNames: { '#a0': 'pk', '#a1': 'replayed_at' },
      } },
    }]);
    expect(firehose.commandCalls(PutRecordCommand).map((c) => [c.args[0].input.DeliveryStreamName, Buffer.from(c.args[0].input.Record!.Data!).toString()]))
      .toEqual([['sluice-dev-app-events-lake', appEvent(1)]]);
    // The record (its other message may come in a later run), then the message's dedupe key.
    expect(dynamo.commandCalls(BatchWriteCommand).map((c) => c.args[0].input)).toEqual([recordPk(appEvent(1)), 'replayed#dedupe-1'].map((pk) => ({
      RequestItems: { [TABLE]: [{ PutRequest: { Item: { pk, sk: 'replayed', replayed_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), ttl: expect.any(Number) } } }] },
    })));
    expect(order).toEqual(['put', 'ledger', 'ledger', 'delete']);
    expect(sqs.commandCalls(DeleteMessageBatchCommand).map((c) => c.args[0].input)).toEqual([{ QueueUrl: QUEUE, Entries: [{ Id: '0', ReceiptHandle: 'rh-1' }] }]);
    expect(sqs.commandCalls(ChangeMessageVisibilityBatchCommand).map((c) => c.args[0].input)).toEqual([
      { QueueUrl: QUEUE, Entries: [{ Id: '0', ReceiptHandle: 'rh-4', VisibilityTimeout: 0 }] },
    ]);
    expect(stdout).toMatch(/from SQS queue https:\/\/sqs\.eu-west-1\.amazonaws\.com\/123456789012\/sluice-dev-dlq/);
  });

  test('kept messages sent over 10 days ago are named in a warning: SQS deletes them at 14 days, and its age metric stops counting a message received three times', async () => {
    ledgerHolds();
    const day = 86_400_000;
    const sent = Date.now() - 11 * day;
    sqs.on(ReceiveMessageCommand).resolvesOnce({ Messages: [
      { MessageId: 'm-1', ReceiptHandle: 'rh-1', Body: JSON.stringify(message(1, 'app-events', appEvent(1))), Attributes: { SentTimestamp: String(Date.now() - 12 * day) } },
      { MessageId: 'm-4', ReceiptHandle: 'rh-4', Body: JSON.stringify(message(4, 'app-events', missingUser)), Attributes: { SentTimestamp: String(sent) } },
      { MessageId: 'm-5', ReceiptHandle: 'rh-5', Body: JSON.stringify(message(5, 'app-events', missingUser)), Attributes: { SentTimestamp: String(Date.now() - day) } },
      // A timestamp that is no number says nothing of the message's age: not counted.
      { MessageId: 'm-6', ReceiptHandle: 'rh-6', Body: JSON.stringify(message(6, 'app-events', missingUser)), Attributes: { SentTimestamp: 'yesterday' } },
    ] }).resolves({});
    const { code, stderr } = await sluice('replay', '--aws');
    expect(code).toBe(1);
    // m-1 was replayed (deleted): only m-4 is old and kept.
    expect(stderr).toContain(`sluice: warning: 1 message kept in the queue was sent over 10 days ago (the oldest ${new Date(sent).toISOString()}); SQS deletes it 14 days after sending, from ${new Date(sent + 14 * day).toISOString()}, `
      + 'and the dlq-age alarm stops counting a message received more than three times.');
  });

  /** DynamoDB's BatchGetItem answering the ledger items in `held` (by pk, with their other attributes) among the keys asked for. */
  const ledgerHolds = (held: Record<string, Record<string, unknown>> = {}) => dynamo.on(BatchGetCommand).callsFake(async (input: BatchGetCommandInput) => {
    const keys = input.RequestItems![TABLE].Keys!;
    return { Responses: { [TABLE]: keys.filter((k) => String(k.pk) in held).map((k) => ({ pk: k.pk, ...held[String(k.pk)] })) } };
  });

  /** SQS answering deletes and visibility changes, and no receive yet. */
  const resetSqs = () => {
    sqs.reset();
    sqs.on(DeleteMessageBatchCommand).resolves({ Successful: [{ Id: '0' }], Failed: [] });
    sqs.on(ChangeMessageVisibilityBatchCommand).resolves({ Successful: [], Failed: [] });
  };

  test('a long run whose kept messages come back (their visibility ran out) goes on to the messages behind them', async () => {
    ledgerHolds();
    const failing = (n: number) => ({ MessageId: `m-${n}`, ReceiptHandle: `rh-${n}-again`, Body: JSON.stringify(message(n, 'app-events', missingUser)) });
    resetSqs();
    sqs.on(ReceiveMessageCommand)
      .resolvesOnce({ Messages: [failing(4), failing(5)] })
      // 300 s later: the two kept ones are visible again, ahead of the rest of the queue.
      .resolvesOnce({ Messages: [failing(4)] })
      .resolvesOnce({ Messages: [failing(5)] })
      .resolvesOnce({ Messages: [{ MessageId: 'm-1', ReceiptHandle: 'rh-1', Body: JSON.stringify(message(1, 'app-events', appEvent(1))) }] })
      .resolves({});
    const { code, stdout } = await sluice('replay', '--aws', '--json');
    expect(code).toBe(1);
    const report = JSON.parse(stdout) as { read: number; outcomes: Record<string, number> };
    expect(report).toMatchObject({ read: 3, outcomes: { 'still-failing': 2, replayed: 1 } });
    expect(firehose.commandCalls(PutRecordCommand)).toHaveLength(1);
  });

  test('kept messages that keep coming back with nothing new among them end the run', async () => {
    ledgerHolds();
    resetSqs();
    sqs.on(ReceiveMessageCommand).resolves({ Messages: [{ MessageId: 'm-4', ReceiptHandle: 'rh-4', Body: JSON.stringify(message(4, 'app-events', missingUser)) }] });
    const { code, stdout } = await sluice('replay', '--aws', '--json');
    expect(code).toBe(1);
    expect(JSON.parse(stdout)).toMatchObject({ read: 1, outcomes: { 'still-failing': 1 } });
    expect(sqs.commandCalls(ReceiveMessageCommand).length).toBeLessThanOrEqual(4);
  });

  test('cut off, it does not claim messages stay in the queue: SQS cannot count them exactly', async () => {
    ledgerHolds();
    sqs.on(DeleteMessageBatchCommand).resolves({ Successful: [], Failed: [{ Id: '0', Code: 'InternalError', Message: 'try again', SenderFault: false }] });
    const { code, stderr } = await sluice('replay', '--aws');
    expect(code).not.toBe(0);
    expect(stderr.split('\n')[0]).toBe('sluice: replay stopped after reading 2 messages: 0 replayed (their messages deleted); 1 more re-put and recorded, whose messages the next run deletes; any others stay in the queue');
  });

  test('an empty receive with messages in flight (hidden by another reader) says nothing to replay *now* and when they come back; none in flight, nothing to replay', async () => {
    ledgerHolds();
    resetSqs();
    sqs.on(ReceiveMessageCommand).resolves({});
    sqs.on(GetQueueAttributesCommand).resolves({ Attributes: { ApproximateNumberOfMessagesNotVisible: '3' } });
    const held = await sluice('replay', '--aws');
    expect(held.code).toBe(0);
    expect(held.stdout).toMatch(/\nnothing to replay now: ~3 messages are in flight \(received by another reader, a replay still running or one just ended, and hidden up to 5 m\); run replay again then\n$/);
    expect(sqs.commandCalls(GetQueueAttributesCommand).map((c) => c.args[0].input)).toEqual([{ QueueUrl: QUEUE, AttributeNames: ['ApproximateNumberOfMessagesNotVisible'] }]);
    expect(JSON.parse((await sluice('replay', '--aws', '--json')).stdout)).toMatchObject({ read: 0, inFlight: 3 });
    sqs.on(GetQueueAttributesCommand).resolves({ Attributes: { ApproximateNumberOfMessagesNotVisible: '0' } });
    expect((await sluice('replay', '--aws')).stdout).toMatch(/\nnothing to replay\n$/);
    // Only another pipeline's message received (and released): the count, which still holds it, is not asked.
    resetSqs();
    sqs.on(ReceiveMessageCommand).resolvesOnce({ Messages: [{ MessageId: 'm-9', ReceiptHandle: 'rh-9', Body: JSON.stringify(message(9, 'app-events', appEvent(9))) }] }).resolves({});
    sqs.on(GetQueueAttributesCommand).resolves({ Attributes: { ApproximateNumberOfMessagesNotVisible: '1' } });
    const other = await sluice('replay', '--aws', '--pipeline', 'iot');
    expect(other.stdout).not.toMatch(/in flight/);
    expect(sqs.commandCalls(GetQueueAttributesCommand)).toHaveLength(0);
  });

  test('a delete SQS refuses as a call is said as a failed delete (exit 1), not as an unexpected error', async () => {
    ledgerHolds();
    sqs.on(DeleteMessageBatchCommand).rejects(Object.assign(new Error('x'), { name: 'AWS.SimpleQueueService.TooManyEntriesInBatchRequest', $fault: 'client' }));
    const { code, stderr } = await sluice('replay', '--aws');
    expect(code).toBe(1);
    expect(stderr.split('\n').slice(1)).toEqual(['sluice: SQS could not delete 1 replayed message (AWS.SimpleQueueService.TooManyEntriesInBatchRequest: x); the ledger keeps the next run from re-putting them', '']);
  });

  test('a message the ledger knows is deleted without a second put', async () => {
    ledgerHolds({ 'replayed#dedupe-1': {}, 'replayed#dedupe-4': {} });
    await sluice('replay', '--aws', '--pipeline', 'app-events');
    expect(firehose.commandCalls(PutRecordCommand)).toHaveLength(0);
    expect(order).toEqual(['delete']);
  });

  describe('a record only its search delivery failed (clickstream delivers to the lake and to OpenSearch)', () => {
    let athena: AwsClientStub<AthenaClient>;
    let kinesis: AwsClientStub<KinesisClient>;
    const record = JSON.stringify(sampleRecord(readSchema('clickstream'), createRng(41)));
    const eventId = String((JSON.parse(record) as { event_id: string }).event_id);
    beforeAll(() => {
      athena = mockClient(AthenaClient);
      kinesis = mockClient(KinesisClient);
    });
    afterAll(() => {
      athena.restore();
      kinesis.restore();
    });
    beforeEach(() => {
      athena.reset();
      kinesis.reset();
      kinesis.on(PutRecordsCommand).resolves({ FailedRecordCount: 0, Records: [{ SequenceNumber: '1', ShardId: 'shardId-000000000000' }] });
      cfn.on(DescribeStacksCommand).resolves({
        Stacks: [{ StackName: 'sluice-dev', StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: [
          { OutputKey: 'DlqUrl', OutputValue: QUEUE }, { OutputKey: 'MetadataTableName', OutputValue: TABLE },
          { OutputKey: 'GlueDatabaseName', OutputValue: 'sluice_dev' }, { OutputKey: 'AthenaWorkGroupName', OutputValue: 'sluice-dev-wg' },
          { OutputKey: 'ClickstreamStreamName', OutputValue: 'sluice-dev-clickstream' },
        ] }],
      });
      resetSqs();
      sqs.on(ReceiveMessageCommand).resolvesOnce({ Messages: [{ MessageId: 'm-9', ReceiptHandle: 'rh-9', Body: JSON.stringify(message(9, 'clickstream', record, {
        source: { bucket: 'sluice-dev-databucket', key: 'search-backup/clickstream/processing-failed/2026/11/22/09/x', line: 1 },
      })) }] }).resolves({});
      ledgerHolds();
    });
    const outcome = (stdout: string) => (JSON.parse(stdout) as { messages: Array<{ outcome: string; reason: string }> }).messages;

    test('the lake has it (Athena finds its id): kept as not replayable, not put', async () => {
      athena.on(StartQueryExecutionCommand).resolves({ QueryExecutionId: 'q-1' });
      athena.on(GetQueryExecutionCommand).resolves({ QueryExecution: { Status: { State: 'SUCCEEDED' }, Statistics: { DataScannedInBytes: 10 } } });
      athena.on(GetQueryResultsCommand).resolves({ ResultSet: { ResultSetMetadata: { ColumnInfo: [{ Name: 'id', Type: 'varchar' }] }, Rows: [{ Data: [{ VarCharValue: 'id' }] }, { Data: [{ VarCharValue: eventId }] }] } });
      const { code, stdout } = await sluice('replay', '--aws', '--pipeline', 'clickstream', '--json');
      expect(code).toBe(1);
      expect(athena.commandCalls(StartQueryExecutionCommand)[0].args[0].input.QueryString).toContain(`"event_id" IN ('${eventId}')`);
      expect(outcome(stdout)).toEqual([expect.objectContaining({
        outcome: 'not-replayable',
        reason: `the lake has this record (event_id ${eventId}); only its search delivery failed it (Lambda.FunctionError), and re-putting it would add a second lake row`,
      })]);
      expect(kinesis.commandCalls(PutRecordsCommand)).toHaveLength(0);
      expect(sqs.commandCalls(DeleteMessageBatchCommand)).toHaveLength(0);
    });

    test('the lake has it not: re-put to the stream', async () => {
      athena.on(StartQueryExecutionCommand).resolves({ QueryExecutionId: 'q-1' });
      athena.on(GetQueryExecutionCommand).resolves({ QueryExecution: { Status: { State: 'SUCCEEDED' }, Statistics: { DataScannedInBytes: 10 } } });
      athena.on(GetQueryResultsCommand).resolves({ ResultSet: { ResultSetMetadata: { ColumnInfo: [{ Name: 'id', Type: 'varchar' }] }, Rows: [{ Data: [{ VarCharValue: 'id' }] }] } });
      const { code, stdout } = await sluice('replay', '--aws', '--pipeline', 'clickstream', '--json');
      expect(code).toBe(0);
      expect(outcome(stdout)).toEqual([expect.objectContaining({ outcome: 'replayed' })]);
      expect(kinesis.commandCalls(PutRecordsCommand).map((c) => c.args[0].input.Records!.map((r) => Buffer.from(r.Data!).toString()))).toEqual([[record]]);
    });

    test('a failure that arrived lately is kept for a later run without a lookup: the lake\'s stream may still buffer it', async () => {
      const arrived = Date.now() - 10_000;
      resetSqs();
      sqs.on(ReceiveMessageCommand).resolvesOnce({ Messages: [{ MessageId: 'm-9', ReceiptHandle: 'rh-9', Body: JSON.stringify(message(9, 'clickstream', record, {
        source: { bucket: 'sluice-dev-databucket', key: 'search-backup/clickstream/processing-failed/2026/11/22/09/x', line: 1 }, arrivalTimestamp: arrived,
      })) }] }).resolves({});
      const { code, stdout } = await sluice('replay', '--aws', '--pipeline', 'clickstream', '--json');
      expect(code).toBe(1);
      const [only] = outcome(stdout);
      expect(only.outcome).toBe('retry-later');
      // The lake's 300 s buffer interval, clickstream's 60 s processor interval and a minute for delivering.
      expect(only.reason).toMatch(new RegExp(`^only its search delivery failed, 10(\\.\\d)? s after it arrived; the lake may still hold it in a buffer: run replay again from ${new Date(arrived + 420_000).toISOString()}$`));
      expect(athena.commandCalls(StartQueryExecutionCommand)).toHaveLength(0);
      expect(kinesis.commandCalls(PutRecordsCommand)).toHaveLength(0);
    });

    test('Athena failing the lookup: kept for the next run (retry-later), with Athena\'s words', async () => {
      athena.on(StartQueryExecutionCommand).rejects(Object.assign(new Error('User: arn:aws:iam::123456789012:user/x is not authorized to perform: athena:StartQueryExecution'), { name: 'AccessDeniedException' }));
      const { code, stdout } = await sluice('replay', '--aws', '--pipeline', 'clickstream', '--json');
      expect(code).toBe(1);
      const [only] = outcome(stdout);
      expect(only.outcome).toBe('retry-later');
      expect(only.reason).toMatch(/^only its search delivery failed, and whether the lake has it could not be looked up: .*not authorized to perform: athena:StartQueryExecution/);
      expect(kinesis.commandCalls(PutRecordsCommand)).toHaveLength(0);
      expect(sqs.commandCalls(DeleteMessageBatchCommand)).toHaveLength(0);
    });
  });

  test('a stack whose transform runs another schema than the checkout: refused (nothing put, nothing deleted) unless --force; the same schema goes on', async () => {
    const withFingerprints = (appEvents: string) => cfn.on(DescribeStacksCommand).resolves({
      Stacks: [{ StackName: 'sluice-dev', StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: [
        { OutputKey: 'DlqUrl', OutputValue: QUEUE }, { OutputKey: 'MetadataTableName', OutputValue: 'sluice-dev-metadata' },
        { OutputKey: 'SchemaFingerprints', OutputValue: JSON.stringify({ 'app-events': appEvents, iot: validatorFingerprint('iot') }) },
      ] }],
    });
    withFingerprints('0'.repeat(64));
    const refused = await sluice('replay', '--aws', '--pipeline', 'app-events');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe('sluice: stack sluice-dev validates app-events with another schema than this checkout generated (`npm run generate` since the last `cdk deploy`?), so the records would fail again and come back as new dead letters; nothing was replayed. Deploy first (`npx cdk deploy`), or pass --force to replay against the deployed schema\n');
    expect(sqs.commandCalls(ReceiveMessageCommand)).toHaveLength(0);
    // iot's is the checkout's: replaying iot alone goes on.
    expect((await sluice('replay', '--aws', '--pipeline', 'iot', '--dry-run')).stderr).not.toMatch(/another schema/);
    const forced = await sluice('replay', '--aws', '--pipeline', 'app-events', '--force');
    expect(forced.stderr).toMatch(/^sluice: warning: stack sluice-dev validates app-events with another schema than this checkout generated .*; replaying anyway \(--force\)/);
    expect(forced.code).not.toBe(2);
    expect(sqs.commandCalls(ReceiveMessageCommand).length).toBeGreaterThan(0);
    withFingerprints(validatorFingerprint('app-events'));
    const same = await sluice('replay', '--aws', '--pipeline', 'app-events');
    expect(same.stderr).not.toMatch(/another schema/);
    expect(same.code).not.toBe(2);
  });

  test('a record the ledger says an earlier run re-put (replayed_at after the message arrived) is a duplicate: deleted, not put', async () => {
    ledgerHolds({ [recordPk(appEvent(1))]: { replayed_at: new Date().toISOString() } });
    const { stdout } = await sluice('replay', '--aws', '--pipeline', 'app-events', '--json');
    const report = JSON.parse(stdout) as { messages: Array<{ dedupeKey?: string; outcome: string; reason: string }> };
    expect(report.messages.find((m) => m.dedupeKey === 'dedupe-1')).toMatchObject({ outcome: 'duplicate', reason: 'the same record was replayed by an earlier run; message deleted' });
    expect(firehose.commandCalls(PutRecordCommand).map((c) => Buffer.from(c.args[0].input.Record!.Data!).toString())).not.toContain(appEvent(1));
  });

  test('a batch of ten messages: one BatchGetItem for it (not a GetItem per message), its marks in two BatchWriteItem calls, records first', async () => {
    resetSqs();
    const ten = Array.from({ length: 10 }, (_, i) => ({ MessageId: `m-${i + 1}`, ReceiptHandle: `rh-${i + 1}`, Body: JSON.stringify(message(i + 1, 'app-events', appEvent(i + 1))) }));
    sqs.on(ReceiveMessageCommand).resolvesOnce({ Messages: ten }).resolves({});
    firehose.on(PutRecordBatchCommand).callsFake(async (input: { Records: unknown[] }) => {
      order.push('put');
      return { FailedPutCount: 0, RequestResponses: input.Records.map((_, i) => ({ RecordId: `r-${i}` })) };
    });
    ledgerHolds();
    const { code } = await sluice('replay', '--aws');
    expect(code).toBe(0);
    const gets = dynamo.commandCalls(BatchGetCommand).map((c) => c.args[0].input.RequestItems![TABLE]);
    expect(gets.map((g) => [g.Keys!.length, g.ConsistentRead])).toEqual([[20, true]]);
    const writes = dynamo.commandCalls(BatchWriteCommand).map((c) => c.args[0].input.RequestItems![TABLE].map((r) => String(r.PutRequest!.Item!.pk)));
    expect(writes).toEqual([ten.map((_, i) => recordPk(appEvent(i + 1))), ten.map((_, i) => `replayed#dedupe-${i + 1}`)]);
    expect(order).toEqual(['put', 'ledger', 'ledger']);
    expect(sqs.commandCalls(DeleteMessageBatchCommand).flatMap((c) => c.args[0].input.Entries!.map((e) => e.ReceiptHandle))).toEqual(ten.map((m) => m.ReceiptHandle));
  });

  /** Three replayable app-events messages in one batch, m-1 to m-3. */
  const threeReplayable = () => {
    resetSqs();
    const three = [1, 2, 3].map((n) => ({ MessageId: `m-${n}`, ReceiptHandle: `rh-${n}`, Body: JSON.stringify(message(n, 'app-events', appEvent(n))) }));
    sqs.on(ReceiveMessageCommand).resolvesOnce({ Messages: three }).resolves({});
    ledgerHolds();
  };
  const deleted = () => sqs.commandCalls(DeleteMessageBatchCommand).flatMap((c) => c.args[0].input.Entries!.map((e) => e.ReceiptHandle));
  const released = () => sqs.commandCalls(ChangeMessageVisibilityBatchCommand).flatMap((c) => c.args[0].input.Entries!.map((e) => e.ReceiptHandle));

  test('a retry that fails for good (credentials expired) after Firehose accepted part of the batch: the accepted are recorded and deleted, the rest released, then it stops', async () => {
    threeReplayable();
    firehose.on(PutRecordBatchCommand)
      .resolvesOnce({ FailedPutCount: 1, RequestResponses: [{ RecordId: 'r-1' }, { RecordId: 'r-2' }, { ErrorCode: 'ServiceUnavailableException', ErrorMessage: 'Slow down.' }] })
      .rejects(Object.assign(new Error('The security token included in the request is expired'), { name: 'ExpiredTokenException', $fault: 'client' }));
    const { code, stderr } = await sluice('replay', '--aws');
    expect(code).toBe(2);
    const writes = dynamo.commandCalls(BatchWriteCommand).flatMap((c) => c.args[0].input.RequestItems![TABLE].map((r) => String(r.PutRequest!.Item!.pk)));
    expect(writes).toEqual([recordPk(appEvent(1)), recordPk(appEvent(2)), 'replayed#dedupe-1', 'replayed#dedupe-2']);
    expect(deleted()).toEqual(['rh-1', 'rh-2']);
    expect(released()).toEqual(['rh-3']);
    expect(stderr).toBe('sluice: replay stopped after reading 3 messages: 2 replayed (their messages deleted); any others stay in the queue\n'
      + 'sluice: your AWS credentials have expired (ExpiredTokenException): refresh them (e.g. aws sso login) and try again\n');
  });

  test('a call cut off after it was sent (connection reset), then one that fails for good: its records are kept, and the stop line says the entry point may have taken them', async () => {
    threeReplayable();
    firehose.on(PutRecordBatchCommand)
      .rejectsOnce(Object.assign(new Error('socket hang up'), { name: 'Error', code: 'ECONNRESET', $maybeSent: true }))
      .rejects(Object.assign(new Error('The security token included in the request is expired'), { name: 'ExpiredTokenException', $fault: 'client', $metadata: { httpStatusCode: 400 } }));
    const { code, stderr } = await sluice('replay', '--aws');
    expect(code).toBe(2);
    expect(deleted()).toEqual([]);
    expect(released()).toEqual(['rh-1', 'rh-2', 'rh-3']);
    expect(stderr.split('\n')[0]).toBe('sluice: replay stopped after reading 3 messages: 0 replayed (their messages deleted); 3 kept whose call was cut off after it was sent: '
      + 'the entry point may have taken them, so the next run may put them again; any others stay in the queue');
  });

  test('a ledger write that fails after the put: the accepted records\' messages are deleted all the same (kept, every run would put them again), and it says they were not recorded', async () => {
    threeReplayable();
    firehose.on(PutRecordBatchCommand).callsFake(async (input: { Records: unknown[] }) => ({ FailedPutCount: 0, RequestResponses: input.Records.map((_, i) => ({ RecordId: `r-${i}` })) }));
    dynamo.on(BatchWriteCommand).rejects(Object.assign(new Error('User is not authorized to perform: dynamodb:BatchWriteItem'), { name: 'AccessDeniedException', $fault: 'client' }));
    const { code, stderr } = await sluice('replay', '--aws');
    expect(code).toBe(2);
    expect(firehose.commandCalls(PutRecordBatchCommand)).toHaveLength(1);
    expect(deleted()).toEqual(['rh-1', 'rh-2', 'rh-3']);
    expect(stderr).toBe('sluice: replay stopped after reading 3 messages: 3 replayed (their messages deleted); 3 records were re-put but not recorded in the replay ledger '
      + '(a lost delete, or the record\'s other message in a later run, would put them again); any others stay in the queue\n'
      + `sluice: DynamoDB denied access (table ${TABLE}): User is not authorized to perform: dynamodb:BatchWriteItem. Your AWS identity needs permission for this call.\n`);
  });

  test('a ledger write and then the delete failing (credentials expired for both): the records are said to be put again by the next run, not as recorded', async () => {
    threeReplayable();
    firehose.on(PutRecordBatchCommand).callsFake(async (input: { Records: unknown[] }) => ({ FailedPutCount: 0, RequestResponses: input.Records.map((_, i) => ({ RecordId: `r-${i}` })) }));
    const expired = () => Object.assign(new Error('The security token included in the request is expired'), { name: 'ExpiredTokenException', $fault: 'client' });
    dynamo.on(BatchWriteCommand).rejects(expired());
    sqs.on(DeleteMessageBatchCommand).rejects(expired());
    const { code, stderr } = await sluice('replay', '--aws');
    expect(code).toBe(2);
    expect(stderr.split('\n')[0]).toBe('sluice: replay stopped after reading 3 messages: 0 replayed (their messages deleted); 3 records were re-put but neither recorded in the replay ledger '
      + 'nor their messages deleted: the next run puts them again; any others stay in the queue');
  });

  test('a throttled ledger read and writes DynamoDB leaves unprocessed are retried with backoff: the run completes, each record put once', async () => {
    const throttled = Object.assign(new Error('The level of configured provisioned throughput for the table was exceeded.'), { name: 'ProvisionedThroughputExceededException', $fault: 'client' });
    dynamo.on(BatchGetCommand)
      .rejectsOnce(throttled)
      .callsFakeOnce(async (input: BatchGetCommandInput) => ({ Responses: { [TABLE]: [] }, UnprocessedKeys: { [TABLE]: { ...input.RequestItems![TABLE], Keys: input.RequestItems![TABLE].Keys!.slice(1) } } }))
      .resolves({ Responses: { [TABLE]: [] } });
    const written: string[][] = [];
    dynamo.on(BatchWriteCommand).callsFake(async (input: BatchWriteCommandInput) => {
      const requests = input.RequestItems![TABLE];
      written.push(requests.map((r) => String(r.PutRequest!.Item!.pk)));
      // The first write is throttled item by item: DynamoDB leaves it unprocessed.
      return written.length === 1 ? { UnprocessedItems: { [TABLE]: requests } } : {};
    });
    const { code, stdout } = await sluice('replay', '--aws', '--json');
    expect(code).toBe(1); // message 4 still fails the schema
    expect(JSON.parse(stdout)).toMatchObject({ read: 2, outcomes: { replayed: 1, 'still-failing': 1 } });
    expect(dynamo.commandCalls(BatchGetCommand).map((c) => c.args[0].input.RequestItems![TABLE].Keys!.length)).toEqual([4, 4, 3]);
    expect(written).toEqual([[recordPk(appEvent(1))], [recordPk(appEvent(1))], ['replayed#dedupe-1']]);
    expect(firehose.commandCalls(PutRecordCommand)).toHaveLength(1);
    expect(sqs.commandCalls(DeleteMessageBatchCommand).map((c) => c.args[0].input.Entries)).toEqual([[{ Id: '0', ReceiptHandle: 'rh-1' }]]);
  });

  test('a pointer whose S3 read drops the connection: retry-later, kept (not deleted); a missing object (404 NoSuchKey) or one S3 refuses (403) stays not replayable', async () => {
    // A stand-in S3 on loopback: the reset object's connection is dropped on every attempt (the SDK retries it); the others are a 404 and a 403.
    const asked: string[] = [];
    const s3 = createServer((req, res) => {
      asked.push(new URL(req.url ?? '/', 'http://s3').pathname);
      if (req.url?.includes('reset')) {
        req.socket.resetAndDestroy();
        return;
      }
      const [status, code, text] = req.url?.includes('denied') ? [403, 'AccessDenied', 'Access Denied'] : [404, 'NoSuchKey', 'The specified key does not exist.'];
      res.writeHead(status, { 'content-type': 'application/xml' });
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${text}</Message></Error>`);
    });
    await new Promise<void>((resolve) => s3.listen(0, '127.0.0.1', resolve));
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${(s3.address() as AddressInfo).port}`,
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
    });
    try {
      ledgerHolds();
      resetSqs();
      const pointerTo = (n: number, key: string) => ({ MessageId: `m-${n}`, ReceiptHandle: `rh-${n}`, Body: JSON.stringify(message(n, 'app-events', undefined, { pointer: { ...POINTER, key } })) });
      sqs.on(ReceiveMessageCommand).resolvesOnce({ Messages: [pointerTo(1, 'errors/app-events/reset'), pointerTo(2, 'errors/app-events/missing'), pointerTo(3, 'errors/app-events/denied')] }).resolves({});
      const { code, stdout } = await sluice('replay', '--aws', '--json');
      expect(code).toBe(1);
      const report = JSON.parse(stdout) as { outcomes: Record<string, number>; messages: Array<{ message: string; outcome: string; reason: string }> };
      expect(report.outcomes).toEqual({ 'retry-later': 1, 'not-replayable': 2 });
      expect(report.messages.map((m) => [m.message, m.outcome])).toEqual([['m-1', 'retry-later'], ['m-2', 'not-replayable'], ['m-3', 'not-replayable']]);
      expect(report.messages[0].reason).toMatch(new RegExp(`^s3://${POINTER.bucket}/errors/app-events/reset could not be read to line 2: S3 dropped the connection \\(ECONNRESET\\)`));
      expect(report.messages[1].reason).toBe(`s3://${POINTER.bucket}/errors/app-events/missing is gone (error objects expire after lifecycle.errorExpirationDays)`);
      expect(report.messages[2].reason).toBe(`S3 denied access (s3://${POINTER.bucket}/errors/app-events/denied): Access Denied. Your AWS identity needs permission for this call.`);
      // S3 was asked, the dropped read more than once (the SDK's retries), and both messages stay: released, none deleted.
      expect(asked.filter((u) => u.endsWith('/reset')).length).toBeGreaterThan(1);
      expect(asked.filter((u) => u.endsWith('/missing'))).toHaveLength(1);
      expect(sqs.commandCalls(DeleteMessageBatchCommand)).toHaveLength(0);
      expect(sqs.commandCalls(ChangeMessageVisibilityBatchCommand).flatMap((c) => c.args[0].input.Entries!.map((e) => e.ReceiptHandle))).toEqual(['rh-1', 'rh-2', 'rh-3']);
      expect(firehose.commandCalls(PutRecordCommand)).toHaveLength(0);
    } finally {
      process.env = saved;
      await new Promise<void>((resolve) => s3.close(() => resolve()));
    }
  });

  test('a stack without the queue output says what to do', async () => {
    cfn.on(DescribeStacksCommand).resolves({ Stacks: [{ StackName: 'sluice-dev', StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: [] }] });
    const { code, stderr } = await sluice('replay', '--aws');
    expect(code).toBe(2);
    expect(stderr).toBe('sluice: stack "sluice-dev" has no output DlqUrl, which sluice replay needs: redeploy with this version of Sluice (`npx cdk deploy`)\n');
  });
});

test('replay --aws with a credential source that hangs says once what it waits on, and Ctrl-C ends the wait (exit 130) naming the source', async () => {
  // No deadline: the notice comes after SLUICE_CREDENTIALS_NOTICE_MS (5 s when unset), long enough here for the chain to
  // have reached the endpoint on a busy machine.
  const run = await ctrlCWhileCredentialsHang(['replay', '--aws'], 2_000);
  const source = `the container credentials endpoint http://127.0.0.1:${run.port}/v1/credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI)`;
  expect(run.beforeCtrlC.split('\n').filter((line) => /still waiting/.test(line))).toEqual([`sluice: still waiting for your AWS credentials from ${source}… (Ctrl-C to stop)`]);
  expect(run.code).toBe(130);
  expect(run.stderr.slice(run.beforeCtrlC.length)).toMatch(new RegExp(`^sluice: interrupted \\(Ctrl-C\\) while waiting for your AWS credentials from ${source.replace(/[.()/]/g, '\\$&')}, which sign every request of the replay: check that it runs`));
  expect(run.exitMs).toBeLessThan(5_000);
}, 60_000);

describe('the replay ledger on AWS (DynamoDB mocked)', () => {
  const TABLE = 'sluice-dev-metadata';
  let dynamo: AwsClientStub<DynamoDBDocumentClient>;
  const pauses: number[] = [];
  const ledger = () => awsReplayLedger(DynamoDBDocumentClient.from(new DynamoDBClient({ region: 'eu-west-1' })), TABLE, { sleep: async (ms) => void pauses.push(ms) });
  const throttling = () => Object.assign(new Error('Rate of requests exceeds the allowed throughput.'), { name: 'ThrottlingException', $fault: 'client' });
  beforeAll(() => {
    dynamo = mockClient(DynamoDBDocumentClient);
  });
  afterAll(() => dynamo.restore());
  beforeEach(() => {
    dynamo.reset();
    pauses.length = 0;
  });

  /** BatchGetItem over a table holding `held` (pk → attributes), processing only `take(n)` of the n keys of each call. */
  const table = (held: Record<string, Record<string, unknown>>, take: (n: number) => number = (n) => n) =>
    dynamo.on(BatchGetCommand).callsFake(async (input: BatchGetCommandInput) => {
      const { Keys, ...rest } = input.RequestItems![TABLE];
      const done = Keys!.slice(0, take(Keys!.length));
      const left = Keys!.slice(done.length);
      return {
        Responses: { [TABLE]: done.filter((k) => String(k.pk) in held).map((k) => ({ pk: k.pk, ...held[String(k.pk)] })) },
        ...(left.length > 0 ? { UnprocessedKeys: { [TABLE]: { ...rest, Keys: left } } } : {}),
      };
    });

  test('reads in strongly consistent BatchGetItem calls of at most 100 keys, retrying UnprocessedKeys with backoff', async () => {
    const dedupeKeys = Array.from({ length: 150 }, (_, i) => `d-${i}`);
    const recordKeys = Array.from({ length: 60 }, (_, i) => `record#app-events#${i}`);
    const at = '2026-11-22T10:00:00.000Z';
    table({ 'replayed#d-7': {}, 'replayed#d-149': {}, 'replayed#record#app-events#3': { replayed_at: at }, 'replayed#record#app-events#59': {} }, (n) => Math.ceil(n / 2));
    const found = await ledger().lookup(dedupeKeys, recordKeys);
    expect(found.replayed).toEqual(new Set(['d-7', 'd-149']));
    // A record item without a readable time tells nothing about when: as if absent (as GetItem's answer was read before).
    expect(found.recordReplayedAt).toEqual(new Map([['record#app-events#3', Date.parse(at)]]));
    const calls = dynamo.commandCalls(BatchGetCommand).map((c) => c.args[0].input.RequestItems![TABLE]);
    expect(calls.every((c) => c.ConsistentRead === true && c.Keys!.length <= 100)).toBe(true);
    expect(calls.slice(0, 3).map((c) => c.Keys!.length).sort((a, b) => b - a)).toEqual([100, 100, 10]);
    expect(calls.reduce((sum, c) => sum + Math.ceil(c.Keys!.length / 2), 0)).toBe(210); // every key processed once
    expect(pauses.length).toBeGreaterThan(0);
    expect(await ledger().lookup([], [])).toEqual({ replayed: new Set(), recordReplayedAt: new Map() });
  });

  test('a throttling error is retried with backoff; one that lasts stops with the reason; other errors are not retried', async () => {
    dynamo.on(BatchGetCommand).rejectsOnce(throttling()).resolves({ Responses: { [TABLE]: [{ pk: 'replayed#d-1' }] } });
    expect((await ledger().lookup(['d-1', 'd-2'], [])).replayed).toEqual(new Set(['d-1']));
    expect(pauses).toHaveLength(1);

    dynamo.reset();
    dynamo.on(BatchGetCommand).rejects(throttling());
    await expect(ledger().lookup(['d-1'], [])).rejects.toThrow(`DynamoDB table ${TABLE} (the replay ledger) left ThrottlingException after 8 attempts; run replay again later`);
    expect(dynamo.commandCalls(BatchGetCommand)).toHaveLength(8);

    dynamo.reset();
    dynamo.on(BatchWriteCommand).rejectsOnce(throttling()).resolves({});
    await ledger().mark('d-3');
    expect(dynamo.commandCalls(BatchWriteCommand)).toHaveLength(2);

    dynamo.reset();
    dynamo.on(BatchGetCommand).rejects(Object.assign(new Error('User is not authorized to perform: dynamodb:BatchGetItem'), { name: 'AccessDeniedException', $fault: 'client' }));
    await expect(ledger().lookup(['d-1'], [])).rejects.toThrow(`DynamoDB denied access (table ${TABLE}): User is not authorized to perform: dynamodb:BatchGetItem. Your AWS identity needs permission for this call.`);
    expect(dynamo.commandCalls(BatchGetCommand)).toHaveLength(1);
  });

  test('markReplayed writes every record item, unprocessed ones retried, before any message item; plain puts with the put\'s time and a TTL', async () => {
    const calls: Array<Array<Record<string, unknown>>> = [];
    dynamo.on(BatchWriteCommand).callsFake(async (input: BatchWriteCommandInput) => {
      const items = input.RequestItems![TABLE].map((r) => r.PutRequest!.Item!);
      calls.push(items);
      // DynamoDB processes the first item of each call only, as under throttling.
      return items.length > 1 ? { UnprocessedItems: { [TABLE]: input.RequestItems![TABLE].slice(1) } } : {};
    });
    const at = Date.parse('2026-11-22T10:00:00.000Z');
    await ledger().markReplayed([1, 2, 3].map((n) => ({ dedupeKey: `d-${n}`, recordKey: `record#app-events#${n}`, at })));
    const pks = calls.map((items) => items.map((i) => i.pk));
    expect(pks).toEqual([
      ['replayed#record#app-events#1', 'replayed#record#app-events#2', 'replayed#record#app-events#3'],
      ['replayed#record#app-events#2', 'replayed#record#app-events#3'],
      ['replayed#record#app-events#3'],
      ['replayed#d-1', 'replayed#d-2', 'replayed#d-3'],
      ['replayed#d-2', 'replayed#d-3'],
      ['replayed#d-3'],
    ]);
    expect(calls[0][0]).toEqual({ pk: 'replayed#record#app-events#1', sk: 'replayed', replayed_at: '2026-11-22T10:00:00.000Z', ttl: expect.any(Number) });
    expect(calls[0][0].ttl as number).toBeGreaterThan(Date.now() / 1000 + 14 * 86_400);
    expect(dynamo.commandCalls(BatchWriteCommand).every((c) => Object.keys(c.args[0].input).join() === 'RequestItems')).toBe(true); // nothing conditional
    await ledger().markReplayed([]);
    expect(calls).toHaveLength(6);
  });
});
