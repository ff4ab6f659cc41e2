/** `npm start`'s DLQ column: the twin's dead-letter queue broken down by the pipeline each message names. */
import { rmSync } from 'node:fs';
import { DlqFile, toSqsBody } from '../../lib/local/dlq-file';
import { dlqMessagesByPipeline } from '../../lib/local/twin';
import { tempDataDir } from './helpers';

/** The fields of a failure-router message the count reads; the rest do not matter to it. */
const message = (pipeline: string, n: number): string => toSqsBody({ dedupeKey: `${pipeline}-${n}`, pipeline, errorType: 'processing-failed' });

let dataDir: string;
beforeEach(() => {
  dataDir = tempDataDir();
});
afterEach(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

describe('dlqMessagesByPipeline', () => {
  test('counts messages per pipeline; a pipeline with none has no entry', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'sluice-local-dlq' });
    await dlq.send([message('iot', 1), message('transactions', 1), message('iot', 2), message('iot', 3), message('transactions', 2)]);
    const counts = await dlqMessagesByPipeline(dlq);
    expect([...counts]).toEqual([['iot', 3], ['transactions', 2]]);
    expect(counts.has('clickstream')).toBe(false);
  });

  test('an empty or never-written queue counts nothing', async () => {
    expect((await dlqMessagesByPipeline(new DlqFile({ dataDir, queue: 'sluice-local-dlq' }))).size).toBe(0);
  });

  test('bodies that name no pipeline count for none, and do not stop the count', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'sluice-local-dlq' });
    await dlq.send([
      'not json at all',
      message('iot', 1),
      'null',
      '[1,2]',
      '"iot"',
      toSqsBody({ pipeline: 42 }),
      toSqsBody({ dedupeKey: 'k', errorType: 'processing-failed' }),
      message('iot', 2),
    ]);
    expect([...await dlqMessagesByPipeline(dlq)]).toEqual([['iot', 2]]);
  });

  test('deleted (replayed) messages no longer count, so the column adds up to the DLQ total', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'sluice-local-dlq' });
    await dlq.send([message('iot', 1), message('app-events', 1), message('iot', 2)]);
    const [first] = await dlq.receive(1);
    await dlq.delete([first.receiptHandle]);
    const counts = await dlqMessagesByPipeline(dlq);
    expect([...counts]).toEqual([['app-events', 1], ['iot', 1]]);
    expect([...counts.values()].reduce((a, b) => a + b, 0)).toBe(await dlq.count());
  });

  test('reads only its own queue: the consumer DLQ beside it is not counted', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'consumers-local-dlq' }); // a prefix may contain "consumer"
    await new DlqFile({ dataDir, queue: 'consumers-local-consumer-dlq' }).send([message('iot', 9)]);
    await dlq.send([message('iot', 1)]);
    expect([...await dlqMessagesByPipeline(dlq)]).toEqual([['iot', 1]]);
  });
});
