/**
 * Firehose's error objects, read back: where an object sits (pipeline, error type) and what each
 * of its JSON lines says. Pure functions over strings and bytes.
 *
 * Line shapes (Firehose developer guide, "Handle data delivery failures" / "Data transformation"):
 * - processing-failed: attemptsMade, arrivalTimestamp, errorCode, errorMessage,
 *   attemptEndingTimestamp, rawData (base64 of the record as the producer sent it), lambdaArn
 * - format-conversion-failed: attemptsMade, arrivalTimestamp, lastErrorCode, lastErrorMessage,
 *   attemptEndingTimestamp, rawData (the transformed record), sequenceNumber, subSequenceNumber,
 *   dataCatalogTable{catalogId, databaseName, tableName, region, versionId, catalogArn}
 * - AmazonOpenSearchService-failed (S3 backup of documents OpenSearch refused): attemptsMade,
 *   arrivalTimestamp, errorCode, errorMessage, attemptEndingTimestamp, rawData (the document sent),
 *   subsequenceNumber, esDocumentId, esIndexName, esTypeName
 */
import { createGunzip, gunzipSync } from 'node:zlib';
import { ERRORS_ROOT, SEARCH_BACKUP_ROOT } from '../../lib/schema/layout';
import { isKnownPipeline } from '../shared/pipeline';

export interface ErrorObjectLocation {
  readonly pipeline: string;
  /** The `!{firehose:error-output-type}` folder: processing-failed, format-conversion-failed, AmazonOpenSearchService-failed, … */
  readonly errorType: string;
}

/** Error output types Firehose writes; OpenSearch failures are the default under the search backup prefix. */
export const OPENSEARCH_FAILED = 'AmazonOpenSearchService-failed';
const ERROR_TYPE = /^[A-Za-z][A-Za-z0-9.]*(?:-[A-Za-z0-9.]+)*$/;
const ERROR_KEY = new RegExp(`^${ERRORS_ROOT}/([^/]+)/([^/]+)/(\\d{4})/(\\d{2})/(\\d{2})/(\\d{2})/([^/]+)$`);
const SEARCH_BACKUP_KEY = new RegExp(`^${SEARCH_BACKUP_ROOT}/([^/]+)/(.*[^/])$`);

