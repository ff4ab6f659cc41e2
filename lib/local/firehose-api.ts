/**
 * The local twin's Amazon Data Firehose endpoint: an HTTP server speaking the AWS JSON 1.1 protocol
 * (`POST /`, `X-Amz-Target: Firehose_20150804.<Operation>`) for PutRecord, PutRecordBatch,
 * DescribeDeliveryStream and ListDeliveryStreams, so the AWS SDKs, boto3 and the AWS CLI work
 * against it unchanged with `--endpoint-url`, error handling included. It also answers Lambda's Invoke
 * (`POST /2015-03-31/functions/<name>/invocations`) for the twin's own functions (its backend's
 * invokeFunction), so that a command runs them in the twin's process as it invokes the stack's.
 *
 * This file owns the wire protocol and AWS's request limits; buffering and delivery live behind
 * {@link FirehoseBackend}. Shapes, constraints and error codes follow botocore's Firehose model
 * (`firehose/2015-08-04/service-2.json`) and the service's observed answers, cited where used.
 * Signatures are not verified: any Authorization header is accepted.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isLoopbackBinding, refuseWebPageRequest, webPageProblem } from './request-guard';
import type { AddressInfo, Socket } from 'node:net';
import { endpointFor } from './endpoint';
import { parseJsonInPieces } from './json-pieces';
import { LAMBDA_MAX_ASYNC_REQUEST_BYTES, LAMBDA_MAX_REQUEST_BYTES } from '../../transforms/shared/limits';

export interface LocalDeliveryStream {
  readonly name: string;
  readonly arn: string;
  readonly type: 'DirectPut' | 'KinesisStreamAsSource';
  readonly sourceStreamArn?: string;
  readonly createdAt: Date;
  readonly destinations: ReadonlyArray<Record<string, unknown>>;
  /** The role Firehose reads the source Kinesis stream with; omitted from the description when unset. */
  readonly sourceRoleArn?: string;
  /** Changes whenever a destination changes. @default '1' */
  readonly versionId?: string;
  /** Server-side encryption as DescribeDeliveryStream reports it. @default { Status: 'DISABLED' } */
  readonly encryption?: Readonly<{ Status: string; KeyType?: string; KeyARN?: string }>;
}

export type IngestResult = { ok: true } | { ok: false; errorCode: string; errorMessage: string };

export interface FirehoseBackend {
  listDeliveryStreams(): ReadonlyArray<LocalDeliveryStream>;
  findDeliveryStream(name: string): LocalDeliveryStream | undefined;
  /** Accepts already-validated records (decoded bytes) with ids and arrival time; returns one result per record, in order. */
  ingest(
    streamName: string,
    records: ReadonlyArray<{ recordId: string; data: Buffer; arrivalTimestamp: number }>,
  ): Promise<IngestResult[]>;
  /**
   * Runs the twin's function `name` with `payload` as its event, as Lambda's Invoke (RequestResponse) does;
   * undefined when the twin has no function of that name. @default no functions
   */
  invokeFunction?(name: string, payload: unknown, invocation?: InvocationContext): Promise<FunctionAnswer | undefined>;
  /** Whether the twin has a function `name` (Lambda's DryRun asks without running it). @default no functions */
  hasFunction?(name: string): boolean;
}

/** What the endpoint tells the function it runs. */
export interface InvocationContext {
  /** The Invoke's request id, which Lambda's log lines name. */
  readonly requestId: string;
  /** The caller asked for the log (`X-Amz-Log-Type: Tail` on a synchronous Invoke): only then is one kept. @default false */
  readonly logTail?: boolean;
}

/** What an invocation answered, as Lambda's Invoke returns it. */
export interface FunctionAnswer {
  readonly payload: unknown;
  /** Set when the function failed (Lambda's X-Amz-Function-Error: `Unhandled` for one that threw). */
  readonly functionError?: string;
  /**
   * The invocation's execution log (Lambda's START line, what the function printed, END and REPORT), when the backend
   * captures it: `X-Amz-Log-Type: Tail` answers its last 4 KB. @default not captured (no X-Amz-Log-Result)
   */
  readonly log?: string;
}

export interface FirehoseApiOptions {
  /** Interface to listen on. @default '127.0.0.1' */
  host?: string;
  /** Port to listen on; 0 picks any free port. @default 4573 */
  port?: number;
  backend: FirehoseBackend;
  /**
   * Largest Firehose API request body read, in bytes; larger ones get a 413, once up to 96 times as much has been read
   * and discarded (a larger one is answered without reading it, its connection closed). A Lambda Invoke's limit is
   * Lambda's own, 6 MB (6,291,456 bytes), read and answered the same way; an Event invocation's payload over 1 MB
   * (1,048,576 bytes) is answered 413 too, in Lambda's words for it.
   * @default 8 MiB (8,388,608)
   */
  maxBodyBytes?: number;
  /** Account id named in ResourceNotFoundException messages. @default '000000000000' */
  accountId?: string;
  /** The region the twin's functions are in: a function ARN naming another is not found, as in Lambda. @default 'us-east-1' */
  region?: string;
  /** Told about every backend failure answered with ServiceUnavailableException. @default ignore */
  onBackendError?: (error: unknown, context: { operation: string; streamName: string; requestId: string }) => void;
  /** Sent with every answer (the twin names its data dir, so a command can tell which twin it reaches). @default none */
  headers?: Readonly<Record<string, string>>;
}

export interface RunningFirehoseApi {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** AWS's fixed PutRecord/PutRecordBatch limits (API reference; botocore model `Data.max`, `PutRecordBatchRequestEntryList.max`). */
export const FIREHOSE_LIMITS = { maxRecordBytes: 1024000, maxBatchRecords: 500, maxBatchBytes: 4194304 } as const;

export const DEFAULT_FIREHOSE_PORT = 4573;
const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;
const DEFAULT_ACCOUNT_ID = '000000000000';
const DEFAULT_REGION = 'us-east-1';
const TARGET_PREFIX = 'Firehose_20150804.';
/** Lambda's Invoke (REST JSON, API version 2015-03-31); the name is URL-encoded. */
const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/?]+)\/invocations(?:\?(.*))?$/;
/**
 * The forms Lambda's FunctionName takes (botocore model `NamespacedFunctionName`): a name, `account:function:name` or
 * `arn:aws:lambda:region:account:function:name`, each with an optional `:qualifier` (a version or alias).
 */
