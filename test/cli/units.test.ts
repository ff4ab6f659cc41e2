/** The pieces every command leans on: value parsers, the record sender's batching and retries, CSV. */
import fc from 'fast-check';
import { drawSample, parseCount, parseDuration, parsePort, parseRate, parseSize, requireGeneratedCode } from '../../lib/cli/options';
import { SampleError } from '../../lib/schema/sample';
import { readSchema } from '../../lib/schema';
import { generatedSource } from '../../lib/cli/put-command';
import { pipelineSchema } from '../../transforms/shared';
import { displayRows, displayValue, escapeControlCharacters, formatTable, rowsToJson, toCsv, toJson, UserError, wrapText } from '../../lib/cli/output';
import { io, Progress } from '../../lib/cli/progress';
import { commandDeadline, MAX_TIMER_DELAY_MS, sleep } from '../../lib/cli/sleep';
import * as net from 'net';
import { kinesisClient } from '../../lib/local/aws-clients';
import { freePort } from '../../lib/local/ports';
import { networkErrorCode } from '../../lib/cli/errors';
import {
  attemptMaybeSent,
  FIREHOSE_API_LIMITS,
  KINESIS_API_LIMITS,
  kinesisEntryPoint,
  MAYBE_TAKEN,
  NOT_SENT,
  planBatches,
  sendRecords,
  type EntryPoint,
  type OutgoingRecord,
  type RecordOutcome,
} from '../../lib/cli/record-sender';

describe('value parsers', () => {
  test.each([
    ['30s', 30_000], ['5m', 300_000], ['1h30m', 5_400_000], ['500ms', 500], ['2d', 172_800_000], ['90', 90_000], ['1.5h', 5_400_000],
  ])('duration %s', (text, ms) => expect(parseDuration(text, '--d')).toBe(ms));

  test.each([['200', 200], ['200/s', 200], ['5k/s', 5000], ['600/min', 10], ['3600/h', 1], ['1M/h', 1e6 / 3600]])('rate %s', (text, perSecond) => {
    expect(parseRate(text, '--rate')).toBeCloseTo(perSecond, 10);
  });

  test.each([['800', 800], ['800B', 800], ['1KB', 1000], ['1KiB', 1024], ['2.5MB', 2_500_000], ['1 MiB', 1_048_576], ['1.1KB', 1100], ['0.3KB', 300], ['16.1GB', 16_100_000_000]])('size %s', (text, bytes) => {
    expect(parseSize(text, '--size')).toBe(bytes);
  });

  test('bad values are UserErrors naming the flag and an example', () => {
    for (const [f, flag, v] of [[parseDuration, '--duration', '5 minutes'], [parseRate, '--rate', '-3'], [parseSize, '--size', 'lots'], [parseCount, '--count', '1.5']] as const) {
      expect(() => f(v, flag)).toThrow(UserError);
      expect(() => f(v, flag)).toThrow(new RegExp(`^${flag} "${v}": expected`));
    }
    expect(() => parseDuration('0s', '--timeout')).toThrow(/must be more than zero/);
    // A bare number is seconds, and zero all the same: `--duration 0` sent nothing and exited 0; `--poll 0` would spin.
    for (const zero of ['0', '0.0', '0ms']) expect(() => parseDuration(zero, '--duration')).toThrow(`--duration "${zero}": the duration must be more than zero`);
    // --outage-wait takes zero (do not wait), however it is written.
    for (const zero of ['0', '0s']) expect(parseDuration(zero, '--outage-wait', { zero: true })).toBe(0);
    expect(() => parseCount('501', '--batch-size', 1, 500)).toThrow(/from 1 to 500/);
    expect(() => parseSize('1.5', '--size')).toThrow('--size "1.5": 1.5 is not a whole number of bytes; give a unit, e.g. 1.5KB or 1.5KiB');
    expect(() => parseSize('1.0001KiB', '--size')).toThrow(/not a whole number of bytes/);
  });

  test('numbers too large to be a value, and counts that are not digits, are UserErrors, not Infinity or 0', () => {
    const nines = '9'.repeat(400);
    expect(() => parseRate(nines, '--rate')).toThrow(`--rate "${nines}": the rate is too large a number`);
    expect(() => parseSize(`${nines}KB`, '--size')).toThrow(`--size "${nines}KB": the size is too large a number`);
    expect(() => parseDuration(`${nines}d`, '--since')).toThrow(/^--since "9+d": the duration is too long; at most 104,249,991d$/);
    // Finite, but past whole milliseconds: OpenSearch would get `now-8.64e+27s`.
    expect(() => parseDuration('99999999999999999999999d', '--since')).toThrow(/the duration is too long/);
    expect(parseDuration('36500d', '--since')).toBe(36500 * 86_400_000);
    // Number() reads these as 0, 16 and 1,000: an unset `--size "$N"` must not quietly ask for no hits.
    for (const v of ['', '  ', '0x10', '1e3', '-0']) expect(() => parseCount(v, '--size', 0, 10_000)).toThrow(`--size ${JSON.stringify(v)}: expected a whole number from 0 to 10,000`);
    expect(parseCount(' 1_000 ', '--size', 0, 10_000)).toBe(1000);
  });

  test('property: any sum of units parses to its milliseconds', () => {
    fc.assert(fc.property(fc.nat(48), fc.nat(59), fc.nat(59), (h, m, s) => {
      fc.pre(h + m + s > 0);
      const text = `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s ? `${s}s` : ''}`;
      expect(parseDuration(text, '--d')).toBe(((h * 60 + m) * 60 + s) * 1000);
    }));
  });
});

