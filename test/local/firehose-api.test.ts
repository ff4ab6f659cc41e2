/**
 * The local Firehose endpoint, driven the way users drive AWS: through @aws-sdk/client-firehose
 * (and boto3 and the AWS CLI when they are installed), plus raw HTTP for what no SDK sends.
 * Behind it sits an in-memory backend, so every check reads the public surfaces: API responses
 * and the records the backend was handed.
 */
import { execFile, spawnSync } from 'node:child_process';
import { request as httpRequest, validateHeaderValue, type IncomingHttpHeaders } from 'node:http';
import { connect as netConnect } from 'node:net';
import {
  DescribeDeliveryStreamCommand,
  FirehoseClient,
  ListDeliveryStreamsCommand,
  PutRecordBatchCommand,
  PutRecordCommand,
} from '@aws-sdk/client-firehose';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import fc from 'fast-check';
import { awsJsonRequest, rawExchange, refusedWebPages, webPageCases } from './web-page';
import { MAX_NESTING } from '../../lib/local/json-pieces';
import { InvokeCommand } from '@aws-sdk/client-lambda';
import { lambdaClient } from '../../lib/local/aws-clients';
import {
  FIREHOSE_LIMITS,
  startFirehoseApi,
  type FirehoseBackend,
  type IngestResult,
  type LocalDeliveryStream,
  type RunningFirehoseApi,
} from '../../lib/local/firehose-api';

const ACCOUNT = '000000000000';
const REGION = 'us-east-1';
const CREATED_AT = new Date('2026-01-15T10:20:30.000Z');

const arnOf = (name: string): string => `arn:aws:firehose:${REGION}:${ACCOUNT}:deliverystream/${name}`;
const s3Destination = (id: string): Record<string, unknown> => ({
  DestinationId: id,
  ExtendedS3DestinationDescription: { BucketARN: 'arn:aws:s3:::sluice-local-lake', Prefix: 'data/app-events/' },
});

const DIRECT_PUT: LocalDeliveryStream = {
  name: 'sluice-local-app-events-lake',
  arn: arnOf('sluice-local-app-events-lake'),
  type: 'DirectPut',
  createdAt: CREATED_AT,
  destinations: [s3Destination('destinationId-000000000001')],
};
const KINESIS_SOURCED: LocalDeliveryStream = {
  name: 'sluice-local-clickstream-lake',
  arn: arnOf('sluice-local-clickstream-lake'),
  type: 'KinesisStreamAsSource',
  sourceStreamArn: `arn:aws:kinesis:${REGION}:${ACCOUNT}:stream/sluice-local-clickstream`,
  sourceRoleArn: `arn:aws:iam::${ACCOUNT}:role/sluice-local-clickstream-source`,
  createdAt: CREATED_AT,
  versionId: '3',
  destinations: [s3Destination('destinationId-000000000001'), s3Destination('destinationId-000000000002')],
};
const MORE_STREAMS: LocalDeliveryStream[] = ['sluice-local-iot-lake', 'sluice-local-clickstream-search', 'a-first'].map((name) => ({
  name,
  arn: arnOf(name),
  type: name.includes('iot') || name.includes('search') ? 'KinesisStreamAsSource' : 'DirectPut',
  createdAt: CREATED_AT,
  destinations: [],
}));

interface IngestedRecord {
  streamName: string;
  recordId: string;
  data: Buffer;
  arrivalTimestamp: number;
}

/** Records whatever it acknowledges; tests script per-record failures or a whole-call failure. */
class InMemoryBackend implements FirehoseBackend {
  readonly acknowledged: IngestedRecord[] = [];
  ingestCalls = 0;
  /** Decides each record's fate; default accepts all. */
  decide: (data: Buffer, index: number) => IngestResult = () => ({ ok: true });
  /** When set, replaces ingest entirely (to throw, or to hold the call open). */
  override?: (records: ReadonlyArray<{ recordId: string; data: Buffer; arrivalTimestamp: number }>) => Promise<IngestResult[]>;

  constructor(private readonly streams: ReadonlyArray<LocalDeliveryStream>) {}

  listDeliveryStreams(): ReadonlyArray<LocalDeliveryStream> {
    return this.streams;
  }

  findDeliveryStream(name: string): LocalDeliveryStream | undefined {
    return this.streams.find((stream) => stream.name === name);
  }

  async ingest(streamName: string, records: ReadonlyArray<{ recordId: string; data: Buffer; arrivalTimestamp: number }>): Promise<IngestResult[]> {
    this.ingestCalls += 1;
    if (this.override) return this.override(records);
    const results = records.map((record, index) => this.decide(record.data, index));
    records.forEach((record, index) => {
      if (results[index].ok) this.acknowledged.push({ streamName, ...record, data: Buffer.from(record.data) });
    });
    return results;
  }

  reset(): void {
    this.acknowledged.length = 0;
    this.ingestCalls = 0;
    this.decide = () => ({ ok: true });
    this.override = undefined;
  }
}

const backend = new InMemoryBackend([DIRECT_PUT, KINESIS_SOURCED, ...MORE_STREAMS]);
let api: RunningFirehoseApi;
let firehose: FirehoseClient;

function newClient(maxAttempts = 1): FirehoseClient {
  return new FirehoseClient({
    endpoint: api.url,
    region: REGION,
    credentials: { accessKeyId: 'AKIDLOCALTWIN', secretAccessKey: 'local-secret' },
    maxAttempts,
    requestHandler: new NodeHttpHandler({ connectionTimeout: 2_000, requestTimeout: 30_000 }),
  });
}

beforeAll(async () => {
  api = await startFirehoseApi({ port: 0, backend });
  firehose = newClient();
});

afterAll(async () => {
  firehose.destroy();
  await api.close();
});

beforeEach(() => backend.reset());

interface AwsErrorExpectation {
  name: string;
  status: number;
  message?: string | RegExp;
}

/** Asserts the SDK surfaced the error as AWS would: name, HTTP status and message. */
async function expectAwsError(call: Promise<unknown>, expected: AwsErrorExpectation): Promise<void> {
  const error = await call.then(
    () => {
      throw new Error(`expected ${expected.name}, but the call succeeded`);
    },
    (e: unknown) => e as { name: string; message: string; $metadata: { httpStatusCode?: number; requestId?: string } },
  );
  expect(error.name).toBe(expected.name);
  expect(error.$metadata.httpStatusCode).toBe(expected.status);
  expect(error.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);
  if (typeof expected.message === 'string') expect(error.message).toBe(expected.message);
  else if (expected.message) expect(error.message).toMatch(expected.message);
}

const bytes = (length: number, fill = 0x61): Uint8Array => new Uint8Array(length).fill(fill);

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  json: Record<string, unknown>;
}

/** A bare HTTP request, for what the SDKs never send (broken JSON, no target, huge bodies). */
function rawRequest(
  options: { method?: string; headers?: Record<string, string>; body?: Buffer | string; chunks?: Buffer[] },
): Promise<RawResponse> {
  const url = new URL(api.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, path: '/', method: options.method ?? 'POST', headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, json: text ? JSON.parse(text) : {} });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.chunks) {
      for (const chunk of options.chunks) req.write(chunk);
      req.end();
    } else {
      req.end(options.body);
    }
  });
}

const jsonHeaders = (operation: string): Record<string, string> => ({
  'Content-Type': 'application/x-amz-json-1.1',
  'X-Amz-Target': `Firehose_20150804.${operation}`,
});

function expectAwsJsonError(response: RawResponse, status: number, code: string): void {
  expect(response.status).toBe(status);
  expect(response.headers['content-type']).toBe('application/x-amz-json-1.1');
  expect(response.headers['x-amzn-errortype']).toBe(code);
  expect(response.headers['x-amzn-requestid']).toMatch(/^[0-9a-f-]{36}$/);
  expect(response.json.__type).toBe(code);
  expect(typeof response.json.message).toBe('string');
}

/** A raw answer Node's parser made the endpoint send: the status, AWS's error headers, and `{__type, message}`. */
function expectRefusedInAwsForm(text: string, status: number, message: string | RegExp): void {
  const [head, body] = [text.slice(0, text.indexOf('\r\n\r\n')), text.slice(text.indexOf('\r\n\r\n') + 4)];
  expect(head).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
  expect(head).toMatch(/\r\nx-amzn-ErrorType: SerializationException\r\n/);
  expect(head).toMatch(/\r\nx-amzn-RequestId: [0-9a-f-]{36}\r\n/);
  expect(head).toMatch(/\r\nConnection: close(\r\n|$)/);
  expect(head).toContain(`\r\nContent-Length: ${Buffer.byteLength(body)}`);
  const json = JSON.parse(body) as { __type: string; message: string };
  expect(json.__type).toBe('SerializationException');
  expect(json.message).toMatch(message);
}

