/**
 * The transform's runtimes (worker threads): the real handler answers there as it does in-process, and a
 * runtime that exits, throws outside an invocation or hangs fails only what it holds; the next invocation
 * gets a new runtime. A result arrives as Lambda's runtime sends it, as JSON: one JSON cannot write fails its
 * invocation alone. The misbehaving handler is a fixture module.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FirehoseTransformationEvent, FirehoseTransformationResult } from 'aws-lambda';
import { createTransformHandler } from '../../transforms/record-transform/handler';
import { TransformWorkers } from '../../lib/local/transform-workers';

const directPut: FirehoseTransformationEvent = JSON.parse(fs.readFileSync(path.join(__dirname, '../fixtures/events/firehose-direct-put.json'), 'utf8'));
const MISBEHAVING = path.join(__dirname, '../fixtures/transforms/misbehaving-handler.ts');
const MINUTE = 60_000;

/** The decoded records of a response, `processed_at` (the handler's clock) left out. */
function decoded(result: FirehoseTransformationResult): unknown[] {
  return result.records.map((r) => {
    const data = r.data === undefined ? undefined : Buffer.from(r.data, 'base64').toString('utf8');
    if (r.result !== 'Ok' || data === undefined) return { ...r, data };
    const row = JSON.parse(data) as { sluice?: { processed_at?: string } };
    delete row.sluice?.processed_at;
    return { ...r, data: row };
  });
}

function invocation(id: string): FirehoseTransformationEvent {
  return { ...directPut, invocationId: id, records: directPut.records.slice(0, 2) };
}

