/**
 * What a running twin costs while nobody sends anything: CPU of the twin's process and of its child
 * processes (kinesis-mock) over a quiet window, with the default configuration (four Kinesis shards
 * read by seven readers). Against a floor measured in the same run: kinesis-mock alone, with the same
 * streams and no reader. Also the twin with every reader polling every 250 ms (the quick interval the
 * readers keep only while records flow), which is what an idle twin cost before it slowed to AWS's
 * once a second.
 *
 * Run: node bin/run-ts.js bench/idle.ts [--quick]. Prints a table; never fails on timing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateStreamCommand, DescribeStreamSummaryCommand } from '@aws-sdk/client-kinesis';
import { loadConfig, resourceNames } from '../lib/config';
import { kinesisClient } from '../lib/local/aws-clients';
import { startKinesis } from '../lib/local/emulators';
import { startTwin } from '../lib/local/twin';
import { machine, processCpuMs, QUICK, table } from './report';

const WINDOW_MS = QUICK ? 5_000 : 20_000;
/** Readers turn idle 2 s after their last record; the window starts after this. */
const SETTLE_MS = 3_000;

interface IdleCost {
  readonly label: string;
  /** CPU ms per second of wall time: this process, its children. */
  readonly own: number;
  readonly children: number;
}

/** CPU ms used so far by the processes whose parent is this one (Linux /proc), by pid. */
function childrenCpuMs(): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // ppid is field 4 of stat(5); utime and stime 14 and 15, in ticks of 10 ms.
      if (Number(fields[1]) === process.pid) out.set(Number(entry), (Number(fields[11]) + Number(fields[12])) * 10);
    } catch {
      // The process ended between the listing and the read.
    }
  }
  return out;
}

async function measure(label: string): Promise<IdleCost> {
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  const [own0, children0, started] = [processCpuMs(), childrenCpuMs(), performance.now()];
  await new Promise((resolve) => setTimeout(resolve, WINDOW_MS));
  const [own1, children1, seconds] = [processCpuMs(), childrenCpuMs(), (performance.now() - started) / 1000];
  let children = 0;
  for (const [pid, ms] of children1) children += ms - (children0.get(pid) ?? 0);
  return { label, own: (own1 - own0) / seconds, children: children / seconds };
}

async function twinIdle(label: string, idlePollIntervalMs?: number): Promise<IdleCost> {
  const config = loadConfig();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-idle-'));
  const twin = await startTwin({ config, dataDir, ports: { firehose: 0, kinesis: 0, dynamo: 0 }, log: () => undefined, ...(idlePollIntervalMs ? { idlePollIntervalMs } : {}) });
  try {
    return await measure(label);
  } finally {
    await twin.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The floor: kinesis-mock with the twin's streams and shards, and nothing reading them. */
async function kinesisAloneIdle(): Promise<IdleCost> {
  const config = loadConfig();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-idle-'));
  const kinesis = await startKinesis({ port: 0, dataDir });
  const client = kinesisClient(kinesis.endpoint);
  try {
    const streams = Object.entries(config.pipelines).filter(([, p]) => p.source === 'kinesis');
    for (const [pipeline, p] of streams) {
      await client.send(new CreateStreamCommand({ StreamName: resourceNames(config, pipeline).stream, ShardCount: p.shards === 'on-demand' ? 4 : p.shards }));
    }
    for (const [pipeline] of streams) {
      for (;;) {
        const d = await client.send(new DescribeStreamSummaryCommand({ StreamName: resourceNames(config, pipeline).stream }));
        if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    return await measure('floor: kinesis-mock alone, same streams, no reader');
  } finally {
    client.destroy();
    await kinesis.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const config = loadConfig();
  const kinesisPipelines = Object.values(config.pipelines).filter((p) => p.source === 'kinesis');
  const shards = kinesisPipelines.reduce((n, p) => n + (p.shards === 'on-demand' ? 4 : p.shards), 0);
  const runs = [
    await twinIdle('twin, default (an idle shard is polled once a second)'),
    await twinIdle('twin, every shard polled every 250 ms', 250),
    await kinesisAloneIdle(),
  ];
  const floor = runs[2].own + runs[2].children;
  console.log(`\nIdle twin: CPU while nothing is sent, ${(WINDOW_MS / 1000).toFixed(0)} s window after ${SETTLE_MS / 1000} s of quiet — ${machine()}`);
  console.log(`default configuration: ${kinesisPipelines.length} Kinesis-sourced pipelines, ${shards} shards\n`);
  console.log(table(
    ['run', 'this process (% of a core)', 'kinesis-mock (% of a core)', 'all (% of a core)', 'above the floor'],
    runs.map((r) => {
      const all = r.own + r.children;
      return [r.label, (r.own / 10).toFixed(1), (r.children / 10).toFixed(1), (all / 10).toFixed(1), r === runs[2] ? '' : `+${((all - floor) / 10).toFixed(1)} points`];
    }),
  ));
}

if (require.main === module || path.resolve(process.argv[1] ?? '') === __filename) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