describe('PutRecord', () => {
  it('acknowledges a record with a unique opaque id and hands the exact bytes to the backend', async () => {
    const before = Date.now();
    const first = await firehose.send(new PutRecordCommand({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: Buffer.from('{"a":1}\n') } }));
    const second = await firehose.send(new PutRecordCommand({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: Buffer.from('{"a":2}\n') } }));

    expect(first.Encrypted).toBe(false);
    expect(first.RecordId).toMatch(/^[A-Za-z0-9+/=]{56,}$/);
    expect(second.RecordId).not.toBe(first.RecordId);
    expect(first.$metadata.httpStatusCode).toBe(200);
    expect(first.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(backend.acknowledged.map((r) => [r.streamName, r.recordId, r.data.toString()])).toEqual([
      [DIRECT_PUT.name, first.RecordId, '{"a":1}\n'],
      [DIRECT_PUT.name, second.RecordId, '{"a":2}\n'],
    ]);
    expect(backend.acknowledged[0].arrivalTimestamp).toBeGreaterThanOrEqual(before);
    expect(backend.acknowledged[1].arrivalTimestamp).toBeLessThanOrEqual(Date.now());
  });

  it('accepts a record of exactly 1,024,000 bytes and an empty record', async () => {
    await firehose.send(new PutRecordCommand({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: bytes(FIREHOSE_LIMITS.maxRecordBytes) } }));
    await firehose.send(new PutRecordCommand({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: new Uint8Array(0) } }));
    expect(backend.acknowledged.map((r) => r.data.length)).toEqual([1024000, 0]);
  });

  it('rejects a record of 1,024,001 bytes with ValidationException in AWS wording', async () => {
    await expectAwsError(
      firehose.send(new PutRecordCommand({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: bytes(1024001) } })),
      {
        name: 'ValidationException',
        status: 400,
        message:
          "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=1024001 cap=1024001]' at 'record.data' " +
          'failed to satisfy constraint: Member must have length less than or equal to 1024000',
      },
    );
    expect(backend.ingestCalls).toBe(0);
  });

  it('answers ResourceNotFoundException for an unknown stream', async () => {
    await expectAwsError(
      firehose.send(new PutRecordCommand({ DeliveryStreamName: 'no-such-stream', Record: { Data: bytes(3) } })),
      { name: 'ResourceNotFoundException', status: 400, message: `Firehose no-such-stream under account ${ACCOUNT} not found.` },
    );
  });

  it('refuses a KinesisStreamAsSource stream with InvalidArgumentException', async () => {
    await expectAwsError(
      firehose.send(new PutRecordCommand({ DeliveryStreamName: KINESIS_SOURCED.name, Record: { Data: bytes(3) } })),
      { name: 'InvalidArgumentException', status: 400, message: 'This operation is not permitted on KinesisStreamAsSource delivery stream type.' },
    );
    expect(backend.ingestCalls).toBe(0);
  });

  it('raises the backend’s refusal of the record as the call’s error', async () => {
    backend.decide = () => ({ ok: false, errorCode: 'ServiceUnavailableException', errorMessage: 'Slow down.' });
    await expectAwsError(
      firehose.send(new PutRecordCommand({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: bytes(3) } })),
      { name: 'ServiceUnavailableException', status: 500, message: 'Slow down.' },
    );
    expect(backend.acknowledged).toHaveLength(0);
  });

  it('answers a refusal code that Node cannot send in a header as an error all the same: the header percent-encoded, the body exact', async () => {
    const code = 'Odd\r\nCode\u0000\u007f%é☃';
    backend.decide = () => ({ ok: false, errorCode: code, errorMessage: 'Not today.' });
    const body = JSON.stringify({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: 'YWJj' } });
    const response = await rawRequest({ headers: jsonHeaders('PutRecord'), body });
    expect(response.status).toBe(400);
    expect(response.json).toEqual({ __type: code, message: 'Not today.' });
    expect(response.headers['x-amzn-errortype']).toBe('Odd%0D%0ACode%00%7F%25%C3%A9%E2%98%83');
    expect(decodeURIComponent(response.headers['x-amzn-errortype'] as string)).toBe(code);
    // An SDK gets the error, not "socket hang up"; for AWS JSON 1.1 it takes the code from the body, exactly.
    await expectAwsError(
      firehose.send(new PutRecordCommand({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: bytes(3) } })),
      { name: code, status: 400, message: 'Not today.' },
    );
  });

  it('answers any refusal code with an error whose header Node accepts and gives back the code, and whose body holds it exactly', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }), async (code) => {
        backend.decide = () => ({ ok: false, errorCode: code, errorMessage: 'No.' });
        const body = JSON.stringify({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: 'YWJj' } });
        const response = await rawRequest({ headers: jsonHeaders('PutRecord'), body });
        const header = response.headers['x-amzn-errortype'] as string;
        expect(response.json).toEqual({ __type: code, message: 'No.' });
        expect(() => validateHeaderValue('x-amzn-ErrorType', header)).not.toThrow();
        expect(header).toMatch(/^[\x20-\x7e]+$/);
        expect(decodeURIComponent(header)).toBe(code);
      }),
      { numRuns: 60 },
    );
  });
});

