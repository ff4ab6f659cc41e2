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
import { versionOfEtag } from './dedupe-key';

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

/** A line that cannot be routed as it is, and why. */
export interface UnreadableLine {
  readonly line: number;
  readonly problem: string;
}

/** A line longer than the reader's cap: counted as it streamed past, never held whole, so not parsed. */
export interface OverlongLine {
  readonly line: number;
  /** Its length in bytes (without the "\n"), more than the cap. */
  readonly overlongBytes: number;
}

export type ParsedLine = ErrorLine | UnreadableLine | OverlongLine;

/**
 * The longest error line read whole, bytes: 8 MiB. A Firehose record is at most 1,000 KiB (FIREHOSE_MAX_RECORD_BYTES),
 * so the base64 rawData of any line Firehose writes is at most ~1.34 MB, and the other fields (error messages, the Glue
 * table, OpenSearch's reason) are short: six times that leaves room for a long errorMessage without ever turning a
 * real line away. A longer line is not Firehose's (a damaged or foreign object); holding it would make memory grow
 * with it, a line of hundreds of MB without a "\n" past what the function has. Holding one line of the cap, with the
 * copies made to decode it, costs a few tens of MiB.
 */
export const MAX_ERROR_LINE_BYTES = 8 * 1024 * 1024;

export interface ReadErrorObjectOptions {
  /** Longest line read whole, bytes; a longer one is given as an OverlongLine. @default MAX_ERROR_LINE_BYTES */
  readonly maxLineBytes?: number;
}

/** An error object's bytes: whole in memory, or in chunks as they arrive (an S3 GetObject body is an async iterable of them). */
export type ObjectBody = Uint8Array | AsyncIterable<Uint8Array>;

/** An object as one read gave it: its bytes, and the ETag that names what was read. */
export interface ObjectRead {
  readonly body: ObjectBody;
  /** S3's ETag of the object read; a second read of it is pinned to it. Absent only where the store has none (a test's). */
  readonly etag?: string;
}

/** What a read must give: this version of the object (S3's versionId), or the object only while its ETag is this one (If-Match). */
export interface ObjectPin {
  readonly versionId?: string;
  readonly etag?: string;
}

/**
 * Reads an object (S3 GetObject, or the twin's store): undefined when it no longer exists. With a pin's ETag it throws S3's
 * PreconditionFailed (HTTP 412) when the object no longer has that ETag (replaced since).
 */
export type ObjectReader = (bucket: string, key: string, pin?: ObjectPin) => Promise<ObjectRead | undefined>;

/** An object replaced between the read that checked it and the read that gives its lines: no line of either is given. */
export class ObjectChangedError extends Error {
  override readonly name = 'ObjectChangedError';
}

/** An error object being read: its lines as they are read, and why gzip damage ends them early, when it does. */
export interface ErrorObjectReading {
  /** Why the lines end before the object does (gzip data damaged or cut off); known before the first line is read. */
  readonly damaged?: string;
  /** The version read: the versionId asked for, or the ETag S3 answered with (quotes removed); undefined when neither. */
  readonly version?: string;
  /**
   * The object's non-blank lines in order, parsed, with the problem that stops each, or too long to read; throws what
   * reading its bytes throws.
   */
  readonly lines: AsyncIterable<ParsedLine>;
}

/**
 * Reads an error object line by line, gunzipping a compressed backup on the way: memory holds a chunk and the line being read,
 * never the object. A line ends at "\n" and is decoded whole, so a chunk boundary anywhere (inside a UTF-8 character, between
 * "\r" and "\n") changes nothing; a last line without "\n" is a line. A line longer than `maxLineBytes` is not held: its
 * bytes are counted as they pass and it is given as an OverlongLine, and the lines after it keep their numbers.
 *
 * A gzip stream cut off part-way gives the whole lines that decompressed before the cut, with `damaged` saying why the rest
 * cannot be read: reading the object again would not give more. Damage inside the data (a checksum that does not match,
 * invalid deflate data) gives no line at all: what decompressed may hold the flipped bits the checksum caught. The checksum
 * comes at the end, so a gzip object is read through once to check it before its lines are given: `body` again when it is
 * in memory, else what `reopen` answers (the object from its start; undefined when it no longer exists).
 */
export async function readErrorObject(
  body: ObjectBody,
  reopen: () => Promise<ObjectBody | undefined>,
  options: ReadErrorObjectOptions = {},
): Promise<ErrorObjectReading | undefined> {
  const maxLineBytes = options.maxLineBytes ?? MAX_ERROR_LINE_BYTES;
  const { head, chunks } = await startOf(body, 2);
  if (!(head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b)) return { lines: parsedLines(linesOf(chunks, maxLineBytes)) };
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
  return { damaged, lines: parsedLines(linesOf(gunzipped(chunksOf(again)), maxLineBytes)) };
}