describe('sleep', () => {
  afterEach(() => jest.useRealTimers());

  /** A wait started on fake timers, and whether it has ended after advancing them by `ms`. */
  const fakeWait = (ms: number) => {
    jest.useFakeTimers();
    let ended = false;
    void sleep(ms).then(() => (ended = true));
    return async (advanceMs: number) => {
      await jest.advanceTimersByTimeAsync(advanceMs);
      return ended;
    };
  };

  // Node fires a timer longer than 2^31-1 ms after 1 ms: `put --verify --poll 30d` would poll in a tight loop.
  test.each([MAX_TIMER_DELAY_MS + 1, 30 * 86_400_000])('a wait of %d ms, longer than one timer holds, neither ends early nor late', async (ms) => {
    const endedAfter = fakeWait(ms);
    expect(await endedAfter(100)).toBe(false);
    expect(await endedAfter(ms - 101)).toBe(false);
    expect(await endedAfter(1)).toBe(true);
  });

  test('a short wait ends when setTimeout would', async () => {
    const endedAfter = fakeWait(250);
    expect(await endedAfter(249)).toBe(false);
    expect(await endedAfter(1)).toBe(true);
  });

  test('a wait ends early when its signal aborts, and at once when it already has', async () => {
    jest.useFakeTimers();
    const controller = new AbortController();
    let ended = false;
    void sleep(60_000, controller.signal).then(() => (ended = true));
    await jest.advanceTimersByTimeAsync(1000);
    expect(ended).toBe(false);
    controller.abort();
    await jest.advanceTimersByTimeAsync(0);
    expect(ended).toBe(true);
    expect(jest.getTimerCount()).toBe(0);
    await expect(sleep(60_000, controller.signal)).resolves.toBeUndefined();
  });
});

describe('commandDeadline', () => {
  test('says how long the command waited, on the monotonic clock: the wall clock set back an hour meanwhile changes nothing', async () => {
    const deadline = commandDeadline(50);
    const realNow = Date.now.bind(Date);
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - 3_600_000);
    try {
      await sleep(60);
      expect(deadline.signal.aborted).toBe(true);
      expect(deadline.noAnswer('STS', '').message).toMatch(/^STS gave no answer in \d+ ms \(--timeout 50 ms\)$/);
    } finally {
      clock.mockRestore();
    }
  });
});

describe('planBatches', () => {
  const record = (bytes: number, key = 'k'): OutgoingRecord => ({ data: Buffer.alloc(bytes), partitionKey: key });

  test('property: batches keep order and every record, within the count and size limits', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 1_100_000 }), { maxLength: 1200 }), fc.boolean(), (sizes, kinesis) => {
      const limits = kinesis ? KINESIS_API_LIMITS : FIREHOSE_API_LIMITS;
      const records = sizes.map((s) => record(Math.min(s, limits.maxRecordBytes - 1)));
      const batches = planBatches(records, records.map((_, i) => i), limits);
      expect(batches.flat()).toEqual(records.map((_, i) => i));
      for (const b of batches) {
        expect(b.length).toBeLessThanOrEqual(limits.maxRecords);
        const bytes = b.reduce((sum, i) => sum + records[i].data.length + (limits.countsPartitionKey ? 1 : 0), 0);
        expect(b.length === 1 || bytes <= limits.maxBatchBytes).toBe(true);
      }
    }), { numRuns: 60 });
  });
});

