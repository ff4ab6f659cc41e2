import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ListShardsCommand } from '@aws-sdk/client-kinesis';
import { loadConfig } from '../../lib/config';
import { kinesisClient } from '../../lib/local/aws-clients';
import { startTwin } from '../../lib/local/twin';

// The twin started again on a data dir after the configuration changed, as a second deploy would find the stack.
describe('the twin on a data dir made with another configuration', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-config-change-'));
  });
  afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  test("reshards a stream made with another shard count to the pipeline's shards, as a deploy does, and says so", async () => {
    const ports = { firehose: 0, kinesis: 0, dynamo: 0 };
    const first = await startTwin({ config: loadConfig(['pipelines={"iot":{"shards":1}}']), dataDir, ports, log: () => undefined });
    await first.stop();
    const lines: string[] = [];
    const twin = await startTwin({ config: loadConfig(['pipelines={"iot":{"shards":2}}']), dataDir, ports, log: (line) => lines.push(line) });
    try {
      const { Shards } = await kinesisClient(twin.endpoints.kinesis).send(new ListShardsCommand({ StreamName: 'sluice-dev-iot' }));
      expect(Shards?.filter((s) => s.SequenceNumberRange?.EndingSequenceNumber === undefined)).toHaveLength(2);
      expect(lines).toContain('sluice: Kinesis stream sluice-dev-iot resharded from 1 to 2 open shards, as pipelines.iot.shards now says'
        + ' (UpdateShardCount, as a deploy does; on AWS one deploy may at most double or halve the count)');
    } finally {
      await twin.stop();
    }
    // More than double in one step: refused by kinesis-mock as by Kinesis, and said, with what to do.
    lines.length = 0;
    const refused = await startTwin({ config: loadConfig(['pipelines={"iot":{"shards":8}}']), dataDir, ports, log: (line) => lines.push(line) });
    await refused.stop();
    expect(lines).toContain('sluice: warning: Kinesis stream sluice-dev-iot has 2 open shards and pipelines.iot.shards is 8, but resharding it failed'
      + ' (Cannot update shard count beyond 2x current shard count): it runs with 2. Change the count in steps of at most double or half, a start each,'
      + ' as on AWS a deploy each, or start on a new --data-dir once what was sent is delivered');
  }, 120_000);
});