/** S3 event keys are URL-encoded with "+" for spaces; undefined when the encoding is broken. */
export function decodeS3Key(encoded: string): string | undefined {
  try {
    return decodeURIComponent(encoded.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

/**
 * Pipeline and error type of an error object's key, or why the key is not one:
 * `errors/<pipeline>/<error-output-type>/YYYY/MM/DD/HH/<object>` or `search-backup/<pipeline>/[<error-output-type>/]…`.
 */
export function locateErrorObject(key: string): ErrorObjectLocation | { reason: string } {
  const e = ERROR_KEY.exec(key);
  if (e) {
    const [, pipeline, errorType] = e;
    if (!isKnownPipeline(pipeline)) return { reason: `no pipeline named "${pipeline}"` };
    if (!ERROR_TYPE.test(errorType)) return { reason: `"${errorType}" is not a Firehose error output type` };
    return { pipeline, errorType };
  }
  const s = SEARCH_BACKUP_KEY.exec(key);
  if (s) {
    const [, pipeline, rest] = s;
    if (!isKnownPipeline(pipeline)) return { reason: `no pipeline named "${pipeline}"` };
    if (rest.split('/').some((segment) => segment === '' || segment === '.' || segment === '..')) return { reason: 'the key has empty or relative segments' };
    const first = rest.split('/')[0];
    const errorType = rest.includes('/') && first.endsWith('-failed') && ERROR_TYPE.test(first) ? first : OPENSEARCH_FAILED;
    return { pipeline, errorType };
  }
  return { reason: `not under ${ERRORS_ROOT}/<pipeline>/<error-output-type>/YYYY/MM/DD/HH/ or ${SEARCH_BACKUP_ROOT}/<pipeline>/` };
}

/** One error line, with the fields every error type has under one name. */
export interface ErrorLine {
  /** 1-based line number in the (decompressed) object. */
  readonly line: number;
  readonly attemptsMade: number;
  readonly arrivalTimestamp: number;
  readonly errorCode: string;
  readonly errorMessage: string;
  /** Base64, as Firehose wrote it. */
  readonly rawData: string;
  readonly esDocumentId?: string;
  readonly esIndexName?: string;
}

export type ParsedLine = ErrorLine | { readonly line: number; readonly problem: string };

/**
 * The object's bytes as text, gunzipped when Firehose compressed the backup. A gzip stream cut off part-way gives
 * what decompressed before the cut, with `damaged` saying why the rest cannot be read: its whole lines are still
 * records to route, and reading the object again would not give more. Damage inside the data (a checksum that does
 * not match, invalid deflate data) gives nothing: what decompressed may hold the flipped bits the checksum caught.
 */
export async function objectText(bytes: Buffer): Promise<{ readonly text: string; readonly damaged?: string }> {
  if (!(bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b)) return { text: bytes.toString('utf8') };
  try {
    return { text: gunzipSync(bytes).toString('utf8') };
  } catch (err) {
    const problem = zlibMessage(err);
    const damaged = `the gzip data is damaged or cut off (${problem})`;
    if (problem !== 'unexpected end of file') return { text: '', damaged };
  }
  // Cut off: the stream hands over what it decompressed before the end came too soon.
  const chunks: Buffer[] = [];
  const problem = await new Promise<string>((resolve) => {
    const gunzip = createGunzip();
    gunzip.on('data', (chunk: Buffer) => chunks.push(chunk));
    gunzip.on('end', () => resolve('unexpected end of file'));
    gunzip.on('error', (err: unknown) => resolve(zlibMessage(err)));
    gunzip.end(bytes);
  });
  // The last line may stop mid-record: only lines a newline ended are whole.
  const text = Buffer.concat(chunks).toString('utf8');
  const end = text.lastIndexOf('\n');
  return { text: end === -1 ? '' : text.slice(0, end + 1), damaged: `the gzip data is damaged or cut off (${problem})` };
}

/** zlib's errors are Errors of Node's own realm (not `instanceof Error` inside a VM context): read the message. */
function zlibMessage(err: unknown): string {
  const message = (err as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message : String(err);
}

/** Every non-blank line of an error object, parsed or with the problem that stops it. */
export function parseErrorLines(text: string): ParsedLine[] {
  const out: ParsedLine[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].trim();
    if (raw === '') continue;
    out.push(parseErrorLine(raw, i + 1));
  }
  return out;
}

function parseErrorLine(raw: string, line: number): ParsedLine {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return { line, problem: 'not JSON' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { line, problem: 'not a JSON object' };
  const o = v as Record<string, unknown>;
  if (typeof o.rawData !== 'string') return { line, problem: 'no rawData: not a Firehose error record' };
  const text = (x: unknown): string | undefined => (typeof x === 'string' ? x : typeof x === 'number' ? String(x) : undefined);
  const code = text(o.errorCode) ?? text(o.lastErrorCode);
  const message = text(o.errorMessage) ?? text(o.lastErrorMessage);
  if (code === undefined && message === undefined) return { line, problem: 'no errorCode or errorMessage: not a Firehose error record' };
  return {
    line,
    attemptsMade: typeof o.attemptsMade === 'number' ? o.attemptsMade : 0,
    arrivalTimestamp: typeof o.arrivalTimestamp === 'number' ? o.arrivalTimestamp : 0,
    errorCode: code ?? '',
    errorMessage: message ?? '',
    rawData: o.rawData,
    esDocumentId: text(o.esDocumentId),
    esIndexName: text(o.esIndexName),
  };
}
