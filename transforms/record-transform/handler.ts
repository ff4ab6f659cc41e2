/**
 * Firehose transformation Lambda: validates, enriches and partitions each record of a batch.
 *
 * The contract (Firehose developer guide, "Data transformation"): one output record per input
 * `recordId`, `result` Ok / Dropped / ProcessingFailed, base64 `data`, and for dynamic partitioning
 * `metadata.partitionKeys`. A missing id fails the whole batch, so this handler never throws on
 * record content: every record becomes Ok, Dropped (blank records only) or ProcessingFailed with
 * its original bytes, which Firehose then writes to the error prefix unchanged.
 */
import type { FirehoseTransformationResult, FirehoseTransformationResultRecord } from 'aws-lambda';
import type { TransformationEvent, TransformationEventRecord } from '../shared/firehose-event';
import { TRANSFORM_RESPONSE_BUDGET_BYTES } from '../shared/limits';
import { FAILURE_REASON_DIMENSION, RECORD_TRANSFORM_SERVICE, TRANSFORM_RECORD_METRICS } from '../shared/metric-names';
import { pipelineSchema } from '../shared/pipeline';
import {
  describeFailure,
  LineBuffer,
  transformRecordInto,
  type FailureCategory,
  type IngestMetadata,
  type LineOutcome,
  type RecordFailure,
  type TransformDestination,
  type TransformSettings,
} from '../shared/record';
import { cachedSecret, piiHashKeyFromEnv } from '../shared/secrets';
import { createTelemetry, errorMessage, publishCounts, publishCountsBy, type Logger, type Metrics } from '../shared/telemetry';

export { failureReason, transformRecord } from '../shared/record';

export interface TransformHandlerOptions {
  readonly pipeline: string;
  readonly destination: TransformDestination;
  /** HMAC key of the `hash` PII mask: the key itself, or a function that fetches it (called once, then cached). */
  readonly piiHashKey: string | (() => Promise<string>);
  /** Clock for `sluice.processed_at`. @default () => new Date() */
  readonly now?: () => Date;
  /** Largest response the handler builds, in bytes. @default TRANSFORM_RESPONSE_BUDGET_BYTES (6 MB less 64 KiB) */
  readonly maxResponseBytes?: number;
  /** @default a Powertools Logger for service "record-transform" */
  readonly logger?: Logger;
  /** @default Powertools Metrics in namespace "Sluice" */
  readonly metrics?: Metrics;
}

export type TransformHandler = (event: TransformationEvent) => Promise<FirehoseTransformationResult>;

const DESTINATIONS: readonly TransformDestination[] = ['lake', 'search'];

/** Builds the transform for one pipeline and destination; the local twin builds one per pipeline in-process. */
export function createTransformHandler(options: TransformHandlerOptions): TransformHandler {
  const schema = pipelineSchema(options.pipeline);
  if (!DESTINATIONS.includes(options.destination)) {
    throw new Error(`destination must be one of ${DESTINATIONS.join(', ')}, got ${JSON.stringify(options.destination)}`);
  }
  const hashedFields = Object.entries(schema.model.extensions.pii).filter(([, mask]) => mask === 'hash').map(([field]) => field);
  if (hashedFields.length > 0 && options.piiHashKey === '') {
    throw new Error(`pipeline ${options.pipeline} masks ${hashedFields.join(', ')} with a keyed hash, so a PII hash key is required`);
  }
  // Pipelines without a `hash` mask never need the key: no Secrets Manager call for them.
  const hashKey = hashedFields.length > 0 ? cachedSecret(options.piiHashKey) : () => Promise.resolve('');
  const now = options.now ?? (() => new Date());
  const budget = options.maxResponseBytes ?? TRANSFORM_RESPONSE_BUDGET_BYTES;
  const telemetry = createTelemetry(RECORD_TRANSFORM_SERVICE, { pipeline: options.pipeline, destination: options.destination }, options);
  const { logger } = telemetry;
  // A buffer for the record being decoded and one for the batch's enriched lines, reused across
  // invocations: filled and read between two awaits, so concurrent invocations (the local twin)
  // never see each other's bytes.
  const decoded = new DecodeBuffer();
  const lines = new LineBuffer();

  return async (event) => {
    const started = performance.now();
    const piiHashKey = await hashKey();
    const settings: TransformSettings = { destination: options.destination, piiHashKey, processedAt: now() };
    const records = event.records ?? [];
    lines.clear();
    const outcomes = new Array<LineOutcome>(records.length);
    for (let i = 0; i < records.length; i++) outcomes[i] = transformOne(records[i], schema, settings, lines, decoded);
    const response = assembleResponse(records, outcomes, lines, budget);

    const failedBy = new Map<FailureCategory, number>();
    let ok = 0;
    let dropped = 0;
    let outputBytes = 0;
    for (let i = 0; i < records.length; i++) {
      const entry = response.records[i];
      outputBytes += entry.data?.length ?? 0;
      if (entry.result === 'Ok') ok++;
      else if (entry.result === 'Dropped') dropped++;
      else {
        const f = response.failures[i]!;
        failedBy.set(f.category, (failedBy.get(f.category) ?? 0) + 1);
        logger.warn('record failed', {
          recordId: records[i].recordId,
          category: f.category,
          field: f.field,
          rule: f.rule,
          reason: describeFailure(f),
        });
      }
    }
    const failed = records.length - ok - dropped;
    logger.info('batch transformed', {
      invocationId: event.invocationId,
      deliveryStreamArn: event.deliveryStreamArn,
      records: records.length,
      ok,
      dropped,
      failed,
      failedByReason: Object.fromEntries(failedBy),
      outputBase64Bytes: outputBytes,
      durationMs: Math.round(performance.now() - started),
    });
    publishCounts(telemetry, { [TRANSFORM_RECORD_METRICS.ok]: ok, [TRANSFORM_RECORD_METRICS.dropped]: dropped, [TRANSFORM_RECORD_METRICS.failed]: failed });
    publishCountsBy(telemetry, TRANSFORM_RECORD_METRICS.failed, FAILURE_REASON_DIMENSION, failedBy);
    return { records: response.records };
  };
}