describe('sendRecords', () => {
  function fakeEntry(answer: (records: readonly OutgoingRecord[], call: number) => RecordOutcome[] | Error): EntryPoint & { calls: OutgoingRecord[][] } {
    const calls: OutgoingRecord[][] = [];
    return {
      kind: 'kinesis', name: 's', limits: KINESIS_API_LIMITS, description: 'Kinesis stream s', failureContext: { service: 'Kinesis', resource: 'Kinesis stream s' }, calls,
      async putBatch(records) {
        calls.push([...records]);
        const result = answer(records, calls.length);
        if (result instanceof Error) throw result;
        return result;
      },
      close() {},
    };
  }
  const records = (n: number) => Array.from({ length: n }, (_, i) => ({ data: Buffer.from(`r${i}`), partitionKey: `k${i}` }));
  const ok: RecordOutcome = { ok: true };
  const throttled: RecordOutcome = { ok: false, errorCode: 'ProvisionedThroughputExceededException', errorMessage: 'Rate exceeded' };
  const noSleep = { sleep: async () => undefined };

  test('retries only the failed records, with exponential backoff and full jitter', async () => {
    const delays: number[] = [];
    const entry = fakeEntry((rs, call) => rs.map((r) => (call < 3 && r.partitionKey === 'k1' ? throttled : ok)));
    const result = await sendRecords(entry, records(3), { sleep: async (ms) => { delays.push(ms); }, random: () => 1, baseDelayMs: 100 });
    expect(result.outcomes.every((o) => o.ok)).toBe(true);
    expect(entry.calls.map((c) => c.map((r) => r.partitionKey))).toEqual([['k0', 'k1', 'k2'], ['k1'], ['k1']]);
    expect(delays).toEqual([100, 200]);
    expect(result.retries).toBe(2);
  });

  test('stops after maxAttempts and reports the last error per record', async () => {
    const entry = fakeEntry((rs) => rs.map(() => throttled));
    const result = await sendRecords(entry, records(2), { ...noSleep, maxAttempts: 4 });
    expect(entry.calls).toHaveLength(4);
    expect(result.outcomes).toEqual([throttled, throttled]);
  });

  test('does not retry what no retry fixes: KMS errors, oversized records', async () => {
    const kms: RecordOutcome = { ok: false, errorCode: 'KMSAccessDeniedException', errorMessage: 'denied' };
    const entry = fakeEntry((rs) => rs.map(() => kms));
    const result = await sendRecords(entry, [...records(1), { data: Buffer.alloc(KINESIS_API_LIMITS.maxRecordBytes + 1), partitionKey: 'big' }], noSleep);
    expect(entry.calls).toHaveLength(1);
    expect(result.outcomes[0]).toEqual(kms);
    expect(result.outcomes[1]).toMatchObject({ ok: false, errorCode: 'RecordTooLarge' });
  });

  test('a throttled call is retried as a whole; a call the user must fix is thrown, explained', async () => {
    const throttledCall = fakeEntry((rs, call) => (call === 1 ? Object.assign(new Error('slow down'), { name: 'ThrottlingException' }) : rs.map(() => ok)));
    expect((await sendRecords(throttledCall, records(2), noSleep)).outcomes).toEqual([ok, ok]);
    // Kinesis throttled by the stream's KMS key: throttling too, not a refusal to fix.
    const kmsThrottled = fakeEntry((rs, call) => (call === 1 ? Object.assign(new Error('Rate exceeded for key'), { name: 'KMSThrottlingException' }) : rs.map(() => ok)));
    expect((await sendRecords(kmsThrottled, records(2), noSleep)).outcomes).toEqual([ok, ok]);

    const missing = fakeEntry(() => Object.assign(new Error('Stream s under account 1 not found.'), { name: 'ResourceNotFoundException' }));
    await expect(sendRecords(missing, records(1), noSleep)).rejects.toThrow(new UserError('Kinesis: not found (Kinesis stream s): Stream s under account 1 not found.'));
  });
});

describe('sendRecords when the endpoint stops answering', () => {
  test('onStopped hears what was accepted before, and the records left carry the socket error; then the explained error is thrown', async () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4573'), { code: 'ECONNREFUSED' });
    const throttled: RecordOutcome = { ok: false, errorCode: 'ProvisionedThroughputExceededException', errorMessage: 'Rate exceeded' };
    let call = 0;
    const entry: EntryPoint = {
      kind: 'kinesis', name: 's', limits: KINESIS_API_LIMITS, description: 'Kinesis stream s',
      failureContext: { service: 'Kinesis', endpoint: 'http://127.0.0.1:4573', startHint: 'start it' },
      async putBatch(rs) {
        call++;
        if (call === 1) return rs.map((_, i) => (i === 0 ? { ok: true } : throttled));
        throw refused;
      },
      close() {},
    };
    const records = [0, 1, 2].map((i) => ({ data: Buffer.from(`r${i}`), partitionKey: `k${i}` }));
    let settled: RecordOutcome[] = [];
    await expect(sendRecords(entry, records, { sleep: async () => undefined, onStopped: (partial) => { settled = partial.outcomes; } }))
      .rejects.toThrow(new UserError('nothing is listening on 127.0.0.1:4573: start it'));
    expect(settled).toEqual([{ ok: true }, ...[1, 2].map(() => ({ ok: false, errorCode: 'ECONNREFUSED', errorMessage: 'connect ECONNREFUSED 127.0.0.1:4573' }))]);
  });
});

