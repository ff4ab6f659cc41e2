import fc from 'fast-check';
import { JsonNestingError, MAX_NESTING, parseJsonInPieces, parsePieces, PIECE_BYTES } from '../../lib/local/json-pieces';

/** Same values, same key order, same prototypes (`__proto__` stays an own property), -0 kept apart from 0. */
function expectSameValue(actual: unknown, expected: unknown, at = '$'): void {
  if (typeof expected !== 'object' || expected === null) {
    if (!Object.is(actual, expected)) throw new Error(`${at}: ${String(actual)} is not ${String(expected)}`);
    return;
  }
  if (typeof actual !== 'object' || actual === null) throw new Error(`${at}: not an object`);
  expect(Object.getPrototypeOf(actual)).toBe(Object.getPrototypeOf(expected));
  expect(Object.keys(actual)).toEqual(Object.keys(expected));
  for (const key of Object.keys(expected)) {
    expectSameValue((actual as Record<string, unknown>)[key], (expected as Record<string, unknown>)[key], `${at}.${key}`);
  }
}

/** What `parseJsonInPieces` must match: the value, or the error JSON.parse throws. */
function outcome(parse: () => unknown): { value?: unknown; error?: string } {
  try {
    return { value: parse() };
  } catch (error) {
    return { error: `${(error as Error).name}: ${(error as Error).message}` };
  }
}

/**
 * `parseJsonInPieces` returns JSON.parse's value or throws its error; and a body JSON.parse takes is
 * read by the pieces alone (the whole-body parse that catches anything unexpected is not what passed).
 */
function expectAsJsonParse(body: Buffer, pieceBytes: number): void {
  const expected = outcome(() => JSON.parse(body.toString('utf8')));
  const actual = outcome(() => parseJsonInPieces(body, pieceBytes));
  expect(actual.error).toBe(expected.error);
  if (expected.error === undefined) {
    expectSameValue(actual.value, expected.value);
    expectSameValue(parsePieces(body, pieceBytes), expected.value);
  }
}

/** JSON text of `value` with whitespace between its tokens (JSON.stringify's indentation, or none). */
const jsonText = fc.tuple(fc.jsonValue(), fc.constantFrom(undefined, 0, 1, '\t', ' \r\n')).map(([value, space]) => JSON.stringify(value, null, space as never));