function transformOne(
  r: TransformationEventRecord,
  schema: ReturnType<typeof pipelineSchema>,
  settings: TransformSettings,
  lines: LineBuffer,
  decoded: DecodeBuffer,
): LineOutcome {
  const mark = lines.length;
  try {
    return transformRecordInto(lines, schema, decoded.decode(typeof r.data === 'string' ? r.data : ''), ingestMetadata(r), settings);
  } catch (err) {
    // A bug, not bad data: fail this record alone, with the reason, rather than the batch.
    lines.truncate(mark);
    return { result: 'ProcessingFailed', failure: { category: 'internal', field: '/', rule: 'exception', message: errorMessage(err).slice(0, 500), issues: [] } };
  }
}

/** Base64 decoded into one reused buffer: a batch allocates no buffer per record. */
export class DecodeBuffer {
  private bytes: Buffer;

  constructor(initialBytes = 64 * 1024) {
    this.bytes = Buffer.allocUnsafe(initialBytes);
  }

  /** The bytes of `base64`, valid until the next call. */
  decode(base64: string): Buffer {
    // Base64 decodes to at most 3 bytes per 4 characters.
    const most = Math.ceil(base64.length / 4) * 3;
    if (most > this.bytes.length) this.bytes = Buffer.allocUnsafe(Math.max(most, this.bytes.length * 2));
    return this.bytes.subarray(0, this.bytes.write(base64, 0, 'base64'));
  }
}

function ingestMetadata(r: TransformationEventRecord): IngestMetadata {
  const k = r.kinesisRecordMetadata;
  return {
    arrivalMs: r.approximateArrivalTimestamp,
    kinesis: k ? { shardId: k.shardId, sequenceNumber: k.sequenceNumber, arrivalMs: k.approximateArrivalTimestamp } : undefined,
  };
}

interface AssembledResponse {
  readonly records: FirehoseTransformationResultRecord[];
  /** The failure of each ProcessingFailed entry, by index. */
  readonly failures: ReadonlyArray<RecordFailure | undefined>;
}

const ENVELOPE_BYTES = '{"records":[]}'.length;
/** `{"recordId":,"result":"","data":""}` less the id's JSON: the fixed bytes of every entry. */
const ENTRY_BYTES = '{"recordId":,"result":"","data":""}'.length;
const METADATA_BYTES = ',"metadata":{"partitionKeys":}'.length;
const PLAIN_ID = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/;

/** Bytes of a record id as JSON. */
function idBytes(recordId: string): number {
  return PLAIN_ID.test(recordId) ? recordId.length + 2 : Buffer.byteLength(JSON.stringify(recordId));
}

/** Characters of the padded base64 form of `bytes` bytes. */
function base64Length(bytes: number): number {
  return Math.ceil(bytes / 3) * 4;
}

/** JSON length of a flat string-to-string object whose keys and values need no escaping. */
function plainObjectJsonLength(o: Readonly<Record<string, string>>): number {
  let n = 1;
  for (const key in o) n += key.length + o[key].length + 6;
  return n === 1 ? 2 : n;
}

