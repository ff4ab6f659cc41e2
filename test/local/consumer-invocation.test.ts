/**
 * The twin's Lambda Invoke of a pipeline's metadata consumer (`sluice redrive-consumer` locally): the answer is
 * Lambda's, and the time left is counted as Lambda's is, on a clock the wall clock's steps do not move.
 */
import type { KinesisStreamEvent } from 'aws-lambda';
import { consumerInvocation } from '../../lib/local/twin';
import type { InvocationClock, MetadataRecorder } from '../../transforms/metadata-consumer/handler';

const EVENT: KinesisStreamEvent = { Records: [] };

describe('the consumer as the twin invokes it', () => {
  test('answers the batch item failures, or a function error (Unhandled) with the error when the consumer throws', async () => {
    const failures = [{ itemIdentifier: '49' }];
    const answered = consumerInvocation((async () => ({ batchItemFailures: failures })) as unknown as MetadataRecorder, 60);
    expect(await answered(EVENT)).toEqual({ payload: { batchItemFailures: failures } });
    const throwing = consumerInvocation(async () => {
      throw new TypeError('table gone');
    }, 60);
    expect(await throwing(EVENT)).toEqual({ functionError: 'Unhandled', payload: { errorType: 'TypeError', errorMessage: 'table gone' } });
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