describe('PutRecordBatch', () => {
  const records = (count: number, size = 10): Array<{ Data: Uint8Array }> =>
    Array.from({ length: count }, (_, i) => ({ Data: bytes(size, 0x30 + (i % 10)) }));

  it('accepts 500 records and answers one RecordId per record, in request order', async () => {
    const result = await firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: records(500) }));
    expect(result.FailedPutCount).toBe(0);
    expect(result.Encrypted).toBe(false);
    expect(result.RequestResponses).toHaveLength(500);
    expect(result.RequestResponses!.map((r) => r.RecordId)).toEqual(backend.acknowledged.map((r) => r.recordId));
    expect(new Set(backend.acknowledged.map((r) => r.recordId)).size).toBe(500);
    // Firehose's shape: 224 base64 characters, each id decoding to its own 168 bytes (nonce, counter, random).
    for (const { recordId } of backend.acknowledged) expect(recordId).toMatch(/^[A-Za-z0-9+/]{224}$/);
    const counters = backend.acknowledged.map((r) => Buffer.from(r.recordId, 'base64').readBigUInt64BE(8));
    expect(counters.slice(1).every((c, i) => c === counters[i] + 1n)).toBe(true);
    expect(backend.acknowledged.map((r) => r.data[0])).toEqual(Array.from({ length: 500 }, (_, i) => 0x30 + (i % 10)));
  });

  it('a client whose event loop stalls 6.5 s with an idle connection still gets its next call through (no ECONNRESET)', async () => {
    // Node's server would close the idle connection at 5 s; a client stalled past that (the SDK's agent has no idle timer)
    // writes its next request on the connection before the server's timer runs, and the close resets it. With one attempt,
    // that call fails (the hostile corpus suite met it on a loaded machine).
    const client = newClient(1);
    try {
      await client.send(new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: records(1) }));
      await new Promise((resolve) => setTimeout(resolve, 0));
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 6_500);
      const result = await client.send(new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: records(1) }));
      expect(result.FailedPutCount).toBe(0);
      expect(backend.acknowledged).toHaveLength(2);
    } finally {
      client.destroy();
    }
  }, 20_000);

  it('rejects 501 records with ValidationException and hands nothing to the backend', async () => {
    await expectAwsError(firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: records(501) })), {
      name: 'ValidationException',
      status: 400,
      message: /^1 validation error detected: Value '\[Record\(data=java\.nio\.HeapByteBuffer\[pos=0 lim=10 cap=10\]\), .*\]' at 'records' failed to satisfy constraint: Member must have length less than or equal to 500$/,
    });
    expect(backend.ingestCalls).toBe(0);
  });

  it('names at most 25 records of an oversized batch in its message, however many it holds (the count stays exact)', async () => {
    const many = Array.from({ length: 100_000 }, () => ({ Data: '' }));
    const response = await rawRequest({ headers: jsonHeaders('PutRecordBatch'), body: JSON.stringify({ DeliveryStreamName: DIRECT_PUT.name, Records: many }) });
    expectAwsJsonError(response, 400, 'ValidationException');
    const { message } = response.json as { message: string };
    expect(message.length).toBeLessThan(2000);
    expect(message).toMatch(/^1 validation error detected: Value '\[(Record\(data=java\.nio\.HeapByteBuffer\[pos=0 lim=0 cap=0\]\), ){25}\.\.\. \(99975 more\)\]' at 'records' failed to satisfy constraint: Member must have length less than or equal to 500$/);
    expect(backend.ingestCalls).toBe(0);
  });

  it('rejects an empty batch with ValidationException', async () => {
    await expectAwsError(firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: [] })), {
      name: 'ValidationException',
      status: 400,
      message: "1 validation error detected: Value '[]' at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1",
    });
  });

  it('accepts exactly 4 MiB of data in one batch and rejects one byte more with InvalidArgumentException', async () => {
    // 4 × 1,024,000 + 98,304 = 4,194,304 bytes.
    const atLimit = [...records(4, FIREHOSE_LIMITS.maxRecordBytes), { Data: bytes(98_304) }];
    const ok = await firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: atLimit }));
    expect(ok.FailedPutCount).toBe(0);
    expect(backend.acknowledged.reduce((sum, r) => sum + r.data.length, 0)).toBe(FIREHOSE_LIMITS.maxBatchBytes);

    backend.reset();
    const overLimit = [...records(4, FIREHOSE_LIMITS.maxRecordBytes), { Data: bytes(98_305) }];
    await expectAwsError(firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: overLimit })), {
      name: 'InvalidArgumentException',
      status: 400,
      message: 'Records size exceeds 4 MB limit',
    });
    expect(backend.ingestCalls).toBe(0);
  });

  it('names every oversized record by its 1-based position', async () => {
    const batch = [{ Data: bytes(5) }, { Data: bytes(1024001) }, { Data: bytes(1024000) }, { Data: bytes(1024002) }];
    await expectAwsError(firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: batch })), {
      name: 'ValidationException',
      status: 400,
      message:
        "2 validation errors detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=1024001 cap=1024001]' at 'records.2.member.data' " +
        'failed to satisfy constraint: Member must have length less than or equal to 1024000; ' +
        "Value 'java.nio.HeapByteBuffer[pos=0 lim=1024002 cap=1024002]' at 'records.4.member.data' " +
        'failed to satisfy constraint: Member must have length less than or equal to 1024000',
    });
  });

  it('surfaces per-record backend failures in RequestResponses and FailedPutCount', async () => {
    backend.decide = (_data, index) =>
      index % 3 === 1 ? { ok: false, errorCode: 'ServiceUnavailableException', errorMessage: 'Slow down.' } : { ok: true };
    const result = await firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: records(7) }));

    expect(result.FailedPutCount).toBe(2);
    const responses = result.RequestResponses!;
    expect(responses).toHaveLength(7);
    responses.forEach((response, index) => {
      if (index % 3 === 1) {
        expect(response).toEqual({ ErrorCode: 'ServiceUnavailableException', ErrorMessage: 'Slow down.' });
      } else {
        expect(response.ErrorCode).toBeUndefined();
        expect(response.RecordId).toMatch(/^[A-Za-z0-9+/=]{56,}$/);
      }
    });
    expect(responses.filter((r) => r.RecordId).map((r) => r.RecordId)).toEqual(backend.acknowledged.map((r) => r.recordId));
  });

  it('answers ServiceUnavailableException (500) when the backend throws, acknowledging nothing', async () => {
    backend.override = async () => {
      throw new Error('buffer store unavailable');
    };
    await expectAwsError(firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: records(3) })), {
      name: 'ServiceUnavailableException',
      status: 500,
      message: /buffer store unavailable/,
    });
  });

  it('lets the SDK retry a call the backend failed, so the records arrive', async () => {
    let failuresLeft = 1;
    backend.override = async (batch) => {
      if (failuresLeft-- > 0) throw new Error('transient');
      return batch.map(() => ({ ok: true }));
    };
    const retrying = newClient(3);
    try {
      const result = await retrying.send(new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: records(2) }));
      expect(result.FailedPutCount).toBe(0);
      expect(result.$metadata.attempts).toBe(2);
      expect(backend.ingestCalls).toBe(2);
    } finally {
      retrying.destroy();
    }
  });

  it('treats a backend answering the wrong number of results as a failure of the whole call', async () => {
    backend.override = async () => [{ ok: true }];
    await expectAwsError(firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: records(2) })), {
      name: 'ServiceUnavailableException',
      status: 500,
    });
  });

  it('refuses a KinesisStreamAsSource stream and an unknown stream', async () => {
    await expectAwsError(firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: KINESIS_SOURCED.name, Records: records(1) })), {
      name: 'InvalidArgumentException',
      status: 400,
      message: 'This operation is not permitted on KinesisStreamAsSource delivery stream type.',
    });
    await expectAwsError(firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: 'missing', Records: records(1) })), {
      name: 'ResourceNotFoundException',
      status: 400,
      message: `Firehose missing under account ${ACCOUNT} not found.`,
    });
    expect(backend.ingestCalls).toBe(0);
  });

  it('delivers any byte strings to the backend unchanged and in order (property)', async () => {
    const record = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ minLength: 1000, maxLength: 5000 }),
      fc.string({ unit: 'binary' }).map((s) => new TextEncoder().encode(s)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(record, { minLength: 1, maxLength: 40 }), async (datas) => {
        backend.reset();
        const result = await firehose.send(
          new PutRecordBatchCommand({ DeliveryStreamName: DIRECT_PUT.name, Records: datas.map((Data) => ({ Data })) }),
        );
        expect(result.FailedPutCount).toBe(0);
        expect(backend.acknowledged.map((r) => r.data.toString('hex'))).toEqual(datas.map((d) => Buffer.from(d).toString('hex')));
        expect(result.RequestResponses!.map((r) => r.RecordId)).toEqual(backend.acknowledged.map((r) => r.recordId));
      }),
      { numRuns: 60 },
    );
  });
});

describe('DescribeDeliveryStream', () => {
  it('describes a DirectPut stream', async () => {
    const { DeliveryStreamDescription: description } = await firehose.send(
      new DescribeDeliveryStreamCommand({ DeliveryStreamName: DIRECT_PUT.name }),
    );
    expect(description).toEqual({
      DeliveryStreamName: DIRECT_PUT.name,
      DeliveryStreamARN: DIRECT_PUT.arn,
      DeliveryStreamStatus: 'ACTIVE',
      DeliveryStreamType: 'DirectPut',
      DeliveryStreamEncryptionConfiguration: { Status: 'DISABLED' },
      VersionId: '1',
      CreateTimestamp: CREATED_AT,
      Destinations: DIRECT_PUT.destinations,
      HasMoreDestinations: false,
    });
  });

  it('describes a Kinesis-sourced stream with its source', async () => {
    const { DeliveryStreamDescription: description } = await firehose.send(
      new DescribeDeliveryStreamCommand({ DeliveryStreamName: KINESIS_SOURCED.name }),
    );
    expect(description?.DeliveryStreamType).toBe('KinesisStreamAsSource');
    expect(description?.VersionId).toBe('3');
    expect(description?.Source).toEqual({
      KinesisStreamSourceDescription: {
        KinesisStreamARN: KINESIS_SOURCED.sourceStreamArn,
        RoleARN: KINESIS_SOURCED.sourceRoleArn,
        DeliveryStartTimestamp: CREATED_AT,
      },
    });
    expect(description?.Destinations).toEqual(KINESIS_SOURCED.destinations);
  });

  it('pages destinations with Limit and ExclusiveStartDestinationId', async () => {
    const first = await firehose.send(new DescribeDeliveryStreamCommand({ DeliveryStreamName: KINESIS_SOURCED.name, Limit: 1 }));
    expect(first.DeliveryStreamDescription?.Destinations?.map((d) => d.DestinationId)).toEqual(['destinationId-000000000001']);
    expect(first.DeliveryStreamDescription?.HasMoreDestinations).toBe(true);
    const rest = await firehose.send(
      new DescribeDeliveryStreamCommand({ DeliveryStreamName: KINESIS_SOURCED.name, ExclusiveStartDestinationId: 'destinationId-000000000001' }),
    );
    expect(rest.DeliveryStreamDescription?.Destinations?.map((d) => d.DestinationId)).toEqual(['destinationId-000000000002']);
    expect(rest.DeliveryStreamDescription?.HasMoreDestinations).toBe(false);
  });

  it('answers ResourceNotFoundException for an unknown stream and ValidationException for a malformed name', async () => {
    await expectAwsError(firehose.send(new DescribeDeliveryStreamCommand({ DeliveryStreamName: 'ghost' })), {
      name: 'ResourceNotFoundException',
      status: 400,
      message: `Firehose ghost under account ${ACCOUNT} not found.`,
    });
    await expectAwsError(firehose.send(new DescribeDeliveryStreamCommand({ DeliveryStreamName: 'bad name!' })), {
      name: 'ValidationException',
      status: 400,
      message: "1 validation error detected: Value 'bad name!' at 'deliveryStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
    });
  });
});

