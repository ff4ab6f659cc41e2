/**
 * JSON.parse of a large request body without one large string.
 *
 * V8 puts a string over 128 KiB in its large-object space, and allocating one there costs several
 * times what parsing it does (`npm run bench -- json-body`: a 137 KiB PutRecordBatch body of 500
 * records takes 677 µs as `toString` + `JSON.parse`, 98 µs for `JSON.parse` alone and 137 µs in
 * pieces, Node 20; Node 22 shows the same step at 128 KiB). A body is therefore
 * cut at its structure into pieces well under that size, each piece parsed alone, and the pieces
 * put back together: the result is what `JSON.parse(body.toString('utf8'))` returns.
 *
 * Only the structure around the pieces is read here: an object's keys, colons and commas, and an
 * array's commas. Every value is still parsed by `JSON.parse`. Anything unexpected (a byte order
 * mark, a piece that does not parse, trailing bytes) sends the whole body through `JSON.parse`, so a
 * malformed body fails with JSON.parse's own message.
 */

/** Pieces stay under this many bytes: a string of them stays under V8's 128 KiB even at two bytes a character. */
export const PIECE_BYTES = 60_000;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

/** Containers this deep are parsed whole: a Firehose body's records sit at depth 2 (`{Records: [{Data}]}`). */
const MAX_PIECED_DEPTH = 3;

/**
 * Deeper than any request body the twin takes (a Firehose body is 3 deep): a large body nested deeper is refused
 * before JSON.parse reads it whole, which takes about a second per million levels (an 8 MiB body of brackets held the
 * event loop for 4 s). A body under `PIECE_BYTES` goes to JSON.parse as it is: at most tens of milliseconds.
 */
export const MAX_NESTING = 64;

/** A body nested deeper than MAX_NESTING: its message says so. */
export class JsonNestingError extends Error {
  constructor() {
    super(`JSON nested deeper than ${MAX_NESTING} levels`);
    this.name = 'JsonNestingError';
  }
}

/** Not the body's shape this reader takes apart: the caller parses it whole. */
class NotPieceable extends Error {}

/**
 * `JSON.parse(bytes.toString('utf8'))`, read in pieces of at most `pieceBytes` where the body is
 * larger. `pieceBytes` is for tests (small pieces exercise every path with small bodies).
 */
export function parseJsonInPieces(bytes: Buffer, pieceBytes = PIECE_BYTES): unknown {
  if (bytes.length > pieceBytes) {
    try {
      return parsePieces(bytes, pieceBytes);
    } catch (error) {
      if (!(error instanceof NotPieceable) && !(error instanceof SyntaxError)) throw error;
    }
    if (nestedDeeperThan(bytes, MAX_NESTING)) throw new JsonNestingError();
  }
  return JSON.parse(bytes.toString('utf8'));
}

/** Whether brackets outside strings in `bytes` open more than `limit` deep (a string left open ends the scan). */
function nestedDeeperThan(bytes: Buffer, limit: number): boolean {
  const end = bytes.length;
  let depth = 0;
  for (let i = 0; i < end; i++) {
    const c = bytes[i];
    if (c === QUOTE) {
      // To the closing quote: one not escaped by an odd number of backslashes.
      for (i++; i < end && bytes[i] !== QUOTE; i++) if (bytes[i] === BACKSLASH) i++;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++depth > limit) return true;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth--;
    }
  }
  return false;
}

/** The pieced reading alone: throws where `parseJsonInPieces` would parse the body whole instead. Exported for its tests. */
export function parsePieces(bytes: Buffer, pieceBytes: number): unknown {
  const reader = new PieceReader(bytes, pieceBytes);
  const value = reader.value();
  reader.skipWhitespace();
  if (reader.at !== bytes.length) throw new NotPieceable('bytes after the value');
  return value;
}

class PieceReader {
  at = 0;

  constructor(private readonly bytes: Buffer, private readonly pieceBytes: number) {}

  /**
   * The value starting at the next non-whitespace byte. A container is parsed whole when it is small
   * enough or deeper than `MAX_PIECED_DEPTH` (so no body costs more than a few scans of itself).
   */
  value(depth = 0): unknown {
    this.skipWhitespace();
    const start = this.at;
    const first = this.bytes[start];
    // The body itself is known to be large: no need to look for its end first.
    const end = depth === 0 && (first === OPEN_OBJECT || first === OPEN_ARRAY) ? -1 : this.endOfSmallValue(start, depth);
    if (end >= 0) {
      this.at = end;
      return this.parse(start, end);
    }
    return this.container(depth);
  }

  /** The large object or array at `at`, read member by member. */
  private container(depth: number): unknown {
    return this.bytes[this.at] === OPEN_OBJECT ? this.object(depth + 1) : this.array(depth + 1);
  }