/**
 * readErrorObject over `readObject`, the second read of a gzip object pinned to the first: both to `versionId` when the
 * caller knows it (a versioned bucket's event), else the second to the first read's ETag. Undefined when the object no
 * longer exists; ObjectChangedError when it was replaced between the reads.
 */
export async function readPinnedErrorObject(
  readObject: ObjectReader,
  bucket: string,
  key: string,
  options: ReadErrorObjectOptions & { readonly versionId?: string } = {},
): Promise<ErrorObjectReading | undefined> {
  const { versionId } = options;
  const first = await readObject(bucket, key, versionId !== undefined ? { versionId } : undefined);
  if (first === undefined) return undefined;
  const pin: ObjectPin | undefined = versionId !== undefined ? { versionId } : first.etag !== undefined ? { etag: first.etag } : undefined;
  const reading = await readErrorObject(first.body, async () => {
    try {
      return (await readObject(bucket, key, pin))?.body;
    } catch (err) {
      if (!isPreconditionFailed(err)) throw err;
      throw new ObjectChangedError(`it changed after its gzip data was checked (S3 answered PreconditionFailed to If-Match ${pin?.etag}), `
        + 'so none of its lines were read; a new read takes it as it is now', { cause: err });
    }
  }, options);
  const version = versionId ?? (first.etag !== undefined ? versionOfEtag(first.etag) : undefined);
  return reading !== undefined && version ? { ...reading, version } : reading;
}

/** S3's answer to a read whose If-Match no longer holds (HTTP 412), from the SDK or the twin's store. */
function isPreconditionFailed(err: unknown): boolean {
  const e = err as { name?: unknown; code?: unknown; $metadata?: { httpStatusCode?: unknown } } | null;
  return e?.name === 'PreconditionFailed' || e?.code === 'PreconditionFailed' || e?.$metadata?.httpStatusCode === 412;
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

async function* noLines(): AsyncGenerator<RawLine> {
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

/** A line of an object: its text, or only its length when it is over the cap. */
type RawLine = { readonly line: number; readonly text: string } | { readonly line: number; readonly bytes: number };

/**
 * The lines of a byte stream, numbered from 1, each decoded as UTF-8 once it is whole: "\n" (0x0a) is never part of a
 * multi-byte character, so splitting the bytes there is splitting the text there. Holds the chunks of the line being read,
 * at most `maxLineBytes` of them: a line that grows past that is let go and only its length is counted, to its "\n".
 * Whether a line is over the cap depends on its length alone, not on where the chunks were cut.
 * When the bytes end in an error, so do the lines: the line it cut is not given.
 */
async function* linesOf(chunks: AsyncIterable<Uint8Array>, maxLineBytes: number): AsyncGenerator<RawLine> {
  let pieces: Buffer[] = [];
  /** Bytes of the line being read, held or not. */
  let length = 0;
  let line = 0;
  const lineEndingWith = (last: Buffer): RawLine => {
    length += last.length;
    const whole: RawLine = length > maxLineBytes
      ? { line: ++line, bytes: length }
      : { line: ++line, text: (pieces.length === 0 ? last : Buffer.concat([...pieces, last])).toString('utf8') };
    pieces = [];
    length = 0;
    return whole;
  };
  for await (const chunk of chunks) {
    const bytes = bufferOf(chunk);
    let start = 0;
    for (let end = bytes.indexOf(0x0a, start); end !== -1; end = bytes.indexOf(0x0a, start)) {
      const whole = lineEndingWith(bytes.subarray(start, end));
      start = end + 1;
      yield whole;
    }
    if (start < bytes.length) {
      length += bytes.length - start;
      if (length <= maxLineBytes) pieces.push(bytes.subarray(start));
      else pieces = []; // Over the cap: the line is only counted from here to its end.
    }
  }
  if (length > 0) yield lineEndingWith(Buffer.alloc(0));
}

/** Parsed non-blank lines, and lines over the cap; gzip damage ends them quietly (the reading's `damaged` says why). */
async function* parsedLines(lines: AsyncIterable<RawLine>): AsyncGenerator<ParsedLine> {
  try {
    for await (const read of lines) {
      if ('bytes' in read) {
        yield { line: read.line, overlongBytes: read.bytes };
        continue;
      }
      const raw = read.text.trim();
      if (raw !== '') yield parseErrorLine(raw, read.line);
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
export function parseErrorLines(text: string): Array<ErrorLine | UnreadableLine> {
  const out: Array<ErrorLine | UnreadableLine> = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].trim();
    if (raw === '') continue;
    out.push(parseErrorLine(raw, i + 1));
  }
  return out;
}

function parseErrorLine(raw: string, line: number): ErrorLine | UnreadableLine {
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
