import { PutRecordBatchCommand } from '@aws-sdk/client-firehose';
import { resourceNames } from '../../lib/config';
import { readSchema } from '../../lib/schema';
import { badRecordBytes, createRng } from '../../lib/schema/sample';
import { firehoseClient } from '../../lib/local/aws-clients';
import { FaultInjector, type TransformFaultKind } from '../../lib/local/faults';
import { configWith, dlqMessages, errorLines, lakeColumn, rawOf, removeDir, repeated, sampleRecordBytes, sorted, startFaultTwin, type FaultTwin } from './helpers';

/**
 * The transform Lambda fails on a share of invocations — it throws, times out, answers a malformed
 * response, or answers fewer records than it got. Firehose retries the invocation (3 retries), then
 * writes the chunk's records as processing-failed error objects, which the failure router sends to
 * the DLQ. Every record ends in exactly one place: a Parquet row or an error line (and a DLQ message).
 */
describe('faults: the transform fails', () => {
  const config = configWith({ 'app-events': { source: 'direct-put', destinations: ['lake'] } }, ['pipelines.app-events.transform.processorBufferMiB=0.2']);
  const stream = resourceNames(config, 'app-events').lakeDeliveryStream;
  let run: FaultTwin | undefined;

  afterAll(async () => {
    await run?.stop();
    removeDir(run?.dataDir);
  }, 60_000);

  test('retried invocations deliver once; exhausted ones become processing-failed error objects and DLQ messages', async () => {
    // Scripted per chunk (a chunk keeps its record ids across retries): attempt n of chunk c fails with script[c][n].
    const script: TransformFaultKind[][] = [
      ['throw'],
      ['timeout', 'malformed'],
      ['fewer-records', 'fewer-records', 'fewer-records', 'fewer-records'],
      ['throw', 'timeout', 'malformed', 'throw'],
    ];
    // What each chunk was dealt, to know exactly which records must end as processing-failed.
    const chunks = new Map<string, { index: number; records: string[]; dealt: Array<TransformFaultKind | undefined> }>();
    const random = createRng(7);
    const faults = new FaultInjector({
      transform: {
        timeoutMs: 1500,
        decide: ({ event }) => {
          const first = event.records[0].recordId;
          let chunk = chunks.get(first);
          if (!chunk) {
            chunk = { index: chunks.size, records: event.records.map((r) => Buffer.from(r.data, 'base64').toString()), dealt: [] };
            chunks.set(first, chunk);
          }
          const attempt = chunk.dealt.length;
          // Then a third of the invocations fail, of every kind, two at a time in flight.
          const kind = chunk.index < script.length
            ? script[chunk.index][attempt]
            : random() < 0.33 ? KINDS[Math.floor(random() * KINDS.length)] : undefined;
          chunk.dealt.push(kind);
          return kind;
        },
      },
    });
    run = await startFaultTwin(config, { faults });
    const firehose = firehoseClient(run.twin.endpoints.firehose, { maxAttempts: 1 });
    const schema = readSchema('app-events');
    const rng = createRng(3);
    const sent: Buffer[] = [];
    const put = async (records: Buffer[]) => {
      const out = await firehose.send(new PutRecordBatchCommand({ DeliveryStreamName: stream, Records: records.map((Data) => ({ Data })) }));
      expect(out.FailedPutCount).toBe(0);
      sent.push(...records);
    };
    const good = (n: number) => sampleRecordBytes(schema, rng, n);

    // One flush (one chunk) per scripted line, in order; bad records ride along in the first.
    await put([...good(40), badRecordBytes(schema, 'malformed-json', rng), badRecordBytes(schema, 'missing-required', rng)]);
    await run.twin.settle(30_000);
    for (let c = 1; c < script.length; c++) {
      await put(good(40));
      await run.twin.settle(30_000);
    }
    // Then 2,000 records in one buffer: several 0.2 MiB chunks, two invocations at a time.
    for (let i = 0; i < 4; i++) await put(good(500));
    await run.twin.settle(45_000);

    const lake = await lakeColumn(run.dataDir, config, 'app_events');
    const errors = errorLines(run.dataDir, run.twin.bucket, 'errors/app-events/');
    const dlq = dlqMessages(run.dataDir, config);

    // Exactly the records of chunks that failed 4 times in a row, plus the two bad ones, failed.
    const exhausted = [...chunks.values()].filter((c) => c.dealt.length === 4 && c.dealt.every((k) => k !== undefined));
    expect(exhausted.map((c) => c.index).slice(0, 2)).toEqual([2, 3]);
    const bad = sent.slice(40, 42).map((b) => b.toString());
    const expectedFailed = [...exhausted.flatMap((c) => c.records), ...bad];
    const failedRaw = errors.map(rawOf);
    expect(sorted(failedRaw)).toEqual(sorted(expectedFailed));

    // Every other record is one Parquet row: no loss, no duplicates.
    const failedSet = new Set(expectedFailed);
    const expectedRows = sent.map((b) => b.toString()).filter((raw) => !failedSet.has(raw)).map((raw) => String((JSON.parse(raw) as { event_id: string }).event_id));
    expect(repeated(lake)).toEqual([]);
    expect(sorted(lake)).toEqual(sorted(expectedRows));

    // Exhausted chunks carry the error code of their last failure and 4 attempts; the bad records failed in the
    // transform itself, on the invocation that answered (the second), once.
    const CODES: Record<TransformFaultKind, string> = {
      throw: 'Lambda.FunctionError', timeout: 'Lambda.FunctionTimedOut', malformed: 'Lambda.JsonProcessingException', 'fewer-records': 'Lambda.MissingRecordId',
    };
    const line = new Map(errors.map((l) => [rawOf(l), l]));
    for (const c of exhausted) {
      for (const raw of c.records) expect(line.get(raw)).toMatchObject({ errorCode: CODES[c.dealt[3]!], attemptsMade: 4 });
    }
    for (const raw of bad) expect(line.get(raw)).toMatchObject({ errorCode: 'Lambda.ProcessingFailedStatus', attemptsMade: 2 });
    expect(String(line.get(exhausted[1].records[0])?.errorMessage)).toMatch(/injected fault: the transform threw/);
    for (const l of errors) expect(l.key).toMatch(/^errors\/app-events\/processing-failed\//);

    // One DLQ message per error line.
    expect(dlq.map((m) => m.errorType)).toEqual(errors.map(() => 'processing-failed'));
    expect(sorted(dlq.map((m) => Buffer.from(m.rawData ?? '', 'base64').toString()))).toEqual(sorted(failedRaw));
    expect(repeated(dlq.map((m) => m.dedupeKey))).toEqual([]);

    // The engine's own account agrees, and faults really were injected and retried.
    const counters = run.twin.summary()[0].lake!;
    expect(counters.received).toBe(sent.length);
    expect(counters.deliveredRows).toBe(lake.length);
    expect(counters.processingFailed).toBe(failedRaw.length);
    expect(counters.pending).toBe(0);
    const injected = faults.injected().transform;
    expect(Math.min(injected.throw, injected.timeout, injected.malformed, injected['fewer-records'])).toBeGreaterThan(0);
    const dealt = [...chunks.values()].reduce((n, c) => n + c.dealt.filter((k) => k !== undefined).length, 0);
    expect(counters.retries).toBe(dealt - exhausted.length);
  }, 60_000);
});

const KINDS: readonly TransformFaultKind[] = ['throw', 'timeout', 'malformed', 'fewer-records'];