const FUNCTION_NAME = /^(?:(?:arn:aws[a-zA-Z-]*:lambda:([a-z0-9-]+):)?(\d{12}):function:)?([a-zA-Z0-9_-]+)(?::(\$LATEST|[a-zA-Z0-9_-]+))?$/;
const INVOCATION_TYPES = ['Event', 'RequestResponse', 'DryRun'] as const;
/** Lambda's LogType (botocore model `LogType`, in its order). */
const LOG_TYPES = ['None', 'Tail'] as const;
/** How much of the execution log `X-Amz-Log-Type: Tail` answers: its last 4 KB (Invoke API reference, `LogResult`). */
const LOG_TAIL_BYTES = 4096;
const CONTENT_TYPE = 'application/x-amz-json-1.1';

// botocore model: DeliveryStreamName, DestinationId, ListDeliveryStreamsInputLimit, DeliveryStreamType.
interface StringConstraint {
  readonly maxLength: number;
  readonly pattern: string;
}
const STREAM_NAME: StringConstraint = { maxLength: 64, pattern: '[a-zA-Z0-9_.-]+' };
const DESTINATION_ID: StringConstraint = { maxLength: 100, pattern: '[a-zA-Z0-9-]+' };
const STREAM_TYPES = ['DirectPut', 'KinesisStreamAsSource', 'MSKAsSource', 'DatabaseAsSource'] as const;
const MAX_LIST_LIMIT = 10000;
const DEFAULT_LIST_LIMIT = 10;

type JsonObject = Record<string, unknown>;
type Headers = Record<string, string>;

/** Lambda's LogResult: the base64 of the last 4 KB of an execution log (cut at a byte, as Lambda cuts it). */
function logTail(log: string): string {
  const bytes = Buffer.from(log, 'utf8');
  return bytes.subarray(Math.max(0, bytes.length - LOG_TAIL_BYTES)).toString('base64');
}

/** An error answered in AWS JSON form: `{"__type": code, "message": ...}` plus `x-amzn-ErrorType`. */
class FirehoseApiError extends Error {
  readonly httpStatus: number;
  readonly headers: Headers;

  constructor(readonly code: string, message: string, options: { httpStatus?: number; headers?: Headers } = {}) {
    super(message);
    this.httpStatus = options.httpStatus ?? httpStatusFor(code);
    this.headers = options.headers ?? {};
  }
}

/**
 * ServiceUnavailableException is the model's only server fault (`"fault": true`, no explicit
 * status), which Smithy's awsJson1_1 maps to 500; SDKs retry 500 and 503 alike. Everything else
 * the client caused is a 400, as AWS answers them.
 */
function httpStatusFor(code: string): number {
  switch (code) {
    case 'ServiceUnavailableException':
    case 'InternalFailure':
      return 500;
    case 'RequestEntityTooLargeException':
      return 413;
    default:
      return 400;
  }
}

/**
 * `value` as an HTTP header value: every character outside printable ASCII (a control character or one above U+00FF,
 * which Node's http refuses with ERR_INVALID_CHAR and the request dies as a socket hang up; Latin-1, which it sends
 * as bytes no client reads as UTF-8), and `%` itself, percent-encoded as UTF-8, so `decodeURIComponent` gives the
 * value back. Printable ASCII but `%`, so every AWS error code, passes unchanged.
 */