describe('ListDeliveryStreams', () => {
  const allNames = [DIRECT_PUT, KINESIS_SOURCED, ...MORE_STREAMS].map((s) => s.name).sort();

  it('lists names alphabetically, ten by default', async () => {
    const result = await firehose.send(new ListDeliveryStreamsCommand({}));
    expect(result).toMatchObject({ DeliveryStreamNames: allNames, HasMoreDeliveryStreams: false });
  });

  it('pages with Limit and ExclusiveStartDeliveryStreamName', async () => {
    const first = await firehose.send(new ListDeliveryStreamsCommand({ Limit: 2 }));
    expect(first.DeliveryStreamNames).toEqual(allNames.slice(0, 2));
    expect(first.HasMoreDeliveryStreams).toBe(true);
    const next = await firehose.send(new ListDeliveryStreamsCommand({ Limit: 2, ExclusiveStartDeliveryStreamName: first.DeliveryStreamNames![1] }));
    expect(next.DeliveryStreamNames).toEqual(allNames.slice(2, 4));
    const last = await firehose.send(new ListDeliveryStreamsCommand({ Limit: 2, ExclusiveStartDeliveryStreamName: next.DeliveryStreamNames![1] }));
    expect(last.DeliveryStreamNames).toEqual(allNames.slice(4));
    expect(last.HasMoreDeliveryStreams).toBe(false);
  });

  it('filters by DeliveryStreamType', async () => {
    const direct = await firehose.send(new ListDeliveryStreamsCommand({ DeliveryStreamType: 'DirectPut' }));
    expect(direct.DeliveryStreamNames).toEqual(['a-first', DIRECT_PUT.name]);
    const msk = await firehose.send(new ListDeliveryStreamsCommand({ DeliveryStreamType: 'MSKAsSource' }));
    expect(msk.DeliveryStreamNames).toEqual([]);
  });

  it('rejects a Limit outside 1–10000 with ValidationException', async () => {
    await expectAwsError(firehose.send(new ListDeliveryStreamsCommand({ Limit: 0 })), {
      name: 'ValidationException',
      status: 400,
      message: "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1",
    });
    await expectAwsError(firehose.send(new ListDeliveryStreamsCommand({ Limit: 10001 })), {
      name: 'ValidationException',
      status: 400,
      message: /Member must have value less than or equal to 10000$/,
    });
    const max = await firehose.send(new ListDeliveryStreamsCommand({ Limit: 10000 }));
    expect(max.DeliveryStreamNames).toEqual(allNames);
  });
});

describe('raw HTTP', () => {
  it('refuses what a web page sends (a CORS preflight, an Origin, a rebinding Host) and takes nothing from it; the SDK goes on', async () => {
    const port = Number(new URL(api.url).port);
    expect(await webPageCases(port, 'Firehose_20150804.ListDeliveryStreams')).toEqual(refusedWebPages(200));
    // A put from a page is refused before anything is read, let alone acknowledged.
    const put = '{"DeliveryStreamName":"sluice-dev-app-events-lake","Record":{"Data":"e30="}}';
    const page = awsJsonRequest(port, 'Firehose_20150804.PutRecord', 'Origin: https://evil.example\r\n').replace('Content-Length: 2\r\n\r\n{}', `Content-Length: ${put.length}\r\n\r\n${put}`);
    expect((await rawExchange(port, [page], 1)).map((r) => r.status)).toEqual([403]);
    expect(backend.ingestCalls).toBe(0);
  });

  it('stamps every response with x-amzn-RequestId and the AWS JSON 1.1 content type', async () => {
    const response = await rawRequest({ headers: jsonHeaders('ListDeliveryStreams'), body: '{}' });
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe('application/x-amz-json-1.1');
    expect(response.headers['x-amzn-requestid']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers SerializationException for malformed JSON', async () => {
    const response = await rawRequest({ headers: jsonHeaders('PutRecord'), body: '{"DeliveryStreamName": "x", "Record": {' });
    expectAwsJsonError(response, 400, 'SerializationException');
    expect(backend.ingestCalls).toBe(0);
  });

  it('reads a large body as JSON reads it (whitespace, escapes) and answers SerializationException when one byte breaks it', async () => {
    // Over 60 KB, so read in pieces; `\/` is a legal escape for the `/` of base64.
    const data = Array.from({ length: 400 }, (_, i) => Buffer.from(`record ${i} ${'?'.repeat(300)}`).toString('base64'));
    expect(data[0]).toContain('/');
    const records = data.map((d) => `{ "Data" :\n "${d.replace(/\//g, '\\/')}" }`);
    const body = `{\r\n  "Records": [ ${records.join(' ,\n ')} ],\t"DeliveryStreamName": "${DIRECT_PUT.name}"\n}\n`;
    expect(body.length).toBeGreaterThan(100_000);
    const response = await rawRequest({ headers: jsonHeaders('PutRecordBatch'), body });
    expect(response.status).toBe(200);
    expect(backend.acknowledged.map((r) => r.data.toString())).toEqual(data.map((d) => Buffer.from(d, 'base64').toString()));

    backend.reset();
    const broken = body.replace('"Data" :\n "', '"Data" :\n "\u0001');
    expectAwsJsonError(await rawRequest({ headers: jsonHeaders('PutRecordBatch'), body: broken }), 400, 'SerializationException');
    expect(backend.ingestCalls).toBe(0);
  });

  it('answers SerializationException at once for megabytes of nested brackets, which JSON.parse would take seconds over while the twin answers nobody', async () => {
    const levels = 2_000_000;
    const body = `{"DeliveryStreamName": "${DIRECT_PUT.name}", "Records": [{"Data": ${'['.repeat(levels)}${']'.repeat(levels)}}]}`;
    const response = await rawRequest({ headers: jsonHeaders('PutRecordBatch'), body });
    expectAwsJsonError(response, 400, 'SerializationException');
    expect(response.json.message).toBe(`Request body is not valid JSON: JSON nested deeper than ${MAX_NESTING} levels.`);
    expect(backend.ingestCalls).toBe(0);
  });

  it('answers SerializationException for a body that is not a JSON object, or members of the wrong type', async () => {
    expectAwsJsonError(await rawRequest({ headers: jsonHeaders('PutRecord'), body: '[1,2]' }), 400, 'SerializationException');
    expectAwsJsonError(
      await rawRequest({ headers: jsonHeaders('PutRecordBatch'), body: JSON.stringify({ DeliveryStreamName: DIRECT_PUT.name, Records: { Data: 'YQ==' } }) }),
      400,
      'SerializationException',
    );
    expectAwsJsonError(await rawRequest({ headers: jsonHeaders('ListDeliveryStreams'), body: '{"Limit": "10"}' }), 400, 'SerializationException');
    // A number past double's range reads as Infinity: the message names it so, not as JSON's null.
    const infinite = await rawRequest({ headers: jsonHeaders('ListDeliveryStreams'), body: '{"Limit": 1e309}' });
    expectAwsJsonError(infinite, 400, 'SerializationException');
    expect(infinite.json.message).toBe('Limit must be a JSON integer, got a number (Infinity).');
  });

  it('answers SerializationException for Data that is not valid base64', async () => {
    for (const data of ['not base64!', 'YQ=x', 'Y', 'YQ===']) {
      const response = await rawRequest({
        headers: jsonHeaders('PutRecordBatch'),
        body: JSON.stringify({ DeliveryStreamName: DIRECT_PUT.name, Records: [{ Data: 'YQ==' }, { Data: data }] }),
      });
      expectAwsJsonError(response, 400, 'SerializationException');
      expect(response.json.message).toContain('Records[1].Data');
    }
    expect(backend.ingestCalls).toBe(0);
  });

  it('accepts unpadded base64', async () => {
    const response = await rawRequest({ headers: jsonHeaders('PutRecord'), body: JSON.stringify({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: 'aGk' } }) });
    expect(response.status).toBe(200);
    expect(backend.acknowledged[0].data.toString()).toBe('hi');
  });

  it('answers ValidationException for missing required members', async () => {
    const response = await rawRequest({ headers: jsonHeaders('PutRecord'), body: '{}' });
    expectAwsJsonError(response, 400, 'ValidationException');
    expect(response.json.message).toBe(
      "2 validation errors detected: Value null at 'deliveryStreamName' failed to satisfy constraint: Member must not be null; " +
        "Value null at 'record' failed to satisfy constraint: Member must not be null",
    );
  });

  it('answers UnknownOperationException without an X-Amz-Target header, with another service’s, or for an unsupported operation', async () => {
    expectAwsJsonError(await rawRequest({ headers: { 'Content-Type': 'application/x-amz-json-1.1' }, body: '{}' }), 400, 'UnknownOperationException');
    expectAwsJsonError(
      await rawRequest({ headers: { ...jsonHeaders('x'), 'X-Amz-Target': 'Kinesis_20131202.PutRecord' }, body: '{}' }),
      400,
      'UnknownOperationException',
    );
    const unsupported = await rawRequest({ headers: jsonHeaders('CreateDeliveryStream'), body: '{}' });
    expectAwsJsonError(unsupported, 400, 'UnknownOperationException');
    expect(unsupported.json.message).toContain('CreateDeliveryStream');
  });

  it('answers 405 to methods other than POST', async () => {
    const response = await rawRequest({ method: 'GET', headers: jsonHeaders('ListDeliveryStreams') });
    expectAwsJsonError(response, 405, 'UnknownOperationException');
    expect(response.headers.allow).toBe('POST');
  });

  it('answers 413 to a body over 8 MiB, declared or streamed, and stays up', async () => {
    const oversized = Buffer.alloc(8 * 1024 * 1024 + 1, 0x20);
    const declared = await rawRequest({ headers: { ...jsonHeaders('PutRecordBatch'), 'Content-Length': String(oversized.length) }, body: oversized });
    expectAwsJsonError(declared, 413, 'RequestEntityTooLargeException');

    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    const streamed = await rawRequest({ headers: jsonHeaders('PutRecordBatch'), chunks: Array.from({ length: 9 }, () => chunk) });
    expectAwsJsonError(streamed, 413, 'RequestEntityTooLargeException');

    const after = await firehose.send(new ListDeliveryStreamsCommand({}));
    expect(after.$metadata.httpStatusCode).toBe(200);
    expect(backend.ingestCalls).toBe(0);
  });

  it('answers an SDK PutRecordBatch of ~60 MB with the 413, once, not a broken pipe it retries', async () => {
    // 45 records of 1,000,000 bytes: ~60 MB of base64 JSON, past the 4 × 8 MiB the endpoint once read before closing.
    const retrying = newClient(3);
    try {
      const error = await retrying.send(new PutRecordBatchCommand({
        DeliveryStreamName: DIRECT_PUT.name,
        Records: Array.from({ length: 45 }, () => ({ Data: bytes(1_000_000) })),
      })).then(() => undefined, (e: unknown) => e as { name: string; $metadata: { httpStatusCode?: number; attempts?: number } });
      expect(error).toMatchObject({ name: 'RequestEntityTooLargeException', $metadata: { httpStatusCode: 413, attempts: 1 } });
      // The connection was read to its end, so the same client goes on using it.
      expect((await retrying.send(new ListDeliveryStreamsCommand({}))).$metadata.httpStatusCode).toBe(200);
    } finally {
      retrying.destroy();
    }
    expect(backend.ingestCalls).toBe(0);
  }, 60_000);

  it('reads an oversized body to its end, keeping none of it, before it answers 413: the sender never meets a closed connection', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    const length = 160 * chunk.length;
    const url = new URL(api.url);
    const baseline = process.memoryUsage().arrayBuffers;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers);
    }, 5);
    try {
      const outcome = await new Promise<{ status: number; sent: number; uploadError?: string }>((resolve) => {
        let status = 0;
        let sent = 0;
        let uploadError: string | undefined;
        const req = httpRequest(
          { host: url.hostname, port: url.port, path: '/', method: 'POST', agent: false, headers: { ...jsonHeaders('PutRecordBatch'), 'Content-Length': String(length) } },
          (res) => {
            status = res.statusCode ?? 0;
            res.resume();
          },
        );
        req.on('error', (error: NodeJS.ErrnoException) => {
          uploadError = error.code ?? error.message;
        });
        req.on('close', () => resolve({ status, sent, uploadError }));
        // The same chunk again and again, written as the socket drains: the sender holds 1 MiB at a time.
        const writeMore = (): void => {
          while (sent < length) {
            if (uploadError) return;
            sent += chunk.length;
            if (!req.write(chunk)) {
              req.once('drain', writeMore);
              return;
            }
          }
          req.end();
        };
        writeMore();
      });
      // Before, a body declared past 32 MiB had its connection closed unread: EPIPE or ECONNRESET here.
      expect(outcome).toEqual({ status: 413, sent: length, uploadError: undefined });
    } finally {
      clearInterval(sampler);
    }
    // Kept, the body would be 160 MiB; discarded, what is left is chunks the GC has not reclaimed yet (~32 MiB).
    expect(peak - baseline).toBeLessThan(64 * 1024 * 1024);
  }, 60_000);

  it('refuses a declared huge body without reading it', async () => {
    const url = new URL(api.url);
    const response = await new Promise<RawResponse>((resolve, reject) => {
      const req = httpRequest(
        { host: url.hostname, port: url.port, path: '/', method: 'POST', agent: false, headers: { ...jsonHeaders('PutRecord'), 'Content-Length': String(2 ** 30) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            req.destroy();
            try {
              resolve({ status: res.statusCode ?? 0, headers: res.headers, json: JSON.parse(Buffer.concat(chunks).toString()) });
            } catch (error) {
              reject(error);
            }
          });
        },
      );
      req.on('error', reject);
      req.flushHeaders(); // send the headers, then never the gigabyte
    });
    expectAwsJsonError(response, 413, 'RequestEntityTooLargeException');
  });

  it('refuses an oversized body announced with Expect: 100-continue before it is sent', async () => {
    const url = new URL(api.url);
    const outcome = await new Promise<{ status: number; continued: boolean }>((resolve, reject) => {
      let continued = false;
      const req = httpRequest({
        host: url.hostname,
        port: url.port,
        path: '/',
        method: 'POST',
        agent: false,
        headers: { ...jsonHeaders('PutRecordBatch'), 'Content-Length': String(9 * 1024 * 1024), Expect: '100-continue' },
      });
      req.on('continue', () => {
        continued = true;
      });
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, continued }));
        req.destroy();
      });
      req.on('error', (error) => (continued ? undefined : reject(error)));
      req.flushHeaders();
    });
    expect(outcome).toEqual({ status: 413, continued: false });
  });
});