  private object(depth: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    this.at++; // {
    this.skipWhitespace();
    if (this.bytes[this.at] === CLOSE_OBJECT) {
      this.at++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.bytes[this.at] !== QUOTE) throw new NotPieceable();
      const keyStart = this.at;
      this.at = this.endOfString(keyStart);
      const key = this.parse(keyStart, this.at) as string;
      this.skipWhitespace();
      if (this.bytes[this.at++] !== COLON) throw new NotPieceable();
      const value = this.value(depth);
      // As JSON.parse does: `__proto__` becomes an own property, not the object's prototype.
      if (key === '__proto__') Object.defineProperty(out, key, { value, writable: true, enumerable: true, configurable: true });
      else out[key] = value;
      this.skipWhitespace();
      const next = this.bytes[this.at++];
      if (next === CLOSE_OBJECT) return out;
      if (next !== COMMA) throw new NotPieceable();
    }
  }

  /** A large array: runs of small elements are parsed together, a large element on its own. */
  private array(depth: number): unknown[] {
    const out: unknown[] = [];
    this.at++; // [
    this.skipWhitespace();
    if (this.bytes[this.at] === CLOSE_ARRAY) {
      this.at++;
      return out;
    }
    // The run of small elements not yet parsed: from the start of its first to the end of its last.
    let runStart = -1;
    let runEnd = -1;
    const parseRun = (): void => {
      if (runStart < 0) return;
      for (const v of JSON.parse(`[${this.bytes.toString('utf8', runStart, runEnd)}]`) as unknown[]) out.push(v);
      runStart = -1;
    };
    for (;;) {
      this.skipWhitespace();
      const start = this.at;
      const end = this.endOfSmallValue(start, depth);
      if (end < 0) {
        parseRun();
        out.push(this.container(depth));
      } else {
        if (runStart >= 0 && end - runStart > this.pieceBytes) parseRun();
        if (runStart < 0) runStart = start;
        runEnd = end;
        this.at = end;
      }
      this.skipWhitespace();
      const next = this.bytes[this.at++];
      if (next === CLOSE_ARRAY) {
        parseRun();
        return out;
      }
      if (next !== COMMA) throw new NotPieceable();
    }
  }

  /** The end of the value at `start` when it is to be parsed whole (a scalar, small enough, or deep enough), else -1. */
  private endOfSmallValue(start: number, depth: number): number {
    const first = this.bytes[start];
    if (first === OPEN_OBJECT || first === OPEN_ARRAY) return this.endOfContainer(start, depth >= MAX_PIECED_DEPTH ? Infinity : this.pieceBytes, depth);
    const at = this.at;
    const end = this.skipScalar();
    this.at = at;
    return end;
  }

  private parse(start: number, end: number): unknown {
    return JSON.parse(this.bytes.toString('utf8', start, end));
  }

  skipWhitespace(): void {
    const b = this.bytes;
    let i = this.at;
    while (i < b.length && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
    this.at = i;
  }

  /** A string, number, true, false or null: up to the next structural byte or whitespace. Returns its end. */
  private skipScalar(): number {
    const b = this.bytes;
    let i = this.at;
    if (b[i] === QUOTE) i = this.endOfString(i);
    else {
      while (i < b.length) {
        const c = b[i];
        if (c === COMMA || c === CLOSE_OBJECT || c === CLOSE_ARRAY || c === COLON || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) break;
        i++;
      }
    }
    if (i === this.at) throw new NotPieceable();
    this.at = i;
    return i;
  }

  /** The end (one past the closing quote) of the string whose opening quote is at `start`. */
  private endOfString(start: number): number {
    const b = this.bytes;
    let i = start + 1;
    for (;;) {
      const quote = b.indexOf(QUOTE, i);
      if (quote < 0) throw new NotPieceable();
      // The quote closes the string unless an odd number of backslashes escapes it.
      let backslashes = 0;
      while (b[quote - 1 - backslashes] === BACKSLASH) backslashes++;
      if (backslashes % 2 === 0) return quote + 1;
      i = quote + 1;
    }
  }

  /**
   * The end (one past the closing bracket) of the object or array opening at `start`, or -1 when it
   * does not close within `limit` bytes.
   */
  private endOfContainer(start: number, limit: number, outer: number): number {
    const b = this.bytes;
    const stop = Math.min(b.length, start + limit);
    let depth = 0;
    let i = start;
    while (i < stop) {
      const c = b[i];
      if (c === QUOTE) {
        i = this.endOfString(i);
        continue;
      }
      if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        // Counted from the body's top, where `outer` levels are open already.
        if (++depth + outer > MAX_NESTING) throw new JsonNestingError();
      } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        depth--;
        if (depth === 0) return i + 1 - start <= limit ? i + 1 : -1;
      }
      i++;
    }
    if (stop === b.length && limit === Infinity) throw new NotPieceable();
    return -1;
  }
}