describe('a call cut off after it was sent: its records may have been taken', () => {
  const failureContext = { service: 'Kinesis', endpoint: 'http://127.0.0.1:4573', startHint: 'start it' };

  test('its records are reported MaybeTaken, not with the error of the attempt that came after (the endpoint gone)', async () => {
    const refused = (maybeSent: boolean) => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4573'), { code: 'ECONNREFUSED', ...(maybeSent ? { $maybeSent: true } : {}) });
    const entry: EntryPoint = {
      kind: 'kinesis', name: 's', limits: { ...KINESIS_API_LIMITS, maxRecords: 1 }, description: 'Kinesis stream s', failureContext,
      async putBatch(rs) {
        if (rs[0].partitionKey === 'k0') return [{ ok: true }];
        throw refused(true);
      },
      close() {},
    };
    const records = [0, 1, 2].map((i) => ({ data: Buffer.from(`r${i}`), partitionKey: `k${i}` }));
    let settled: RecordOutcome[] = [];
    await expect(sendRecords(entry, records, { sleep: async () => undefined, onStopped: (partial) => { settled = partial.outcomes; } })).rejects.toThrow(/nothing is listening/);
    expect(settled).toEqual([
      { ok: true },
      { ok: false, errorCode: MAYBE_TAKEN, errorMessage: 'the call that carried it was cut off after it was sent (then ECONNREFUSED): the stream may have taken it' },
      // Never sent: the run stopped before its call.
      { ok: false, errorCode: NOT_SENT, errorMessage: 'no call carried it: the run stopped before its call went out' },
    ]);
  });

  test('a call cut off after it was sent and answered as "try again" (its request timed out): its records stay MaybeTaken when the endpoint is gone for the next attempt', async () => {
    let calls = 0;
    const entry: EntryPoint = {
      kind: 'kinesis', name: 's', limits: KINESIS_API_LIMITS, description: 'Kinesis stream s', failureContext,
      async putBatch() {
        calls++;
        if (calls === 1) throw Object.assign(new Error('Connection timed out after 30000 ms'), { name: 'TimeoutError', $maybeSent: true });
        throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4573'), { code: 'ECONNREFUSED' });
      },
      close() {},
    };
    let settled: RecordOutcome[] = [];
    await expect(sendRecords(entry, [{ data: Buffer.from('r'), partitionKey: 'k' }], { sleep: async () => undefined, onStopped: (partial) => { settled = partial.outcomes; } })).rejects.toThrow(/nothing is listening/);
    expect(calls).toBe(2);
    expect(settled).toEqual([{ ok: false, errorCode: MAYBE_TAKEN, errorMessage: 'the call that carried it was cut off after it was sent (then ECONNREFUSED): the stream may have taken it' }]);
  });

  test.each([
    ['a connection refused', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), false],
    ['a name that does not resolve', Object.assign(new Error('getaddrinfo ENOTFOUND nowhere'), { code: 'ENOTFOUND' }), false],
    ['the HTTP handler\'s connection timeout', Object.assign(new Error('@smithy/node-http-handler - the request socket did not establish a connection with the server within the configured timeout of 2000 ms.'), { name: 'TimeoutError' }), false],
    ['an error answer (400)', Object.assign(new Error('Stream s not found'), { name: 'ResourceNotFoundException', $metadata: { httpStatusCode: 400 } }), false],
    ['an error answer (503)', Object.assign(new Error('Slow down.'), { name: 'ServiceUnavailableException', $metadata: { httpStatusCode: 503 } }), false],
    ['a connection reset', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), true],
    ['a request timeout after connecting', Object.assign(new Error('Connection timed out after 30000 ms'), { name: 'TimeoutError' }), true],
    ['a success whose body was cut off', Object.assign(new Error('Unexpected end of JSON input'), { $metadata: { httpStatusCode: 200 } }), true],
  ])('%s: may have been sent = %s', (_what, err, maybeSent) => {
    expect(attemptMaybeSent(err)).toBe(maybeSent);
  });

  /** A Kinesis entry point against a server that takes each request and then `answer`s it. */
  async function callAgainst(answer: (socket: net.Socket, request: number) => void): Promise<{ $maybeSent?: boolean }> {
    let requests = 0;
    const server = net.createServer((socket) => socket.once('data', () => answer(socket, ++requests)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const entry = kinesisEntryPoint(kinesisClient(endpoint), 's', { service: 'Kinesis', endpoint, startHint: 'start it' });
    try {
      await entry.putBatch([{ data: Buffer.from('x'), partitionKey: 'k' }], 1);
      throw new Error('the call succeeded');
    } catch (err) {
      return err as { $maybeSent?: boolean };
    } finally {
      entry.close();
      server.close();
    }
  }

  test('the SDK\'s own retries hide the cut-off attempt; the entry point marks the call', async () => {
    // The first attempt is reset after the request arrived; the endpoint is gone for the next ones.
    let server: net.Server | undefined;
    const cutOff = await callAgainst((socket) => {
      socket.destroy();
      server ??= (socket as unknown as { server: net.Server }).server;
      server.close();
    });
    expect(networkErrorCode(cutOff)).toBe('ECONNREFUSED');
    expect(cutOff.$maybeSent).toBe(true);
  });

  test('a success whose answer was cut off part-way is a cut-off: the stream took the call', async () => {
    // The status line and headers arrive, the body does not; the endpoint is gone for the SDK's next attempts.
    const body = JSON.stringify({ FailedRecordCount: 0, Records: [{ SequenceNumber: '1', ShardId: 'shardId-000000000000' }] });
    const cutOff = await callAgainst((socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
      const server = (socket as unknown as { server: net.Server }).server;
      setTimeout(() => {
        socket.destroy();
        server.close();
      }, 50);
    });
    expect(networkErrorCode(cutOff)).toBe('ECONNREFUSED');
    expect(cutOff.$maybeSent).toBe(true);
  });

  test('an answer, even an error, is no cut-off; nor is a connection refused from the start', async () => {
    const body = JSON.stringify({ __type: 'ResourceNotFoundException', message: 'Stream s not found' });
    const answered = await callAgainst((socket) => socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: ${body.length}\r\n\r\n${body}`));
    expect(answered.$maybeSent).toBeUndefined();
    const free = await freePort();
    const entry = kinesisEntryPoint(kinesisClient(`http://127.0.0.1:${free}`), 's', failureContext);
    try {
      const refused = await entry.putBatch([{ data: Buffer.from('x'), partitionKey: 'k' }], 1).then(() => undefined, (err: unknown) => err as { $maybeSent?: boolean });
      expect(networkErrorCode(refused)).toBe('ECONNREFUSED');
      expect(refused?.$maybeSent).toBeUndefined();
    } finally {
      entry.close();
    }
  });
});

describe('toCsv', () => {
  test('quotes what needs quoting; NULL is empty; dates ISO; nested JSON', () => {
    expect(toCsv(['a', 'b', 'c', 'd'], [['x,y', 'say "hi"', null, new Date('2026-01-02T03:04:05Z')], [' pad', 1n, { k: [1] }, true]]))
      .toBe('a,b,c,d\r\n"x,y","say ""hi""",,2026-01-02T03:04:05.000Z\r\n" pad",1,"{ ""k"": [ 1 ] }",true\r\n');
  });
});

describe('formatTable', () => {
  test('control characters in a record print escaped, never raw to the terminal', () => {
    const evil = 'evil\x1b]0;pwned\x07\x1b[31mRED\x7f\x9b\r\n';
    const table = formatTable(['msg\x1b[1m'], [[displayValue(evil)]]);
    // eslint-disable-next-line no-control-regex
    expect(table).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    expect(table.split('\n')).toEqual([
      'msg\\u001b[1m',
      '─'.repeat('evil\\u001b]0;pwned\\u0007\\u001b[31mRED\\u007f\\u009b\\u000d\\u000a'.length),
      'evil\\u001b]0;pwned\\u0007\\u001b[31mRED\\u007f\\u009b\\u000d\\u000a',
    ]);
  });

  test('bidirectional controls in a record print escaped: they cannot reorder what the terminal shows (Trojan Source)', () => {
    const bidi = ['\u061c', '\u200e', '\u200f', '\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069'];
    const table = formatTable(['user\u202e'], [[displayValue(`admin\u202e\u2066// check\u2069\u2066${bidi.join('')}`)]]);
    expect(table).not.toMatch(/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/);
    expect(table.split('\n')[0]).toBe('user\\u202e');
    expect(table.split('\n')[2]).toBe('admin\\u202e\\u2066// check\\u2069\\u2066'
      + '\\u061c\\u200e\\u200f\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069');
    // The characters next to them, and other format characters (a zero-width joiner in an emoji), stay as they are.
    expect(escapeControlCharacters('\u05d0\u200d👩\u200d💻\u2060\u2070')).toBe('\u05d0\u200d👩\u200d💻\u2060\u2070');
  });

  test('integers from the data print as they are; the CLI\'s own counts keep thousands separators', () => {
    const table = formatTable(['year', 'id', 'avg', 'events'], [[displayValue(2026), displayValue(12345678901234567890n), displayValue(1234.5678), 12345]]);
    expect(table.split('\n')[2]).toBe('2026  12345678901234567890  1,234.57  12,345');
  });

  test('a column of doubles has one number of decimals, one or two; a whole double is never printed like an integer', () => {
    const column = (type: string, ...values: unknown[]) => formatTable(['v'], displayRows([type], values.map((v) => [v]))).split('\n').slice(2);
    expect(column('DOUBLE', 1000000, 999999.99, null)).toEqual(['1,000,000.00', '  999,999.99', '']);
    expect(column('double', 21, 22)).toEqual(['21.0', '22.0']);
    expect(column('FLOAT', 21.5, 22, NaN)).toEqual(['21.5', '22.0', ' NaN']);
    expect(column('DECIMAL(10,3)', 12, 3.5)).toEqual(['12.000', ' 3.500']);
    expect(column('INTEGER', 2026, 1999)).toEqual(['2026', '1999']);
    expect(column('BIGINT', 12345678901234567890n)).toEqual(['12345678901234567890']);
  });

  test('edges of number columns: whole decimals, values too small for two decimals, Athena\'s NaN strings, very many rows', () => {
    const column = (type: string, ...values: unknown[]) => formatTable(['v'], displayRows([type], values.map((v) => [v]))).split('\n').slice(2);
    expect(column('DECIMAL(4,0)', 2026, 1999)).toEqual(['2026', '1999']);
    expect(column('decimal(10,0)', 12345)).toEqual(['12345']);
    expect(column('DOUBLE', 0.0073, 0.0004, 1e-9, -0.001, 0)).toEqual(['  0.01', '0.0004', '  1e-9', '-0.001', '  0.00']);
    expect(column('double', 1000000, 'NaN', 999999.99, '-Infinity')).toEqual(['1,000,000.00', '         NaN', '  999,999.99', '   -Infinity']);
    const many = Array.from({ length: 200_000 }, (_, i) => [i + 0.5]);
    expect(formatTable(['v'], displayRows(['DOUBLE'], many)).split('\n')).toHaveLength(200_002);
  });

  test('given a width, a last column of text that runs past it wraps within its column, the other cells on its first line only', () => {
    const reason = 'format-conversion-failed holds the transformed record, not the producer\'s (s3://sluice-dev-data/errors/x/y/z-0123456789)';
    const table = formatTable(['pipeline', 'messages', 'reason'], [['iot', 3, reason], ['app-events', 12, 'short']], { width: 60 });
    expect(table.split('\n')).toEqual([
      'pipeline    messages  reason',
      '──────────  ────────  ──────────────────────────────────────',
      'iot                3  format-conversion-failed holds the',
      '                      transformed record, not the producer\'s',
      '                      (s3://sluice-dev-data/errors/x/y/z-012',
      '                      3456789)',
      'app-events        12  short',
    ]);
    // Without a width, or when the rows fit it, a table is as it always was.
    expect(formatTable(['pipeline', 'reason'], [['iot', reason]], { width: 200 })).toBe(formatTable(['pipeline', 'reason'], [['iot', reason]]));
    expect(formatTable(['pipeline', 'reason'], [['iot', reason]]).split('\n')[2]).toBe(`iot       ${reason}`);
    // Columns so wide that little is left: the last one still gets a few words a line.
    const squeezed = formatTable(['id', 'reason'], [['x'.repeat(70), reason]], { width: 80 }).split('\n');
    expect(squeezed[1]).toBe(`${'─'.repeat(70)}  ${'─'.repeat(16)}`);
  });

  test('wrapText: no line is longer than the width, a word that fits one is never broken, and nothing is left out but spaces', () => {
    const word = fc.string({ maxLength: 30 }).map((w) => w.replace(/ /g, ''));
    fc.assert(fc.property(fc.array(word, { maxLength: 20 }), fc.integer({ min: 1, max: 40 }), (words, width) => {
      const lines = wrapText(words.join(' '), width);
      expect(lines.filter((line) => line.length > width)).toEqual([]);
      for (const w of words.filter((w) => w !== '' && w.length <= width)) expect(lines.some((line) => line.split(' ').includes(w))).toBe(true);
      expect(lines.join('').replace(/ /g, '')).toBe(words.join(''));
    }));
  });

  test('CSV keeps the data exact: integers without separators, control characters as they are', () => {
    expect(toCsv(['year', 'msg'], [[2026, 'a\x1bb\u202ec']])).toBe('year,msg\r\n2026,a\x1bb\u202ec\r\n');
  });
});

describe('rowsToJson', () => {
  test('keys come in the columns\' order, integer-like names too (a JavaScript object puts them first)', () => {
    const text = rowsToJson(['page', '7', 'n', '0'], [['/home', 'seven', 3n, { '2': 'b', a: [1, null] }], ['/cart', null, 4, undefined]]);
    expect(text).toBe([
      '[',
      '  {',
      '    "page": "/home",',
      '    "7": "seven",',
      '    "n": 3,',
      '    "0": {',
      '      "2": "b",',
      '      "a": [',
      '        1,',
      '        null',
      '      ]',
      '    }',
      '  },',
      '  {',
      '    "page": "/cart",',
      '    "7": null,',
      '    "n": 4',
      '  }',
      ']',
    ].join('\n'));
    expect(rowsToJson(['a'], [])).toBe('[]');
    expect(rowsToJson([], [[]])).toBe('[\n  {}\n]');
  });

  test('any rows: the same text as toJson of the rows as objects when no name is integer-like, the same value always', () => {
    const name = fc.string({ maxLength: 6 });
    fc.assert(fc.property(fc.uniqueArray(name, { maxLength: 5 }), fc.array(fc.array(fc.jsonValue(), { maxLength: 5 }), { maxLength: 4 }), (headers, cells) => {
      const rows = cells.map((row) => headers.map((_, i) => row[i] ?? null));
      const objects = rows.map((row) => Object.fromEntries(headers.map((h, i) => [h, row[i]])));
      const text = rowsToJson(headers, rows);
      expect(JSON.parse(text)).toEqual(JSON.parse(toJson(objects)));
      if (!headers.some((h) => /^(0|[1-9][0-9]*)$/.test(h))) expect(text).toBe(toJson(objects));
    }));
  });
});

describe('toJson', () => {
  /** What a terminal may obey: C0 but the line break (JSON's indentation), DEL and C1; and the bidirectional controls. */
  // eslint-disable-next-line no-control-regex
  const TERMINAL_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

  test('DEL and the C1 control characters are written as \\u escapes, as JSON.stringify writes the C0 ones; the value parses back the same', () => {
    const evil = 'csi\u009b31m del\u007f nel\u0085 esc\u001b]0;pwned\u0007 é\u00a0';
    const text = toJson({ [evil]: [evil, 12345678901234567890n] });
    expect(text).not.toMatch(TERMINAL_CONTROL);
    expect(text).toContain('"csi\\u009b31m del\\u007f nel\\u0085 esc\\u001b]0;pwned\\u0007 é\u00a0"');
    expect(JSON.parse(text)).toEqual({ [evil]: [evil, '12345678901234567890'] });
  });

  test('the bidirectional controls are written as \\u escapes too; the value parses back the same', () => {
    const evil = 'alm\u061c lrm\u200e rlm\u200f lre\u202a rle\u202b pdf\u202c lro\u202d rlo\u202e lri\u2066 rli\u2067 fsi\u2068 pdi\u2069 zwj\u200d';
    const text = toJson({ [evil]: evil });
    expect(text).not.toMatch(TERMINAL_CONTROL);
    const escaped = 'alm\\u061c lrm\\u200e rlm\\u200f lre\\u202a rle\\u202b pdf\\u202c lro\\u202d rlo\\u202e lri\\u2066 rli\\u2067 fsi\\u2068 pdi\\u2069 zwj\u200d';
    expect(text).toBe(`{\n  "${escaped}": "${escaped}"\n}`);
    expect(JSON.parse(text)).toEqual({ [evil]: evil });
  });

  test('any JSON value, with any characters in its keys and strings, parses back as JSON.stringify\'s text does and prints nothing a terminal obeys', () => {
    // Every character up to U+00FF (C0, DEL, C1, Latin-1) and every bidirectional control often, then any code point,
    // lone surrogates included.
    const character = fc.oneof(
      fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)),
      fc.constantFrom('\u061c', '\u200e', '\u200f', '\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069'),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
      fc.constantFrom('\u2028', '\ud800', '\udfff', '😀', '\u200d'),
    );
    fc.assert(fc.property(fc.jsonValue({ stringUnit: character }), (value) => {
      const text = toJson(value);
      expect(text).not.toMatch(TERMINAL_CONTROL);
      // The same value as JSON.stringify's own text parses to (itself, but -0, which JSON writes as 0).
      expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)));
    }), { numRuns: 500 });
  });
});

