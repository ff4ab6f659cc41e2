import * as fs from 'node:fs';
import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { resourceNames } from '../../lib/config';
import { readSchema } from '../../lib/schema';
import { createRng, sampleRecord } from '../../lib/schema/sample';
import { kinesisClient } from '../../lib/local/aws-clients';
import { configWith, lakeColumn, removeDir, sorted, startFaultTwin, type FaultTwin } from './helpers';

/** The kinesis-mock child of this process (the twin runs in-process here), found through /proc. */
function kinesisMockPid(): number {
  const children = fs.readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).filter((pid) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return ppid === process.pid && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('SLUICE_KINESIS_MAIN');
    } catch {
      return false; // gone meanwhile
    }
  });
  if (children.length !== 1) throw new Error(`expected one kinesis-mock child, found ${children.length}`);
  return Number(children[0]);
}

/**
 * kinesis-mock dies while the twin runs (SIGKILL: no save on the way out). The twin says so, starts
 * it again on the same port, and the Kinesis-sourced pipeline goes on: the reader, whose checkpoint
 * names a record the restarted kinesis-mock no longer holds, delivers the records put afterwards and
 * nothing it had delivered before.
 */
describe('faults: kinesis-mock dies while the twin runs', () => {
  const config = configWith({ iot: { shards: 1, destinations: ['lake'] } });
  let run: FaultTwin | undefined;

  afterAll(async () => {
    await run?.stop();
    removeDir(run?.dataDir);
  }, 60_000);

  test('the twin starts it again; records put afterwards are delivered, none twice', async () => {
    const schema = readSchema('iot');
    const rng = createRng(21);
    const batch = (n: number) => Array.from({ length: n }, () => sampleRecord(schema, rng));
    const before = batch(40);
    const after = batch(40);
    run = await startFaultTwin(config);
    const stream = resourceNames(config, 'iot').stream;
    const put = async (records: Array<Record<string, unknown>>) => {
      const kinesis = kinesisClient(run!.twin.endpoints.kinesis);
      try {
        const out = await kinesis.send(new PutRecordsCommand({
          StreamName: stream,
          Records: records.map((r) => ({ Data: Buffer.from(JSON.stringify(r)), PartitionKey: String(r.device_id) })),
        }));
        expect(out.FailedRecordCount ?? 0).toBe(0);
      } finally {
        kinesis.destroy();
      }
    };
    const ids = (records: Array<Record<string, unknown>>) => records.map((r) => String(r.event_id));

    await put(before);
    await run.twin.settle(30_000);
    expect(sorted(await lakeColumn(run.dataDir, config, 'iot'))).toEqual(sorted(ids(before)));

    const pid = kinesisMockPid();
    // Less than 5 s after the records went in, so its last save most likely misses them and the checkpoint with them.
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 60_000;
    while (!run.log.some((line) => line.includes('kinesis-mock is back on'))) {
      if (Date.now() > deadline) throw new Error(`kinesis-mock was not started again:\n${run.log.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(run.log.find((line) => line.includes(`kinesis-mock (pid ${pid}) exited while the twin ran`))).toContain('signal SIGKILL');
    expect(kinesisMockPid()).not.toBe(pid);

    await put(after);
    await run.twin.settle(60_000);
    expect(sorted(await lakeColumn(run.dataDir, config, 'iot'))).toEqual(sorted([...ids(before), ...ids(after)]));
  }, 120_000);
});
