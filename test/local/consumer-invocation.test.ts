/**
 * The twin's Lambda Invoke of a pipeline's metadata consumer (`sluice redrive-consumer` locally): the answer is
 * Lambda's, and the time left is counted as Lambda's is, on a clock the wall clock's steps do not move.
 */
import type { KinesisStreamEvent } from 'aws-lambda';
import { consumerInvocation } from '../../lib/local/twin';
import { InvocationLogger } from '../../lib/local/invocation-log';
import type { InvocationClock, MetadataRecorder } from '../../transforms/metadata-consumer/handler';

const EVENT: KinesisStreamEvent = { Records: [] };

describe('the consumer as the twin invokes it', () => {
  test('answers the batch item failures, or a function error (Unhandled) with the error when the consumer throws', async () => {
    const failures = [{ itemIdentifier: '49' }];
    const answered = consumerInvocation((async () => ({ batchItemFailures: failures })) as unknown as MetadataRecorder, 60);
    expect(await answered(EVENT)).toMatchObject({ payload: { batchItemFailures: failures } });
    expect((await answered(EVENT)).functionError).toBeUndefined();
    // No log is kept unless the caller asked for it (X-Amz-Log-Type: Tail).
    expect((await answered(EVENT, { requestId: 'req-0' })).log).toBeUndefined();
    expect((await answered(EVENT, { requestId: 'req-0', logTail: false })).log).toBeUndefined();
    expect((await answered(EVENT, { requestId: 'req-0', logTail: true })).log).toMatch(/^START RequestId: req-0 /);
    const throwing = consumerInvocation(async () => {
      throw new TypeError('table gone');
    }, 60);
    expect(await throwing(EVENT)).toMatchObject({ functionError: 'Unhandled', payload: { errorType: 'TypeError', errorMessage: 'table gone' } });
  });

  test('answers each invocation\'s log as Lambda writes it: START, what the consumer\'s logger printed during it (not during another), END, REPORT', async () => {
    // As createTelemetry uses a given logger: through a child.
    const logger = new InvocationLogger({ serviceName: 'consumer', logLevel: 'ERROR' }).createChild({ persistentKeys: { pipeline: 'iot' } });
    const printed = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    let releaseFirst = (): void => undefined;
    const firstWaits = new Promise<void>((resolve) => {
      releaseFirst = resolve;
    });
    try {
      const invoke = consumerInvocation((async (event: KinesisStreamEvent) => {
        const which = String(event.Records.length);
        logger.error('write failed', { which });
        // The first invocation logs again after the second has logged and ended.
        if (which === '0') {
          await firstWaits;
          logger.error('gave up', { which });
        }
        logger.info('not printed: below the level');
        return { batchItemFailures: [] };
      }) as unknown as MetadataRecorder, 60, 256);
      const first = invoke(EVENT, { requestId: 'req-1', logTail: true });
      const second = await invoke({ Records: [{} as KinesisStreamEvent['Records'][number]] }, { requestId: 'req-2', logTail: true });
      releaseFirst();
      const lines = (log: string | undefined) => log!.split('\n').map((l) => (l.startsWith('{') ? (JSON.parse(l) as { message: string; which: string; pipeline: string }) : l));
      expect(lines((await first).log)).toEqual([
        'START RequestId: req-1 Version: $LATEST',
        expect.objectContaining({ message: 'write failed', which: '0', pipeline: 'iot' }),
        expect.objectContaining({ message: 'gave up', which: '0' }),
        'END RequestId: req-1',
        expect.stringMatching(/^REPORT RequestId: req-1\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 256 MB\t$/),
        '',
      ]);
      expect(lines(second.log)).toEqual([
        'START RequestId: req-2 Version: $LATEST',
        expect.objectContaining({ message: 'write failed', which: '1' }),
        'END RequestId: req-2',
        expect.stringMatching(/^REPORT RequestId: req-2\t/),
        '',
      ]);
      // Printed as any Logger prints, besides.
      expect(printed.mock.calls.filter(([chunk]) => String(chunk).includes('"write failed"'))).toHaveLength(2);
    } finally {
      printed.mockRestore();
    }
  });

  test('the time left counts down from the timeout on the monotonic clock: the wall clock set back an hour mid-invocation gives no more', async () => {
    const realNow = Date.now.bind(Date);
    let setBack = 0;
    const wallClock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - setBack);
    const seen: number[] = [];
    try {
      await consumerInvocation((async (_event: KinesisStreamEvent, context?: InvocationClock) => {
        setBack = 3_600_000;
        seen.push(context!.getRemainingTimeInMillis());
        return { batchItemFailures: [] };
      }) as unknown as MetadataRecorder, 2)(EVENT);
    } finally {
      wallClock.mockRestore();
    }
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeGreaterThan(1_000);
    expect(seen[0]).toBeLessThanOrEqual(2_000);
  });
});