describe('Progress', () => {
  function captureStderr(fn: () => void): string {
    const chunks: string[] = [];
    const spy = jest.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
      chunks.push(String(c));
      return true;
    });
    const out = jest.spyOn(process.stdout, 'write');
    try {
      fn();
      expect(out).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
      out.mockRestore();
    }
    return chunks.join('');
  }

  test('silent when stderr is not a terminal, unless --progress; never on stdout', () => {
    expect(captureStderr(() => new Progress({ afterMs: 0 }).update('working'))).toBe('');
    expect(captureStderr(() => new Progress({ forced: true, afterMs: 0, everyMs: 0 }).update('working'))).toBe('working\n');
  });

  test('quiet for the first second', () => {
    expect(captureStderr(() => new Progress({ forced: true }).update('working'))).toBe('');
  });

  test('the wall clock set back an hour does not silence it for that hour', () => {
    const realNow = Date.now.bind(Date);
    let setBack = 0;
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - setBack);
    try {
      const progress = new Progress({ forced: true, afterMs: 0, everyMs: 0 });
      expect(captureStderr(() => progress.update('before'))).toBe('before\n');
      setBack = 3_600_000;
      expect(captureStderr(() => progress.update('after'))).toBe('after\n');
      expect(progress.elapsedMs).toBeGreaterThanOrEqual(0);
    } finally {
      clock.mockRestore();
    }
  });

  test('notes on stderr cannot drive the terminal: control characters are escaped, line breaks stay', () => {
    expect(captureStderr(() => io.err('sluice: note: /data/\x1b]0;owned\x07dlq has no dlq.jsonl\nsecond line \x9b2J\u202etxt.exe'))).toBe(
      'sluice: note: /data/\\u001b]0;owned\\u0007dlq has no dlq.jsonl\nsecond line \\u009b2J\\u202etxt.exe\n',
    );
    jest.spyOn(io, 'stderrIsTTY').mockReturnValue(true);
    try {
      expect(captureStderr(() => new Progress({ afterMs: 0 }).update('sent 5 to \x1b[2Jq'))).toBe('\r\x1b[2Ksent 5 to \\u001b[2Jq');
    } finally {
      jest.restoreAllMocks();
    }
  });

  test('a terminal that says it is dumb (TERM=dumb: Emacs shell-mode, some CI logs) gets lines, not an erased and redrawn one', () => {
    jest.spyOn(io, 'stderrIsTTY').mockReturnValue(true);
    const term = process.env.TERM;
    process.env.TERM = 'dumb';
    try {
      expect(captureStderr(() => new Progress({ afterMs: 0, everyMs: 0 }).update('sent 5'))).toBe('sent 5\n');
    } finally {
      if (term === undefined) delete process.env.TERM;
      else process.env.TERM = term;
      jest.restoreAllMocks();
    }
  });
});