describe('Lambda Invoke of the twin\'s functions', () => {
  /** A Firehose API with no delivery streams whose backend runs functions with `invokeFunction`. */
  const apiWithFunctions = (invokeFunction: NonNullable<FirehoseBackend['invokeFunction']>) => startFirehoseApi({
    port: 0,
    backend: { listDeliveryStreams: () => [], findDeliveryStream: () => undefined, ingest: async () => [], invokeFunction },
  });

  test('runs the named function with the payload as its event; a function error, an unknown function and a non-JSON payload answer as Lambda does', async () => {
    const seen: unknown[] = [];
    const ownApi = await apiWithFunctions(async (name, payload) => {
      seen.push(payload);
      if (name === 'consumer') return { payload: { batchItemFailures: [] } };
      if (name === 'failing') return { functionError: 'Unhandled', payload: { errorType: 'Error', errorMessage: 'boom' } };
      return undefined;
    });
    const lambda = lambdaClient(ownApi.url, { maxAttempts: 1 });
    try {
      const invoke = (name: string, payload: string) => lambda.send(new InvokeCommand({ FunctionName: name, Payload: Buffer.from(payload) }));
      const ok = await invoke('consumer', '{"Records":[]}');
      expect(JSON.parse(Buffer.from(ok.Payload!).toString())).toEqual({ batchItemFailures: [] });
      expect(ok.FunctionError).toBeUndefined();
      expect(seen).toEqual([{ Records: [] }]);
      const failed = await invoke('failing', '{}');
      expect(failed.FunctionError).toBe('Unhandled');
      expect(JSON.parse(Buffer.from(failed.Payload!).toString())).toEqual({ errorType: 'Error', errorMessage: 'boom' });
      await expect(invoke('nobody', '{}')).rejects.toMatchObject({ name: 'ResourceNotFoundException', $metadata: { httpStatusCode: 404 } });
      await expect(invoke('consumer', '{"Records"')).rejects.toMatchObject({ name: 'InvalidRequestContentException' });
      expect(seen).toHaveLength(3);
    } finally {
      lambda.destroy();
      await ownApi.close();
    }
  });

  test('a body over Lambda\'s 6 MB request limit is answered as Lambda does (413 RequestEntityTooLargeException), unread past it, the function not run', async () => {
    let invoked = 0;
    const ownApi = await apiWithFunctions(async () => {
      invoked++;
      return { payload: null };
    });
    const lambda = lambdaClient(ownApi.url, { maxAttempts: 1 });
    const message = 'Request must be smaller than 6291456 bytes for the InvokeFunction operation';
    try {
      // A JSON string of `bytes` bytes in all.
      const invoke = (bytes: number) => lambda.send(new InvokeCommand({ FunctionName: 'consumer', Payload: Buffer.from(`"${'x'.repeat(bytes - 2)}"`) }));
      expect((await invoke(6_291_456)).StatusCode).toBe(200);
      expect(invoked).toBe(1);
      // One byte over, and over the Firehose API's own 8 MiB (which answered Firehose's error before): Lambda's answer both times.
      for (const bytes of [6_291_457, 9 * 1024 * 1024]) {
        await expect(invoke(bytes)).rejects.toMatchObject({ name: 'RequestEntityTooLargeException', message, $metadata: { httpStatusCode: 413 } });
      }
      // A body declared far larger is answered at once, without reading it (none is sent), its connection closed.
      const head = 'POST /2015-03-31/functions/consumer/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n';
      for (const expect100 of ['', 'Expect: 100-continue\r\n']) {
        const [answer] = await rawExchange(ownApi.port, [`${head}${expect100}Content-Length: 1073741824\r\n\r\n`], 1);
        expect({ expect100, status: answer.status, body: JSON.parse(answer.body) as unknown }).toEqual({ expect100, status: 413, body: { Type: 'User', Message: message } });
        expect(answer.headers).toContain('\r\nx-amzn-errortype: requestentitytoolargeexception\r\n');
        expect(answer.headers).toContain('\r\nconnection: close');
      }
      expect(invoked).toBe(1);
    } finally {
      lambda.destroy();
      await ownApi.close();
    }
  });

  test('a function name whose %-escapes do not decode is answered (400 ValidationException), not cut off without an answer', async () => {
    const invoked: string[] = [];
    const ownApi = await apiWithFunctions(async (name) => {
      invoked.push(name);
      return { payload: null };
    });
    try {
      const request = (name: string) => `POST /2015-03-31/functions/${name}/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`;
      const [broken] = await rawExchange(ownApi.port, [request('%E0%A4%A')], 1);
      expect(broken.status).toBe(400);
      expect(broken.headers).toContain('\r\nx-amzn-errortype: validationexception\r\n');
      expect(JSON.parse(broken.body)).toEqual({ Type: 'User', Message: 'The function name in the path (%E0%A4%A) is not URL-encoded UTF-8: encode the name with encodeURIComponent.' });
      // An escaped name that decodes still reaches the function.
      expect((await rawExchange(ownApi.port, [request('my%2Dconsumer')], 1)).map((r) => r.status)).toEqual([200]);
      expect(invoked).toEqual(['my-consumer']);
    } finally {
      await ownApi.close();
    }
  });
  /**
   * `aws lambda invoke` (AWS CLI v1 / botocore 1.43) as it was captured: each request is the one it sends for
   * --invocation-type DryRun, --invocation-type Event, and a function ARN with --qualifier '$LATEST' (`pathName` is
   * the encoded name, then the query if any).
   */
  const botocoreInvoke = (port: number, pathName: string, extra: string, body: string) => [
    `POST /2015-03-31/functions/${pathName.replace(/\?.*/, '')}/invocations${/\?.*/.exec(pathName)?.[0] ?? ''} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    'Accept-Encoding: identity',
    ...extra === '' ? [] : [extra],
    'User-Agent: aws-cli/1.45.11 md/Botocore#1.43.11 ua/2.1 os/linux#6.18.44 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython cfg/retry-mode#legacy botocore/1.43.11',
    'X-Amz-Date: 20261206T094010Z',
    `Authorization: AWS4-HMAC-SHA256 Credential=x/20261206/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date${extra === '' ? '' : ';x-amz-invocation-type'}, Signature=${'0'.repeat(64)}`,
    'amz-sdk-invocation-id: 3a4f071b-5e20-46f7-b271-91fbe26e25b8',
    'amz-sdk-request: attempt=1',
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ].join('\r\n');

  test('X-Amz-Invocation-Type as Lambda reads it: DryRun answers 204 without running the function, Event 202 without a payload, another type 400', async () => {
    const invoked: unknown[] = [];
    const ownApi = await startFirehoseApi({
      port: 0,
      backend: {
        listDeliveryStreams: () => [], findDeliveryStream: () => undefined, ingest: async () => [],
        invokeFunction: async (name, payload) => {
          if (name !== 'consumer') return undefined;
          invoked.push(payload);
          return { payload: { batchItemFailures: [] } };
        },
        hasFunction: (name) => name === 'consumer',
      },
    });
    try {
      const exchange = async (name: string, type: string, body: string) => (await rawExchange(ownApi.port, [botocoreInvoke(ownApi.port, name, `X-Amz-Invocation-Type: ${type}`, body)], 1))[0];
      const dryRun = await exchange('consumer', 'DryRun', '');
      expect({ status: dryRun.status, body: dryRun.body }).toEqual({ status: 204, body: '' });
      // RFC 9110: no Content-Length (nor Transfer-Encoding) on a 204.
      expect(dryRun.headers).not.toMatch(/\r\n(content-length|transfer-encoding):/);
      expect(invoked).toEqual([]);
      const dryRunMissing = await exchange('nobody', 'DryRun', '');
      expect(dryRunMissing.status).toBe(404);
      expect(dryRunMissing.headers).toContain('\r\nx-amzn-errortype: resourcenotfoundexception\r\n');

      const event = await exchange('consumer', 'Event', '{"Records":[]}');
      expect({ status: event.status, body: event.body }).toEqual({ status: 202, body: '' });
      expect(invoked).toEqual([{ Records: [] }]);

      const other = await exchange('consumer', 'Sometimes', '{}');
      expect(other.status).toBe(400);
      expect(other.headers).toContain('\r\nx-amzn-errortype: validationexception\r\n');
      expect(JSON.parse(other.body)).toEqual({ Type: 'User', Message: "1 validation error detected: Value 'Sometimes' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]" });
      expect(invoked).toHaveLength(1);
    } finally {
      await ownApi.close();
    }
  });

  test('a function ARN or partial ARN names the function, as in Lambda; $LATEST runs it, another qualifier or account is not found', async () => {
    const invoked: string[] = [];
    const ownApi = await apiWithFunctions(async (name) => {
      if (name !== 'consumer') return undefined;
      invoked.push(name);
      return { payload: { batchItemFailures: [] } };
    });
    try {
      const exchange = async (pathName: string) => (await rawExchange(ownApi.port, [botocoreInvoke(ownApi.port, pathName, '', '{"Records":[]}')], 1))[0];
      const arn = 'arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Aconsumer';
      for (const pathName of [`${arn}?Qualifier=%24LATEST`, arn, '000000000000%3Afunction%3Aconsumer', 'consumer%3A%24LATEST']) {
        const answer = await exchange(pathName);
        expect({ pathName, status: answer.status, body: answer.body }).toEqual({ pathName, status: 200, body: '{"batchItemFailures":[]}' });
      }
      expect(invoked).toHaveLength(4);
      const notFound = async (pathName: string) => {
        const answer = await exchange(pathName);
        return { status: answer.status, type: /\r\nx-amzn-errortype: (\S+)/.exec(answer.headers)?.[1], message: (JSON.parse(answer.body) as { Message: string }).Message };
      };
      expect(await notFound(`${arn}?Qualifier=live`)).toEqual({
        status: 404, type: 'resourcenotfoundexception',
        message: 'Function not found: arn:aws:lambda:us-east-1:000000000000:function:consumer:live (the local twin runs each function\'s $LATEST only: it has no versions or aliases)',
      });
      expect(await notFound('consumer%3A7')).toMatchObject({ status: 404, message: expect.stringContaining('Function not found: consumer:7 ') });
      expect(await notFound('111111111111%3Afunction%3Aconsumer')).toEqual({
        status: 404, type: 'resourcenotfoundexception',
        message: 'Function not found: 111111111111:function:consumer (the local twin\'s functions are in account 000000000000)',
      });
      expect(invoked).toHaveLength(4);
    } finally {
      await ownApi.close();
    }
  });

  test('X-Amz-Log-Type: Tail answers X-Amz-Log-Result, the base64 of the last 4 KB of the invocation\'s log; None or none gives none, another value 400', async () => {
    const requestIds: string[] = [];
    const logAsked: boolean[] = [];
    // 5,000 bytes of log, ending in a two-byte character: the tail is its last 4,096 bytes, cut at a byte as Lambda cuts it.
    const log = `START\n${'a'.repeat(4_990)}\né\n`;
    const ownApi = await apiWithFunctions(async (_name, _payload, invocation) => {
      requestIds.push(invocation!.requestId);
      logAsked.push(invocation!.logTail === true);
      return { payload: { batchItemFailures: [] }, log };
    });
    const lambda = lambdaClient(ownApi.url, { maxAttempts: 1 });
    try {
      const invoke = (LogType?: 'Tail' | 'None') => lambda.send(new InvokeCommand({ FunctionName: 'consumer', Payload: Buffer.from('{}'), LogType }));
      const tailed = await invoke('Tail');
      expect(Buffer.from(tailed.LogResult!, 'base64')).toEqual(Buffer.from(log).subarray(5_000 - 4_096));
      expect(Buffer.byteLength(log)).toBe(5_000);
      expect(JSON.parse(Buffer.from(tailed.Payload!).toString())).toEqual({ batchItemFailures: [] });
      expect((await invoke('None')).LogResult).toBeUndefined();
      expect((await invoke()).LogResult).toBeUndefined();
      // The function is told the request id the answer carries (Lambda's log lines name it).
      expect(requestIds).toHaveLength(3);
      expect(new Set(requestIds).size).toBe(3);
      // And whether the caller asked for the log, so that a function keeps one only then.
      expect(logAsked).toEqual([true, false, false]);

      const exchange = async (headers: string) => (await rawExchange(ownApi.port, [botocoreInvoke(ownApi.port, 'consumer', headers, '{}')], 1))[0];
      const short = await exchange('X-Amz-Log-Type: Tail');
      expect(short.headers).toContain(`\r\nx-amzn-requestid: ${requestIds[3]}\r\n`);
      // Asynchronous: Lambda returns no log.
      const event = await exchange('X-Amz-Invocation-Type: Event\r\nX-Amz-Log-Type: Tail');
      expect(event.status).toBe(202);
      expect(event.headers).not.toMatch(/\r\nx-amz-log-result:/i);
      expect(logAsked.slice(3)).toEqual([true, false]);
      const other = await exchange('X-Amz-Log-Type: Verbose');
      expect(other.status).toBe(400);
      expect(other.headers).toContain('\r\nx-amzn-errortype: validationexception\r\n');
      expect(JSON.parse(other.body)).toEqual({ Type: 'User', Message: "1 validation error detected: Value 'Verbose' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]" });
      expect(requestIds).toHaveLength(5);
    } finally {
      lambda.destroy();
      await ownApi.close();
    }
  });

  test('an Event invocation\'s body over Lambda\'s 1 MB asynchronous limit is answered 413 RequestEntityTooLargeException in Lambda\'s words for it, the function not run; a synchronous one keeps 6 MB', async () => {
    let invoked = 0;
    const ownApi = await apiWithFunctions(async () => {
      invoked++;
      return { payload: null };
    });
    const lambda = lambdaClient(ownApi.url, { maxAttempts: 1 });
    try {
      const invoke = (bytes: number, InvocationType: 'Event' | 'RequestResponse') =>
        lambda.send(new InvokeCommand({ FunctionName: 'consumer', InvocationType, Payload: Buffer.from(`"${'x'.repeat(bytes - 2)}"`) }));
      expect((await invoke(1_048_576, 'Event')).StatusCode).toBe(202);
      // Lambda's words for an Event payload over its limit name the payload's size (an Event of 264,496 bytes, when the
      // limit was 256 KB: "264496 byte payload is too large for the Event invocation type (limit 262144 bytes)").
      await expect(invoke(1_048_577, 'Event')).rejects.toMatchObject({
        name: 'RequestEntityTooLargeException', message: '1048577 byte payload is too large for the Event invocation type (limit 1048576 bytes)', $metadata: { httpStatusCode: 413 },
      });
      await expect(invoke(3_000_000, 'Event')).rejects.toMatchObject({
        name: 'RequestEntityTooLargeException', message: '3000000 byte payload is too large for the Event invocation type (limit 1048576 bytes)',
      });
      // Over 6 MB, any invocation type: the request limit's words.
      await expect(invoke(6_291_457, 'Event')).rejects.toMatchObject({
        name: 'RequestEntityTooLargeException', message: 'Request must be smaller than 6291456 bytes for the InvokeFunction operation',
      });
      expect(invoked).toBe(1);
      expect((await invoke(1_048_577, 'RequestResponse')).StatusCode).toBe(200);
      expect(invoked).toBe(2);
      // Declared larger than 1 MB and waiting for 100 Continue: answered at once.
      const [answer] = await rawExchange(ownApi.port, [
        'POST /2015-03-31/functions/consumer/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Invocation-Type: Event\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n',
      ], 1);
      expect({ status: answer.status, body: JSON.parse(answer.body) as unknown }).toEqual({
        status: 413, body: { Type: 'User', Message: '2000000 byte payload is too large for the Event invocation type (limit 1048576 bytes)' },
      });
      expect(invoked).toBe(2);
    } finally {
      lambda.destroy();
      await ownApi.close();
    }
  });

  test('a qualifier in the name that differs from ?Qualifier= is refused (400 InvalidParameterValueException), and an ARN of another region is not found, as Lambda answers them', async () => {
    const invoked: string[] = [];
    const ownApi = await startFirehoseApi({
      port: 0, region: 'eu-west-1',
      backend: {
        listDeliveryStreams: () => [], findDeliveryStream: () => undefined, ingest: async () => [],
        invokeFunction: async (name) => {
          invoked.push(name);
          return name === 'consumer' ? { payload: null } : undefined;
        },
      },
    });
    try {
      const answer = async (pathName: string) => {
        const [a] = await rawExchange(ownApi.port, [botocoreInvoke(ownApi.port, pathName, '', '{}')], 1);
        return { status: a.status, type: /\r\nx-amzn-errortype: (\S+)/.exec(a.headers)?.[1], message: a.status === 200 ? undefined : (JSON.parse(a.body) as { Message: string }).Message };
      };
      const arn = (region: string, qualifier = '') => `arn%3Aaws%3Alambda%3A${region}%3A000000000000%3Afunction%3Aconsumer${qualifier}`;
      const mismatch = { status: 400, type: 'invalidparametervalueexception', message: 'The derived qualifier from the function name does not match the specified qualifier.' };
      expect(await answer('consumer%3A%24LATEST?Qualifier=live')).toEqual(mismatch);
      expect(await answer(`${arn('eu-west-1', '%3Alive')}?Qualifier=%24LATEST`)).toEqual(mismatch);
      expect(await answer(`${arn('eu-west-1')}?Qualifier=%24LATEST`)).toEqual({ status: 200, type: undefined, message: undefined });
      expect(await answer(`consumer%3A%24LATEST?Qualifier=%24LATEST`)).toEqual({ status: 200, type: undefined, message: undefined });
      expect(await answer(arn('us-east-1'))).toEqual({
        status: 404, type: 'resourcenotfoundexception', message: "Functions from 'us-east-1' are not reachable in this region ('eu-west-1')",
      });
      expect(invoked).toEqual(['consumer', 'consumer']);
    } finally {
      await ownApi.close();
    }
  });
});

describe('close()', () => {
  it('stops accepting connections and waits for requests in flight, whose records are acknowledged', async () => {
    const ownBackend = new InMemoryBackend([DIRECT_PUT]);
    const ownApi = await startFirehoseApi({ port: 0, backend: ownBackend });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const ingestStarted = new Promise<void>((resolve) => (entered = resolve));
    ownBackend.override = async (records) => {
      entered();
      await held;
      return records.map(() => ({ ok: true }));
    };
    const client = new FirehoseClient({
      endpoint: ownApi.url,
      region: REGION,
      credentials: { accessKeyId: 'AKIDLOCALTWIN', secretAccessKey: 'local-secret' },
      maxAttempts: 1,
      requestHandler: new NodeHttpHandler(),
    });
    try {
      const put = client.send(new PutRecordCommand({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: bytes(4) } }));
      await ingestStarted;
      let closed = false;
      const closing = ownApi.close().then(() => {
        closed = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(closed).toBe(false);
      await expect(rawConnect(ownApi.port)).rejects.toThrow(/ECONNREFUSED/);

      release();
      const result = await put;
      expect(result.RecordId).toBeDefined();
      await closing;
      expect(closed).toBe(true);
    } finally {
      release();
      client.destroy();
      await ownApi.close();
    }
  });

  it('cuts off a body still trickling in after a short grace, so close() ends; nothing of it was acknowledged', async () => {
    const ownBackend = new InMemoryBackend([DIRECT_PUT]);
    const ownApi = await startFirehoseApi({ port: 0, backend: ownBackend });
    // A valid PutRecord, so that a body let finish would be ingested; its last 50 bytes (spaces) come one every
    // 200 ms from close() on, 10 s where the grace is 2 s. Both timers run on this one event loop, so however
    // loaded the machine, the grace ends before the body does.
    const record = JSON.stringify({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: Buffer.from('abcd').toString('base64') } });
    const trickledBytes = 50;
    const socket = netConnect(ownApi.port, '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    // Cut off while it still sends, the client may see a reset rather than an end: either way the server closed it.
    let socketError: NodeJS.ErrnoException | undefined;
    socket.on('error', (error) => (socketError ??= error));
    let trickled = 0;
    let trickle: NodeJS.Timeout | undefined;
    const socketClosed = new Promise<void>((resolve) => socket.once('close', () => {
      clearInterval(trickle);
      resolve();
    }));
    try {
      // The 100 Continue says the server holds the request (in flight, its body being read) before close() is called.
      const continued = new Promise<void>((resolve) => socket.once('data', () => resolve()));
      socket.write(`POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Firehose_20150804.PutRecord\r\nContent-Type: application/x-amz-json-1.1\r\n`
        + `Expect: 100-continue\r\nContent-Length: ${record.length + trickledBytes}\r\n\r\n`);
      await continued;
      socket.write(record);
      const closing = ownApi.close();
      trickle = setInterval(() => {
        if (trickled < trickledBytes) {
          trickled += 1;
          socket.write(' ');
        }
      }, 200);
      await closing;
      await socketClosed;
      expect(trickled).toBeLessThan(trickledBytes);
      expect(socketError?.code ?? 'closed').toMatch(/^(closed|ECONNRESET|EPIPE)$/);
      expect(Buffer.concat(received).toString('latin1')).toBe('HTTP/1.1 100 Continue\r\n\r\n');
      expect(ownBackend.ingestCalls).toBe(0);
    } finally {
      clearInterval(trickle);
      socket.destroy();
      await ownApi.close();
    }
  });

  it('answers a request before refusing bytes that do not parse after it on the same connection', async () => {
    const ownBackend = new InMemoryBackend([DIRECT_PUT]);
    const ownApi = await startFirehoseApi({ port: 0, backend: ownBackend });
    // The write-ahead log's fsync: the answer comes a little later than the garbage.
    ownBackend.override = async (records) => {
      await new Promise((resolve) => setTimeout(resolve, 100));
      return records.map(() => ({ ok: true }));
    };
    const socket = netConnect(ownApi.port, '127.0.0.1');
    try {
      const body = JSON.stringify({ DeliveryStreamName: DIRECT_PUT.name, Record: { Data: Buffer.from('abcd').toString('base64') } });
      const received: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.write(`POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Firehose_20150804.PutRecord\r\nContent-Type: application/x-amz-json-1.1\r\n`
        + `Content-Length: ${body.length}\r\n\r\n${body}GARBAGE\r\n\r\n`);
      await ended;
      const text = Buffer.concat(received).toString('latin1');
      expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*"RecordId":"[^"]+"[\s\S]*HTTP\/1\.1 400 Bad Request\r\n/);
      expect(ownBackend.ingestCalls).toBe(1);
    } finally {
      socket.destroy();
      await ownApi.close();
    }
  });

  it('refuses at once a chunked body whose chunk does not parse (the request it belongs to never ends)', async () => {
    const ownApi = await startFirehoseApi({ port: 0, backend });
    const socket = netConnect(ownApi.port, '127.0.0.1');
    try {
      const received: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.write('POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Firehose_20150804.PutRecord\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nZZZ\r\n\r\n');
      await ended;
      expectRefusedInAwsForm(Buffer.concat(received).toString('latin1'), 400, /^Request refused: the request is not HTTP this endpoint can read \(HPE_/);
      expect(backend.ingestCalls).toBe(0);
    } finally {
      socket.destroy();
      await ownApi.close();
    }
  });

  it('answers headers too large for Node\'s parser with 431 and an AWS JSON error, as it answers every other error', async () => {
    const ownApi = await startFirehoseApi({ port: 0, backend, headers: { 'x-sluice-data-dir': '/tmp/x' } });
    const socket = netConnect(ownApi.port, '127.0.0.1');
    try {
      const received: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.write(`POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Firehose_20150804.ListDeliveryStreams\r\nX-Big: ${'a'.repeat(20_000)}\r\nContent-Length: 2\r\n\r\n{}`);
      await ended;
      const text = Buffer.concat(received).toString('latin1');
      expectRefusedInAwsForm(text, 431, 'Request refused: the request headers are larger than this endpoint reads (16 KiB).');
      expect(text).toMatch(/\r\nx-sluice-data-dir: \/tmp\/x\r\n/);
      expect(backend.ingestCalls).toBe(0);
    } finally {
      socket.destroy();
      await ownApi.close();
    }
  });

  it('applies a smaller maxBodyBytes and resolves close() at once when idle', async () => {
    const ownApi = await startFirehoseApi({ port: 0, backend, maxBodyBytes: 1024 });
    const url = new URL(ownApi.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: url.hostname, port: url.port, method: 'POST', path: '/', agent: false, headers: jsonHeaders('ListDeliveryStreams') }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end(Buffer.alloc(1025, 0x20));
    });
    expect(status).toBe(413);
    await ownApi.close();
  });

  it('bound to every address (0.0.0.0), it names a URL a client can dial: loopback', async () => {
    const ownApi = await startFirehoseApi({ host: '0.0.0.0', port: 0, backend });
    try {
      expect(ownApi.url).toBe(`http://127.0.0.1:${ownApi.port}`);
      const client = new FirehoseClient({ endpoint: ownApi.url, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, requestHandler: new NodeHttpHandler() });
      try {
        await expect(client.send(new ListDeliveryStreamsCommand({}))).resolves.toBeDefined();
      } finally {
        client.destroy();
      }
    } finally {
      await ownApi.close();
    }
  });
});

