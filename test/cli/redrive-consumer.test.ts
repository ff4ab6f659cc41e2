/**
 * `sluice redrive-consumer`: Lambda's on-failure records of the metadata consumer parsed, their ranges read back from
 * Kinesis (fake answers as Kinesis gives them: pages, trimmed starts, throttling), the consumer invoked in the event
 * source mapping's shape, and the command against a mocked stack (SQS, Kinesis, Lambda, CloudFormation).
 */
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { GetRecordsCommand, GetShardIteratorCommand, KinesisClient, type _Record } from '@aws-sdk/client-kinesis';
import { InvokeCommand, LambdaClient, type InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { ChangeMessageVisibilityBatchCommand, ChangeMessageVisibilityCommand, DeleteMessageBatchCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient, type AwsClientStub } from 'aws-sdk-client-mock';
import type { KinesisStreamEvent } from 'aws-lambda';
import fc from 'fast-check';
import { eventSlices, parseFailedBatch, readBatchRange, redriveRecords, type FailedBatch } from '../../lib/cli/consumer-redrive';
import { UserError } from '../../lib/cli/output';
import { kinesisStreamEvent, MAX_EVENT_BYTES, type KinesisInvocationRecord } from '../../lib/local/event-source-mapping';
import { sluice } from './helpers';

const STREAM_ARN = 'arn:aws:kinesis:eu-west-1:123456789012:stream/sluice-dev-iot';
const FUNCTION_ARN = 'arn:aws:lambda:eu-west-1:123456789012:function:sluice-dev-MetadataConsumerConsumer-AbC123';

/** Sequence numbers as Kinesis writes them: 56 digits, growing along a shard. */
const seq = (n: number) => `4966${String(n).padStart(52, '0')}`;

/** Lambda's on-failure record for the records `first`..`last` of shardId-000000000000, as an SQS destination receives it. */
function onFailureRecord(first: number, last: number, overrides: Partial<KinesisInvocationRecord['KinesisBatchInfo']> = {}): KinesisInvocationRecord {
  return {
    requestContext: { requestId: 'c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5', functionArn: FUNCTION_ARN, condition: 'RetryAttemptsExhausted', approximateInvokeCount: 6 },
    responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
    version: '1.0',
    timestamp: '2026-12-05T03:01:06.151Z',
    KinesisBatchInfo: {
      shardId: 'shardId-000000000000',
      startSequenceNumber: seq(first),
      endSequenceNumber: seq(last),
      approximateArrivalOfFirstRecord: '2026-12-05T02:58:10.316Z',
      approximateArrivalOfLastRecord: '2026-12-05T02:58:11.102Z',
      batchSize: last - first + 1,
      streamArn: STREAM_ARN,
      ...overrides,
    },
  };
}

function record(n: number): _Record {
  return { SequenceNumber: seq(n), PartitionKey: `device-${n}`, Data: Buffer.from(JSON.stringify({ n })), ApproximateArrivalTimestamp: new Date(1_795_000_000_000 + n * 1000) };
}

function batchOf(first: number, last: number): FailedBatch {
  const parsed = parseFailedBatch(JSON.stringify(onFailureRecord(first, last)));
  if (typeof parsed === 'string') throw new Error(parsed);
  return parsed;
}

/** What Kinesis readers report for AT_SEQUENCE_NUMBER of a record the retention removed (it is not documented). */
type TrimmedStart =
  | 'refused' // GetShardIterator throws InvalidArgumentException (harlow/kinesis-consumer#175)
  | 'empty-pages'; // GetRecords answers empty pages at the retention's distance behind the tip (harlow/kinesis-consumer#125)

/**
 * A shard as Kinesis serves it: records `from`..`to` left by its retention, up to `perPage` (and the call's Limit) per
 * GetRecords; TRIM_HORIZON starts at `from`, as documented; AT_SEQUENCE_NUMBER of a trimmed record does what
 * `trimmedStart` says. `throttle` answers that many calls with ProvisionedThroughputExceededException first.
 */
function fakeShard(from: number, to: number, options: { perPage?: number; throttle?: number; trimmedStart?: TrimmedStart; emptyPagesFirst?: number } = {}) {
  const calls: string[] = [];
  const limits: Array<number | undefined> = [];
  let throttle = options.throttle ?? 0;
  let emptyPagesFirst = options.emptyPagesFirst ?? 0;
  const send = async (command: GetShardIteratorCommand | GetRecordsCommand): Promise<unknown> => {
    calls.push(command instanceof GetShardIteratorCommand ? `GetShardIterator ${command.input.ShardIteratorType as string}` : 'GetRecords');
    if (throttle > 0) {
      throttle--;
      throw Object.assign(new Error('Rate exceeded for shard shardId-000000000000 in stream sluice-dev-iot under account 123456789012.'), { name: 'ProvisionedThroughputExceededException', $metadata: { httpStatusCode: 400 } });
    }
    if (command instanceof GetShardIteratorCommand) {
      if (command.input.ShardIteratorType === 'TRIM_HORIZON') return { ShardIterator: String(from) };
      const at = BigInt(command.input.StartingSequenceNumber ?? '0');
      if (at < BigInt(seq(from))) {
        if ((options.trimmedStart ?? 'refused') === 'refused') {
          throw Object.assign(new Error(`StartingSequenceNumber ${String(at)} used in GetShardIterator on shard shardId-000000000000 in stream sluice-dev-iot under account 123456789012 is invalid because it is too old.`), { name: 'InvalidArgumentException', $metadata: { httpStatusCode: 400 } });
        }
        return { ShardIterator: 'trimmed' };
      }
      const position = [...Array(to - from + 1).keys()].map((i) => from + i).find((n) => BigInt(seq(n)) >= at) ?? to + 1;
      return { ShardIterator: String(position) };
    }
    limits.push(command.input.Limit);
    if (command.input.ShardIterator === 'trimmed') return { Records: [], NextShardIterator: 'trimmed', MillisBehindLatest: 86_400_000 };
    if (emptyPagesFirst > 0) {
      // GetRecords may answer empty pages before records that are there.
      emptyPagesFirst--;
      return { Records: [], NextShardIterator: command.input.ShardIterator, MillisBehindLatest: 1000 };
    }
    const position = Number(command.input.ShardIterator);
    const next = Math.min(to + 1, position + Math.min(options.perPage ?? 3, command.input.Limit ?? 10_000));
    const records = [...Array(Math.max(0, next - position)).keys()].map((i) => record(position + i));
    return { Records: records, NextShardIterator: String(next), MillisBehindLatest: next > to ? 0 : 1000 };
  };
  return { client: { send } as unknown as KinesisClient, send, calls, limits };
}

const noWait = async () => undefined;
const context = { service: 'Kinesis' };

describe('parseFailedBatch', () => {
  test('reads Lambda\'s on-failure record of a Kinesis batch', () => {
    expect(parseFailedBatch(JSON.stringify(onFailureRecord(3, 7)))).toEqual({
      shardId: 'shardId-000000000000', startSequenceNumber: seq(3), endSequenceNumber: seq(7), batchSize: 5, streamArn: STREAM_ARN, streamName: 'sluice-dev-iot',
      condition: 'RetryAttemptsExhausted', functionArn: FUNCTION_ARN, approximateArrivalOfFirstRecord: '2026-12-05T02:58:10.316Z',
    });
    // An enhanced fan-out consumer's ARN names its stream too.
    const viaConsumer = parseFailedBatch(JSON.stringify(onFailureRecord(1, 1, { streamArn: `${STREAM_ARN}/consumer/sluice-metadata-consumer:1795000000` })));
    expect(viaConsumer).toMatchObject({ streamName: 'sluice-dev-iot' });
  });

  test.each([
    ['not JSON', '{"KinesisBatchInfo":', 'the message body is not JSON'],
    ['an array', '[1]', 'the message body is not a JSON object'],
    ['the failure router\'s message', JSON.stringify({ dedupeKey: 'k', pipeline: 'iot', errorType: 'processing-failed' }), 'not a Lambda on-failure record of a Kinesis batch (no KinesisBatchInfo)'],
    ['a shard id that is none', JSON.stringify(onFailureRecord(1, 2, { shardId: '../etc' })), 'KinesisBatchInfo.shardId "../etc" is not a Kinesis shard id (shardId-000000000000)'],
    ['a number for a sequence number', JSON.stringify({ ...onFailureRecord(1, 2), KinesisBatchInfo: { ...onFailureRecord(1, 2).KinesisBatchInfo, startSequenceNumber: 4.9e55 } }), 'KinesisBatchInfo.startSequenceNumber 4.9e+55 is not a Kinesis sequence number'],
    ['a range backwards', JSON.stringify(onFailureRecord(1, 2, { startSequenceNumber: seq(9) })), `KinesisBatchInfo.startSequenceNumber ${seq(9)} is after its endSequenceNumber ${seq(2)}`],
    ['no batch size', JSON.stringify(onFailureRecord(1, 2, { batchSize: 0 })), 'KinesisBatchInfo.batchSize 0 is not a batch size (1 to 10,000)'],
    ['another service\'s ARN', JSON.stringify(onFailureRecord(1, 2, { streamArn: 'arn:aws:sqs:eu-west-1:123456789012:q' })), 'KinesisBatchInfo.streamArn "arn:aws:sqs:eu-west-1:123456789012:q" is not a Kinesis stream ARN'],
  ])('refuses %s, saying why', (_, body, why) => {
    expect(parseFailedBatch(body)).toBe(why);
  });

  test('never throws, and reads a range only from a whole record (property)', () => {
    const info = fc.record({
      shardId: fc.oneof(fc.string(), fc.constant('shardId-000000000001')),
      startSequenceNumber: fc.oneof(fc.string(), fc.bigInt({ min: 0n, max: 10n ** 60n }).map(String), fc.integer()),
      endSequenceNumber: fc.oneof(fc.string(), fc.bigInt({ min: 0n, max: 10n ** 60n }).map(String)),
      batchSize: fc.oneof(fc.integer(), fc.double(), fc.string()),
      streamArn: fc.oneof(fc.string(), fc.constant(STREAM_ARN)),
    }, { requiredKeys: [] });
    fc.assert(fc.property(fc.oneof(fc.string(), fc.jsonValue().map((v) => JSON.stringify(v)), info.map((i) => JSON.stringify({ KinesisBatchInfo: i }))), (body) => {
      const parsed = parseFailedBatch(body);
      if (typeof parsed === 'string') return;
      expect(BigInt(parsed.startSequenceNumber) <= BigInt(parsed.endSequenceNumber)).toBe(true);
      expect(parsed.streamName).toBe('sluice-dev-iot');
    }), { numRuns: 500 });
  });
});

describe('readBatchRange', () => {
  test('reads from the start sequence number until past the end, over several GetRecords pages', async () => {
    const shard = fakeShard(1, 20, { perPage: 3 });
    const read = await readBatchRange(shard.client, batchOf(4, 11), { context, sleep: noWait });
    expect(read.kind).toBe('complete');
    expect(read.records.map((r) => r.SequenceNumber)).toEqual([4, 5, 6, 7, 8, 9, 10, 11].map(seq));
    expect(shard.calls[0]).toBe('GetShardIterator AT_SEQUENCE_NUMBER');
  });

  test.each<TrimmedStart>(['refused', 'empty-pages'])('a range whose start the retention removed (start %s): what is left, and how many records are lost', async (trimmedStart) => {
    const shard = fakeShard(8, 20, { trimmedStart });
    const read = await readBatchRange(shard.client, batchOf(4, 11), { context, sleep: noWait });
    expect(read).toMatchObject({ kind: 'trimmed', lost: 4 });
    expect(read.records.map((r) => r.SequenceNumber)).toEqual([8, 9, 10, 11].map(seq));
    expect(shard.calls).toContain('GetShardIterator TRIM_HORIZON');
    // Empty pages send the read to the trim horizon after a few calls, not after hundreds.
    expect(shard.calls.length).toBeLessThan(15);
  });

  test.each<TrimmedStart>(['refused', 'empty-pages'])('a range wholly past the retention (start %s): nothing left, every record lost', async (trimmedStart) => {
    const read = await readBatchRange(fakeShard(30, 40, { trimmedStart }).client, batchOf(4, 11), { context, sleep: noWait });
    expect(read).toMatchObject({ kind: 'trimmed', lost: 8, records: [] });
    expect(read.kind === 'trimmed' && read.why).toMatch(/past the stream's retention/);
  });

  test('empty pages at a start the stream still holds: the trim horizon is looked at once, then the start read again', async () => {
    const shard = fakeShard(1, 1000, { emptyPagesFirst: 5 });
    const read = await readBatchRange(shard.client, batchOf(500, 505), { context, sleep: noWait });
    expect(read.kind).toBe('complete');
    expect(read.records.map((r) => r.SequenceNumber)).toEqual([500, 501, 502, 503, 504, 505].map(seq));
    expect(shard.calls.filter((c) => c.startsWith('GetShardIterator'))).toEqual(['GetShardIterator AT_SEQUENCE_NUMBER', 'GetShardIterator TRIM_HORIZON', 'GetShardIterator AT_SEQUENCE_NUMBER']);
    expect(shard.calls.length).toBeLessThan(15);
  });

  test('a start Kinesis refuses while the shard\'s oldest record is before it: incomplete, with the refusal', async () => {
    const shard = fakeShard(1, 20);
    const refusing = {
      send: async (command: GetShardIteratorCommand | GetRecordsCommand) => {
        if (command instanceof GetShardIteratorCommand && command.input.ShardIteratorType === 'AT_SEQUENCE_NUMBER') {
          throw Object.assign(new Error('StartingSequenceNumber is not valid for this shard'), { name: 'InvalidArgumentException' });
        }
        return shard.send(command);
      },
    } as unknown as KinesisClient;
    const read = await readBatchRange(refusing, batchOf(4, 11), { context, sleep: noWait });
    expect(read).toMatchObject({ kind: 'incomplete', why: expect.stringMatching(/^Kinesis refused the range's start on shardId-000000000000 \(InvalidArgumentException/) });
  });

  test('reads leave the shard\'s other readers their share: Limit the batch\'s size, a second between calls', async () => {
    const shard = fakeShard(1, 20, { perPage: 2 });
    const pauses: number[] = [];
    const read = await readBatchRange(shard.client, batchOf(4, 8), { context, sleep: async (ms) => void pauses.push(ms) });
    expect(read.kind).toBe('complete');
    expect(shard.limits.length).toBeGreaterThan(1);
    expect(shard.limits.every((l) => l === 5)).toBe(true);
    expect(pauses).toHaveLength(shard.limits.length - 1);
    expect(pauses.every((ms) => ms >= 1000)).toBe(true);
  });

  test('a throttled read waits at least the five seconds Kinesis throttles the shard for', async () => {
    const pauses: number[] = [];
    const shard = fakeShard(1, 20);
    let throttled = 0;
    const throttlingReads = {
      send: async (command: GetShardIteratorCommand | GetRecordsCommand) => {
        if (command instanceof GetRecordsCommand && throttled++ < 2) {
          throw Object.assign(new Error('Rate exceeded for shard shardId-000000000000'), { name: 'ProvisionedThroughputExceededException' });
        }
        return shard.send(command);
      },
    } as unknown as KinesisClient;
    const read = await readBatchRange(throttlingReads, batchOf(4, 5), { context, sleep: async (ms) => void pauses.push(ms) });
    expect(read.kind).toBe('complete');
    expect(pauses).toHaveLength(2);
    expect(pauses.every((ms) => ms >= 5000)).toBe(true);
  });

  test('keeps its caller\'s message hidden while it reads: a heartbeat first and every 20 calls', async () => {
    let beats = 0;
    const read = await readBatchRange(fakeShard(1, 100, { perPage: 1 }).client, batchOf(1, 45), { context, sleep: noWait, heartbeat: async () => void beats++ });
    expect(read.kind).toBe('complete');
    expect(beats).toBe(3);
  });

  test('a shard that ends before the range\'s end: incomplete, not done', async () => {
    const read = await readBatchRange(fakeShard(1, 6).client, batchOf(4, 11), { context, sleep: noWait });
    expect(read).toMatchObject({ kind: 'incomplete' });
    expect(read.records).toHaveLength(3);
  });

  test('throttled reads are waited out with backoff; throttled past the attempts, the reason as errors.ts says it (exit 1)', async () => {
    const pauses: number[] = [];
    const read = await readBatchRange(fakeShard(1, 20, { throttle: 2 }).client, batchOf(4, 5), { context, sleep: async (ms) => void pauses.push(ms) });
    expect(read.kind).toBe('complete');
    expect(pauses.length).toBeGreaterThanOrEqual(2);
    const failing = readBatchRange(fakeShard(1, 20, { throttle: 100 }).client, batchOf(4, 5), { context, sleep: noWait, attempts: 3 });
    await expect(failing).rejects.toThrow(UserError);
    await expect(readBatchRange(fakeShard(1, 20, { throttle: 100 }).client, batchOf(4, 5), { context, sleep: noWait, attempts: 3 })).rejects.toMatchObject({
      exitCode: 1, message: expect.stringMatching(/^Kinesis is throttling requests \(shardId-000000000000 of stream sluice-dev-iot\) \(ProvisionedThroughputExceededException: Rate exceeded/),
    });
  });
});

describe('redriveRecords', () => {
  const records = [1, 2, 3, 4].map(record);

  test('invokes with the event source mapping\'s Kinesis event, and retries from the lowest record the consumer reports', async () => {
    const events: KinesisStreamEvent[] = [];
    let calls = 0;
    const result = await redriveRecords(async (event) => {
      events.push(event);
      calls++;
      return { payload: calls === 1 ? { batchItemFailures: [{ itemIdentifier: seq(4) }, { itemIdentifier: seq(3) }] } : { batchItemFailures: [] } };
    }, batchOf(1, 4), records, { region: 'eu-west-1', attempts: 2, sleep: noWait });
    expect(result).toEqual({ ok: true, invocations: 2 });
    expect(events[0].Records[0]).toEqual({
      kinesis: { kinesisSchemaVersion: '1.0', partitionKey: 'device-1', sequenceNumber: seq(1), data: Buffer.from('{"n":1}').toString('base64'), approximateArrivalTimestamp: 1_795_000_001 },
      eventSource: 'aws:kinesis', eventVersion: '1.0', eventID: `shardId-000000000000:${seq(1)}`, eventName: 'aws:kinesis:record',
      invokeIdentityArn: FUNCTION_ARN, awsRegion: 'eu-west-1', eventSourceARN: STREAM_ARN,
    });
    expect(events[1].Records.map((r) => r.kinesis.sequenceNumber)).toEqual([seq(3), seq(4)]);
  });

  test('a consumer that fails again is reported after the attempts, with its error and what it took', async () => {
    const result = await redriveRecords(async () => ({ functionError: 'Unhandled', payload: { errorType: 'WriteFailure', errorMessage: 'table gone' } }),
      batchOf(1, 4), records, { region: 'eu-west-1', attempts: 3, sleep: noWait });
    expect(result).toEqual({ ok: false, invocations: 3, recorded: 0, why: 'the consumer failed (Unhandled: WriteFailure: table gone)' });
    const unknown = await redriveRecords(async () => ({ payload: { batchItemFailures: [{ itemIdentifier: 'nope' }] } }), batchOf(1, 4), records, { region: 'eu-west-1', attempts: 1, sleep: noWait });
    expect(unknown).toMatchObject({ ok: false, why: 'the consumer\'s batchItemFailures names "nope", which is not a sequence number in the batch, which Lambda reads as a failure of the whole batch' });
  });

  test('events stay under Lambda\'s payload limit, measured as serialized', () => {
    const eventOf = (rs: _Record[]) => kinesisStreamEvent({ shardId: 'shardId-000000000000', records: rs, streamArn: STREAM_ARN, region: 'eu-west-1', invokeIdentityArn: FUNCTION_ARN });
    const big = [1, 2, 3].map((n) => ({ ...record(n), Data: Buffer.alloc(2_000_000) }));
    expect(eventSlices(big, eventOf).map((s) => s.length)).toEqual([2, 1]);
    // Long multibyte partition keys, small data: what a size estimate per record undershoots.
    const keyed = Array.from({ length: 10_000 }, (_, n) => ({ ...record(n), PartitionKey: '€'.repeat(256), Data: Buffer.alloc(10) }));
    const slices = eventSlices(keyed, eventOf);
    expect(slices.flat()).toHaveLength(10_000);
    for (const slice of slices) expect(Buffer.byteLength(JSON.stringify(eventOf(slice)))).toBeLessThanOrEqual(MAX_EVENT_BYTES);
    // Full slices: the next record would not have fitted.
    for (const [i, slice] of slices.slice(0, -1).entries()) {
      expect(Buffer.byteLength(JSON.stringify(eventOf([...slice, slices[i + 1][0]])))).toBeGreaterThan(MAX_EVENT_BYTES);
    }
  });
});

describe('sluice redrive-consumer --aws', () => {
  let cfn: AwsClientStub<CloudFormationClient>;
  let sqs: AwsClientStub<SQSClient>;
  let kinesis: AwsClientStub<KinesisClient>;
  let lambda: AwsClientStub<LambdaClient>;
  const QUEUE = 'https://sqs.eu-west-1.amazonaws.com/123456789012/sluice-dev-consumer-dlq';
  const FUNCTION = 'sluice-dev-IotMetadataConsumerConsumer-AbC123';
  const savedEnv = { ...process.env };

  beforeAll(() => {
    process.env.AWS_REGION = 'eu-west-1';
    process.env.AWS_ACCESS_KEY_ID = 'AKIDEXAMPLE';
    process.env.AWS_SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
    cfn = mockClient(CloudFormationClient);
    sqs = mockClient(SQSClient);
    kinesis = mockClient(KinesisClient);
    lambda = mockClient(LambdaClient);
  });
  afterAll(() => {
    process.env = { ...savedEnv };
    for (const m of [cfn, sqs, kinesis, lambda]) m.restore();
  });
  beforeEach(() => {
    for (const m of [cfn, sqs, kinesis, lambda]) m.reset();
    cfn.on(DescribeStacksCommand).resolves({
      Stacks: [{ StackName: 'sluice-dev', StackStatus: 'UPDATE_COMPLETE', CreationTime: new Date(), Outputs: [
        { OutputKey: 'ConsumerDlqUrl', OutputValue: QUEUE }, { OutputKey: 'IotConsumerFunctionName', OutputValue: FUNCTION },
      ] }],
    });
    sqs.on(DeleteMessageBatchCommand).resolves({ Successful: [{ Id: '0' }], Failed: [] });
    sqs.on(ChangeMessageVisibilityBatchCommand).resolves({ Successful: [], Failed: [] });
    sqs.on(ChangeMessageVisibilityCommand).resolves({});
    const shard = fakeShard(1, 20, { perPage: 5 });
    kinesis.on(GetShardIteratorCommand).callsFake((input) => shard.client.send(new GetShardIteratorCommand(input)));
    kinesis.on(GetRecordsCommand).callsFake((input) => shard.client.send(new GetRecordsCommand(input)));
  });
  const queueHolds = (...bodies: string[]) => {
    sqs.on(ReceiveMessageCommand).resolvesOnce({ Messages: bodies.map((Body, i) => ({ MessageId: `m-${i + 1}`, ReceiptHandle: `rh-${i + 1}`, Body })) }).resolves({});
  };
  /** A function's answer payload (the SDK hands back its bytes with string helpers the command does not use). */
  const payload = (text: string) => Buffer.from(text) as unknown as InvokeCommandOutput['Payload'];
  const deletedHandles = () => sqs.commandCalls(DeleteMessageBatchCommand).flatMap((c) => (c.args[0].input.Entries ?? []).map((e) => e.ReceiptHandle));

  test('reads the range, invokes the stack\'s consumer function synchronously, then deletes the message', async () => {
    queueHolds(JSON.stringify(onFailureRecord(3, 9)));
    lambda.on(InvokeCommand).resolves({ StatusCode: 200, Payload: payload('{"batchItemFailures":[]}') });
    const { code, stdout, stderr } = await sluice('redrive-consumer', '--aws', '--json');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const invoke = lambda.commandCalls(InvokeCommand)[0].args[0].input;
    expect(invoke).toMatchObject({ FunctionName: FUNCTION, InvocationType: 'RequestResponse' });
    const event = JSON.parse(Buffer.from(invoke.Payload as Uint8Array).toString('utf8')) as KinesisStreamEvent;
    expect(event.Records.map((r) => r.kinesis.sequenceNumber)).toEqual([3, 4, 5, 6, 7, 8, 9].map(seq));
    expect(deletedHandles()).toEqual(['rh-1']);
    expect(JSON.parse(stdout)).toMatchObject({ read: 1, outcomes: { redriven: 1 }, messages: [{ message: 'm-1', pipeline: 'iot', outcome: 'redriven', records: 7 }] });
  });

  test('--json\'s elapsedMs counts on the monotonic clock: the wall clock set forward an hour during the invoke adds nothing to it', async () => {
    queueHolds(JSON.stringify(onFailureRecord(3, 9)));
    const realNow = Date.now.bind(Date);
    let setForward = 0;
    const wallClock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + setForward);
    lambda.on(InvokeCommand).callsFake(() => {
      setForward = 3_600_000;
      return { StatusCode: 200, Payload: payload('{"batchItemFailures":[]}') };
    });
    try {
      const { code, stdout } = await sluice('redrive-consumer', '--aws', '--json');
      expect(code).toBe(0);
      const report = JSON.parse(stdout) as { outcomes: Record<string, number>; elapsedMs: number };
      expect(report.outcomes).toEqual({ redriven: 1 });
      expect(setForward).toBe(3_600_000);
      expect(report.elapsedMs).toBeGreaterThanOrEqual(0);
      expect(report.elapsedMs).toBeLessThan(60_000);
    } finally {
      wallClock.mockRestore();
    }
  });

  test('receives one message at a time and keeps it hidden past the queue\'s five minutes while its redrive may take longer', async () => {
    queueHolds(JSON.stringify(onFailureRecord(3, 9)));
    lambda.on(InvokeCommand).resolves({ StatusCode: 200, Payload: payload('{"batchItemFailures":[]}') });
    const { code } = await sluice('redrive-consumer', '--aws');
    expect(code).toBe(0);
    expect(sqs.commandCalls(ReceiveMessageCommand).map((c) => c.args[0].input.MaxNumberOfMessages)).toEqual([1, 1]);
    // Before the read and before the invocation (one can run for Lambda's 900 seconds).
    const hidden = sqs.commandCalls(ChangeMessageVisibilityCommand).map((c) => c.args[0].input);
    expect(hidden).toHaveLength(2);
    for (const input of hidden) expect(input).toEqual({ QueueUrl: QUEUE, ReceiptHandle: 'rh-1', VisibilityTimeout: 1200 });
  });

  test('--dry-run reads the range and says what it would do; it invokes and deletes nothing', async () => {
    queueHolds(JSON.stringify(onFailureRecord(3, 9)));
    const { code, stdout } = await sluice('redrive-consumer', '--aws', '--dry-run');
    expect(code).toBe(0);
    expect(stdout).toMatch(/would redrive \(range still in the stream\)\s+1/);
    expect(lambda.commandCalls(InvokeCommand)).toHaveLength(0);
    expect(deletedHandles()).toEqual([]);
  });

  test('a malformed message, a range past the retention and a consumer that fails again are kept and named (exit 1); the good one is deleted', async () => {
    const failing = onFailureRecord(12, 14, { shardId: 'shardId-000000000000' });
    queueHolds('{"not": "an on-failure record"}', JSON.stringify(onFailureRecord(3, 4)), JSON.stringify({ ...onFailureRecord(1, 1), KinesisBatchInfo: { ...onFailureRecord(1, 1).KinesisBatchInfo, startSequenceNumber: seq(0), batchSize: 2 } }), JSON.stringify(failing));
    lambda.on(InvokeCommand).callsFake((input: { Payload: Uint8Array }) => {
      const event = JSON.parse(Buffer.from(input.Payload).toString('utf8')) as KinesisStreamEvent;
      const fails = event.Records.some((r) => r.kinesis.sequenceNumber === seq(12));
      return fails ? { StatusCode: 200, FunctionError: 'Unhandled', Payload: Buffer.from('{"errorType":"Error","errorMessage":"DynamoDB unreachable"}') } : { StatusCode: 200, Payload: Buffer.from('null') };
    });
    const { code, stdout, stderr } = await sluice('redrive-consumer', '--aws', '--json', '--max-attempts', '2');
    expect(code).toBe(1);
    expect(stderr).toBe('sluice: 3 of 4 consumer dead-letter messages not redriven (1 names records past the stream\'s retention: their metadata is lost)\n');
    const report = JSON.parse(stdout) as { messages: Array<{ message: string; outcome: string; reason: string }> };
    expect(report.messages.map((m) => [m.message, m.outcome])).toEqual([['m-1', 'unreadable'], ['m-2', 'redriven'], ['m-3', 'trimmed'], ['m-4', 'still-failing']]);
    expect(report.messages[2].reason).toMatch(/past the stream's retention; 1 of its 2 Kinesis records are lost \(each may hold several KPL-aggregated events\); the 1 left were redriven/);
    expect(report.messages[3].reason).toBe('the consumer failed (Unhandled: Error: DynamoDB unreachable), after 2 invocations; 0 of 3 records taken');
    expect(deletedHandles()).toEqual(['rh-2']);
  });

  test('--discard-trimmed deletes a trimmed range\'s message and still reports the loss (exit 1)', async () => {
    queueHolds(JSON.stringify(onFailureRecord(0, 0)));
    const shard = fakeShard(5, 20);
    kinesis.on(GetShardIteratorCommand).callsFake((input) => shard.client.send(new GetShardIteratorCommand(input)));
    kinesis.on(GetRecordsCommand).callsFake((input) => shard.client.send(new GetRecordsCommand(input)));
    const { code, stdout } = await sluice('redrive-consumer', '--aws', '--discard-trimmed');
    expect(code).toBe(1);
    expect(stdout).toMatch(/past the stream's retention \(message deleted\)\s+1/);
    expect(deletedHandles()).toEqual(['rh-1']);
    expect(lambda.commandCalls(InvokeCommand)).toHaveLength(0);
  });

  test('no permission to invoke the function: said as such (exit 2), the message kept', async () => {
    queueHolds(JSON.stringify(onFailureRecord(3, 4)));
    lambda.on(InvokeCommand).rejects(Object.assign(new Error(`User: arn:aws:iam::123456789012:user/oncall is not authorized to perform: lambda:InvokeFunction on resource: ${FUNCTION}`), { name: 'AccessDeniedException', $metadata: { httpStatusCode: 403 } }));
    const { code, stderr } = await sluice('redrive-consumer', '--aws');
    expect(code).toBe(2);
    expect(stderr).toBe(`sluice: Lambda denied access (function ${FUNCTION}): User: arn:aws:iam::123456789012:user/oncall is not authorized to perform: lambda:InvokeFunction on resource: ${FUNCTION}. Your AWS identity needs permission for this call.\n`);
    expect(deletedHandles()).toEqual([]);
  });

  test('Ctrl-C finishes the message in hand (redriven, deleted) and reads no other (exit 130)', async () => {
    queueHolds(JSON.stringify(onFailureRecord(3, 4)), JSON.stringify(onFailureRecord(5, 6)));
    lambda.on(InvokeCommand).callsFake(async () => {
      process.emit('SIGINT', 'SIGINT');
      return { StatusCode: 200, Payload: Buffer.from('{"batchItemFailures":[]}') };
    });
    const { code, stderr } = await sluice('redrive-consumer', '--aws');
    expect(code).toBe(130);
    expect(stderr).toBe('sluice: interrupted (Ctrl-C): redrive-consumer stopped after reading 1 message: 1 deleted; messages not read stay in the queue\n');
    expect(lambda.commandCalls(InvokeCommand)).toHaveLength(1);
    expect(deletedHandles()).toEqual(['rh-1']);
    // The other, which this mock hands over with it (the command asks for one), is made visible again at once.
    expect(sqs.commandCalls(ChangeMessageVisibilityBatchCommand)[0].args[0].input.Entries).toEqual([{ Id: '0', ReceiptHandle: 'rh-2', VisibilityTimeout: 0 }]);
  });

  test('a stack deployed before the consumer function output: redeploy, says which output', async () => {
    cfn.on(DescribeStacksCommand).resolves({ Stacks: [{ StackName: 'sluice-dev', StackStatus: 'UPDATE_COMPLETE', CreationTime: new Date(), Outputs: [{ OutputKey: 'ConsumerDlqUrl', OutputValue: QUEUE }] }] });
    queueHolds(JSON.stringify(onFailureRecord(3, 4)));
    const { code, stderr } = await sluice('redrive-consumer', '--aws');
    expect(code).toBe(2);
    expect(stderr).toMatch(/^sluice: stack "sluice-dev" has no output IotConsumerFunctionName, which redriving iot's consumer batches needs: redeploy/);
  });
});