function headerValueOf(value: string): string {
  return value.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => Array.from(Buffer.from(c, 'utf8'), (b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}

/**
 * The answer to a request Node's HTTP parser refused before the endpoint saw it (headers too large or too slow, a
 * broken chunk, conflicting lengths): in AWS JSON form like every other error, so an SDK shows why, with the status
 * Node itself would send (431, 408, else 400), and the connection closed.
 */
function clientErrorResponse(error: Error & { code?: string }, extraHeaders: Headers = {}): string {
  const [status, reason, message] = error.code === 'HPE_HEADER_OVERFLOW'
    ? [431, 'Request Header Fields Too Large', 'the request headers are larger than this endpoint reads (16 KiB)']
    : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'Request Timeout', 'the request did not arrive in time']
      : [400, 'Bad Request', `the request is not HTTP this endpoint can read (${error.code ?? error.message})`];
  const body = JSON.stringify({ __type: 'SerializationException', message: `Request refused: ${message}.` });
  const headers: Headers = {
    'Content-Type': CONTENT_TYPE,
    'Content-Length': String(Buffer.byteLength(body)),
    'x-amzn-RequestId': randomUUID(),
    'x-amzn-ErrorType': 'SerializationException',
    ...extraHeaders,
    Connection: 'close',
  };
  return `HTTP/1.1 ${status} ${reason}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${body}`;
}

function serializationError(message: string): FirehoseApiError {
  return new FirehoseApiError('SerializationException', message);
}

/**
 * How many violations, and list entries within a value, a message spells out: a body of the largest
 * size the endpoint reads can hold hundreds of thousands of records, and a message naming each one
 * ran to tens of MB and held the event loop for seconds. The count stays exact.
 */
const MAX_LISTED = 25;

/** Collects constraint violations and reports them the way AWS's request validation does. */
class ValidationErrors {
  private readonly violations: string[] = [];
  private count = 0;

  add(renderedValue: string, path: string, constraint: string): void {
    this.count++;
    if (this.violations.length < MAX_LISTED) this.violations.push(`Value ${renderedValue} at '${path}' failed to satisfy constraint: ${constraint}`);
  }

  throwIfAny(): void {
    const { count } = this;
    if (count === 0) return;
    const summary = `${count} validation error${count === 1 ? '' : 's'} detected: `;
    const more = count > this.violations.length ? `; and ${count - this.violations.length} more` : '';
    throw new FirehoseApiError('ValidationException', summary + this.violations.join('; ') + more);
  }
}

function quoted(value: string): string {
  return `'${value}'`;
}

/** AWS renders a blob in validation messages as the Java ByteBuffer that held it. */
function renderBlob(data: Buffer): string {
  return `java.nio.HeapByteBuffer[pos=0 lim=${data.length} cap=${data.length}]`;
}

// ---------------------------------------------------------------------------------------------
// Reading request members. Wrong JSON types are SerializationException (the body cannot be read
// as the operation's input); values of the right type that break the model's constraints are
// ValidationException.
// ---------------------------------------------------------------------------------------------

function optionalString(input: JsonObject, key: string): string | undefined {
  const value = input[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') {
    throw serializationError(`${key} must be a JSON string, got ${describeJsonType(value)}.`);
  }
  return value;
}

function optionalInteger(input: JsonObject, key: string): number | undefined {
  const value = input[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw serializationError(`${key} must be a JSON integer, got ${describeJsonType(value)}.`);
  }
  return value;
}

function describeJsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  // A number JSON reads past double's range is Infinity, which JSON.stringify would write as null.
  return `a ${typeof value} (${typeof value === 'number' ? String(value) : JSON.stringify(value)})`;
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const BASE64_BODY = /^[A-Za-z0-9+/]*$/;

/**
 * Decodes a blob member. Node's decoder silently skips characters outside the alphabet, which
 * would hand the backend bytes the producer never sent, so the text is checked first.
 * Standard alphabet only; trailing `=` padding is optional, as in most JSON codecs.
 */
function decodeBase64Member(value: unknown, path: string): Buffer {
  if (typeof value !== 'string') {
    throw serializationError(`${path} must be a base64-encoded JSON string, got ${describeJsonType(value)}.`);
  }
  const unpadded = value.endsWith('==') ? value.slice(0, -2) : value.endsWith('=') ? value.slice(0, -1) : value;
  const wellFormed =
    BASE64_BODY.test(unpadded) &&
    unpadded.length % 4 !== 1 &&
    (unpadded.length === value.length || value.length % 4 === 0);
  if (!wellFormed) {
    throw serializationError(
      `${path} is not valid base64 (standard alphabet A-Z a-z 0-9 + /, optional = padding); ` +
        'encode the record bytes with base64 before sending them.',
    );
  }
  return Buffer.from(unpadded, 'base64');
}

function validateString(
  value: string | undefined,
  path: string,
  constraint: StringConstraint,
  errors: ValidationErrors,
  options: { required: boolean },
): void {
  if (value === undefined) {
    if (options.required) errors.add('null', path, 'Member must not be null');
    return;
  }
  const { maxLength, pattern } = constraint;
  if (value.length < 1) errors.add(quoted(value), path, 'Member must have length greater than or equal to 1');
  if (value.length > maxLength) errors.add(quoted(value), path, `Member must have length less than or equal to ${maxLength}`);
  if (!new RegExp(`^(?:${pattern})$`).test(value)) {
    errors.add(quoted(value), path, `Member must satisfy regular expression pattern: ${pattern}`);
  }
}

function validateLimit(limit: number | undefined, path: string, errors: ValidationErrors): void {
  if (limit === undefined) return;
  if (limit < 1) errors.add(quoted(String(limit)), path, 'Member must have value greater than or equal to 1');
  if (limit > MAX_LIST_LIMIT) {
    errors.add(quoted(String(limit)), path, `Member must have value less than or equal to ${MAX_LIST_LIMIT}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Record ids
// ---------------------------------------------------------------------------------------------

let recordSequence = 0n;
const processNonce = randomBytes(8);
const RECORD_ID_RANDOM_BYTES = 152;
/** Random bytes drawn in bulk: one randomBytes call per record cost ~8 µs, most of an ingest's CPU. */
let randomPool = Buffer.alloc(0);
let randomPoolAt = 0;

/**
 * Firehose answers opaque 224-character base64 record ids. These have the same shape: a per-process
 * nonce and a counter (unique within and, with overwhelming odds, across runs) then random bytes.
 * A batch's ids are laid out back to back and encoded at once: 168 bytes is a whole number of base64
 * groups, so each id's 224 characters are its own encoding.
 */
function newRecordIds(count: number): string[] {
  const idBytes = 16 + RECORD_ID_RANDOM_BYTES;
  const all = Buffer.allocUnsafe(idBytes * count);
  for (let i = 0; i < count; i++) {
    if (randomPoolAt + RECORD_ID_RANDOM_BYTES > randomPool.length) {
      randomPool = randomBytes(RECORD_ID_RANDOM_BYTES * 512);
      randomPoolAt = 0;
    }
    const at = i * idBytes;
    processNonce.copy(all, at);
    recordSequence += 1n;
    all.writeBigUInt64BE(recordSequence, at + 8);
    randomPool.copy(all, at + 16, randomPoolAt, randomPoolAt + RECORD_ID_RANDOM_BYTES);
    randomPoolAt += RECORD_ID_RANDOM_BYTES;
  }
  const text = all.toString('base64');
  const idChars = (idBytes / 3) * 4;
  return Array.from({ length: count }, (_, i) => text.slice(i * idChars, (i + 1) * idChars));
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

interface OperationContext {
  readonly backend: FirehoseBackend;
  readonly accountId: string;
  readonly requestId: string;
  readonly operation: string;
  readonly onBackendError?: FirehoseApiOptions['onBackendError'];
}

type Operation = (input: JsonObject, context: OperationContext) => Promise<JsonObject>;

interface IncomingRecord {
  readonly data: Buffer;
}

function findStreamOrThrow(name: string, context: OperationContext): LocalDeliveryStream {
  const stream = context.backend.findDeliveryStream(name);
  if (!stream) {
    throw new FirehoseApiError('ResourceNotFoundException', `Firehose ${name} under account ${context.accountId} not found.`);
  }
  return stream;
}

/** Direct puts to a Kinesis-sourced stream are refused, word for word as AWS does (see AWS-FACTS.md). */
function assertAcceptsDirectPut(stream: LocalDeliveryStream): void {
  if (stream.type === 'KinesisStreamAsSource') {
    throw new FirehoseApiError(
      'InvalidArgumentException',
      'This operation is not permitted on KinesisStreamAsSource delivery stream type.',
    );
  }
}

function isEncrypted(stream: LocalDeliveryStream): boolean {
  return stream.encryption?.Status === 'ENABLED';
}

/**
 * Hands records to the backend. A record is acknowledged only when the backend says ok for it; if
 * the backend throws or answers out of contract, the whole call is ServiceUnavailableException so
 * the producer retries everything (Firehose is at-least-once, so a retry may duplicate, never lose).
 */
async function ingest(
  streamName: string,
  records: ReadonlyArray<IncomingRecord>,
  context: OperationContext,
): Promise<Array<{ recordId: string; result: IngestResult }>> {
  const arrivalTimestamp = Date.now();
  const ids = newRecordIds(records.length);
  const batch = records.map((record, i) => ({ recordId: ids[i], data: record.data, arrivalTimestamp }));
  let results: IngestResult[];
  try {
    results = await context.backend.ingest(streamName, batch);
    if (!Array.isArray(results) || results.length !== batch.length) {
      throw new Error(
        `backend returned ${Array.isArray(results) ? results.length : typeof results} results for ${batch.length} records`,
      );
    }
  } catch (error) {
    context.onBackendError?.(error, { operation: context.operation, streamName, requestId: context.requestId });
    throw new FirehoseApiError(
      'ServiceUnavailableException',
      `Delivery stream ${streamName} could not accept the records (${errorText(error)}); ` +
        'no record of this request was acknowledged. Back off and retry.',
    );
  }
  return batch.map((record, index) => ({ recordId: record.recordId, result: results[index] }));
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const putRecord: Operation = async (input, context) => {
  const streamName = optionalString(input, 'DeliveryStreamName');
  const record = input.Record;
  if (record !== undefined && record !== null && !isJsonObject(record)) {
    throw serializationError(`Record must be a JSON object like {"Data": "<base64>"}, got ${describeJsonType(record)}.`);
  }
  const rawData = record?.Data;
  const data = rawData === undefined || rawData === null ? undefined : decodeBase64Member(rawData, 'Record.Data');

  const errors = new ValidationErrors();
  validateString(streamName, 'deliveryStreamName', STREAM_NAME, errors, { required: true });
  if (record === undefined || record === null) {
    errors.add('null', 'record', 'Member must not be null');
  } else if (data === undefined) {
    errors.add('null', 'record.data', 'Member must not be null');
  } else if (data.length > FIREHOSE_LIMITS.maxRecordBytes) {
    errors.add(
      quoted(renderBlob(data)),
      'record.data',
      `Member must have length less than or equal to ${FIREHOSE_LIMITS.maxRecordBytes}`,
    );
  }
  errors.throwIfAny();

  const stream = findStreamOrThrow(streamName!, context);
  assertAcceptsDirectPut(stream);
  const [outcome] = await ingest(stream.name, [{ data: data! }], context);
  if (!outcome.result.ok) {
    throw new FirehoseApiError(outcome.result.errorCode, outcome.result.errorMessage);
  }
  return { RecordId: outcome.recordId, Encrypted: isEncrypted(stream) };
};

const putRecordBatch: Operation = async (input, context) => {
  const streamName = optionalString(input, 'DeliveryStreamName');
  const rawRecords = input.Records;
  if (rawRecords !== undefined && rawRecords !== null && !Array.isArray(rawRecords)) {
    throw serializationError(`Records must be a JSON array of {"Data": "<base64>"}, got ${describeJsonType(rawRecords)}.`);
  }
  const entries: unknown[] = Array.isArray(rawRecords) ? rawRecords : [];
  const records: Array<Buffer | undefined | null> = entries.map((entry, index) => {
    if (entry === null || entry === undefined) return null;
    if (!isJsonObject(entry)) {
      const found = describeJsonType(entry);
      throw serializationError(`Records[${index}] must be a JSON object like {"Data": "<base64>"}, got ${found}.`);
    }
    const rawData = entry.Data;
    return rawData === undefined || rawData === null ? undefined : decodeBase64Member(rawData, `Records[${index}].Data`);
  });

  const errors = new ValidationErrors();
  validateString(streamName, 'deliveryStreamName', STREAM_NAME, errors, { required: true });
  if (rawRecords === undefined || rawRecords === null) {
    errors.add('null', 'records', 'Member must not be null');
  } else if (records.length < 1) {
    errors.add(quoted('[]'), 'records', 'Member must have length greater than or equal to 1');
  } else if (records.length > FIREHOSE_LIMITS.maxBatchRecords) {
    // Observed from the service: `1 validation error detected: Value '[Record(data=java.nio.HeapByteBuffer[...]), ...]'
    // at 'records' failed to satisfy constraint: Member must have length less than or equal to 500`.
    const listed = records.slice(0, MAX_LISTED).map((data) => (data ? `Record(data=${renderBlob(data)})` : 'Record(data=null)'));
    const rendered = listed.join(', ') + (records.length > listed.length ? `, ... (${records.length - listed.length} more)` : '');
    const constraint = `Member must have length less than or equal to ${FIREHOSE_LIMITS.maxBatchRecords}`;
    errors.add(quoted(`[${rendered}]`), 'records', constraint);
  }
  // List members are addressed 1-based, as in AWS's `records.97.member.data`.
  records.forEach((data, index) => {
    const path = `records.${index + 1}.member`;
    if (data === null) errors.add('null', path, 'Member must not be null');
    else if (data === undefined) errors.add('null', `${path}.data`, 'Member must not be null');
    else if (data.length > FIREHOSE_LIMITS.maxRecordBytes) {
      errors.add(
        quoted(renderBlob(data)),
        `${path}.data`,
        `Member must have length less than or equal to ${FIREHOSE_LIMITS.maxRecordBytes}`,
      );
    }
  });
  errors.throwIfAny();

  const stream = findStreamOrThrow(streamName!, context);
  assertAcceptsDirectPut(stream);
  const batch = records as Buffer[];
  const totalBytes = batch.reduce((sum, data) => sum + data.length, 0);
  if (totalBytes > FIREHOSE_LIMITS.maxBatchBytes) {
    // The 4 MiB total is not a model constraint but a service check: AWS answers
    // `InvalidArgumentException: Records size exceeds 4 MB limit` (observed with boto3; the
    // 500-record cap, a model constraint, is a ValidationException instead).
    throw new FirehoseApiError('InvalidArgumentException', 'Records size exceeds 4 MB limit');
  }

  const outcomes = await ingest(stream.name, batch.map((data) => ({ data })), context);
  let failedPutCount = 0;
  const requestResponses = outcomes.map(({ recordId, result }) => {
    if (result.ok) return { RecordId: recordId };
    failedPutCount += 1;
    return { ErrorCode: result.errorCode, ErrorMessage: result.errorMessage };
  });
  return { FailedPutCount: failedPutCount, Encrypted: isEncrypted(stream), RequestResponses: requestResponses };
};

const describeDeliveryStream: Operation = async (input, context) => {
  const streamName = optionalString(input, 'DeliveryStreamName');
  const limit = optionalInteger(input, 'Limit');
  const exclusiveStartDestinationId = optionalString(input, 'ExclusiveStartDestinationId');

  const errors = new ValidationErrors();
  validateString(streamName, 'deliveryStreamName', STREAM_NAME, errors, { required: true });
  validateLimit(limit, 'limit', errors);
  validateString(exclusiveStartDestinationId, 'exclusiveStartDestinationId', DESTINATION_ID, errors, { required: false });
  errors.throwIfAny();

  const stream = findStreamOrThrow(streamName!, context);
  let destinations = [...stream.destinations];
  if (exclusiveStartDestinationId !== undefined) {
    const start = destinations.findIndex((d) => d.DestinationId === exclusiveStartDestinationId);
    destinations = start >= 0 ? destinations.slice(start + 1) : destinations;
  }
  const page = destinations.slice(0, limit ?? MAX_LIST_LIMIT);
  const createTimestamp = stream.createdAt.getTime() / 1000;

  const description: JsonObject = {
    DeliveryStreamName: stream.name,
    DeliveryStreamARN: stream.arn,
    DeliveryStreamStatus: 'ACTIVE',
    DeliveryStreamEncryptionConfiguration: stream.encryption ?? { Status: 'DISABLED' },
    DeliveryStreamType: stream.type,
    VersionId: stream.versionId ?? '1',
    CreateTimestamp: createTimestamp,
    Destinations: page,
    HasMoreDestinations: page.length < destinations.length,
  };
  if (stream.type === 'KinesisStreamAsSource') {
    description.Source = {
      KinesisStreamSourceDescription: {
        ...(stream.sourceStreamArn !== undefined && { KinesisStreamARN: stream.sourceStreamArn }),
        ...(stream.sourceRoleArn !== undefined && { RoleARN: stream.sourceRoleArn }),
        DeliveryStartTimestamp: createTimestamp,
      },
    };
  }
  return { DeliveryStreamDescription: description };
};

const listDeliveryStreams: Operation = async (input, context) => {
  const limit = optionalInteger(input, 'Limit');
  const type = optionalString(input, 'DeliveryStreamType');
  const exclusiveStart = optionalString(input, 'ExclusiveStartDeliveryStreamName');

  const errors = new ValidationErrors();
  validateLimit(limit, 'limit', errors);
  if (type !== undefined && !(STREAM_TYPES as readonly string[]).includes(type)) {
    errors.add(quoted(type), 'deliveryStreamType', `Member must satisfy enum value set: [${STREAM_TYPES.join(', ')}]`);
  }
  validateString(exclusiveStart, 'exclusiveStartDeliveryStreamName', STREAM_NAME, errors, { required: false });
  errors.throwIfAny();

  // Names come back in alphabetical order; the exclusive start need not name an existing stream.
  const names = context.backend
    .listDeliveryStreams()
    .filter((stream) => type === undefined || stream.type === type)
    .map((stream) => stream.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .filter((name) => exclusiveStart === undefined || name > exclusiveStart);
  const pageSize = limit ?? DEFAULT_LIST_LIMIT;
  return { DeliveryStreamNames: names.slice(0, pageSize), HasMoreDeliveryStreams: names.length > pageSize };
};

const OPERATIONS: Readonly<Record<string, Operation>> = {
  PutRecord: putRecord,
  PutRecordBatch: putRecordBatch,
  DescribeDeliveryStream: describeDeliveryStream,
  ListDeliveryStreams: listDeliveryStreams,
};

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/** The operation a request names, or the error AWS answers when it names none it knows. */
function operationFor(req: IncomingMessage): { name: string; run: Operation } {
  if (req.method !== 'POST') {
    const message = `${req.method} is not supported; send POST / with X-Amz-Target: ${TARGET_PREFIX}<Operation>.`;
    throw new FirehoseApiError('UnknownOperationException', message, { httpStatus: 405, headers: { Allow: 'POST' } });
  }
  const target = req.headers['x-amz-target'];
  if (typeof target !== 'string' || !target.startsWith(TARGET_PREFIX)) {
    const found = target === undefined ? 'no X-Amz-Target header' : `X-Amz-Target ${JSON.stringify(target)}`;
    throw new FirehoseApiError('UnknownOperationException', `Got ${found}; expected ${TARGET_PREFIX}<Operation>.`);
  }
  const name = target.slice(TARGET_PREFIX.length);
  if (!Object.hasOwn(OPERATIONS, name)) {
    const supported = Object.keys(OPERATIONS).join(', ');
    const message = `Operation ${name} is not supported by the local Firehose endpoint; supported: ${supported}.`;
    throw new FirehoseApiError('UnknownOperationException', message);
  }
  return { name, run: OPERATIONS[name] };
}

function parseRequestBody(body: Buffer): JsonObject {
  // An empty body reads as `{}`, as some clients send nothing for operations without required members.
  if (isBlank(body)) return {};
  let input: unknown;
  try {
    // A PutRecordBatch body runs to megabytes: read in pieces, it never becomes one costly large string.
    input = parseJsonInPieces(body);
  } catch (error) {
    throw serializationError(`Request body is not valid JSON: ${errorText(error)}.`);
  }
  if (!isJsonObject(input)) {
    throw serializationError(`Request body must be a JSON object, got ${describeJsonType(input)}.`);
  }
  return input;
}

/** Whether `body` holds only whitespace, as `String.prototype.trim` counts it. */
function isBlank(body: Buffer): boolean {
  for (const b of body) {
    if (b >= 0x80) return body.toString('utf8').trim() === ''; // e.g. a byte order mark or a no-break space
    if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09 && b !== 0x0b && b !== 0x0c) return false;
  }
  return true;
}

type BodyOutcome =
  | { kind: 'complete'; body: Buffer }
  /** `drained` = the whole body was read (and discarded), so the connection can stay open. */
  | { kind: 'tooLarge'; drained: boolean }
  | { kind: 'aborted' };

function declaredContentLength(req: IncomingMessage): number | undefined {
  const header = req.headers['content-length'];
  if (header === undefined) return undefined;
  const length = Number(header);
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}

/**
 * Reads at most `maxBytes` of body into memory. Past that the rest is read and thrown away, up to
 * `drainLimit` bytes and for at most `drainMs`, so that the 413 reaches a client still uploading:
 * closing on unread data resets the connection, and the client sees EPIPE or ECONNRESET instead of
 * the answer, which the SDKs take for a network fault and retry, upload and all. Beyond `drainLimit`
 * (or when the declared length already says so), or a body still arriving after `drainMs`, the
 * answer goes out with the connection closed, without reading further.
 */
function readBoundedBody(req: IncomingMessage, maxBytes: number, drainLimit: number, drainMs: number): Promise<BodyOutcome> {
  const declared = declaredContentLength(req);
  if (declared !== undefined && declared > drainLimit) {
    return Promise.resolve({ kind: 'tooLarge', drained: false });
  }
  return new Promise((resolve) => {
    let chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    let drainTimer: NodeJS.Timeout | undefined;
    const settle = (outcome: BodyOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(drainTimer);
      resolve(outcome);
    };
    const stopReading = (): void => {
      req.pause();
      chunks = [];
      settle({ kind: 'tooLarge', drained: false });
    };
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > drainLimit) {
        stopReading();
      } else if (received > maxBytes) {
        chunks = [];
        drainTimer ??= setTimeout(stopReading, drainMs).unref();
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => {
      if (received > maxBytes) settle({ kind: 'tooLarge', drained: true });
      else settle({ kind: 'complete', body: Buffer.concat(chunks, received) });
    });
    req.on('error', () => settle({ kind: 'aborted' }));
    req.on('close', () => settle({ kind: 'aborted' }));
  });
}

/**
 * How much of an oversized body is read and discarded, as a multiple of the body limit (768 MiB for the
 * default 8 MiB), and for how long, so that its sender gets the 413: the largest PutRecordBatch the model
 * lets an SDK send (500 records of 1,000 KiB, ~683 MB in base64) fits. A larger or slower body is cut off.
 */
const DRAIN_LIMIT_FACTOR = 96;
const DRAIN_TIME_LIMIT_MS = 30_000;

/** How long close() lets a request body that is still arriving finish before cutting its connection. */
const CLOSE_BODY_GRACE_MS = 2000;

/** How long an idle keep-alive connection stays open (the `Keep-Alive: timeout=` the server announces). */
export const KEEP_ALIVE_TIMEOUT_MS = 30_000;

/** Starts the endpoint; resolves once it listens. */
export function startFirehoseApi(options: FirehoseApiOptions): Promise<RunningFirehoseApi> {
  const host = options.host ?? DEFAULT_HOST;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 1) {
    throw new Error(`maxBodyBytes must be a positive integer number of bytes, got ${maxBodyBytes}`);
  }
  const accountId = options.accountId ?? DEFAULT_ACCOUNT_ID;
  const region = options.region ?? DEFAULT_REGION;

  let closing = false;
  let inFlight = 0;
  const server = createServer();
  // Node's 5 s keep-alive would have this server close a client's idle connection just as the client, its event loop busy
  // for seconds (a producer in this process, a loaded laptop), writes its next request on it: the request dies with
  // ECONNRESET. The SDK's agent keeps an idle socket with no timer of its own (Node's agent heeds the announced timeout
  // only when it is given a timeout), so the server's close is the one that counts: a longer one moves that race out of
  // any plausible stall (still under Node's 60 s headersTimeout).
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  // Requests whose body is still arriving: nothing of theirs is acknowledged, so close() may cut them off.
  const reading = new Set<IncomingMessage>();
  // Per connection, responses not yet sent, and what to do once they are (answer a malformed request after them).
  const pending = new WeakMap<Socket, number>();
  const afterPending = new WeakMap<Socket, () => void>();

  const send = (res: ServerResponse, requestId: string, status: number, payload: unknown, headers: Headers = {}): void => {
    if (res.headersSent || res.destroyed) return;
    const body = Buffer.from(JSON.stringify(payload), 'utf8');
    res.writeHead(status, {
      'Content-Type': CONTENT_TYPE,
      'Content-Length': String(body.length),
      'x-amzn-RequestId': requestId,
      ...options.headers,
      ...(closing && { Connection: 'close' }),
      ...headers,
    });
    res.end(body);
  };

  const sendError = (res: ServerResponse, requestId: string, error: FirehoseApiError): void => {
    // The code comes from the backend too; the body keeps it exactly, the header as Node's http can send it.
    const headers = { 'x-amzn-ErrorType': headerValueOf(error.code), ...error.headers };
    send(res, requestId, error.httpStatus, { __type: error.code, message: error.message }, headers);
  };

  const tooLarge = (drained: boolean): FirehoseApiError =>
    new FirehoseApiError(
      'RequestEntityTooLargeException',
      `Request body exceeds this endpoint's ${maxBodyBytes}-byte limit; send at most ` +
        `${FIREHOSE_LIMITS.maxBatchRecords} records and ${FIREHOSE_LIMITS.maxBatchBytes} bytes of data per PutRecordBatch.`,
      { headers: drained ? {} : { Connection: 'close' } },
    );

  /**
   * Lambda's Invoke past a payload limit, as Lambda answers it: 413 with RequestEntityTooLargeException and `message`
   * (its model's RequestTooLargeException is not what it sends for this).
   */
  const invokeTooLarge = (res: ServerResponse, requestId: string, message: string, drained: boolean): void => {
    send(res, requestId, 413, { Type: 'User', Message: message },
      { 'x-amzn-ErrorType': 'RequestEntityTooLargeException', ...(drained ? {} : { Connection: 'close' }) });
  };
  /** Lambda's words for a request over its 6 MB limit, any invocation type. */
  const requestTooLarge = `Request must be smaller than ${LAMBDA_MAX_REQUEST_BYTES} bytes for the InvokeFunction operation`;
  /** Lambda's words for an Event (asynchronous) invocation's payload of `bytes`, over its 1 MB limit but within 6 MB. */
  const eventTooLarge = (bytes: number) => `${bytes} byte payload is too large for the Event invocation type (limit ${LAMBDA_MAX_ASYNC_REQUEST_BYTES} bytes)`;
  const isEvent = (req: IncomingMessage): boolean => req.headers['x-amz-invocation-type'] === 'Event';

  /** The largest body `req` may have: Lambda's 6 MB for an Invoke (an Event's 1 MB is checked on the payload read), the endpoint's own for the Firehose API. */
  const bodyLimitFor = (req: IncomingMessage): { invoke: boolean; maxBytes: number } =>
    INVOKE_PATH.test(req.url ?? '') ? { invoke: true, maxBytes: LAMBDA_MAX_REQUEST_BYTES } : { invoke: false, maxBytes: maxBodyBytes };

  const checkHost = isLoopbackBinding(host);
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const requestId = randomUUID();
    const fromWebPage = webPageProblem(req, checkHost);
    if (fromWebPage !== undefined) {
      refuseWebPageRequest(res, fromWebPage);
      return;
    }
    reading.add(req);
    const limit = bodyLimitFor(req);
    const body = await readBoundedBody(req, limit.maxBytes, limit.maxBytes * DRAIN_LIMIT_FACTOR, DRAIN_TIME_LIMIT_MS).finally(() => reading.delete(req));
    if (body.kind === 'aborted') {
      res.destroy();
      return;
    }
    if (body.kind === 'tooLarge') {
      if (limit.invoke) invokeTooLarge(res, requestId, requestTooLarge, body.drained);
      else sendError(res, requestId, tooLarge(body.drained));
      return;
    }
    const invoked = INVOKE_PATH.exec(req.url ?? '');
    if (invoked !== null) {
      await answerInvoke(req, res, requestId, invoked[1], invoked[2] ?? '', body.body);
      return;
    }
    let operationName = '';
    let input: JsonObject = {};
    try {
      const operation = operationFor(req);
      operationName = operation.name;
      if (closing) {
        throw new FirehoseApiError('ServiceUnavailableException', 'The local Firehose endpoint is shutting down; retry later.');
      }
      input = parseRequestBody(body.body);
      const context = { backend: options.backend, accountId, requestId, operation: operationName, onBackendError: options.onBackendError };
      send(res, requestId, 200, await operation.run(input, context));
    } catch (error) {
      if (error instanceof FirehoseApiError) {
        sendError(res, requestId, error);
        return;
      }
      // Only the backend's listDeliveryStreams/findDeliveryStream throw anything else: its fault, not the caller's.
      const streamName = typeof input.DeliveryStreamName === 'string' ? input.DeliveryStreamName : '';
      options.onBackendError?.(error, { operation: operationName, streamName, requestId });
      const message = `The local Firehose backend failed: ${errorText(error)}. Back off and retry.`;
      sendError(res, requestId, new FirehoseApiError('ServiceUnavailableException', message));
    }
  };

  /** An answer without a body (Lambda's 202 to an Event invocation, 204 to a DryRun). */
  const sendEmpty = (res: ServerResponse, requestId: string, status: number): void => {
    if (res.headersSent || res.destroyed) return;
    // A 204 carries no Content-Length (RFC 9110, 8.6); a 202 says its empty body's.
    res.writeHead(status, { ...(status !== 204 && { 'Content-Length': '0' }), 'x-amzn-RequestId': requestId, ...options.headers, ...(closing && { Connection: 'close' }) });
    res.end();
  };

  /**
   * Lambda's Invoke of one of the twin's functions (`encodedName` as the path has it, `query` after its `?`); errors as
   * Lambda answers them (`x-amzn-ErrorType`, `Message`). The name may be an ARN or a partial ARN, as Lambda takes it;
   * the twin runs `$LATEST` only, in its own region. `X-Amz-Invocation-Type` as Lambda reads it: RequestResponse (the
   * default) answers 200 with the function's payload, Event 202 with none (the function run before the answer), DryRun
   * 204 without running it. `X-Amz-Log-Type: Tail` on a RequestResponse adds `X-Amz-Log-Result`, the base64 of the last
   * 4 KB of the invocation's log, when the backend captured one.
   */
  const answerInvoke = async (req: IncomingMessage, res: ServerResponse, requestId: string, encodedName: string, query: string, body: Buffer): Promise<void> => {
    const refuse = (status: number, type: string, message: string) => send(res, requestId, status, { Type: status < 500 ? 'User' : 'Service', Message: message }, { 'x-amzn-ErrorType': type });
    if (closing) return refuse(500, 'ServiceException', 'The local twin is shutting down; its functions take no invocations.');
    let given: string;
    try {
      given = decodeURIComponent(encodedName);
    } catch {
      // A broken %-escape names no function: said as Lambda says a name it cannot take, not a connection cut without an answer.
      return refuse(400, 'ValidationException', `The function name in the path (${encodedName}) is not URL-encoded UTF-8: encode the name with encodeURIComponent.`);
    }
    const typeHeader = req.headers['x-amz-invocation-type'];
    const invocationType = typeof typeHeader === 'string' ? typeHeader : 'RequestResponse';
    if (!(INVOCATION_TYPES as readonly string[]).includes(invocationType)) {
      return refuse(400, 'ValidationException', `1 validation error detected: Value '${invocationType}' at 'invocationType' failed to satisfy constraint: ` +
        `Member must satisfy enum value set: [${INVOCATION_TYPES.join(', ')}]`);
    }
    const logTypeHeader = req.headers['x-amz-log-type'];
    const logType = typeof logTypeHeader === 'string' ? logTypeHeader : 'None';
    if (!(LOG_TYPES as readonly string[]).includes(logType)) {
      return refuse(400, 'ValidationException', `1 validation error detected: Value '${logType}' at 'logType' failed to satisfy constraint: ` +
        `Member must satisfy enum value set: [${LOG_TYPES.join(', ')}]`);
    }
    const parts = FUNCTION_NAME.exec(given);
    const name = parts?.[3] ?? given;
    const inName = parts?.[4];
    const inQuery = new URLSearchParams(query).get('Qualifier') ?? undefined;
    if (inName !== undefined && inQuery !== undefined && inName !== inQuery) {
      return refuse(400, 'InvalidParameterValueException', 'The derived qualifier from the function name does not match the specified qualifier.');
    }
    const qualifier = inName ?? inQuery;
    // Lambda's own answer to an ARN of another region; the ARN is as given, so the message names no qualifier twice.
    if (parts?.[1] !== undefined && parts[1] !== region) {
      return refuse(404, 'ResourceNotFoundException', `Functions from '${parts[1]}' are not reachable in this region ('${region}')`);
    }
    const notFound = (why: string) => refuse(404, 'ResourceNotFoundException', `Function not found: ${given}${inName === undefined && qualifier !== undefined ? `:${qualifier}` : ''} (${why})`);
    if (parts?.[2] !== undefined && parts[2] !== accountId) return notFound(`the local twin's functions are in account ${accountId}`);
    if (qualifier !== undefined && qualifier !== '$LATEST') return notFound('the local twin runs each function\'s $LATEST only: it has no versions or aliases');
    if (invocationType === 'DryRun') {
      if (options.backend.hasFunction?.(name) !== true) return notFound('the local twin runs no function of that name');
      return sendEmpty(res, requestId, 204);
    }
    if (invocationType === 'Event' && body.length > LAMBDA_MAX_ASYNC_REQUEST_BYTES) {
      return invokeTooLarge(res, requestId, eventTooLarge(body.length), true);
    }
    let payload: unknown;
    try {
      payload = isBlank(body) ? {} : JSON.parse(body.toString('utf8'));
    } catch (error) {
      return refuse(400, 'InvalidRequestContentException', `Could not parse request body into json: ${errorText(error)}`);
    }
    let answer: FunctionAnswer | undefined;
    try {
      answer = await options.backend.invokeFunction?.(name, payload, { requestId, logTail: logType === 'Tail' && invocationType !== 'Event' });
    } catch (error) {
      return refuse(500, 'ServiceException', `The local twin could not invoke ${name}: ${errorText(error)}`);
    }
    if (answer === undefined) return notFound('the local twin runs no function of that name');
    if (invocationType === 'Event') return sendEmpty(res, requestId, 202);
    send(res, requestId, 200, answer.payload ?? null, {
      ...(answer.functionError !== undefined && { 'X-Amz-Function-Error': answer.functionError }),
      ...(logType === 'Tail' && answer.log !== undefined && { 'X-Amz-Log-Result': logTail(answer.log) }),
    });
  };

  let allSettled: (() => void) | undefined;
  const track = (req: IncomingMessage, res: ServerResponse): void => {
    inFlight += 1;
    const socket = req.socket;
    pending.set(socket, (pending.get(socket) ?? 0) + 1);
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      inFlight -= 1;
      const left = (pending.get(socket) ?? 1) - 1;
      pending.set(socket, left);
      const after = left === 0 ? afterPending.get(socket) : undefined;
      if (after) {
        afterPending.delete(socket);
        after();
      }
      if (closing) {
        server.closeIdleConnections();
        if (inFlight === 0) allSettled?.();
      }
    };
    res.on('finish', finish);
    res.on('close', finish);
    handle(req, res).catch(() => {
      // Only a broken socket gets here; there is no one left to answer.
      res.destroy();
    });
  };

  server.on('request', track);
  // Refuse a declared oversized body before the client uploads it (curl sends Expect for large bodies).
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const declared = declaredContentLength(req);
    const limit = bodyLimitFor(req);
    const eventOver = limit.invoke && isEvent(req) && declared !== undefined && declared > LAMBDA_MAX_ASYNC_REQUEST_BYTES;
    if (declared !== undefined && (declared > limit.maxBytes || eventOver)) {
      inFlight += 1;
      res.on('close', () => {
        inFlight -= 1;
        if (closing && inFlight === 0) allSettled?.();
      });
      if (limit.invoke) invokeTooLarge(res, randomUUID(), declared > limit.maxBytes ? requestTooLarge : eventTooLarge(declared), false);
      else sendError(res, randomUUID(), tooLarge(false));
      return;
    }
    res.writeContinue();
    track(req, res);
  });
  server.on('clientError', (error: Error & { code?: string }, socket: Socket) => {
    const refuse = (): void => {
      if (socket.writable) socket.end(clientErrorResponse(error, options.headers));
      else socket.destroy();
    };
    // Bytes that do not parse after a request on the same connection (pipelined, or a body longer than its
    // Content-Length): that request is still being answered, perhaps acknowledging records. Answer it first,
    // unless the bytes broke the body of a request still being read (a bad chunk): it will never end.
    const bodyBroken = [...reading].some((req) => req.socket === socket && !req.complete);
    if (!bodyBroken && (pending.get(socket) ?? 0) > 0) afterPending.set(socket, refuse);
    else refuse();
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? DEFAULT_FIREHOSE_PORT, host, () => {
      server.off('error', reject);
      const { port } = server.address() as AddressInfo;
      let closed: Promise<void> | undefined;
      resolve({
        url: endpointFor(host, port),
        port,
        close(): Promise<void> {
          closed ??= new Promise<void>((resolveClose) => {
            closing = true;
            server.close(() => resolveClose());
            server.closeIdleConnections();
            // A body still arriving after the grace (a stalled or trickling client) is cut off: nothing of it was acknowledged.
            setTimeout(() => {
              for (const req of reading) req.socket.destroy();
            }, CLOSE_BODY_GRACE_MS).unref();
            // Deferred a turn so the last response's bytes reach the socket before it is closed;
            // by then no request is in flight, so only idle or half-sent connections remain.
            allSettled = () => setImmediate(() => server.closeAllConnections());
            if (inFlight === 0) allSettled();
          });
          return closed;
        },
      });
    });
  });
}
