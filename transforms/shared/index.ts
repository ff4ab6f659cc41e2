/**
 * What the Lambdas share and what the local twin and the CLI reuse (e.g. `failureReason` for
 * `sluice replay`). Pure modules only: importing this pulls in no AWS SDK client.
 */
export {
  analyzeRecord,
  describeFailure,
  failureReason,
  transformRecord,
  DROP_RULE_EMPTY,
  MAX_EVENT_YEAR,
  MIN_EVENT_YEAR,
  type Analysis,
  type AnalyzedRecord,
  type FailureCategory,
  type IngestMetadata,
  type RecordFailure,
  type TransformDestination,
  type TransformOutcome,
  type TransformSettings,
} from './record';
export { isKnownPipeline, knownPipelines, pipelineSchema, type PipelineSchema } from './pipeline';
export { decodeJson, jsonErrorWithoutContent, type Decoded } from './json';
export { isoUtc, parseDateTime, timePartitions, type UtcTime } from './timestamps';
export { minorUnitDigits, toMinorUnits } from './money';
export { maskValue, REDACTED } from './pii';
export { METADATA_TABLE_KEYS, metadataKeys, ttlFrom } from './metadata-table';
export * from './limits';
