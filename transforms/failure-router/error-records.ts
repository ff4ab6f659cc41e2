/**
 * Firehose's error objects, read back: where an object sits (pipeline, error type) and what each
 * of its JSON lines says: functions over strings and bytes, and over an object's bytes as they arrive.
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
import { pipeline, Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
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

/** An error object's bytes: whole in memory, or in chunks as they arrive (an S3 GetObject body is an async iterable of them). */
export type ObjectBody = Uint8Array | AsyncIterable<Uint8Array>;

/** An error object being read: its lines as they are read, and why gzip damage ends them early, when it does. */
export interface ErrorObjectReading {
  /** Why the lines end before the object does (gzip data damaged or cut off); known before the first line is read. */
  readonly damaged?: string;
  /** The object's non-blank lines in order, parsed or with the problem that stops each; throws what reading its bytes throws. */
  readonly lines: AsyncIterable<ParsedLine>;
}

/**
 * Reads an error object line by line, gunzipping a compressed backup on the way: memory holds a chunk and the line being read,
 * never the object. A line ends at "\n" and is decoded whole, so a chunk boundary anywhere (inside a UTF-8 character, between
 * "\r" and "\n") changes nothing; a last line without "\n" is a line.
 *
 * A gzip stream cut off part-way gives the whole lines that decompressed before the cut, with `damaged` saying why the rest
 * cannot be read: reading the object again would not give more. Damage inside the data (a checksum that does not match,
 * invalid deflate data) gives no line at all: what decompressed may hold the flipped bits the checksum caught. The checksum
 * comes at the end, so a gzip object is read through once to check it before its lines are given: `body` again when it is
 * in memory, else what `reopen` answers (the object from its start; undefined when it no longer exists).
 */
export async function readErrorObject(body: ObjectBody, reopen: () => Promise<ObjectBody | undefined>): Promise<ErrorObjectReading | undefined> {
  const { head, chunks } = await startOf(body, 2);
  if (!(head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b)) return { lines: parsedLines(linesOf(chunks)) };
  let problem: string | undefined;
  try {
    const checked = gunzipped(chunks);
    while (!(await checked.next()).done) {
      // Only checking: the output is not kept.
    }
  } catch (err) {
    if (!(err instanceof GzipDamage)) throw err;
    problem = err.problem;
  }
  const damaged = problem === undefined ? undefined : `the gzip data is damaged or cut off (${problem})`;
  if (problem !== undefined && problem !== GZIP_CUT_OFF) return { damaged, lines: parsedLines(noLines()) };
  const again = ArrayBuffer.isView(body) ? body : await reopen();
  if (again === undefined) return undefined;
  return { damaged, lines: parsedLines(linesOf(gunzipped(chunksOf(again)))) };
}

/** zlib's message for gzip data that ends too soon. */
const GZIP_CUT_OFF = 'unexpected end of file';

/** zlib refused the data: the lines end at the last whole one before it. */
class GzipDamage extends Error {
  constructor(readonly problem: string) {
    super(`the gzip data is damaged or cut off (${problem})`);
  }
}

/** The first `n` bytes of a body (fewer when it is shorter), and all of its chunks from the start. */
async function startOf(body: ObjectBody, n: number): Promise<{ head: Buffer; chunks: AsyncIterable<Uint8Array> }> {
  if (ArrayBuffer.isView(body)) return { head: bufferOf(body).subarray(0, n), chunks: chunksOf(body) };
  const iterator = body[Symbol.asyncIterator]();
  const taken: Uint8Array[] = [];
  let bytes = 0;
  let ended = false;
  while (bytes < n) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    taken.push(next.value);
    bytes += next.value.byteLength;
  }
  const head = Buffer.concat(taken.map((c) => bufferOf(c).subarray(0, n))).subarray(0, n);
  async function* chunks(): AsyncGenerator<Uint8Array> {
    try {
      yield* taken.splice(0);
      while (!ended) {
        const next = await iterator.next();
        if (next.done) ended = true;
        else yield next.value;
      }
    } finally {
      // Stopped early (the reader gave up on the object): let the body close its connection.
      if (!ended) await iterator.return?.();
    }
  }
  return { head, chunks: chunks() };
}

async function* chunksOf(body: ObjectBody): AsyncGenerator<Uint8Array> {
  if (ArrayBuffer.isView(body)) yield body;
  else yield* body;
}

async function* noLines(): AsyncGenerator<{ line: number; text: string }> {
  // A damaged gzip object: nothing in it is a line to trust.
}

/** A view of the chunk's bytes as a Buffer, not a copy. */
function bufferOf(chunk: Uint8Array): Buffer {
  return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** The decompressed bytes; zlib refusing the data ends them with GzipDamage, a read error with that error. */
async function* gunzipped(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  let readError: { error: unknown } | undefined;
  const source = Readable.from((async function* () {
    // Only what reading the chunks throws is a read error. zlib's own error comes back in here too: pipeline destroys
    // the source with it, and Readable.from throws it into this generator where it waits at `yield`.
    const iterator = chunks[Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        let next: IteratorResult<Uint8Array>;
        try {
          next = await iterator.next();
        } catch (error) {
          finished = true;
          readError = { error };
          throw error;
        }
        if (next.done) {
          finished = true;
          return;
        }
        yield next.value;
      }
    } finally {
      // Stopped early (gzip damage, or the reader gave up): let the body close.
      if (!finished) await iterator.return?.();
    }
  })(), { objectMode: false });
  const gunzip = createGunzip();
  // Errors reach the loop below through gunzip, which pipeline destroys with them.
  pipeline(source, gunzip, () => undefined);
  try {
    for await (const out of gunzip) yield out as Buffer;
  } catch (err) {
    if (readError) throw readError.error;
    throw new GzipDamage(zlibMessage(err));
  } finally {
    source.destroy();
    gunzip.destroy();
  }
}

/**
 * The lines of a byte stream, numbered from 1, each decoded as UTF-8 once it is whole: "\n" (0x0a) is never part of a
 * multi-byte character, so splitting the bytes there is splitting the text there. Holds the chunks of the line being read.
 * When the bytes end in an error, so do the lines: the line it cut is not given.
 */
async function* linesOf(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<{ line: number; text: string }> {
  let pieces: Buffer[] = [];
  let line = 0;
  for await (const chunk of chunks) {
    const bytes = bufferOf(chunk);
    let start = 0;
    for (let end = bytes.indexOf(0x0a, start); end !== -1; end = bytes.indexOf(0x0a, start)) {
      const last = bytes.subarray(start, end);
      const whole = pieces.length === 0 ? last : Buffer.concat([...pieces, last]);
      pieces = [];
      start = end + 1;
      yield { line: ++line, text: whole.toString('utf8') };
    }
    if (start < bytes.length) pieces.push(bytes.subarray(start));
  }
  if (pieces.length > 0) yield { line: line + 1, text: Buffer.concat(pieces).toString('utf8') };
}

/** Parsed non-blank lines; gzip damage ends them quietly (the reading's `damaged` says why). */
async function* parsedLines(lines: AsyncIterable<{ line: number; text: string }>): AsyncGenerator<ParsedLine> {
  try {
    for await (const { line, text } of lines) {
      const raw = text.trim();
      if (raw !== '') yield parseErrorLine(raw, line);
    }
  } catch (err) {
    if (!(err instanceof GzipDamage)) throw err;
  }
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
