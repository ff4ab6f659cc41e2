/**
 * How much record data one transform invocation can take before its response outgrows Lambda's 6 MB.
 *
 * Enrichment grows records, and the response carries each one base64-encoded with its record id and
 * partition keys: for small records the response is about three times the data it answers. Firehose
 * accepts a processor buffer of up to 3 MB, so a pipeline can be configured to send invocations whose
 * whole answer cannot fit; the handler then fails the records past its budget as `response-size`
 * (they reach the dead-letter queue, safe to replay) rather than fail the batch. This estimate, from
 * the schema's own sample records through the transform's own code, lets `cdk synth` and the local
 * twin warn before that happens. Not part of the Lambda bundle.
 */
import type { FirehoseTransformationEventRecord } from 'aws-lambda';
import type { SluiceConfig } from '../../lib/config/types';
import { readSchema } from '../../lib/schema/registry';
import { sampleRecords } from '../../lib/schema/sample';
import { TRANSFORM_RESPONSE_BUDGET_BYTES } from '../shared/limits';
import { pipelineSchema } from '../shared/pipeline';
import { LineBuffer, transformRecordInto, type LineOutcome, type TransformDestination } from '../shared/record';
import { assembleResponse } from './handler';

const MiB = 1024 * 1024;

export interface ResponseBudgetEstimate {
  /** Average size of the sample records, in bytes. */
  readonly recordBytes: number;
  /** Average size of their enriched lines, in bytes. */
  readonly enrichedBytes: number;
  /** Response bytes per byte of record data, for records like these. */
  readonly responseBytesPerDataByte: number;
  /** The largest processor buffer, in MiB to one decimal (rounded down), whose response fits the handler's budget. */
  readonly maxBufferMiB: number;
}

/** Firehose's record ids in a transformation event are 56-digit numbers. */
const SAMPLE_RECORD_ID = '4965421874493017123234618542018309435626393273520947400000';

/**
 * The response the transform builds for `samples` of the pipeline's generated sample records, measured
 * as JSON, per byte of their data. Deterministic: the same schema gives the same estimate.
 */
export function estimateResponseBudget(pipeline: string, destination: TransformDestination, samples = 200): ResponseBudgetEstimate {
  const schema = pipelineSchema(pipeline);
  const data = sampleData(pipeline, samples);
  const records: FirehoseTransformationEventRecord[] = data.map((d, i) => ({
    recordId: `${SAMPLE_RECORD_ID.slice(0, -6)}${String(i).padStart(6, '0')}`,
    approximateArrivalTimestamp: Date.UTC(2026, 0, 1),
    data: d.toString('base64'),
  }));
  const lines = new LineBuffer();
  // The key's value does not change the size of a keyed hash.
  const settings = { destination, piiHashKey: 'estimate', processedAt: new Date(Date.UTC(2026, 0, 1)) };
  const outcomes: LineOutcome[] = data.map((d) => transformRecordInto(lines, schema, d, { arrivalMs: Date.UTC(2026, 0, 1) }, settings));
  const response = assembleResponse(records, outcomes, lines, Number.POSITIVE_INFINITY);
  const responseBytes = Buffer.byteLength(JSON.stringify({ records: response.records }), 'utf8');
  const dataBytes = data.reduce((n, d) => n + d.length, 0);
  const perByte = responseBytes / dataBytes;
  return {
    recordBytes: Math.round(dataBytes / data.length),
    enrichedBytes: Math.round(lines.length / Math.max(1, outcomes.filter((o) => o.result === 'Ok').length)),
    responseBytesPerDataByte: perByte,
    maxBufferMiB: Math.floor((TRANSFORM_RESPONSE_BUDGET_BYTES / perByte / MiB) * 10) / 10,
  };
}

const samplesByPipeline = new Map<string, Buffer[]>();

/** The pipeline's generated sample records as JSON bytes, made once per process (generating is the slow part). */
function sampleData(pipeline: string, count: number): Buffer[] {
  const key = `${pipeline}\u0000${count}`;
  let data = samplesByPipeline.get(key);
  if (!data) {
    data = sampleRecords(readSchema(pipeline), count, 1, { now: new Date(Date.UTC(2026, 0, 1)) }).map((r) => Buffer.from(JSON.stringify(r), 'utf8'));
    samplesByPipeline.set(key, data);
  }
  return data;
}

/**
 * One warning per pipeline transform whose configured processor buffer (`transform.processorBufferMiB`)
 * is larger than its response can answer for records like the schema's samples.
 */
export function processorBufferWarnings(config: Pick<SluiceConfig, 'pipelines'>): string[] {
  const warnings: string[] = [];
  for (const [name, p] of Object.entries(config.pipelines)) {
    for (const destination of ['lake', 'search'] as const) {
      if (!p.destinations.includes(destination)) continue;
      let estimate: ResponseBudgetEstimate;
      try {
        estimate = estimateResponseBudget(name, destination);
      } catch (error) {
        // Only a warning is at stake: the twin and the synth go on without it.
        warnings.push(`pipelines.${name}: the ${destination} transform's response size could not be estimated from the schema's samples (${(error as Error).message}); check transform.processorBufferMiB against Lambda's 6 MB response limit yourself.`);
        continue;
      }
      const configured = p.transform.processorBufferMiB;
      if (configured <= estimate.maxBufferMiB) continue;
      const responseMB = (configured * MiB * estimate.responseBytesPerDataByte) / 1e6;
      warnings.push(
        `pipelines.${name}.transform.processorBufferMiB is ${configured}, but the ${destination} transform's response to a full invocation `
        + `would be about ${responseMB.toFixed(1)} MB for records like ${name}'s samples (${estimate.recordBytes} bytes, ${estimate.enrichedBytes} once enriched), `
        + `over Lambda's 6 MB response limit: the records past it would fail as response-size and go to the dead-letter queue (safe to replay). `
        + `At most ${estimate.maxBufferMiB} fits; larger records leave more room.`,
      );
    }
  }
  return warnings;
}