describe('parsePort: flags and SLUICE_*_PORT variables, read alike by every command', () => {
  it('takes 0–65535; an unset, empty or blank value is not set', () => {
    expect(parsePort('4573', '--firehose-port')).toBe(4573);
    expect(parsePort('0', '--firehose-port')).toBe(0);
    expect(parsePort(undefined, 'SLUICE_FIREHOSE_PORT')).toBeUndefined();
    expect(parsePort('', 'SLUICE_FIREHOSE_PORT')).toBeUndefined();
    expect(parsePort('  ', 'SLUICE_FIREHOSE_PORT')).toBeUndefined();
  });

  it.each(['x', '-1', '65536', '45.5'])('refuses %j, naming where it came from', (raw) => {
    expect(() => parsePort(raw, 'SLUICE_KINESIS_PORT')).toThrow(`SLUICE_KINESIS_PORT: "${raw}" is not a port (0–65535; 0 picks a free one)`);
  });
});

describe('drawSample', () => {
  test('a schema the sampler cannot draw from is a usage problem (exit 2) naming the pipeline, the field and the fix', () => {
    const err = (() => {
      try {
        drawSample('orders', () => { throw new SampleError('/shipping/country', 'a string with "pattern" needs "examples" to be sampled (pattern ^[A-Z]{2}$)'); });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).exitCode).toBe(2);
    expect((err as UserError).message).toBe('cannot generate orders records: field /shipping/country: a string with "pattern" needs "examples" to be sampled (pattern ^[A-Z]{2}$); add "examples" to it in schemas/orders.schema.json, or send your own records with --file');
    // Anything else is not the schema's doing: it goes through as it was.
    expect(() => drawSample('orders', () => { throw new RangeError('x'); })).toThrow(RangeError);
    expect(drawSample('orders', () => 7)).toBe(7);
  });
});

describe('a call cut off after it was sent, then its records refused until the attempts run out', () => {
  test('they are reported MaybeTaken, not with the error of the attempts after it', async () => {
    let calls = 0;
    const entry: EntryPoint = {
      kind: 'kinesis', name: 's', limits: KINESIS_API_LIMITS, description: 'Kinesis stream s', failureContext: { service: 'Kinesis', resource: 'Kinesis stream s' },
      async putBatch(rs) {
        calls++;
        if (calls === 1) throw Object.assign(new Error('Connection timed out after 30000 ms'), { name: 'TimeoutError', $maybeSent: true });
        return rs.map(() => ({ ok: false, errorCode: 'ProvisionedThroughputExceededException', errorMessage: 'Rate exceeded' }));
      },
      close() {},
    };
    const result = await sendRecords(entry, [{ data: Buffer.from('r'), partitionKey: 'k' }], { sleep: async () => undefined, maxAttempts: 3 });
    expect(calls).toBe(3);
    expect(result.outcomes).toEqual([{ ok: false, errorCode: MAYBE_TAKEN, errorMessage: expect.stringMatching(/cut off after it was sent/) }]);
  });
});

describe('requireGeneratedCode', () => {
  test('hands back the schema files it read, for records to be drawn from; a pipeline with no schema file is the configuration\'s to refuse, not its', () => {
    const schemas = requireGeneratedCode(['iot', 'shipments']);
    expect([...schemas.keys()]).toEqual(['iot']);
    expect(schemas.get('iot')).toEqual(readSchema('iot'));
  });
});

describe('put\'s generated records', () => {
  test('records the pipeline refuses every time: a usage problem (exit 2) when the source is made, before anything is sent, naming the field and the rule', () => {
    // Drawn from a copy of iot's schema whose event_type the pipeline's own validator refuses.
    const drawnFrom = JSON.parse(JSON.stringify(readSchema('iot'))) as { properties: Record<string, Record<string, unknown>> };
    drawnFrom.properties.event_type = { type: 'string', enum: ['not-an-iot-event'] };
    let err: unknown;
    try {
      generatedSource(pipelineSchema('iot'), 1, drawnFrom);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).exitCode).toBe(2);
    expect((err as UserError).message).toMatch(/^cannot generate iot records the pipeline accepts: 100 drawn in a row were refused \(the last: .*\/event_type.*\); nothing was sent\. Give the field "examples" the rule accepts in schemas\/iot\.schema\.json, or send your own records with --file$/);
  });

  test('records the pipeline accepts are taken as drawn, the first drawn when the source is made', async () => {
    const source = generatedSource(pipelineSchema('iot'), 1);
    const records = await source.take(5);
    expect(records).toHaveLength(5);
    for (const r of records) expect(r.failure).toBeUndefined();
  });
});
