/**
 * Load generation shared by the soak test and the twin's benchmarks: deterministic records whose
 * fate is known in advance (valid → a Parquet row, bad → an error object, blank → dropped by the
 * transform's one drop rule), and producers that keep several API calls in flight, as real
 * producers do, retrying the records a call refused.
 */
import * as http from 'node:http';
import { FirehoseClient, PutRecordBatchCommand } from '@aws-sdk/client-firehose';
import { KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { localRegion } from '../../lib/local/aws-clients';
import { BAD_RECORD_KINDS, badRecordBytes, createRng, sampleRecord, type Rng } from '../../lib/schema/sample';

export type RecordFate = 'row' | 'failed' | 'dropped';

export interface TrafficMix {
  /** Share of records that must fail (the six kinds of BAD_RECORD_KINDS, in turn). */
  readonly badRate: number;
  /** Share of whitespace-only records, which the transform drops by rule. */
  readonly blankRate: number;
}

/**
 * The event id of the i-th record of a run: a valid UUID that encodes `i`, so the Parquet rows can be
 * checked against what was sent without keeping it (`eventIndex` reads it back).
 */
export function eventIdFor(i: number): string {
  return `5e1c0000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

/** SQL that recovers `i` from an event id made by eventIdFor (DuckDB). */
export const EVENT_INDEX_SQL = "CAST(('0x' || right(event_id, 12)) AS BIGINT)";

/**
 * Generates records `[from, to)` of a run, the same ones for the same seed: record i's fate depends
 * on i alone, so a run can be generated in chunks and never held in memory whole.
 */
export class TrafficGenerator {
  private readonly schema: object;
  private readonly mix: TrafficMix;
  private readonly now: Date;
  private readonly seed: number;

  constructor(options: { schema: object; mix: TrafficMix; seed: number; now?: Date }) {
    this.schema = options.schema;
    this.mix = options.mix;
    this.seed = options.seed;
    this.now = options.now ?? new Date();
  }

  fate(i: number): RecordFate {
    const u = unitFor(this.seed, i);
    if (u < this.mix.badRate) return 'failed';
    if (u < this.mix.badRate + this.mix.blankRate) return 'dropped';
    return 'row';
  }

  /** Records i in [from, to), with their fates. */
  chunk(from: number, to: number): Array<{ index: number; data: Buffer; fate: RecordFate }> {
    const rng: Rng = createRng(this.seed * 7919 + from);
    const out: Array<{ index: number; data: Buffer; fate: RecordFate }> = [];
    for (let i = from; i < to; i++) {
      const fate = this.fate(i);
      let data: Buffer;
      if (fate === 'failed') {
        data = badRecordBytes(this.schema, BAD_RECORD_KINDS[i % BAD_RECORD_KINDS.length], rng, { now: this.now });
      } else if (fate === 'dropped') {
        data = Buffer.from(i % 2 === 0 ? ' ' : '\n\t ');
      } else {
        const record = sampleRecord(this.schema, rng, { now: this.now });
        record.event_id = eventIdFor(i);
        data = Buffer.from(JSON.stringify(record));
      }
      out.push({ index: i, data, fate });
    }
    return out;
  }

  /** How many records of [0, count) have each fate, without generating them. */
  expected(count: number): Record<RecordFate, number> {
    const out: Record<RecordFate, number> = { row: 0, failed: 0, dropped: 0 };
    for (let i = 0; i < count; i++) out[this.fate(i)]++;
    return out;
  }
}

/** A uniform number in [0, 1) for (seed, i): a fate that does not depend on what came before. */
function unitFor(seed: number, i: number): number {
  let t = (Math.imul(i, 0x9e3779b1) ^ Math.imul(seed, 0x85ebca6b)) >>> 0;
  t = Math.imul(t ^ (t >>> 16), 0x7feb352d);
  t = Math.imul(t ^ (t >>> 15), 0x846ca68b);
  return ((t ^ (t >>> 16)) >>> 0) / 4294967296;
}

export interface PutStats {
  readonly calls: number;
  /** Records sent again after a call refused them (ServiceUnavailableException, throttling). */
  readonly retried: number;
}

/** One producer API: sends a batch, answers the indexes (into the batch) of the records it refused. */
export type PutBatch = (records: readonly Buffer[], firstIndex: number) => Promise<number[]>;

/**
 * Clients for producers that must never send a record twice: one attempt per call (an SDK retry
 * after a timeout or a reset connection repeats records the service may already hold, which Kinesis
 * and Firehose then keep twice, as AWS would), a fresh connection per call (producers pause while
 * memory is sampled; a kept-alive socket the server closed meanwhile would fail the next call), and
 * a timeout long enough for a busy machine. A call that fails anyway fails the run, loudly.
 */
export function producerClients(endpoints: { firehose: string; kinesis: string }): { firehose: FirehoseClient; kinesis: KinesisClient } {
  const config = () => ({
    region: localRegion(),
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent({ keepAlive: false }), connectionTimeout: 5_000, requestTimeout: 180_000, throwOnRequestTimeout: true }),
  });
  return {
    firehose: new FirehoseClient({ ...config(), endpoint: endpoints.firehose }),
    kinesis: new KinesisClient({ ...config(), endpoint: endpoints.kinesis }),
  };
}

export function firehosePutBatch(client: FirehoseClient, deliveryStream: string): PutBatch {
  return async (records) => {
    try {
      const out = await client.send(new PutRecordBatchCommand({ DeliveryStreamName: deliveryStream, Records: records.map((data) => ({ Data: data })) }));
      return (out.RequestResponses ?? []).flatMap((r, j) => (r.ErrorCode ? [j] : []));
    } catch (error) {
      // A whole call refused (the endpoint shutting down or its backend failing): nothing was acknowledged.
      if ((error as { name?: string }).name === 'ServiceUnavailableException') return records.map((_, j) => j);
      throw error;
    }
  };
}

export function kinesisPutBatch(client: KinesisClient, stream: string): PutBatch {
  return async (records, firstIndex) => {
    const out = await client.send(new PutRecordsCommand({
      StreamName: stream,
      Records: records.map((data, j) => ({ Data: data, PartitionKey: `pk-${firstIndex + j}` })),
    }));
    return (out.Records ?? []).flatMap((r, j) => (r.ErrorCode ? [j] : []));
  };
}

/**
 * Sends `batches` with up to `concurrency` calls in flight; records a call refuses are sent again
 * (with backoff) until accepted. Resolves when every record is acknowledged.
 */
export async function putConcurrently(
  put: PutBatch,
  batches: AsyncIterable<{ records: Buffer[]; firstIndex: number }> | Iterable<{ records: Buffer[]; firstIndex: number }>,
  concurrency: number,
): Promise<PutStats> {
  let calls = 0;
  let retried = 0;
  const inFlight = new Set<Promise<void>>();
  const sendOne = async (records: Buffer[], firstIndex: number): Promise<void> => {
    let pending = records.map((data, j) => ({ data, index: firstIndex + j }));
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt > 30) throw new Error(`${pending.length} records still refused after ${attempt} attempts`);
      if (attempt > 0) {
        retried += pending.length;
        await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 2000)));
      }
      calls++;
      const refused = await put(pending.map((p) => p.data), pending[0].index);
      pending = refused.map((j) => pending[j]);
    }
  };
  let failure: unknown;
  for await (const { records, firstIndex } of batches) {
    if (failure !== undefined) break;
    const p = sendOne(records, firstIndex).catch((error: unknown) => {
      failure ??= error;
    }).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= concurrency) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure !== undefined) throw failure;
  return { calls, retried };
}
