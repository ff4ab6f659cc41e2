import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { S3Event, S3EventRecord } from 'aws-lambda';
import {
  createFailureRouter,
  decodeS3Key,
  failureRouterFromEnv,
  locateErrorObject,
  sqsBatches,
  type DlqMessage,
  type FailureRouterOptions,
} from '../../transforms/failure-router/handler';
import { capturedTelemetry, fixture, fixtureBytes, quietTelemetry, unb64 } from './helpers';

const event = fixture<S3Event>('s3-error-objects.json');
const BUCKET = 'sluice-dev-lake-123456789012';
const OBJECTS: Record<string, string> = {
  [decodeS3Key(event.Records[0].s3.object.key)!]: 'errors-processing-failed.jsonl',
  [decodeS3Key(event.Records[1].s3.object.key)!]: 'errors-format-conversion-failed.jsonl',
  [decodeS3Key(event.Records[2].s3.object.key)!]: 'errors-opensearch-failed.jsonl',
};

/** An SQS queue, a claim ledger and an S3 bucket in memory. */
function world(objects: Record<string, Buffer> = Object.fromEntries(Object.entries(OBJECTS).map(([k, f]) => [k, fixtureBytes(f)]))) {
  const queue: DlqMessage[] = [];
  const batches: DlqMessage[][] = [];
  const claims = new Set<string>();
  const reads: string[] = [];
  const options: FailureRouterOptions = {
    async readObject(bucket, key) {
      reads.push(`${bucket}/${key}`);
      const body = objects[key];
      if (!body) throw Object.assign(new Error(`NoSuchKey: ${key}`), { name: 'NoSuchKey' });
      return body;
    },
    async send(messages) {
      batches.push(messages);
      queue.push(...messages);
      return { failedIds: [] };
    },
    async claim(key) {
      if (claims.has(key)) return false;
      claims.add(key);
      return true;
    },
    async release(key) {
      claims.delete(key);
    },
    sleep: async () => {},
    ...quietTelemetry(),
  };
  return { queue, batches, claims, reads, options };
}

const s3Event = (...keys: string[]): S3Event => ({
  Records: keys.map((key): S3EventRecord => ({ ...event.Records[0], s3: { ...event.Records[0].s3, object: { ...event.Records[0].s3.object, key } } })),
});

describe('failure router', () => {
  it('sends one message per failed record with the recomputed reason, and ignores objects outside the error prefixes', async () => {
    const w = world();
    const t = capturedTelemetry();
    let result;
    try {
      result = await createFailureRouter({ ...w.options, logger: t.logger, metrics: t.metrics })(event);
    } finally {
      t.restore();
    }
    expect(result).toEqual({ sent: 5, duplicates: 0, pointers: 0 });
    const pfKey = decodeS3Key(event.Records[0].s3.object.key)!;
    const pfLines = fixtureBytes('errors-processing-failed.jsonl').toString().trim().split('\n').map((l) => JSON.parse(l));
    const [bad, truncated, valid, conversion, search] = w.queue;

    expect(bad).toEqual({
      dedupeKey: createHash('sha256').update(`s3://${BUCKET}/${pfKey}#1`).digest('hex'),
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
    expect(valid.reason).toBe('the record passes the transactions schema and limits now; Firehose reported Lambda.ProcessingFailed: The Lambda function returned ProcessingFailed for this record.');
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

  it('sends nothing twice when S3 redelivers the event', async () => {
    const w = world();
    const route = createFailureRouter(w.options);
    await route(event);
    expect(await route(event)).toEqual({ sent: 0, duplicates: 5, pointers: 0 });
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
    const lines = Array.from({ length: 23 }, (_, i) => JSON.stringify({ attemptsMade: 1, arrivalTimestamp: i, errorCode: 'Lambda.ProcessingFailed', errorMessage: 'x', rawData: Buffer.from(`{"n":${i}}`).toString('base64') })).join('\n');
    const key = 'errors/iot/processing-failed/2026/11/22/13/obj';
    const w = world({ [key]: Buffer.from(lines) });
    await createFailureRouter(w.options)(s3Event(key));
    expect(w.batches.map((b) => b.length)).toEqual([10, 10, 3]);
    const big = sqsBatches(w.queue, 2000);
    for (const b of big) expect(b.map((m) => Buffer.byteLength(JSON.stringify(m))).reduce((a, c) => a + c, 0)).toBeLessThanOrEqual(2000);
  });

  it('retries entries SQS rejected; what never gets through is released and the invocation fails for S3 to retry', async () => {
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
    await expect(createFailureRouter(flaky)(event)).rejects.toThrow(/1 dead-letter message\(s\) could not be sent/);
    expect(w.queue).toHaveLength(4);
    // S3 retries the event with SQS healthy again: only the missing message goes out.
    const retried = await createFailureRouter(w.options)(event);
    expect(retried).toEqual({ sent: 1, duplicates: 4, pointers: 0 });
    expect(w.queue.map((m) => m.source.line).sort()).toEqual([1, 1, 1, 2, 3]);
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
    expect(result).toEqual({ sent: 1, duplicates: 0, pointers: 0 });
    expect(w.reads).toEqual([`${BUCKET}/${key}`]);
    expect(t.lines.filter((l) => l.message === 'error line unreadable; it stays in S3 only').map((l) => [l.line, l.problem])).toEqual([
      [2, 'not JSON'],
      [3, 'no errorCode or errorMessage: not a Firehose error record'],
    ]);
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
    expect(await createFailureRouter(w.options)(s3Event(...keys))).toEqual({ sent: 0, duplicates: 0, pointers: 0 });
    expect(w.reads).toEqual([]);
    expect(await createFailureRouter(w.options)({ Records: [{ ...event.Records[0], eventName: 'ObjectRemoved:Delete' }] })).toEqual({ sent: 0, duplicates: 0, pointers: 0 });
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