/**
 * Builds the response within the byte budget. Every record could fall back to ProcessingFailed with
 * its original bytes, and that response is never larger than the request Firehose sent (which
 * Lambda capped at 6 MB), so the budget starts from that; Ok records are then accepted in order
 * while their growth fits. Records that do not fit fail with reason `response-size` and reach
 * the DLQ (via the error prefix) intact, ready for `sluice replay`.
 */
export function assembleResponse(
  records: readonly TransformationEventRecord[],
  outcomes: readonly LineOutcome[],
  lines: LineBuffer,
  budgetBytes: number,
): AssembledResponse {
  const out: FirehoseTransformationResultRecord[] = new Array(records.length);
  const failures: Array<RecordFailure | undefined> = new Array(records.length);
  const original = (r: TransformationEventRecord): string => (typeof r.data === 'string' ? r.data : '');
  const ids = records.map((r) => idBytes(String(r.recordId)));
  // Dropped records keep that result; everything else may end up ProcessingFailed.
  const fallbackSizes = records.map((r, i) => ENTRY_BYTES + ids[i] + (outcomes[i].result === 'Dropped' ? 'Dropped' : 'ProcessingFailed').length + original(r).length);
  // Records of one partition share their keys object (see partitionKeysFor), and so their metadata.
  const metadataOf = new Map<Readonly<Record<string, string>>, { partitionKeys: Record<string, string> }>();
  let total = ENVELOPE_BYTES + Math.max(0, records.length - 1);
  for (const size of fallbackSizes) total += size;

  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const o = outcomes[i];
    if (o.result === 'Ok') {
      // Partition keys are column names and sanitized values: plain ASCII, so characters are bytes.
      const keysJson = o.partitionKeys ? plainObjectJsonLength(o.partitionKeys) : -1;
      const size = ENTRY_BYTES + ids[i] + 'Ok'.length + base64Length(o.end - o.start) + (keysJson === -1 ? 0 : METADATA_BYTES + keysJson);
      const growth = size - fallbackSizes[i];
      if (total + growth <= budgetBytes) {
        total += growth;
        const data = lines.base64(o.start, o.end);
        if (o.partitionKeys) {
          let metadata = metadataOf.get(o.partitionKeys);
          if (!metadata) {
            metadata = { partitionKeys: o.partitionKeys as Record<string, string> };
            metadataOf.set(o.partitionKeys, metadata);
          }
          out[i] = { recordId: r.recordId, result: 'Ok', data, metadata };
        } else {
          out[i] = { recordId: r.recordId, result: 'Ok', data };
        }
        continue;
      }
      failures[i] = {
        category: 'response-size',
        field: '/',
        rule: 'maxResponseBytes',
        message: `does not fit in this batch's response: enrichment grew the batch past Lambda's 6 MB response limit (budget ${budgetBytes} bytes); lower the Firehose processor buffer size`,
        issues: [],
      };
      out[i] = { recordId: r.recordId, result: 'ProcessingFailed', data: original(r) };
    } else if (o.result === 'Dropped') {
      out[i] = { recordId: r.recordId, result: 'Dropped', data: original(r) };
    } else {
      failures[i] = o.failure;
      out[i] = { recordId: r.recordId, result: 'ProcessingFailed', data: original(r) };
    }
  }
  return { records: out, failures };
}

let fromEnv: TransformHandler | undefined;

/** The Lambda entry point, configured by SLUICE_PIPELINE, SLUICE_DESTINATION and the PII hash key variables. */
export const handler: TransformHandler = (event) => {
  fromEnv ??= transformHandlerFromEnv(process.env);
  return fromEnv(event);
};

export function transformHandlerFromEnv(env: NodeJS.ProcessEnv): TransformHandler {
  const pipeline = env.SLUICE_PIPELINE;
  if (!pipeline) throw new Error('SLUICE_PIPELINE is not set: name the pipeline this transform serves (e.g. clickstream)');
  const destination = env.SLUICE_DESTINATION ?? 'lake';
  if (destination !== 'lake' && destination !== 'search') {
    throw new Error(`SLUICE_DESTINATION must be lake or search, got ${JSON.stringify(destination)}`);
  }
  const piiHashKey = piiHashKeyFromEnv(env);
  const needsKey = Object.values(pipelineSchema(pipeline).model.extensions.pii).includes('hash');
  if (needsKey && piiHashKey === undefined) {
    throw new Error(`pipeline ${pipeline} hashes PII fields: set SLUICE_PII_HASH_KEY_SECRET_ARN (Secrets Manager) or SLUICE_PII_HASH_KEY (local/dev)`);
  }
  return createTransformHandler({ pipeline, destination, piiHashKey: piiHashKey ?? '' });
}