describe('transform runtimes', () => {
  const open: TransformWorkers[] = [];
  const start = async (options: Parameters<typeof TransformWorkers.start>[0]) => {
    const workers = await TransformWorkers.start(options);
    open.push(workers);
    return workers;
  };
  afterEach(async () => {
    for (const workers of open.splice(0)) await workers.close();
  });

  test('the real handler answers in a runtime as it does in-process', async () => {
    const workers = await start({ handlers: [{ pipeline: 'app-events', destination: 'lake' }], piiHashKey: 'k', size: 1 });
    const inWorker = await workers.processor('app-events', 'lake', MINUTE)(directPut);
    const inProcess = await createTransformHandler({ pipeline: 'app-events', destination: 'lake', piiHashKey: 'k' })(directPut);
    expect(inWorker.records.map((r) => r.recordId)).toEqual(directPut.records.map((r) => r.recordId));
    expect(inWorker.records.some((r) => r.result === 'Ok')).toBe(true);
    expect(decoded(inWorker)).toEqual(decoded(inProcess));
  }, MINUTE);

  test('a handler that cannot be made fails the start with its message', async () => {
    await expect(start({ handlers: [{ pipeline: 'missing', destination: 'lake' }], piiHashKey: 'k', size: 2, handlerModule: MISBEHAVING }))
      .rejects.toThrow('no schema for pipeline "missing"');
  }, MINUTE);

  test('a processor for a pipeline the runtimes were not started with is refused', async () => {
    const workers = await start({ handlers: [{ pipeline: 'iot', destination: 'lake' }], piiHashKey: 'k', size: 1, handlerModule: MISBEHAVING });
    expect(() => workers.processor('iot', 'search', MINUTE)).toThrow('no transform handler was started for iot search');
  }, MINUTE);

  test('a rejected invocation keeps the handler\'s error; the runtime answers the next', async () => {
    const workers = await start({ handlers: [{ pipeline: 'iot', destination: 'lake' }], piiHashKey: 'k', size: 1, handlerModule: MISBEHAVING });
    const invoke = workers.processor('iot', 'lake', MINUTE);
    await expect(invoke(invocation('reject'))).rejects.toMatchObject({ name: 'TypeError', message: 'rejected by the handler' });
    await expect(invoke(invocation('ok'))).resolves.toMatchObject({ records: [{ result: 'Ok' }, { result: 'Ok' }] });
  }, MINUTE);

  describe('a result is sent as Lambda\'s Node.js runtime sends it, as JSON.stringify writes it', () => {
    const ended: string[] = [];
    const oneRuntime = () => start({
      handlers: [{ pipeline: 'iot', destination: 'lake' }], piiHashKey: 'k', size: 1, handlerModule: MISBEHAVING, onRuntimeEnd: (reason) => ended.push(reason),
    });
    const plainOk = (event: FirehoseTransformationEvent) => event.records.map((r) => ({ recordId: r.recordId, result: 'Ok', data: r.data }));
    beforeEach(() => {
      ended.splice(0);
    });

    test('one structured clone refuses (own functions, symbols, a Proxy) arrives as JSON writes it; the runtime stays up', async () => {
      const invoke = (await oneRuntime()).processor('iot', 'lake', MINUTE);
      // JSON leaves functions and symbols out: what is left is an answer Firehose takes.
      await expect(invoke(invocation('unclonable'))).resolves.toStrictEqual({ records: plainOk(invocation('unclonable')) });
      await expect(invoke(invocation('proxy'))).resolves.toStrictEqual({ records: plainOk(invocation('proxy')) });
      await expect(invoke(invocation('ok'))).resolves.toMatchObject({ records: [{ result: 'Ok' }, { result: 'Ok' }] });
      expect(ended).toEqual([]);
    }, MINUTE);

    test.each([
      ['a BigInt', 'bigint', /BigInt/],
      ['a cycle', 'cycle', /circular/],
      ['a getter that throws', 'getter-throws', /Error: no stats today/],
    ])('one JSON.stringify refuses (%s) fails that invocation as Lambda\'s runtime fails it; the runtime answers the one queued behind', async (_, id, cause) => {
      const invoke = (await oneRuntime()).processor('iot', 'lake', MINUTE);
      const [refused, next] = await Promise.allSettled([invoke(invocation(id)), invoke(invocation('ok'))]);
      expect(refused).toMatchObject({ status: 'rejected', reason: { name: 'Runtime.JSONStringifyError', message: expect.stringMatching(/^Unable to stringify response body/) } });
      expect((refused as PromiseRejectedResult).reason.message).toMatch(cause);
      expect(next).toMatchObject({ status: 'fulfilled', value: { records: [{ result: 'Ok' }, { result: 'Ok' }] } });
      expect(ended).toEqual([]);
    }, MINUTE);

    test('what JSON writes otherwise arrives as JSON writes it: a Date as its ISO string, NaN as null, a Map as {}, undefined left out', async () => {
      const invoke = (await oneRuntime()).processor('iot', 'lake', MINUTE);
      const event = invocation('json-rewrites');
      await expect(invoke(event)).resolves.toStrictEqual({
        records: plainOk(event).map((r) => ({ ...r, metadata: { partitionKeys: { day: '2026-03-01T00:00:00.000Z' } } })),
        ratio: null,
        seen: {},
        extra: [null, 1],
      });
    }, MINUTE);
  });

  test.each([
    ['exits', 'exit', /the transform's runtime ended: it exited with code 3/],
    ['throws outside an invocation', 'throw-outside', /the transform's runtime ended: Error: thrown outside the invocation/],
  ])('a runtime that %s fails what it holds; a new runtime answers the next invocation', async (_, id, message) => {
    const workers = await start({ handlers: [{ pipeline: 'iot', destination: 'lake' }], piiHashKey: 'k', size: 1, handlerModule: MISBEHAVING });
    const invoke = workers.processor('iot', 'lake', MINUTE);
    await expect(invoke(invocation(id))).rejects.toThrow(message);
    await expect(invoke(invocation('ok'))).resolves.toMatchObject({ records: [{ result: 'Ok' }, { result: 'Ok' }] });
  }, MINUTE);

  test('a runtime started again that cannot make its handlers fails the invocation with the reason', async () => {
    const workers = await start({ handlers: [{ pipeline: 'iot', destination: 'lake' }], piiHashKey: 'k', size: 1, handlerModule: MISBEHAVING });
    const invoke = workers.processor('iot', 'lake', MINUTE);
    await expect(invoke(invocation('exit'))).rejects.toThrow(/exited with code 3/);
    process.env.MISBEHAVING_CANNOT_START = 'no schema for pipeline "iot"';
    try {
      await expect(invoke(invocation('ok'))).rejects.toThrow('the transform\'s runtime could not start: no schema for pipeline "iot"');
    } finally {
      delete process.env.MISBEHAVING_CANNOT_START;
    }
    await expect(invoke(invocation('ok'))).resolves.toMatchObject({ records: [{ result: 'Ok' }, { result: 'Ok' }] });
  }, MINUTE);

  test('a runtime is not started again once the code it loads changed on disk: the invocation fails naming the change', async () => {
    const onDisk: { changed?: string } = {};
    const ended: string[] = [];
    const workers = await start({
      handlers: [{ pipeline: 'iot', destination: 'lake' }], piiHashKey: 'k', size: 1, handlerModule: MISBEHAVING,
      codeChanged: () => onDisk.changed, onRuntimeEnd: (reason) => ended.push(reason),
    });
    const invoke = workers.processor('iot', 'lake', MINUTE);
    await expect(invoke(invocation('exit'))).rejects.toThrow(/exited with code 3/);
    onDisk.changed = 'the validator of iot was generated again since the twin started';
    await expect(invoke(invocation('ok'))).rejects.toThrow(
      "the transform's runtime ended and is not started again: the validator of iot was generated again since the twin started",
    );
    expect(ended).toEqual([expect.stringMatching(/exited with code 3/)]);
  }, MINUTE);

  test('a runtime that hangs is ended after the timeout; the other runtime answers meanwhile, and a new one after', async () => {
    const workers = await start({ handlers: [{ pipeline: 'iot', destination: 'lake' }], piiHashKey: 'k', size: 2, handlerModule: MISBEHAVING });
    const hung = Promise.resolve(workers.processor('iot', 'lake', 200)(invocation('hang')));
    void hung.catch(() => undefined);
    // The answering invocations have a minute: a new runtime starting on a busy machine can take more than 200 ms and
    // its grace. Any of them held behind the hung one would fail with it.
    const invoke = workers.processor('iot', 'lake', MINUTE);
    await expect(invoke(invocation('ok'))).resolves.toMatchObject({ records: [{ result: 'Ok' }, { result: 'Ok' }] });
    await expect(hung).rejects.toThrow("the transform's runtime ended: an invocation was unanswered after 200 ms");
    const answers = await Promise.all([invoke(invocation('ok')), invoke(invocation('ok'))]);
    expect(answers.map((a) => a.records.length)).toEqual([2, 2]);
  }, MINUTE);

  test('a runtime that stops answering gives the invocations it has not started to a new runtime; the hung one alone waits out its timeout', async () => {
    // One runtime (a two-core machine): a function stuck on one record must not hold every other pipeline's invocations for its timeout.
    const ended: string[] = [];
    const workers = await start({
      handlers: [{ pipeline: 'iot', destination: 'lake' }, { pipeline: 'app-events', destination: 'lake' }],
      piiHashKey: 'k', size: 1, handlerModule: MISBEHAVING, unresponsiveMs: 300, onRuntimeEnd: (reason) => ended.push(reason),
    });
    // Told apart by what settles first, not by the clock: both are answered while the hung one still waits out its 6 s
    // (a new runtime starts in well under a second, more on a busy machine).
    let hungSettled = false;
    const hung = Promise.resolve(workers.processor('iot', 'lake', 6000)(invocation('hang'))).finally(() => (hungSettled = true));
    void hung.catch(() => undefined);
    const invoke = workers.processor('app-events', 'lake', MINUTE);
    // Queued behind the hung invocation in its runtime, and sent after it was seen not answering.
    const queued = invoke(invocation('ok'));
    await new Promise((resolve) => setTimeout(resolve, 600));
    const later = invoke(invocation('ok'));
    await expect(Promise.all([queued, later])).resolves.toMatchObject([{ records: [{ result: 'Ok' }, { result: 'Ok' }] }, { records: [{ result: 'Ok' }, { result: 'Ok' }] }]);
    expect(hungSettled).toBe(false);
    await expect(hung).rejects.toThrow("the transform's runtime ended: an invocation was unanswered after 6000 ms");
    expect(ended).toEqual(["an invocation was unanswered after 6000 ms"]);
  }, MINUTE);

  test('the wall clock set back an hour while a runtime hangs does not hold its replacement for that hour', async () => {
    const workers = await start({ handlers: [{ pipeline: 'iot', destination: 'lake' }], piiHashKey: 'k', size: 1, handlerModule: MISBEHAVING, unresponsiveMs: 300 });
    const realNow = Date.now.bind(Date);
    let setBack = 0;
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - setBack);
    try {
      let hungSettled = false;
      const hung = Promise.resolve(workers.processor('iot', 'lake', 6000)(invocation('hang'))).finally(() => (hungSettled = true));
      void hung.catch(() => undefined);
      // Queued behind the hung invocation; the clock goes back (NTP, a resumed laptop) while the runtime is silent.
      const queued = workers.processor('iot', 'lake', MINUTE)(invocation('ok'));
      setBack = 3_600_000;
      await expect(queued).resolves.toMatchObject({ records: [{ result: 'Ok' }, { result: 'Ok' }] });
      expect(hungSettled).toBe(false);
      await expect(hung).rejects.toThrow("the transform's runtime ended: an invocation was unanswered after 6000 ms");
    } finally {
      clock.mockRestore();
    }
  }, MINUTE);

  test('a runtime replaced while it runs a slow invocation still answers it, then ends', async () => {
    const ended: string[] = [];
    const workers = await start({
      handlers: [{ pipeline: 'iot', destination: 'lake' }], piiHashKey: 'k', size: 1, handlerModule: MISBEHAVING,
      unresponsiveMs: 300, onRuntimeEnd: (reason) => ended.push(reason),
    });
    const invoke = workers.processor('iot', 'lake', MINUTE);
    const answers = await Promise.all([invoke(invocation('busy-1s')), invoke(invocation('ok'))]);
    expect(answers.map((a) => a.records.map((r) => r.result))).toEqual([['Ok', 'Ok'], ['Ok', 'Ok']]);
    await expect(invoke(invocation('ok'))).resolves.toMatchObject({ records: [{ result: 'Ok' }, { result: 'Ok' }] });
    expect(ended).toEqual([]);
  }, MINUTE);

  test('a runtime whose heap would grow past the function\'s memory ends, as a Lambda sandbox out of memory; a new one answers the next', async () => {
    const small = await start({ handlers: [{ pipeline: 'iot', destination: 'lake' }], piiHashKey: 'k', size: 1, handlerModule: MISBEHAVING, memoryMiB: 64 });
    const invoke = small.processor('iot', 'lake', MINUTE);
    await expect(invoke(invocation('hold-128-mib'))).rejects.toThrow(/the transform's runtime ended: .*memory/i);
    await expect(invoke(invocation('ok'))).resolves.toMatchObject({ records: [{ result: 'Ok' }, { result: 'Ok' }] });
    // The same invocation, with memory for it.
    const large = await start({ handlers: [{ pipeline: 'iot', destination: 'lake' }], piiHashKey: 'k', size: 1, handlerModule: MISBEHAVING, memoryMiB: 512 });
    await expect(large.processor('iot', 'lake', MINUTE)(invocation('hold-128-mib'))).resolves.toMatchObject({ records: [{ result: 'Ok' }, { result: 'Ok' }] });
  }, MINUTE);

  test('closed, the runtimes fail what they hold and refuse new invocations', async () => {
    const workers = await start({ handlers: [{ pipeline: 'iot', destination: 'lake' }], piiHashKey: 'k', size: 1, handlerModule: MISBEHAVING });
    const invoke = workers.processor('iot', 'lake', MINUTE);
    const held = Promise.resolve(invoke(invocation('throw-outside')));
    void held.catch(() => undefined);
    await workers.close();
    await expect(held).rejects.toThrow(/runtime ended/);
    await expect(invoke(invocation('ok'))).rejects.toThrow('the twin is stopping: the transform runtimes are closed');
  }, MINUTE);
});
