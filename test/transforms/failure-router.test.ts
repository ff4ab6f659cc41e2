import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import type { S3Event, S3EventRecord } from 'aws-lambda';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { BatchGetCommand, BatchWriteCommand, DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import fc from 'fast-check';
import {
  createFailureRouter,
  decodeS3Key,
  dedupeKeyOf,
  DEFAULT_REQUEST_TIMEOUT_MS,
  failureRouterFromEnv,
  locateErrorObject,
  MAX_ERROR_LINE_BYTES,
  OVERLONG_LINE_ERROR_CODE,
  reasonFor,
  routerRequestHandler,
  sqsBatches,
  type DlqMessage,
  type FailureRouterOptions,
  type ObjectPin,
} from '../../transforms/failure-router/handler';
import { parseErrorLines, readErrorObject, type ErrorObjectReading, type ParsedLine } from '../../transforms/failure-router/error-records';
import { createSentLedger } from '../../transforms/failure-router/sent-ledger';
import { faulty, startDynalite, type LocalDynamo } from './dynamo';
import { capturedTelemetry, fixture, fixtureBytes, quietTelemetry, unb64 } from './helpers';

const event = fixture<S3Event>('s3-error-objects.json');
/** Every object of these events has the fixture's eTag: part of each line's dedupe key. */
const ETAG = event.Records[0].s3.object.eTag;
const BUCKET = 'sluice-dev-lake-123456789012';
/** The transactions schema's x-sluice.version, as its file says. */
const TRANSACTIONS_VERSION = (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'schemas', 'transactions.schema.json'), 'utf8')) as { 'x-sluice': { version: string } })['x-sluice'].version;
const OBJECTS: Record<string, string> = {
  [decodeS3Key(event.Records[0].s3.object.key)!]: 'errors-processing-failed.jsonl',
  [decodeS3Key(event.Records[1].s3.object.key)!]: 'errors-format-conversion-failed.jsonl',
  [decodeS3Key(event.Records[2].s3.object.key)!]: 'errors-opensearch-failed.jsonl',
};

/** An SQS queue, a ledger of sent dedupe keys and an S3 bucket in memory. */
function world(objects: Record<string, Buffer> = Object.fromEntries(Object.entries(OBJECTS).map(([k, f]) => [k, fixtureBytes(f)]))) {
  const queue: DlqMessage[] = [];
  const batches: DlqMessage[][] = [];
  const marked = new Set<string>();
  const reads: string[] = [];
  const options: FailureRouterOptions = {
    async readObject(bucket, key) {
      reads.push(`${bucket}/${key}`);
      return objects[key] === undefined ? undefined : { body: objects[key] };
    },
    async send(messages) {
      batches.push(messages);
      queue.push(...messages);
      return { failedIds: [] };
    },
    async alreadySent(keys) {
      return new Set(keys.filter((k) => marked.has(k)));
    },
    async markSent(keys) {
      for (const k of keys) marked.add(k);
    },
    sleep: async () => {},
    ...quietTelemetry(),
  };
  return { queue, batches, marked, reads, options };
}

/** A processing-failed error object of `lines` records. */
function errorObject(lines: number): { key: string; body: Buffer } {
  const body = Array.from({ length: lines }, (_, i) => JSON.stringify({ attemptsMade: 1, arrivalTimestamp: i, errorCode: 'Lambda.ProcessingFailed', errorMessage: 'x', rawData: Buffer.from(`{"n":${i}}`).toString('base64') })).join('\n');
  return { key: 'errors/iot/processing-failed/2026/11/22/13/obj', body: Buffer.from(body) };
}

/** Messages per source line, for "every record has a message" checks. */
function perLine(queue: readonly DlqMessage[]): Map<number, number> {
  const counts = new Map<number, number>();
  for (const m of queue) counts.set(m.source.line, (counts.get(m.source.line) ?? 0) + 1);
  return counts;
}

/** A promise that never settles: the Lambda timed out or died there. */
const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

const s3Event = (...keys: string[]): S3Event => ({
  Records: keys.map((key): S3EventRecord => ({ ...event.Records[0], s3: { ...event.Records[0].s3, object: { ...event.Records[0].s3.object, key } } })),
});