describe('parseJsonInPieces', () => {
  it('returns what JSON.parse returns, whatever the value and however small the pieces', () => {
    fc.assert(
      fc.property(jsonText, fc.integer({ min: 1, max: 64 }), (text, pieceBytes) => {
        expectAsJsonParse(Buffer.from(text, 'utf8'), pieceBytes);
      }),
      { numRuns: 500 },
    );
  });

  it('fails as JSON.parse fails (same error) for bodies with bytes inserted, removed or changed', () => {
    const edit = fc.record({ at: fc.nat(), kind: fc.constantFrom('insert', 'delete', 'replace'), byte: fc.constantFrom(...Buffer.from('{}[]",:\\ \nax0-eE.tfn\u00e9').values(), 0x80, 0xff, 0x00) });
    fc.assert(
      fc.property(jsonText, fc.array(edit, { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 64 }), (text, edits, pieceBytes) => {
        let bytes = Buffer.from(text, 'utf8');
        for (const e of edits) {
          const at = bytes.length === 0 ? 0 : e.at % bytes.length;
          const one = Buffer.from([e.byte]);
          bytes = e.kind === 'insert' ? Buffer.concat([bytes.subarray(0, at), one, bytes.subarray(at)])
            : e.kind === 'delete' ? Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1)])
            : Buffer.concat([bytes.subarray(0, at), one, bytes.subarray(at + 1)]);
        }
        expectAsJsonParse(bytes, pieceBytes);
      }),
      { numRuns: 1000 },
    );
  });

  it('reads a PutRecordBatch body of 500 records in pieces as JSON.parse does', () => {
    const records = Array.from({ length: 500 }, (_, i) => ({ Data: Buffer.from(JSON.stringify({ i, pad: 'x'.repeat(200) })).toString('base64') }));
    const body = Buffer.from(JSON.stringify({ DeliveryStreamName: 'sluice-dev-app-events-lake', Records: records }));
    expect(body.length).toBeGreaterThan(2 * PIECE_BYTES);
    expectAsJsonParse(body, PIECE_BYTES);
  });

  it('keeps __proto__ an own property and lets the last of duplicate keys win, in and between pieces', () => {
    const text = '{"__proto__": {"polluted": true}, "a": [1, 2, 3, 4, 5], "a": {"__proto__": [1], "b": 2, "b": 3}, "z": "' + 'y'.repeat(50) + '"}';
    for (const pieceBytes of [1, 5, 20, 1000]) {
      expectAsJsonParse(Buffer.from(text), pieceBytes);
      const value = parseJsonInPieces(Buffer.from(text), pieceBytes) as Record<string, unknown>;
      expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    }
  });

  it('finds the end of strings with escaped quotes and backslashes, and keeps multi-byte and invalid UTF-8 as a whole decode does', () => {
    const text = Buffer.concat([
      Buffer.from('{"k\\"": ["a\\\\", "b\\\\\\"c", "\u00e9\u{1f600}", "'),
      Buffer.from([0xe2, 0x82]), // a truncated sequence: U+FFFD, as Buffer#toString gives it
      Buffer.from('", "\\u0022"], "\u00e9": ["x", 1e3, -0, true, false, null]}'),
    ]);
    for (let pieceBytes = 1; pieceBytes < text.length + 2; pieceBytes++) expectAsJsonParse(text, pieceBytes);
  });

  it('parses nesting up to MAX_NESTING levels in pieces; a byte order mark fails as JSON.parse fails', () => {
    const nested = (levels: number, close = levels) => Buffer.from(`{"a":${'['.repeat(levels - 1)}1${']'.repeat(close - 1)}}`);
    let value = (parseJsonInPieces(nested(MAX_NESTING), 10) as { a: unknown }).a;
    let depth = 1;
    for (; Array.isArray(value); depth++) value = value[0];
    expect([depth, value]).toEqual([MAX_NESTING, 1]);
    expectAsJsonParse(nested(MAX_NESTING, MAX_NESTING - 1), 10);
    expectAsJsonParse(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a": [1, 2, 3]}')]), 4);
    expectAsJsonParse(Buffer.from('{"a": [1, 2, 3]} trailing'), 4);
    expectAsJsonParse(Buffer.from('{"a": [1, 2, 3]}   \n'), 4);
  });

  it('refuses a large body nested deeper than MAX_NESTING before JSON.parse takes it whole (seconds for megabytes of brackets); a small one is JSON.parse\'s', () => {
    const deep = (levels: number) => Buffer.from(`{"a":${'['.repeat(levels - 1)}1${']'.repeat(levels - 1)}}`);
    expect(() => parseJsonInPieces(deep(MAX_NESTING + 1), 10)).toThrow(new JsonNestingError());
    expect(() => parseJsonInPieces(deep(MAX_NESTING + 1), 10)).toThrow(`JSON nested deeper than ${MAX_NESTING} levels`);
    // Deep below a member parsed whole, deep at the top, and a body the pieces give up on (a byte order mark) that JSON.parse would take whole.
    expect(() => parseJsonInPieces(Buffer.from(`{"Records":[{"Data":${'['.repeat(100)}${']'.repeat(100)}}]}`), 10)).toThrow(JsonNestingError);
    expect(() => parseJsonInPieces(Buffer.from(`${'['.repeat(100_000)}${']'.repeat(100_000)}`), PIECE_BYTES)).toThrow(JsonNestingError);
    expect(() => parseJsonInPieces(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), deep(100_000)]), PIECE_BYTES)).toThrow(JsonNestingError);
    // Brackets inside strings are not nesting.
    expectAsJsonParse(Buffer.from(JSON.stringify({ a: '['.repeat(1000), b: ['\\"['.repeat(100)] })), 10);
    // A body no larger than one piece goes to JSON.parse as it is.
    expect(JSON.stringify(parseJsonInPieces(deep(1_000), PIECE_BYTES))).toBe(deep(1_000).toString());
  });
});
