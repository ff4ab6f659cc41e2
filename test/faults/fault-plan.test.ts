import type { TransformationEvent } from '../../transforms/shared/firehose-event';
import { FaultInjector, parseFaultPlan, storageError } from '../../lib/local/faults';

/** The fault hook's own contract: the SLUICE_FAULTS syntax, and what each injected fault looks like. */
describe('fault plan (SLUICE_FAULTS)', () => {
  test('parses every setting', () => {
    expect(parseFaultPlan('seed=7, transform=0.2, transform.kinds=throw+timeout, transform.timeoutMs=1500, dynamo=0.1, dynamo.lost=0.05, dynamo.operations=PutItem+UpdateItem, storage=0.01, storage.code=EROFS'))
      .toEqual({
        seed: 7,
        transform: { rate: 0.2, kinds: ['throw', 'timeout'], timeoutMs: 1500 },
        dynamo: { rate: 0.1, lostRate: 0.05, operations: ['PutItem', 'UpdateItem'] },
        storage: { rate: 0.01, code: 'EROFS' },
      });
    expect(FaultInjector.fromEnv({})).toBeUndefined();
    expect(FaultInjector.fromEnv({ SLUICE_FAULTS: ' ' })).toBeUndefined();
    expect(FaultInjector.fromEnv({ SLUICE_FAULTS: 'transform=1' })?.hasTransformFaults).toBe(true);
  });

  test('refuses what it does not know, naming the entry and the allowed values', () => {
    expect(() => parseFaultPlan('transform=2')).toThrow('SLUICE_FAULTS: transform=2: expected a share between 0 and 1, e.g. transform=0.1');
    expect(() => parseFaultPlan('transform.kinds=explode')).toThrow(/transform.kinds=explode: expected some of throw\+timeout\+malformed\+fewer-records/);
    expect(() => parseFaultPlan('storage.code=ENOENT')).toThrow(/storage.code=ENOENT: expected one of ENOSPC, EROFS/);
    expect(() => parseFaultPlan('disk=0.1')).toThrow(/"disk" is not a fault setting; expected seed, transform/);
    // A setting without its share would inject nothing while the twin says faults are on.
    expect(() => parseFaultPlan('storage.code=EROFS')).toThrow('SLUICE_FAULTS: storage.* settings need storage=<share> to say how often, e.g. storage=0.1');
    expect(() => parseFaultPlan('transform.kinds=throw, dynamo=0.1')).toThrow('SLUICE_FAULTS: transform.* settings need transform=<share>');
    expect(() => parseFaultPlan('seed=')).toThrow('SLUICE_FAULTS: seed=: expected a whole number');
    expect(() => parseFaultPlan('dynamo.lost=1.5')).toThrow('SLUICE_FAULTS: dynamo.lost=1.5: expected a share between 0 and 1, e.g. dynamo.lost=0.1');
    // Lost answers alone are a share of their own.
    expect(parseFaultPlan('dynamo.lost=0.1, dynamo.operations=UpdateItem')).toEqual({ dynamo: { lostRate: 0.1, operations: ['UpdateItem'] } });
    expect(() => new FaultInjector({ dynamo: { lostRate: 2 } })).toThrow('fault plan: dynamo.lostRate must be between 0 and 1, got 2');
    expect(() => new FaultInjector({ dynamo: { rate: -1 } })).toThrow('fault plan: dynamo.rate must be between 0 and 1, got -1');
  });

  test('storage faults fail writes like the file system, while switched on or by rate', () => {
    const faults = new FaultInjector();
    expect(() => faults.beforeWrite('/data/x')).not.toThrow();
    faults.failStorage('ENOSPC');
    expect(() => faults.beforeWrite('/data/x')).toThrow(expect.objectContaining({
      code: 'ENOSPC', errno: -28, syscall: 'write', path: '/data/x', message: "ENOSPC: no space left on device, write '/data/x'",
    }));
    faults.healStorage();
    expect(() => faults.beforeWrite('/data/x')).not.toThrow();
    const always = new FaultInjector({ storage: { rate: 1, code: 'EROFS' } });
    expect(() => always.beforeWrite('/data/y')).toThrow(storageError('EROFS', '/data/y').message);
    expect(always.injected().storage).toBe(1);
  });

  test('a storage fault switched on for a while lasts that while on the monotonic clock: the wall clock set forward an hour does not end it', () => {
    const realNow = Date.now.bind(Date);
    let setForward = 0;
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + setForward);
    try {
      const faults = new FaultInjector();
      faults.failStorage('EIO', 60_000);
      expect(() => faults.beforeWrite('/data/x')).toThrow('EIO: i/o error');
      setForward = 3_600_000;
      expect(() => faults.beforeWrite('/data/x')).toThrow('EIO: i/o error');
      expect(faults.injected().storage).toBe(2);
    } finally {
      clock.mockRestore();
    }
  });

  test('a storage fault switched on for a while ends after that while: the wall clock set back an hour does not keep it for the hour', async () => {
    const realNow = Date.now.bind(Date);
    let setBack = 0;
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - setBack);
    try {
      const faults = new FaultInjector();
      faults.failStorage('ENOSPC', 100);
      expect(() => faults.beforeWrite('/data/x')).toThrow('ENOSPC');
      setBack = 3_600_000;
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(() => faults.beforeWrite('/data/x')).not.toThrow();
    } finally {
      clock.mockRestore();
    }
  });

  test('DLQ faults fail the failure router\'s sends, by rate or as decided', () => {
    expect(parseFaultPlan('dlq=0.05')).toEqual({ dlq: { rate: 0.05 } });
    expect(() => parseFaultPlan('dlq=2')).toThrow('SLUICE_FAULTS: dlq=2: expected a share between 0 and 1, e.g. dlq=0.1');
    expect(() => new FaultInjector().beforeDlqSend('q', 3)).not.toThrow();
    const decided = new FaultInjector({ dlq: { decide: ({ index }) => index === 1 } });
    expect(() => decided.beforeDlqSend('sluice-dev-dlq', 3)).not.toThrow();
    expect(() => decided.beforeDlqSend('sluice-dev-dlq', 3)).toThrow('injected fault: SendMessageBatch to sluice-dev-dlq failed (3 messages, send 1): the queue did not answer');
    expect(() => new FaultInjector({ dlq: { rate: 1 } }).beforeDlqSend('q', 1)).toThrow(/injected fault/);
    expect(decided.injected().dlq).toBe(1);
  });

  test('transform faults: a throw, a late answer, a malformed answer, a short answer', async () => {
    const event: TransformationEvent = {
      invocationId: 'i', deliveryStreamArn: 'arn', region: 'us-east-1',
      records: [{ recordId: 'a', approximateArrivalTimestamp: 0, data: 'e30=' }, { recordId: 'b', approximateArrivalTimestamp: 0, data: 'e30=' }],
    };
    const echo = (e: TransformationEvent) => ({ records: e.records.map((r) => ({ recordId: r.recordId, result: 'Ok' as const, data: r.data })) });
    const kinds = ['throw', 'malformed', 'fewer-records', 'timeout'] as const;
    const faults = new FaultInjector({ transform: { timeoutMs: 100, decide: ({ index }) => kinds[index] } });
    const wrapped = faults.wrapTransform(echo, { pipeline: 'app-events', destination: 'lake' });
    await expect(Promise.resolve(wrapped(event))).rejects.toThrow('injected fault: the transform threw (app-events lake invocation 0)');
    expect((await wrapped(event)).records.map((r) => r.data)).toEqual(['not base64!', 'e30=']);
    expect((await wrapped(event)).records.map((r) => r.recordId)).toEqual(['a']);
    // The late answer's wait, asked of the timers and granted at once: a second past the transform timeout.
    const timers = require('node:timers/promises') as typeof import('node:timers/promises');
    const delay = jest.spyOn(timers, 'setTimeout').mockImplementation(async () => undefined);
    try {
      expect((await wrapped(event)).records).toHaveLength(2);
      expect(delay.mock.calls.map(([ms]) => ms)).toEqual([1100]);
    } finally {
      delay.mockRestore();
    }
    expect(await wrapped(event)).toEqual(echo(event));
    expect(faults.injected().transform).toEqual({ throw: 1, timeout: 1, malformed: 1, 'fewer-records': 1 });
  });
});