describe('failure router', () => {
  it('an old event retried after its object was put back reads the new bytes, and keys them by the ETag read: duplicates of the new object\'s own event', async () => {
    const { key, body } = errorObject(3);
    const w = world({ [key]: body });
    // S3 answers reads with the object's ETag, quoted; unversioned, an event's eTag is the one it was created with.
    const options: FailureRouterOptions = { ...w.options, readObject: async (_b, k) => (k === key ? { body, etag: '"e2e2e2e2"' } : undefined) };
    const eventWith = (eTag: string): S3Event => ({ Records: [{ ...event.Records[0], s3: { ...event.Records[0].s3, object: { ...event.Records[0].s3.object, key, eTag } } }] });
    expect(await createFailureRouter(options)(eventWith('e2e2e2e2'))).toMatchObject({ sent: 3, duplicates: 0 });
    expect(await createFailureRouter(options)(eventWith('e1e1e1e1'))).toMatchObject({ sent: 0, duplicates: 3 });
    expect(w.queue.map((m) => m.dedupeKey)).toEqual([1, 2, 3].map((line) => dedupeKeyOf(BUCKET, key, line, 'e2e2e2e2')));
  });

  it('another object later written at the same key (a new eTag or version) is routed: its lines are not duplicates of the first object\'s', async () => {
    const w = world();
    const first = await createFailureRouter(w.options)(event);
    expect(first.sent).toBeGreaterThan(0);
    const again = await createFailureRouter(w.options)(event);
    expect(again).toMatchObject({ sent: 0, duplicates: first.sent });
    const rewritten = (changes: Partial<S3EventRecord['s3']['object']>): S3Event => ({
      Records: event.Records.map((r) => ({ ...r, s3: { ...r.s3, object: { ...r.s3.object, ...changes } } })),
    });
    expect(await createFailureRouter(w.options)(rewritten({ eTag: 'fedcba9876543210fedcba9876543210' }))).toMatchObject({ sent: first.sent, duplicates: 0 });
    expect(await createFailureRouter(w.options)(rewritten({ versionId: 'v2' }))).toMatchObject({ sent: first.sent, duplicates: 0 });
    expect(await createFailureRouter(w.options)(rewritten({ versionId: 'v2' }))).toMatchObject({ sent: 0, duplicates: first.sent });
  });

  it('a record that passes the schema now: a whole failed invocation is named as such, and both say it is safe to replay', () => {
    const valid = JSON.parse(fixtureBytes('errors-processing-failed.jsonl').toString().trim().split('\n')[2]) as { rawData: string };
    const where = locateErrorObject(decodeS3Key(event.Records[0].s3.object.key)!);
    if ('reason' in where) throw new Error(where.reason);
    const whole = reasonFor(where, { errorCode: 'Lambda.FunctionError', errorMessage: 'The Lambda function was successfully invoked but it returned an error result.', rawData: valid.rawData });
    expect(whole).toBe(`the record passes the transactions schema (version ${TRANSACTIONS_VERSION}) and limits now: the transform's invocation failed as a whole, so it is safe to replay. `
      + 'Firehose reported Lambda.FunctionError: The Lambda function was successfully invoked but it returned an error result.');
    expect(reasonFor(where, { errorCode: 'Lambda.ProcessingFailedStatus', errorMessage: 'ProcessingFailed status set for record', rawData: valid.rawData }))
      .toMatch(/earlier schema .* most likely its 6 MB response budget .* safe to replay\. Firehose reported Lambda\.ProcessingFailedStatus/);
  });

  it('a record the transform failed that passes the schema now may have failed under an earlier schema: the reason says so and names the current version', () => {
    // A record sent before a schema change that then made it valid (a field added): the failure router reads it after the deploy.
    const valid = JSON.parse(fixtureBytes('errors-processing-failed.jsonl').toString().trim().split('\n')[2]) as { rawData: string };
    const where = locateErrorObject(decodeS3Key(event.Records[0].s3.object.key)!);
    if ('reason' in where) throw new Error(where.reason);
    const reason = reasonFor(where, { errorCode: 'Lambda.ProcessingFailed', errorMessage: 'The Lambda function returned ProcessingFailed for this record.', rawData: valid.rawData });
    expect(reason).toContain(`passes the transactions schema (version ${TRANSACTIONS_VERSION}) and limits now`);
    expect(reason).toContain('under an earlier schema than this one');
  });

  it('sends one message per failed record with the recomputed reason, and ignores objects outside the error prefixes', async () => {
    const w = world();
    const t = capturedTelemetry();
    let result;
    try {
      result = await createFailureRouter({ ...w.options, logger: t.logger, metrics: t.metrics })(event);
    } finally {
      t.restore();
    }
    expect(result).toEqual({ sent: 5, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    const pfKey = decodeS3Key(event.Records[0].s3.object.key)!;
    const pfLines = fixtureBytes('errors-processing-failed.jsonl').toString().trim().split('\n').map((l) => JSON.parse(l));
    const [bad, truncated, valid, conversion, search] = w.queue;

    expect(bad).toEqual({
      dedupeKey: createHash('sha256').update(`s3://${BUCKET}/${pfKey}#1@${ETAG}`).digest('hex'),
      pipeline: 'transactions',
      errorType: 'processing-failed',
      errorCode: 'Lambda.ProcessingFailed',
      errorMessage: 'The Lambda function returned ProcessingFailed for this record.',
      reason: 'schema (exclusiveMinimum): /amount must be > 0; /payment_method/card_number must match pattern "^\\d{12,19}$"',
      rawData: pfLines[0].rawData,
      source: { bucket: BUCKET, key: pfKey, line: 1 },
      attemptsMade: 4,
      arrivalTimestamp: pfLines[0].arrivalTimestamp,
    });
    expect(truncated.reason).toMatch(/^json \(syntax\): \/ is not valid JSON \(.+ at position 64\)$/);
    expect(unb64(truncated.rawData)).toBe('{"event_id": "4f3c9f2c-6d0e-4e8b-9b97-0b1a7d3f5e55", "amount": 1');
    expect(valid.reason).toBe(`the record passes the transactions schema (version ${TRANSACTIONS_VERSION}) and limits now: the transform failed it under an earlier schema than this one `
      + '(x-sluice.version is not checked, so that one may carry the same version), or for something outside its content, '
      + 'most likely its 6 MB response budget (too many records for one invocation: its log line for the record says response-size); either way it is safe to replay. '
      + 'Firehose reported Lambda.ProcessingFailed: The Lambda function returned ProcessingFailed for this record.');
    expect(conversion).toMatchObject({
      errorType: 'format-conversion-failed',
      errorCode: 'DataFormatConversion.MalformedData',
      reason: 'Parquet conversion failed: DataFormatConversion.MalformedData: The given JSON data could not be parsed: field event_time: Invalid timestamp',
      attemptsMade: 1,
      source: { line: 1 },
    });
    expect(search).toMatchObject({
      pipeline: 'clickstream',
      errorType: 'AmazonOpenSearchService-failed',
      errorCode: '400',
      reason: expect.stringMatching(/^OpenSearch refused document 49654218744930171232346185420183853094356263932735209471\.0 in index clickstream-2026-11-22: 400: .*strict_dynamic_mapping_exception/),
    });
    expect(w.reads).toHaveLength(3); // the Parquet data object is never read
    const rejected = t.lines.find((l) => l.message === 'object is not a Firehose error object; ignored');
    expect(rejected).toMatchObject({ key: 'data/transactions/event_type=capture/year=2026/month=11/day=22/hour=13/part-1.parquet' });
    expect(t.lines.find((l) => 'DlqMessagesSent' in l)).toMatchObject({ DlqMessagesSent: 5, RejectedObjects: 1, DlqDuplicatesSkipped: 0 });
  });

  it('sends nothing twice when S3 redelivers an event it routed, and counts the records as duplicates', async () => {
    const w = world();
    const route = createFailureRouter(w.options);
    await route(event);
    expect(w.marked).toEqual(new Set(w.queue.map((m) => m.dedupeKey)));
    expect(await route(event)).toEqual({ sent: 0, duplicates: 5, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect(w.queue).toHaveLength(5);
    expect(new Set(w.queue.map((m) => m.dedupeKey)).size).toBe(5);
  });

  it('sends a pointer (bucket, key, line) for a record too large for one message', async () => {
    const w = world();
    const result = await createFailureRouter({ ...w.options, maxMessageBytes: 1200 })(event);
    expect(result.pointers).toBeGreaterThan(0);
    for (const m of w.queue) {
      expect(Buffer.byteLength(JSON.stringify(m))).toBeLessThanOrEqual(1200);
      if (m.pointer) {
        expect(m.rawData).toBeUndefined();
        expect(m.pointer).toEqual(m.source);
      }
    }
  });

  it('batches at most 10 messages and the byte cap per SendMessageBatch', async () => {
    const { key, body } = errorObject(23);
    const w = world({ [key]: body });
    await createFailureRouter(w.options)(s3Event(key));
    expect(w.batches.map((b) => b.length)).toEqual([10, 10, 3]);
    const big = sqsBatches(w.queue, 2000);
    for (const b of big) expect(b.map((m) => Buffer.byteLength(JSON.stringify(m))).reduce((a, c) => a + c, 0)).toBeLessThanOrEqual(2000);
  });

  it('retries entries SQS rejected; what never gets through stays unmarked, the invocation fails, and the retried event sends exactly that', async () => {
    const w = world();
    let calls = 0;
    const flaky: FailureRouterOptions = {
      ...w.options,
      async send(messages) {
        calls++;
        // The first call rejects line 1 (it goes through on retry); line 3 never gets through.
        const rejected = messages.filter((m) => m.source.line === 3 || (calls === 1 && m.source.line === 1));
        w.queue.push(...messages.filter((m) => !rejected.includes(m)));
        return { failedIds: rejected.map((m) => m.dedupeKey) };
      },
    };
    const pfKey = decodeS3Key(event.Records[0].s3.object.key)!;
    const lost = dedupeKeyOf(BUCKET, pfKey, 3, ETAG);
    await expect(createFailureRouter(flaky)(event)).rejects.toThrow(/1 message\(s\) of s3:\/\/.+ could not be sent after 5 attempts/);
    expect(w.queue).toHaveLength(4);
    expect(w.marked.has(lost)).toBe(false);
    expect(w.marked).toEqual(new Set(w.queue.map((m) => m.dedupeKey)));
    // Lambda retries the event with SQS healthy again: only the missing message goes out.
    const sentBefore = w.batches.length;
    const retried = await createFailureRouter(w.options)(event);
    expect(retried).toEqual({ sent: 1, duplicates: 4, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect(w.batches.slice(sentBefore).flat().map((m) => m.dedupeKey)).toEqual([lost]);
    expect(w.queue.map((m) => m.source.line).sort()).toEqual([1, 1, 1, 2, 3]);
  });

  /**
   * Starts a router whose Lambda "times out" during its second SendMessageBatch: SQS took the first batch of 10, the
   * second never answers. Resolves once the router is stuck there (the invocation never ends, as in a timeout).
   */
  async function dieWhileSending(w: ReturnType<typeof world>, key: string, options: { markEvery?: number } = {}): Promise<void> {
    let calls = 0;
    let died!: () => void;
    const dying = new Promise<void>((resolve) => (died = resolve));
    void createFailureRouter({
      ...w.options,
      ...options,
      async send(messages) {
        if (++calls === 1) return w.options.send(messages);
        died();
        return never();
      },
    })(s3Event(key));
    await dying;
  }

  it('loses nothing when the Lambda dies while sending: the retried event sends every record not marked sent', async () => {
    const { key, body } = errorObject(23);
    const w = world({ [key]: body });
    await dieWhileSending(w, key);
    expect(w.queue).toHaveLength(10);

    expect(await createFailureRouter(w.options)(s3Event(key))).toEqual({ sent: 23, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    const counts = perLine(w.queue);
    for (let line = 1; line <= 23; line++) expect(counts.get(line)).toBeGreaterThanOrEqual(1);
    expect(w.queue).toHaveLength(33); // lines 1–10 twice: at-least-once
  });

  it('resends at most the slice in flight after a crash: keys are marked after every markEvery messages', async () => {
    const { key, body } = errorObject(23);
    const w = world({ [key]: body });
    await dieWhileSending(w, key, { markEvery: 10 });
    expect(w.marked.size).toBe(10);

    expect(await createFailureRouter({ ...w.options, markEvery: 10 })(s3Event(key))).toEqual({ sent: 13, duplicates: 10, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect([...perLine(w.queue).entries()].sort(([a], [b]) => a - b)).toEqual(Array.from({ length: 23 }, (_, i) => [i + 1, 1]));
  });

  it('marking that fails after SQS accepted the messages fails the invocation, and the retry sends them again: a duplicate, never a loss', async () => {
    const w = world();
    const crash = Object.assign(new Error('Task timed out after 300.00 seconds'), { name: 'TimeoutError' });
    await expect(createFailureRouter({ ...w.options, markSent: () => Promise.reject(crash) })(event))
      .rejects.toMatchObject({ message: expect.stringMatching(/3 message\(s\) of s3:\/\/.+ were sent but could not be marked sent/), cause: crash });
    expect(w.queue).toHaveLength(5);
    expect(w.marked.size).toBe(0);

    expect(await createFailureRouter(w.options)(event)).toEqual({ sent: 5, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    const copies = new Map<string, number>();
    for (const m of w.queue) copies.set(m.dedupeKey, (copies.get(m.dedupeKey) ?? 0) + 1);
    expect([...copies.values()]).toEqual([2, 2, 2, 2, 2]);
    // Now marked: a third delivery sends nothing.
    expect(await createFailureRouter(w.options)(event)).toEqual({ sent: 0, duplicates: 5, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
  });

  it('sends nothing of an object whose sent marks cannot be read, and fails the invocation', async () => {
    const w = world();
    const pfKey = decodeS3Key(event.Records[0].s3.object.key)!;
    const down = Object.assign(new Error('Rate exceeded'), { name: 'ProvisionedThroughputExceededException' });
    const marking = jest.fn(w.options.markSent);
    const route = createFailureRouter({ ...w.options, alreadySent: () => Promise.reject(down), markSent: marking });
    await expect(route(s3Event(event.Records[0].s3.object.key)))
      .rejects.toMatchObject({ message: expect.stringMatching(/checking which messages of s3:\/\/.+ were sent before failed, so none was sent/), cause: down });
    expect(w.queue).toEqual([]);
    expect(marking).not.toHaveBeenCalled();

    // Only the object whose check failed waits for the retry; the others of the event are routed.
    const flaky = createFailureRouter({ ...w.options, alreadySent: async (keys) => (keys.includes(dedupeKeyOf(BUCKET, pfKey, 1, ETAG)) ? Promise.reject(down) : w.options.alreadySent(keys)) });
    await expect(flaky(event)).rejects.toThrow(/checking which messages/);
    expect(w.queue.map((m) => m.errorType)).toEqual(['format-conversion-failed', 'AmazonOpenSearchService-failed']);
    expect(await createFailureRouter(w.options)(event)).toEqual({ sent: 3, duplicates: 2, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect(w.queue).toHaveLength(5);
  });

  it('tells routedWhole of an object only once every line of it is sent, and never of one with an unreadable line', async () => {
    const w = world();
    const whole: Array<{ bucket: string; key: string; version: string; lines: number }> = [];
    const routedWhole = async (object: (typeof whole)[number]) => { whole.push(object); };
    const pfKey = decodeS3Key(event.Records[0].s3.object.key)!;
    const neverLine3: FailureRouterOptions = {
      ...w.options,
      routedWhole,
      async send(messages) {
        const rejected = messages.filter((m) => m.source.key === pfKey && m.source.line === 3);
        w.queue.push(...messages.filter((m) => !rejected.includes(m)));
        return { failedIds: rejected.map((m) => m.dedupeKey) };
      },
    };
    await expect(createFailureRouter(neverLine3)(event)).rejects.toThrow(/could not be sent/);
    expect(whole.map((o) => o.key)).not.toContain(pfKey);
    await createFailureRouter({ ...w.options, routedWhole })(event);
    expect(whole.filter((o) => o.key === pfKey)).toEqual([{ bucket: BUCKET, key: pfKey, version: ETAG, lines: 3 }]);

    const backup = 'search-backup/clickstream/AmazonOpenSearchService-failed/2026/11/22/13/partly-unreadable.gz';
    const withUnreadable = world({ [backup]: gzipSync(Buffer.concat([fixtureBytes('errors-opensearch-failed.jsonl'), Buffer.from('not json\n')])) });
    const told: string[] = [];
    expect(await createFailureRouter({ ...withUnreadable.options, routedWhole: async (o) => { told.push(o.key); } })(s3Event(backup))).toMatchObject({ unreadableLines: 1 });
    expect(told).toEqual([]);
  });

  it('reads gzip-compressed backups, decodes URL-encoded keys, and skips unreadable lines', async () => {
    const key = 'search-backup/clickstream/AmazonOpenSearchService-failed/2026/11/22/13/my backup:1.gz';
    const body = gzipSync(Buffer.concat([fixtureBytes('errors-opensearch-failed.jsonl'), Buffer.from('not json\n{"rawData":"AA=="}\n')]));
    const w = world({ [key]: body });
    const t = capturedTelemetry();
    let result;
    try {
      result = await createFailureRouter({ ...w.options, logger: t.logger, metrics: t.metrics })(s3Event('search-backup/clickstream/AmazonOpenSearchService-failed/2026/11/22/13/my+backup%3A1.gz'));
    } finally {
      t.restore();
    }
    expect(result).toEqual({ sent: 1, duplicates: 0, pointers: 0, unreadableLines: 2, damagedObjects: 0 });
    expect(w.reads).toEqual([`${BUCKET}/${key}`]);
    expect(t.lines.filter((l) => l.message === 'error line unreadable; it stays in S3 only').map((l) => [l.line, l.problem])).toEqual([
      [2, 'not JSON'],
      [3, 'no errorCode or errorMessage: not a Firehose error record'],
    ]);
  });

  it('an object deleted before it is read is nothing to route, and the event\'s other objects are routed', async () => {
    const { key, body } = errorObject(3);
    const w = world({ [key]: body });
    const t = capturedTelemetry();
    let result;
    try {
      result = await createFailureRouter({ ...w.options, logger: t.logger, metrics: t.metrics })(s3Event('errors/iot/processing-failed/2026/11/22/13/gone', key));
    } finally {
      t.restore();
    }
    expect(result).toEqual({ sent: 3, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect(t.lines.filter((l) => l.message === 'error object no longer exists; nothing to route').map((l) => l.key)).toEqual(['errors/iot/processing-failed/2026/11/22/13/gone']);
    expect(t.lines.find((l) => 'VanishedErrorObjects' in l)).toMatchObject({ VanishedErrorObjects: 1 });
  });

  it('a gzip backup cut off part-way: its whole lines are routed, the damage is logged once, and the invocation does not fail', async () => {
    const { body } = errorObject(50);
    const gz = gzipSync(Buffer.concat([body, Buffer.from('\n')]));
    const key = 'search-backup/iot/AmazonOpenSearchService-failed/2026/11/22/13/cut.gz';
    const cut = world({ [key]: gz.subarray(0, Math.floor(gz.length * 0.6)) });
    const t = capturedTelemetry();
    let result;
    try {
      result = await createFailureRouter({ ...cut.options, logger: t.logger, metrics: t.metrics })(s3Event(key));
    } finally {
      t.restore();
    }
    // Every message is a whole line of the object, numbered as in the object, with nothing half-read among them.
    const lines = [...perLine(cut.queue).keys()].sort((a, b) => a - b);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThan(50);
    expect(lines).toEqual(Array.from({ length: lines.length }, (_, i) => i + 1));
    expect(result).toMatchObject({ sent: lines.length });
    expect(t.lines.filter((l) => l.message === 'error line unreadable; it stays in S3 only')).toEqual([]);
    expect(t.lines.filter((l) => l.message === 'error object damaged; its whole lines before the damage are routed, the rest stays in S3 only').map((l) => l.problem)).toEqual([
      expect.stringMatching(/^the gzip data is damaged or cut off \(unexpected end of file\)$/),
    ]);
    // A checksum that does not match: what decompressed may hold the flipped bits it caught, so nothing is routed
    // (the object stays in S3, the alarm says so), and still no failure to retry forever.
    const badChecksum = Buffer.from(gz);
    badChecksum[badChecksum.length - 8] ^= 0xff;
    const checked = world({ [key]: badChecksum });
    await expect(createFailureRouter(checked.options)(s3Event(key))).resolves.toMatchObject({ sent: 0 });
    // Damaged at its start: nothing whole comes back either.
    const broken = Buffer.from(gz);
    broken.fill(0xff, 20, 40);
    const w = world({ [key]: broken });
    await expect(createFailureRouter(w.options)(s3Event(key))).resolves.toMatchObject({ sent: 0 });
  });

  it('gzip damage that zlib finds early in the data is damage, not a read error to retry, however the bytes arrive', async () => {
    const { body } = errorObject(3000);
    const gz = gzipSync(body);
    const key = 'search-backup/iot/AmazonOpenSearchService-failed/2026/11/22/13/early.gz';
    for (const at of [20, 24, 28]) {
      const damaged = Buffer.from(gz);
      for (let i = at; i < at + 4; i++) damaged[i] ^= 0xff;
      for (const read of [async () => ({ body: damaged }), async () => ({ body: streamed(damaged, every(100, damaged.length)) }), async () => ({ body: streamed(damaged, []) })]) {
        const w = world();
        const t = capturedTelemetry();
        let result;
        try {
          result = await createFailureRouter({ ...w.options, readObject: read, logger: t.logger, metrics: t.metrics })(s3Event(key));
        } finally {
          t.restore();
        }
        expect(result).toEqual({ sent: 0, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 1 });
        expect(t.lines.filter((l) => l.message === 'error object damaged; its whole lines before the damage are routed, the rest stays in S3 only')).toHaveLength(1);
      }
    }
  });

  it('rejects keys outside the known prefixes without a message or a throw', async () => {
    const w = world();
    const keys = [
      'errors/nope/processing-failed/2026/11/22/13/x',
      'errors/iot/processing-failed/2026/11/22/x',
      'errors/iot/../../etc/2026/11/22/13/x',
      'search-backup/iot/../../x',
      'data/iot/x',
      'errors%ZZ',
    ];
    expect(await createFailureRouter(w.options)(s3Event(...keys))).toEqual({ sent: 0, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect(w.reads).toEqual([]);
    expect(await createFailureRouter(w.options)({ Records: [{ ...event.Records[0], eventName: 'ObjectRemoved:Delete' }] })).toEqual({ sent: 0, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
  });

  it('parses pipeline and error type from the key', () => {
    expect(locateErrorObject('errors/iot/format-conversion-failed/2026/11/22/13/o')).toEqual({ pipeline: 'iot', errorType: 'format-conversion-failed' });
    expect(locateErrorObject('search-backup/clickstream/AmazonOpenSearchService-failed/2026/11/22/13/o')).toEqual({ pipeline: 'clickstream', errorType: 'AmazonOpenSearchService-failed' });
    expect(locateErrorObject('search-backup/clickstream/2026/11/22/13/o')).toEqual({ pipeline: 'clickstream', errorType: 'AmazonOpenSearchService-failed' });
    expect(locateErrorObject('errors/iot/processing-failed/2026/11/22/13/')).toHaveProperty('reason');
    expect(decodeS3Key('a+b%2Bc')).toBe('a b+c');
  });

  it('is configured from the environment', () => {
    expect(() => failureRouterFromEnv({})).toThrow(/SLUICE_DLQ_URL/);
    expect(() => failureRouterFromEnv({ SLUICE_DLQ_URL: 'https://sqs.us-east-1.amazonaws.com/1/q' })).toThrow(/SLUICE_METADATA_TABLE/);
    expect(typeof failureRouterFromEnv({ SLUICE_DLQ_URL: 'https://sqs.us-east-1.amazonaws.com/1/q', SLUICE_METADATA_TABLE: 't', AWS_REGION: 'us-east-1' })).toBe('function');
  });
});

/** A GetObject body that hands `bytes` over in chunks cut at `cuts` (offsets), counting what it produced; then fails with `failure`, if given. */
function streamed(bytes: Buffer, cuts: readonly number[], failure?: Error): AsyncIterable<Uint8Array> & { produced: number } {
  const body = {
    produced: 0,
    async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
      let at = 0;
      for (const cut of [...[...cuts].sort((a, b) => a - b).filter((c) => c > 0 && c < bytes.length), bytes.length]) {
        if (cut <= at) continue;
        body.produced += cut - at;
        yield bytes.subarray(at, cut);
        at = cut;
      }
      if (failure) throw failure;
    },
  };
  return body;
}

/** Cut offsets every `size` bytes of `length`. */
const every = (size: number, length: number): number[] => Array.from({ length: Math.ceil(length / size) }, (_, i) => i * size);

/** A processing-failed error line whose errorMessage is `message`. */
const errorLine = (n: number, message: string): string =>
  JSON.stringify({ attemptsMade: 2, arrivalTimestamp: 1_795_874_715_000 + n, errorCode: 'Lambda.ProcessingFailed', errorMessage: message, rawData: Buffer.from(`{"n":${n}}`).toString('base64') });

/** The lines a reading gives, in order. */
async function linesRead(reading: ErrorObjectReading | undefined): Promise<ParsedLine[]> {
  const out: ParsedLine[] = [];
  for await (const line of reading?.lines ?? []) out.push(line);
  return out;
}

describe('failure router reading objects as they arrive', () => {
  const KEY = 'errors/iot/processing-failed/2026/11/22/13/streamed';
  // Every awkward place for a chunk to end: inside 2-, 3- and 4-byte UTF-8 characters, between "\r" and "\n", right before
  // and after a "\n", inside a UTF-8 byte order mark; a blank line, an unreadable one, and a last line without "\n".
  const AWKWARD = Buffer.from([
    `\ufeff${errorLine(1, 'é € 😀 at a boundary')}\r\n`,
    '\r\n',
    'not json\n',
    `${errorLine(4, '日本語 and 🧪')}\n`,
    errorLine(5, 'the last line, with no newline after it 😀'),
  ].join(''));

  it('gives the lines parseErrorLines gives the whole text, wherever the chunks are cut', async () => {
    const whole = parseErrorLines(AWKWARD.toString('utf8'));
    expect(whole.map((l) => [l.line, 'problem' in l ? l.problem : l.errorMessage])).toEqual([
      [1, 'é € 😀 at a boundary'],
      [3, 'not JSON'],
      [4, '日本語 and 🧪'],
      [5, 'the last line, with no newline after it 😀'],
    ]);
    const read = async (cuts: number[]) => linesRead(await readErrorObject(streamed(AWKWARD, cuts), async () => undefined));
    expect(await linesRead(await readErrorObject(AWKWARD, async () => undefined))).toEqual(whole);
    // Two chunks, cut at every offset; one byte at a time; and any cuts at all.
    for (let cut = 0; cut <= AWKWARD.length; cut++) expect(await read([cut])).toEqual(whole);
    expect(await read(every(1, AWKWARD.length))).toEqual(whole);
    await fc.assert(fc.asyncProperty(fc.uniqueArray(fc.integer({ min: 1, max: AWKWARD.length - 1 }), { maxLength: 40 }), async (cuts) => {
      expect(await read(cuts)).toEqual(whole);
    }), { numRuns: 200 });
  });

  it('routes the same messages from a stream as from the whole object, at each awkward boundary', async () => {
    const reference = world({ [KEY]: AWKWARD });
    expect(await createFailureRouter(reference.options)(s3Event(KEY))).toEqual({ sent: 3, duplicates: 0, pointers: 0, unreadableLines: 1, damagedObjects: 0 });
    expect(reference.queue.map((m) => [m.source.line, m.errorMessage])).toEqual([
      [1, 'é € 😀 at a boundary'], [4, '日本語 and 🧪'], [5, 'the last line, with no newline after it 😀'],
    ]);
    const emoji = AWKWARD.indexOf('😀');
    const crlf = AWKWARD.indexOf('\r\n');
    const newline = AWKWARD.indexOf('\n', crlf + 2);
    const boundaries = [1, 2, 3, emoji + 1, emoji + 2, emoji + 3, crlf, crlf + 1, crlf + 2, newline - 1, newline, newline + 1, AWKWARD.length - 1];
    for (const cut of boundaries) {
      const w = world();
      const route = createFailureRouter({ ...w.options, readObject: async () => ({ body: streamed(AWKWARD, [cut]) }) });
      expect(await route(s3Event(KEY))).toEqual({ sent: 3, duplicates: 0, pointers: 0, unreadableLines: 1, damagedObjects: 0 });
      expect(w.queue).toEqual(reference.queue);
    }
  });

  it('reads a gzip backup as it arrives: checked to its end first (a second read), then routed as from the whole object', async () => {
    const key = 'search-backup/iot/AmazonOpenSearchService-failed/2026/11/22/13/streamed.gz';
    const gz = gzipSync(AWKWARD);
    const reference = world({ [key]: gz });
    await createFailureRouter(reference.options)(s3Event(key));
    expect(reference.reads).toHaveLength(1);
    expect(reference.queue.map((m) => m.source.line)).toEqual([1, 4, 5]);

    const w = world();
    const reads: number[] = [];
    const route = createFailureRouter({ ...w.options, readObject: async () => ({ body: streamed(gz, every(7 + reads.push(1), gz.length)) }) });
    expect(await route(s3Event(key))).toEqual({ sent: 3, duplicates: 0, pointers: 0, unreadableLines: 1, damagedObjects: 0 });
    expect(reads).toHaveLength(2);
    expect(w.queue).toEqual(reference.queue);

    // Cut off: the whole lines before the cut, as from the whole object. Damaged: nothing, and no second read.
    const { body } = errorObject(50);
    const cut = gzipSync(body).subarray(0, 2000);
    const whole = world({ [key]: cut });
    await createFailureRouter(whole.options)(s3Event(key));
    const part = world();
    await createFailureRouter({ ...part.options, readObject: async () => ({ body: streamed(cut, every(100, cut.length)) }) })(s3Event(key));
    expect(part.queue.length).toBeGreaterThan(0);
    expect(part.queue).toEqual(whole.queue);
    const damaged = Buffer.from(gzipSync(body));
    damaged[damaged.length - 8] ^= 0xff;
    const none = world();
    const damagedReads: number[] = [];
    expect(await createFailureRouter({ ...none.options, readObject: async () => ({ body: streamed(damaged, every(100 + damagedReads.push(1), damaged.length)) }) })(s3Event(key)))
      .toEqual({ sent: 0, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 1 });
    expect(damagedReads).toHaveLength(1);
  });

  it('an object far larger than it holds: the body runs ahead of what is sent by at most a window of lines and a chunk', async () => {
    const lines = 20_000;
    const { key, body } = errorObject(lines);
    const ends: number[] = [];
    for (let at = body.indexOf(0x0a); at !== -1; at = body.indexOf(0x0a, at + 1)) ends.push(at + 1);
    ends.push(body.length);
    const longest = Math.max(...ends.map((end, i) => end - (i === 0 ? 0 : ends[i - 1])));
    const chunk = 64 * 1024;
    const source = streamed(body, every(chunk, body.length));
    const w = world();
    let highestSent = 0;
    let mostAhead = 0;
    const route = createFailureRouter({
      ...w.options,
      readObject: async () => ({ body: source }),
      async send(messages) {
        // Read from the body but not yet sent: what the router holds (the lines of the window in hand).
        mostAhead = Math.max(mostAhead, source.produced - (highestSent === 0 ? 0 : ends[highestSent - 1]));
        highestSent = Math.max(highestSent, ...messages.map((m) => m.source.line));
        return w.options.send(messages);
      },
    });
    expect(await route(s3Event(key))).toEqual({ sent: lines, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect(source.produced).toBe(body.length);
    const bound = 250 * longest + chunk; // markEvery lines and the chunk the window's last line came in
    expect(mostAhead).toBeLessThanOrEqual(bound);
    expect(body.length).toBeGreaterThan(20 * bound);
    const counts = perLine(w.queue);
    expect(counts.size).toBe(lines);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(w.marked.size).toBe(lines);
  });

  it('a window of large messages ends at windowBytes, and a 1,000 KiB record split across many chunks goes as a pointer', async () => {
    const big = Buffer.from(JSON.stringify({ device_id: 'd-1', pad: 'x'.repeat(1_024_000 - 40) })).subarray(0, 1_024_000);
    const line = (n: number) => JSON.stringify({ attemptsMade: 1, arrivalTimestamp: n, errorCode: 'Lambda.ProcessingFailed', errorMessage: 'too big', rawData: (n % 2 === 1 ? big : Buffer.from(`{"n":${n}}`)).toString('base64') });
    const body = Buffer.from(Array.from({ length: 6 }, (_, i) => line(i + 1)).join('\n'));
    expect(body.length).toBeGreaterThan(3 * 1_365_000);
    const w = world();
    const windows: number[] = [];
    const route = createFailureRouter({ ...w.options, windowBytes: 800, readObject: async () => ({ body: streamed(body, every(16 * 1024, body.length)) }), alreadySent: async (keys) => {
      windows.push(keys.length);
      return w.options.alreadySent(keys);
    } });
    expect(await route(s3Event(KEY))).toEqual({ sent: 6, duplicates: 0, pointers: 3, unreadableLines: 0, damagedObjects: 0 });
    expect(windows.length).toBeGreaterThan(1);
    expect(w.queue.filter((m) => m.pointer).map((m) => m.source.line)).toEqual([1, 3, 5]);
    for (const m of w.queue.filter((q) => q.pointer)) {
      expect(m.pointer).toEqual({ bucket: BUCKET, key: KEY, line: m.source.line });
      // The reason is the validator's, recomputed from the whole record.
      expect(m.reason).toMatch(/^schema \(required\): \/event_id is required; .*\/pad is not a field of the schema/);
    }
  });

  it('a stream that fails midway fails the event: the lines read whole are sent and marked, the cut one is not, the other objects are routed, and the retry sends the rest once', async () => {
    const { key, body } = errorObject(40);
    const other = 'errors/iot/processing-failed/2026/11/22/13/other';
    const lineStarts = [0];
    for (let at = body.indexOf(0x0a); at !== -1; at = body.indexOf(0x0a, at + 1)) lineStarts.push(at + 1);
    const stopAt = lineStarts[22] + 20; // inside line 23
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    const w = world({ [key]: body, [other]: errorObject(3).body });
    const t = capturedTelemetry();
    try {
      const route = createFailureRouter({ ...w.options, markEvery: 10, logger: t.logger, metrics: t.metrics, readObject: async (b, k) => (k === key ? { body: streamed(body.subarray(0, stopAt), every(100, stopAt), reset) } : w.options.readObject(b, k)) });
      await expect(route(s3Event(key, other))).rejects.toMatchObject({ message: expect.stringMatching(/reading s3:\/\/.+\/obj failed after line 22, so the rest of it was not sent \(Error: socket hang up\)/), cause: reset });
    } finally {
      t.restore();
    }
    expect(t.lines.find((l) => l.message === 'error object could not be read to its end; the retried event sends the rest')).toMatchObject({ key, afterLine: 22 });
    const sentOf = (k: string) => w.queue.filter((m) => m.source.key === k).map((m) => m.source.line);
    expect(sentOf(key)).toEqual(Array.from({ length: 22 }, (_, i) => i + 1));
    expect(sentOf(other)).toEqual([1, 2, 3]);
    expect(w.marked).toEqual(new Set(w.queue.map((m) => m.dedupeKey)));

    // S3 and Lambda retry the event with the stream whole: only what was not sent goes out, each record once in all.
    expect(await createFailureRouter(w.options)(s3Event(key, other))).toEqual({ sent: 18, duplicates: 25, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect([...perLine(w.queue.filter((m) => m.source.key === key)).entries()].sort(([a], [b]) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => [i + 1, 1]));
  });

  it('leaving an object early (its sent marks cannot be read) closes its stream', async () => {
    const { key, body } = errorObject(600);
    const w = world();
    const stream = Readable.from((async function* () {
      for (let at = 0; at < body.length; at += 1024) yield body.subarray(at, at + 1024);
    })());
    const down = Object.assign(new Error('Rate exceeded'), { name: 'ProvisionedThroughputExceededException' });
    let checks = 0;
    const route = createFailureRouter({ ...w.options, readObject: async () => ({ body: stream }), alreadySent: (keys) => (++checks === 2 ? Promise.reject(down) : w.options.alreadySent(keys)) });
    await expect(route(s3Event(key))).rejects.toThrow(/checking which messages of s3:\/\/.+ were sent before failed, so none from line 251 on was sent/);
    expect(w.queue.map((m) => m.source.line)).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));
    expect(stream.destroyed).toBe(true);
    expect(stream.readableEnded).toBe(false);
  });

  it('an object that cannot be read before its first whole line: nothing of it is sent, and the event fails', async () => {
    const { key, body } = errorObject(5);
    const w = world({ [key]: body });
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    const route = createFailureRouter({ ...w.options, readObject: async () => ({ body: streamed(body.subarray(0, 30), [1, 10], reset) }) });
    await expect(route(s3Event(key))).rejects.toThrow(/reading s3:\/\/.+ failed, so none of it was sent \(Error: read ECONNRESET\)/);
    expect(w.queue).toEqual([]);
    expect(await createFailureRouter(w.options)(s3Event(key))).toEqual({ sent: 5, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 0 });

    // GetObject itself failing is the same: that object waits for the retry, the event's others are routed.
    const other = 'errors/iot/processing-failed/2026/11/22/13/other';
    const v = world({ [other]: errorObject(2).body });
    const denied = Object.assign(new Error('Access Denied'), { name: 'AccessDenied' });
    const refusing = createFailureRouter({ ...v.options, readObject: (b, k) => (k === key ? Promise.reject(denied) : v.options.readObject(b, k)) });
    await expect(refusing(s3Event(key, other))).rejects.toMatchObject({ message: expect.stringMatching(/reading s3:\/\/.+\/obj failed, so none of it was sent \(AccessDenied: Access Denied\)/), cause: denied });
    expect(v.queue.map((m) => m.source.key)).toEqual([other, other]);
  });
});

describe('failure router: error lines over the cap', () => {
  const KEY = 'errors/iot/processing-failed/2026/11/22/13/overlong';
  const CAP = 4096;
  /** A line of exactly CAP bytes that is a Firehose error line: read as any other. */
  const atCap = (() => {
    const short = errorLine(4, '');
    return errorLine(4, 'p'.repeat(CAP - short.length));
  })();
  const lines = [errorLine(1, 'before'), 'x'.repeat(10_000), errorLine(3, 'after'), atCap, 'not json', errorLine(6, 'last whole'), `{"rawData":"${'A'.repeat(CAP)}"`];
  const BODY = Buffer.from(lines.join('\n'));

  it('a line longer than maxLineBytes is given as its length only, wherever the chunks are cut; the lines after it keep their numbers', async () => {
    expect(Buffer.byteLength(atCap)).toBe(CAP);
    const expected = [
      { line: 1, errorMessage: 'before' }, { line: 2, overlongBytes: 10_000 }, { line: 3, errorMessage: 'after' }, { line: 4 },
      { line: 5, problem: 'not JSON' }, { line: 6, errorMessage: 'last whole' }, { line: 7, overlongBytes: CAP + 13 },
    ];
    const read = async (body: Buffer | AsyncIterable<Uint8Array>) => linesRead(await readErrorObject(body, async () => body as Buffer, { maxLineBytes: CAP }));
    expect(await read(BODY)).toMatchObject(expected);
    expect(await read(streamed(BODY, every(1, BODY.length)))).toMatchObject(expected);
    await fc.assert(fc.asyncProperty(fc.uniqueArray(fc.integer({ min: 1, max: BODY.length - 1 }), { maxLength: 30 }), async (cuts) => {
      expect(await read(streamed(BODY, cuts))).toMatchObject(expected);
    }), { numRuns: 100 });
    // Gzip: checked, then read again, with the same cap.
    const gz = gzipSync(BODY);
    expect(await linesRead(await readErrorObject(streamed(gz, every(100, gz.length)), async () => streamed(gz, every(333, gz.length)), { maxLineBytes: CAP }))).toMatchObject(expected);
  });

  it('never holds a line longer than the cap: a 64 MiB line without "\\n" streams past, and no copy of more than the cap is made', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 'x');
    const giant = 64;
    async function* body(): AsyncGenerator<Uint8Array> {
      yield Buffer.from(`${errorLine(1, 'before')}\n`);
      for (let i = 0; i < giant; i++) yield chunk; // the same memory each time: only the reader's copies would grow
      yield Buffer.from(`\n${errorLine(3, 'after')}\n`);
    }
    const concat = jest.spyOn(Buffer, 'concat');
    const w = world();
    try {
      const result = await createFailureRouter({ ...w.options, readObject: async () => ({ body: body() }) })(s3Event(KEY));
      const largest = Math.max(0, ...concat.mock.calls.map(([list]) => list.reduce((sum, b) => sum + b.length, 0)));
      expect(largest).toBeLessThanOrEqual(MAX_ERROR_LINE_BYTES);
      expect(result).toEqual({ sent: 3, duplicates: 0, pointers: 1, unreadableLines: 0, damagedObjects: 0 });
    } finally {
      concat.mockRestore();
    }
    expect(w.queue.map((m) => [m.source.line, m.pointer !== undefined])).toEqual([[1, false], [2, true], [3, false]]);
    expect(w.queue[1].errorMessage).toBe(`line 2 of s3://${BUCKET}/${KEY} is ${giant * 1024 * 1024} bytes, longer than the ${MAX_ERROR_LINE_BYTES} bytes the failure router reads`);
  });

  it('routes a line over the cap as a pointer saying so, counts and logs it, and routes the lines around it with their numbers and dedupe keys', async () => {
    for (const [key, body] of [[KEY, BODY], [`${KEY}.gz`, gzipSync(BODY)]] as const) {
      const w = world();
      const t = capturedTelemetry();
      let result;
      try {
        result = await createFailureRouter({ ...w.options, maxLineBytes: CAP, logger: t.logger, metrics: t.metrics, readObject: async () => ({ body: streamed(body, every(100, body.length)) }) })(s3Event(key));
      } finally {
        t.restore();
      }
      expect(result).toEqual({ sent: 6, duplicates: 0, pointers: 2, unreadableLines: 1, damagedObjects: 0 });
      expect(w.queue.map((m) => m.source.line)).toEqual([1, 2, 3, 4, 6, 7]);
      expect(w.queue.map((m) => m.dedupeKey)).toEqual([1, 2, 3, 4, 6, 7].map((line) => dedupeKeyOf(BUCKET, key, line, ETAG)));
      const [, overlong, after, full] = w.queue;
      expect(overlong).toEqual({
        dedupeKey: dedupeKeyOf(BUCKET, key, 2, ETAG),
        pipeline: 'iot',
        errorType: 'processing-failed',
        errorCode: OVERLONG_LINE_ERROR_CODE,
        errorMessage: `line 2 of s3://${BUCKET}/${key} is 10000 bytes, longer than the ${CAP} bytes the failure router reads`,
        reason: expect.stringMatching(/^line 2 of s3:\/\/.+ is 10000 bytes, longer than the 4096 bytes the failure router reads: not read\. No line Firehose writes is that long .*look at the line in S3 \(the pointer\)$/),
        pointer: { bucket: BUCKET, key, line: 2 },
        source: { bucket: BUCKET, key, line: 2 },
        attemptsMade: 0,
        arrivalTimestamp: 0,
      });
      expect(w.queue[5]).toMatchObject({ errorCode: OVERLONG_LINE_ERROR_CODE, pointer: { line: 7 } });
      expect(after).toMatchObject({ errorMessage: 'after', rawData: Buffer.from('{"n":3}').toString('base64') });
      expect(full.errorMessage).toHaveLength(CAP - errorLine(4, '').length);
      expect(t.lines.filter((l) => l.message === 'error line longer than the router reads; sent as a pointer, not read').map((l) => [l.line, l.bytes])).toEqual([[2, 10_000], [7, CAP + 13]]);
      expect(t.lines.find((l) => 'OverlongErrorLines' in l)).toMatchObject({ OverlongErrorLines: 2, DlqPointersSent: 2, UnreadableErrorLines: 1 });
    }
    expect(() => createFailureRouter({ ...world().options, maxLineBytes: 0 })).toThrow('maxLineBytes must be a positive integer, got 0');
  });
});

describe('failure router: the second read of a gzip object is pinned to the first', () => {
  const KEY = 'search-backup/iot/AmazonOpenSearchService-failed/2026/11/22/13/replaced.gz';
  const md5 = (b: Buffer) => `"${createHash('md5').update(b).digest('hex')}"`;
  const preconditionFailed = () => Object.assign(new Error('At least one of the pre-conditions you specified did not hold'), { name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } });

  /** S3 in memory as GetObject answers: streamed bodies, ETags, If-Match and versions; `afterRead` runs after each read. */
  function bucket(objects: Record<string, Buffer>, afterRead: (reads: number) => void = () => undefined) {
    const pins: Array<ObjectPin | undefined> = [];
    const readObject: FailureRouterOptions['readObject'] = async (_bucket, key, pin) => {
      pins.push(pin);
      const body = objects[key];
      if (body === undefined) return undefined;
      if (pin?.etag !== undefined && pin.etag !== md5(body)) throw preconditionFailed();
      afterRead(pins.length);
      return { body: streamed(body, every(64, body.length)), etag: md5(body) };
    };
    return { pins, readObject };
  }

  it('an object replaced between the two reads fails the invocation with nothing sent; the retry routes the object as it is then', async () => {
    const before = gzipSync(Buffer.from([errorLine(1, 'old'), errorLine(2, 'old')].join('\n')));
    const after = gzipSync(Buffer.from([errorLine(1, 'new'), errorLine(2, 'new'), errorLine(3, 'new')].join('\n')));
    const objects: Record<string, Buffer> = { [KEY]: before };
    const s3 = bucket(objects, (reads) => {
      if (reads === 1) objects[KEY] = after; // Replaced while the first read checked the old one's gzip data.
    });
    const w = world();
    const t = capturedTelemetry();
    try {
      await expect(createFailureRouter({ ...w.options, logger: t.logger, metrics: t.metrics, readObject: s3.readObject })(s3Event(KEY))).rejects.toMatchObject({
        message: expect.stringMatching(/reading s3:\/\/.+\/replaced\.gz failed, so none of it was sent \(ObjectChangedError: it changed after its gzip data was checked \(S3 answered PreconditionFailed to If-Match "[0-9a-f]{32}"\), so none of its lines were read; a new read takes it as it is now\)/),
        cause: { cause: { name: 'PreconditionFailed' } },
      });
    } finally {
      t.restore();
    }
    expect(s3.pins).toEqual([undefined, { etag: md5(before) }]);
    expect(w.queue).toEqual([]);
    // Its log line says what the retry does: the object as it is then, from its first line (not "the rest").
    expect(t.lines.filter((l) => l.level === 'ERROR').map((l) => [l.message, l.key, l.afterLine])).toEqual([
      ['error object replaced while it was read; none of it was sent, and the retried event routes it as it is then', KEY, 0],
    ]);

    expect(await createFailureRouter({ ...w.options, readObject: s3.readObject })(s3Event(KEY))).toEqual({ sent: 3, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect(w.queue.map((m) => m.errorMessage)).toEqual(['new', 'new', 'new']);
  });

  it('a versioned bucket\'s event pins both reads to its versionId', async () => {
    const gz = gzipSync(Buffer.from(errorLine(1, 'v1')));
    const s3 = bucket({ [KEY]: gz });
    const w = world();
    const versioned: S3Event = { Records: s3Event(KEY).Records.map((r) => ({ ...r, s3: { ...r.s3, object: { ...r.s3.object, versionId: '3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY' } } })) };
    expect(await createFailureRouter({ ...w.options, readObject: s3.readObject })(versioned)).toEqual({ sent: 1, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect(s3.pins).toEqual([{ versionId: '3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY' }, { versionId: '3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY' }]);
  });
});

describe('sent ledger (DynamoDB, against dynalite)', () => {
  const NOW = new Date('2026-11-22T14:00:00.000Z');
  const TTL = Math.floor(NOW.getTime() / 1000) + 30 * 86_400;
  const keys = Array.from({ length: 260 }, (_, i) => dedupeKeyOf(BUCKET, 'errors/iot/processing-failed/2026/11/22/13/obj', i + 1, ETAG));
  let local: LocalDynamo;
  beforeEach(async () => {
    local = await startDynalite();
  });
  afterEach(async () => {
    await local.close();
  });

  type Command = { input: unknown };
  /** The client with every BatchGetItem's key count and BatchWriteItem's request count recorded. */
  function counting(client: DynamoDBDocumentClient) {
    const gets: number[] = [];
    const consistent: Array<boolean | undefined> = [];
    const writes: number[] = [];
    const send = (command: Command): Promise<unknown> => {
      if (command instanceof BatchGetCommand) {
        gets.push(command.input.RequestItems![local.tableName].Keys!.length);
        consistent.push(command.input.RequestItems![local.tableName].ConsistentRead);
      }
      if (command instanceof BatchWriteCommand) writes.push(command.input.RequestItems![local.tableName].length);
      return client.send(command as never);
    };
    return { client: { send } as unknown as DynamoDBDocumentClient, gets, consistent, writes };
  }

  /** A client through which DynamoDB processes only the first `take(n)` keys or items of a batch, as under throttling. */
  function partial(take: (n: number) => number): DynamoDBDocumentClient {
    const send = async (command: Command): Promise<unknown> => {
      if (command instanceof BatchGetCommand) {
        const { Keys, ...rest } = command.input.RequestItems![local.tableName];
        const done = Keys!.slice(0, take(Keys!.length));
        const answer = done.length > 0 ? await local.client.send(new BatchGetCommand({ RequestItems: { [local.tableName]: { ...rest, Keys: done } } })) : { Responses: { [local.tableName]: [] } };
        const left = Keys!.slice(done.length);
        return { ...answer, UnprocessedKeys: left.length > 0 ? { [local.tableName]: { ...rest, Keys: left } } : {} };
      }
      if (command instanceof BatchWriteCommand) {
        const requests = command.input.RequestItems![local.tableName];
        const done = requests.slice(0, take(requests.length));
        if (done.length > 0) await local.client.send(new BatchWriteCommand({ RequestItems: { [local.tableName]: done } }));
        const left = requests.slice(done.length);
        return { UnprocessedItems: left.length > 0 ? { [local.tableName]: left } : {} };
      }
      return local.client.send(command as never);
    };
    return { send } as unknown as DynamoDBDocumentClient;
  }

  const ledger = (dynamo: DynamoDBDocumentClient, extra: Partial<Parameters<typeof createSentLedger>[0]> = {}) =>
    createSentLedger({ dynamo, tableName: local.tableName, ttlDays: 30, now: () => NOW, sleep: async () => {}, ...extra });

  it('reads in BatchGetItem calls of at most 100 keys and marks in BatchWriteItem calls of at most 25 items', async () => {
    const c = counting(local.client);
    const l = ledger(c.client);
    expect(await l.alreadySent(keys)).toEqual(new Set());
    expect(c.gets.sort((a, b) => b - a)).toEqual([100, 100, 60]);
    // Marks written just before (by an invocation that then failed) must be seen: strongly consistent reads.
    expect(c.consistent).toEqual([true, true, true]);

    await l.markSent([...keys.slice(0, 130), keys[0]]); // a key named twice is marked once
    expect(c.writes.sort((a, b) => b - a)).toEqual([25, 25, 25, 25, 25, 5]);
    const items = await local.scan();
    expect(items).toHaveLength(130);
    expect(items).toContainEqual({ pk: `dlq#${keys[0]}`, sk: 'sent', sent_at: NOW.toISOString(), ttl: TTL });

    expect(await l.alreadySent([...keys, keys[5]])).toEqual(new Set(keys.slice(0, 130)));
    expect(await l.alreadySent([])).toEqual(new Set());
  });

  it('retries the keys and items DynamoDB leaves unprocessed with backoff, and throws once the attempts are spent', async () => {
    const pauses: number[] = [];
    const half = ledger(partial((n) => Math.ceil(n / 2)), { sleep: async (ms) => void pauses.push(ms) });
    await half.markSent(keys.slice(0, 40));
    expect(await local.scan()).toHaveLength(40);
    expect(await half.alreadySent(keys.slice(0, 120))).toEqual(new Set(keys.slice(0, 40)));
    expect(pauses.length).toBeGreaterThan(0);

    const stuck = ledger(partial(() => 0), { attempts: 3 });
    await expect(stuck.alreadySent(keys.slice(0, 10))).rejects.toThrow(`DynamoDB table ${local.tableName} left 10 of 10 keys unprocessed (BatchGetItem) after 3 attempts`);
    await expect(stuck.markSent(keys.slice(100, 110))).rejects.toThrow(`DynamoDB table ${local.tableName} left 10 of 10 items unprocessed (BatchWriteItem) after 3 attempts`);
    expect(await local.scan()).toHaveLength(40);
  });

  it('drives the router: a throttled ledger sends nothing and fails the invocation; a healthy one sends each record once', async () => {
    const w = world();
    const throttled = createFailureRouter({ ...w.options, ...ledger(faulty(local, { throttleAlways: true })) });
    await expect(throttled(event)).rejects.toThrow(/ProvisionedThroughputExceededException/);
    expect(w.queue).toEqual([]);

    const healthy = createFailureRouter({ ...w.options, ...ledger(local.client) });
    expect(await healthy(event)).toEqual({ sent: 5, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect(await healthy(event)).toEqual({ sent: 0, duplicates: 5, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect(w.queue).toHaveLength(5);
    expect((await local.scan()).map((i) => i.pk).sort()).toEqual(w.queue.map((m) => `dlq#${m.dedupeKey}`).sort());
  });
});

describe('failure router in Lambda (AWS SDK clients, mocked)', () => {
  let s3: ReturnType<typeof mockClient>;
  let sqs: ReturnType<typeof mockClient>;
  let dynamo: ReturnType<typeof mockClient>;
  const savedRegion = process.env.AWS_REGION;
  beforeAll(() => {
    process.env.AWS_REGION = 'us-east-1'; // the clients read it, as in Lambda
    s3 = mockClient(S3Client);
    sqs = mockClient(SQSClient);
    dynamo = mockClient(DynamoDBDocumentClient);
  });
  afterAll(() => {
    for (const m of [s3, sqs, dynamo]) m.restore();
    if (savedRegion === undefined) delete process.env.AWS_REGION;
    else process.env.AWS_REGION = savedRegion;
  });

  it('sends bodies SQS takes: U+FFFE and U+FFFF a record put in a field name are escaped, and the body parses back to the message', async () => {
    // A field name the schema lacks: the recomputed reason quotes it.
    const rawData = Buffer.from('{"\ufffe\uffff":1}').toString('base64');
    const line = JSON.stringify({ attemptsMade: 1, arrivalTimestamp: 1, errorCode: 'Lambda.ProcessingFailed', errorMessage: 'x', rawData });
    s3.on(GetObjectCommand).resolves({ Body: { transformToByteArray: async () => new Uint8Array(Buffer.from(`${line}\n`)) } } as never);
    dynamo.on(BatchGetCommand).resolves({ Responses: {} });
    dynamo.on(BatchWriteCommand).resolves({});
    const bodies: string[] = [];
    sqs.on(SendMessageBatchCommand).callsFake((input: { Entries: Array<{ Id: string; MessageBody: string }> }) => {
      bodies.push(...input.Entries.map((e) => e.MessageBody));
      return { Successful: input.Entries.map((e) => ({ Id: e.Id, MessageId: e.Id, MD5OfMessageBody: '' })), Failed: [] };
    });
    const router = failureRouterFromEnv({ SLUICE_DLQ_URL: 'https://sqs.us-east-1.amazonaws.com/1/q', SLUICE_METADATA_TABLE: 't', AWS_REGION: 'us-east-1', });
    await expect(router(s3Event('errors/app-events/processing-failed/2026/11/22/13/obj'))).resolves.toMatchObject({ sent: 1 });
    expect(bodies).toHaveLength(1);
    expect(bodies[0]).not.toMatch(/[\ufffe\uffff]/);
    const message = JSON.parse(bodies[0]) as DlqMessage;
    expect(message.reason).toContain('/\ufffe\uffff');
    expect(message.rawData).toBe(rawData);
  });

  it('reads the GetObject body as a stream, never whole; a body that fails midway fails the event after sending and marking the lines read whole', async () => {
    const { key, body } = errorObject(30);
    let cutAt = -1;
    for (let line = 1; line <= 15; line++) cutAt = body.indexOf('\n', cutAt + 1);
    cutAt += 8; // inside line 16
    const reset = Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
    const incoming = () => Object.assign(Readable.from((async function* () {
      for (let at = 0; at < cutAt; at += 512) yield body.subarray(at, Math.min(at + 512, cutAt));
      throw reset;
    })()), { transformToByteArray: () => Promise.reject(new Error('the body was read whole')) });
    s3.on(GetObjectCommand).callsFake(() => ({ Body: incoming() }));
    dynamo.on(BatchGetCommand).resolves({ Responses: {} });
    const marked: string[] = [];
    dynamo.on(BatchWriteCommand).callsFake((input: { RequestItems: Record<string, Array<{ PutRequest: { Item: { pk: string } } }>> }) => {
      marked.push(...Object.values(input.RequestItems).flat().map((r) => r.PutRequest.Item.pk));
      return {};
    });
    const lines: number[] = [];
    sqs.on(SendMessageBatchCommand).callsFake((input: { Entries: Array<{ Id: string; MessageBody: string }> }) => {
      lines.push(...input.Entries.map((e) => (JSON.parse(e.MessageBody) as DlqMessage).source.line));
      return { Successful: input.Entries.map((e) => ({ Id: e.Id, MessageId: e.Id, MD5OfMessageBody: '' })), Failed: [] };
    });
    const t = capturedTelemetry();
    try {
      const router = failureRouterFromEnv({ SLUICE_DLQ_URL: 'https://sqs.us-east-1.amazonaws.com/1/q', SLUICE_METADATA_TABLE: 't', AWS_REGION: 'us-east-1' });
      await expect(router(s3Event(key))).rejects.toThrow(/reading s3:\/\/.+ failed after line 15, so the rest of it was not sent \(Error: aborted\)/);
    } finally {
      t.restore();
    }
    expect(t.lines.filter((l) => l.level === 'ERROR').map((l) => [l.message, l.afterLine])).toEqual([['error object could not be read to its end; the retried event sends the rest', 15]]);
    expect(lines).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect(marked.sort()).toEqual(Array.from({ length: 15 }, (_, i) => `dlq#${dedupeKeyOf(BUCKET, key, i + 1, ETAG)}`).sort());
  });

  it('pins the second GetObject of a gzip object: IfMatch the first one\'s ETag, or the event\'s VersionId; a 412 fails the event with nothing sent', async () => {
    const key = 'search-backup/iot/AmazonOpenSearchService-failed/2026/11/22/13/pinned.gz';
    const gz = (label: string) => gzipSync(Buffer.from([errorLine(1, label), errorLine(2, label)].join('\n')));
    let current = { body: gz('old'), etag: '"etag-old"' };
    const inputs: Array<{ VersionId?: string; IfMatch?: string }> = [];
    s3.on(GetObjectCommand).callsFake((input: { VersionId?: string; IfMatch?: string }) => {
      inputs.push({ VersionId: input.VersionId, IfMatch: input.IfMatch });
      if (input.IfMatch !== undefined && input.IfMatch !== current.etag) {
        throw Object.assign(new Error('At least one of the pre-conditions you specified did not hold'), { name: 'PreconditionFailed', $fault: 'client', $metadata: { httpStatusCode: 412 } });
      }
      const answer = { Body: Readable.from([current.body]), ETag: current.etag };
      current = { body: gz('new'), etag: '"etag-new"' }; // Replaced after every read.
      return answer;
    });
    dynamo.on(BatchGetCommand).resolves({ Responses: {} });
    dynamo.on(BatchWriteCommand).resolves({});
    const sent: string[] = [];
    sqs.on(SendMessageBatchCommand).callsFake((input: { Entries: Array<{ Id: string; MessageBody: string }> }) => {
      sent.push(...input.Entries.map((e) => (JSON.parse(e.MessageBody) as DlqMessage).errorMessage));
      return { Successful: input.Entries.map((e) => ({ Id: e.Id, MessageId: e.Id, MD5OfMessageBody: '' })), Failed: [] };
    });
    const router = failureRouterFromEnv({ SLUICE_DLQ_URL: 'https://sqs.us-east-1.amazonaws.com/1/q', SLUICE_METADATA_TABLE: 't', AWS_REGION: 'us-east-1' });
    const t = capturedTelemetry();
    try {
      await expect(router(s3Event(key))).rejects.toThrow(/failed, so none of it was sent \(ObjectChangedError: it changed after its gzip data was checked \(S3 answered PreconditionFailed to If-Match "etag-old"\)/);
    } finally {
      t.restore();
    }
    expect(inputs).toEqual([{ VersionId: undefined, IfMatch: undefined }, { VersionId: undefined, IfMatch: '"etag-old"' }]);
    expect(sent).toEqual([]);

    // A versioned bucket: the event names the version, and both reads ask for it (a version never changes).
    inputs.length = 0;
    s3.on(GetObjectCommand).callsFake((input: { VersionId?: string; IfMatch?: string }) => {
      inputs.push({ VersionId: input.VersionId, IfMatch: input.IfMatch });
      return { Body: Readable.from([gz('v1')]), ETag: '"etag-v1"' };
    });
    const versioned: S3Event = { Records: s3Event(key).Records.map((r) => ({ ...r, s3: { ...r.s3, object: { ...r.s3.object, versionId: 'v1' } } })) };
    await expect(router(versioned)).resolves.toMatchObject({ sent: 2 });
    expect(inputs).toEqual([{ VersionId: 'v1', IfMatch: undefined }, { VersionId: 'v1', IfMatch: undefined }]);
    expect(sent).toEqual(['v1', 'v1']);
  });
});

describe('failure router in Lambda: AWS endpoints that accept connections and never answer', () => {
  let server: http.Server;
  let endpoint: string;
  const saved = { ...process.env };
  beforeAll(async () => {
    server = http.createServer(() => { /* never answers */ });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    Object.assign(process.env, { POWERTOOLS_LOG_LEVEL: 'SILENT', AWS_ENDPOINT_URL: endpoint, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local', AWS_MAX_ATTEMPTS: '2' });
  });
  afterAll(async () => {
    process.env = saved;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('fails the event with TimeoutError once a call goes unanswered for SLUICE_REQUEST_TIMEOUT_MS, for Lambda to retry, instead of waiting for the function timeout', async () => {
    const router = failureRouterFromEnv({ SLUICE_DLQ_URL: `${endpoint}/1/q`, SLUICE_METADATA_TABLE: 't', SLUICE_REQUEST_TIMEOUT_MS: '200' });
    const t = capturedTelemetry();
    try {
      await expect(router(s3Event('errors/app-events/processing-failed/2026/11/22/13/obj'))).rejects.toThrow(/TimeoutError|timed out|timeout/i);
    } finally {
      t.restore();
    }
  }, 15_000);

  it('refuses a request timeout that is not a positive whole number of milliseconds, and waits 30 s by default', () => {
    expect(() => failureRouterFromEnv({ SLUICE_DLQ_URL: 'https://sqs.us-east-1.amazonaws.com/1/q', SLUICE_METADATA_TABLE: 't', SLUICE_REQUEST_TIMEOUT_MS: 'soon' })).toThrow(/SLUICE_REQUEST_TIMEOUT_MS must be a positive whole number of milliseconds, got "soon"/);
    expect(DEFAULT_REQUEST_TIMEOUT_MS).toBe(30_000);
    expect(routerRequestHandler(DEFAULT_REQUEST_TIMEOUT_MS)).toEqual({ connectionTimeout: 3_000, requestTimeout: 30_000, throwOnRequestTimeout: true });
  });
});

describe('docs/deploy.md: the redrive of an event Lambda could not hand to RouterFailedEventsUrl', () => {
  const doc = fs.readFileSync(path.join(__dirname, '..', '..', 'docs', 'deploy.md'), 'utf8');
  // The one payload given literally: the minimal S3 event for an error object named by hand.
  const payloads = [...doc.matchAll(/--payload '([^']+)'/g)].map(([, payload]) => payload);
  const invocations = [...doc.matchAll(/aws lambda invoke [^`]*?--payload '[^']+'[^`]*/g)];

  it('invokes the router synchronously and prints its answer', () => {
    expect(invocations).toHaveLength(1);
    const [command] = invocations[0];
    expect(command).toContain('--invocation-type RequestResponse');
    expect(command).toMatch(/answer\.json && cat answer\.json/);
  });

  it('routes the error object it names: the documented payload, with a real bucket and key, sends its records', async () => {
    expect(payloads).toHaveLength(1);
    const [payload] = payloads;
    const record = event.Records[0];
    const filled = payload.replace('<bucket>', record.s3.bucket.name).replace('<key>', record.s3.object.key);
    const w = world();
    const result = await createFailureRouter(w.options)(JSON.parse(filled) as S3Event);
    expect(w.reads).toEqual([`${record.s3.bucket.name}/${decodeS3Key(record.s3.object.key)}`]);
    expect(result.sent).toBeGreaterThan(0);
    expect(w.queue).toHaveLength(result.sent);
  });
});