function rawConnect(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/', agent: false, headers: jsonHeaders('ListDeliveryStreams') }, (res) => {
      res.resume();
      resolve();
    });
    req.on('error', reject);
    req.end('{}');
  });
}

// ---------------------------------------------------------------------------------------------
// Other clients, when installed. They run as child processes against the same endpoint.
// ---------------------------------------------------------------------------------------------

/** Environment that keeps the AWS CLI and boto3 away from the user's config and the network. */
function offlineAwsEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    AWS_ACCESS_KEY_ID: 'AKIDLOCALTWIN',
    AWS_SECRET_ACCESS_KEY: 'local-secret',
    AWS_SESSION_TOKEN: '',
    AWS_DEFAULT_REGION: REGION,
    AWS_REGION: REGION,
    AWS_CONFIG_FILE: '/nonexistent/sluice-aws-config',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/sluice-aws-credentials',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_PAGER: '',
    AWS_MAX_ATTEMPTS: '1',
    AWS_RETRY_MODE: 'standard',
  };
}

function run(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { env: offlineAwsEnv(), timeout: 45_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const awsCliVersion = (() => {
  const probe = spawnSync('aws', ['--version'], { encoding: 'utf8', env: offlineAwsEnv(), timeout: 20_000 });
  const match = /aws-cli\/(\d+)\./.exec(`${probe.stdout ?? ''}${probe.stderr ?? ''}`);
  return probe.status === 0 && match ? Number(match[1]) : undefined;
})();
const hasBoto3 = spawnSync('python3', ['-c', 'import boto3'], { timeout: 20_000 }).status === 0;

const cliTest = awsCliVersion === undefined ? it.skip : it;
const cliTitle =
  awsCliVersion === undefined
    ? 'AWS CLI — skipped: no working `aws` on PATH'
    : `AWS CLI v${awsCliVersion} puts, describes and lists against the endpoint and reports its errors`;

describe('other AWS clients', () => {
  cliTest(cliTitle, async () => {
    const endpoint = ['--endpoint-url', api.url, '--output', 'json'];
    // CLI v2 reads blob arguments as base64 unless told otherwise; v1 sends the text as is.
    const binaryFormat = awsCliVersion! >= 2 ? ['--cli-binary-format', 'raw-in-base64-out'] : [];
    const put = await run('aws', ['firehose', 'put-record', ...endpoint, ...binaryFormat, '--delivery-stream-name', DIRECT_PUT.name, '--record', 'Data=hello-cli']);
    expect(put.stderr).toBe('');
    expect(JSON.parse(put.stdout)).toMatchObject({ Encrypted: false, RecordId: expect.any(String) });
    expect(backend.acknowledged.map((r) => r.data.toString())).toEqual(['hello-cli']);

    const list = await run('aws', ['firehose', 'list-delivery-streams', ...endpoint, '--limit', '2']);
    expect(JSON.parse(list.stdout)).toMatchObject({ HasMoreDeliveryStreams: true });

    const missing = await run('aws', ['firehose', 'describe-delivery-stream', ...endpoint, '--delivery-stream-name', 'ghost']);
    expect(missing.code).not.toBe(0);
    // The CLI may add "(reached max retries: 0)" before the colon.
    expect(missing.stderr).toMatch(/\(ResourceNotFoundException\) when calling the DescribeDeliveryStream operation.*: Firehose ghost under account 000000000000 not found\./);
  });

  (hasBoto3 ? it : it.skip)(
    hasBoto3 ? 'boto3 puts a batch and raises the modeled exceptions' : 'boto3 — skipped: python3 with boto3 is not installed',
    async () => {
      const script = `
import json, sys, boto3
c = boto3.client("firehose", endpoint_url=sys.argv[1])
out = {}
r = c.put_record_batch(DeliveryStreamName=sys.argv[2], Records=[{"Data": b"\\x00\\xffboto"}, {"Data": b""}])
out["failed"] = r["FailedPutCount"]; out["ids"] = len([e for e in r["RequestResponses"] if "RecordId" in e])
try:
    c.put_record(DeliveryStreamName=sys.argv[3], Record={"Data": b"x"})
except c.exceptions.InvalidArgumentException as e:
    out["kinesis"] = [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"], bool(e.response["ResponseMetadata"]["RequestId"])]
try:
    c.describe_delivery_stream(DeliveryStreamName="ghost")
except c.exceptions.ResourceNotFoundException as e:
    out["missing"] = e.response["Error"]["Message"]
try:
    c.put_record_batch(DeliveryStreamName=sys.argv[2], Records=[{"Data": b"x"}] * 501)
except c.exceptions.ClientError as e:
    out["tooMany"] = e.response["Error"]["Code"]
print(json.dumps(out))
`;
      const result = await run('python3', ['-c', script, api.url, DIRECT_PUT.name, KINESIS_SOURCED.name]);
      expect(result.stderr).toBe('');
      expect(JSON.parse(result.stdout)).toEqual({
        failed: 0,
        ids: 2,
        kinesis: ['InvalidArgumentException', 400, true],
        missing: `Firehose ghost under account ${ACCOUNT} not found.`,
        tooMany: 'ValidationException',
      });
      expect(backend.acknowledged.map((r) => r.data.toString('latin1'))).toEqual(['\x00\xffboto', '']);
    },
  );
});
