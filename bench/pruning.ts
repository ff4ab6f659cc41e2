/**
 * Partition pruning: Parquet files a query reads when it names one hour and one event type, against
 * the whole table (the floor every query without partition predicates pays), on data the twin wrote
 * through Firehose PutRecordBatch: `app-events` records spread over 24 hours and 4 event types, so
 * 96 partitions under `event_type=…/year=…/month=…/day=…/hour=…/`. LocalAthena (DuckDB) reports the
 * files each query read, as `sluice query` prints them.
 *
 * Run: node bin/run-ts.js bench/pruning.ts [--quick]. Prints a table; never fails on timing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig, resourceNames } from '../lib/config';
import { firehoseClient } from '../lib/local/aws-clients';
import { LocalAthena, type QueryResult } from '../lib/local/athena';
import { startTwin } from '../lib/local/twin';
import { readSchema } from '../lib/schema';
import { firehosePutBatch, putConcurrently, TrafficGenerator } from '../test/load/traffic';
import { machine, median, QUICK, table } from './report';

const PIPELINE = 'app-events';
const HOURS = 24;

async function timed(athena: LocalAthena, sql: string, runs: number): Promise<QueryResult & { medianMs: number }> {
  let last: QueryResult | undefined;
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    last = await athena.query(sql);
    times.push(performance.now() - t);
  }
  return { ...last!, medianMs: median(times) };
}

async function main(): Promise<void> {
  process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
  const perHour = QUICK ? 1_000 : 5_000;
  const config = loadConfig([]);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-pruning-'));
  // Event times fall in the hour before each generator's `now`: one generator per hour of a day.
  const day = Date.UTC(2026, 10, 22);
  try {
    const twin = await startTwin({ config, dataDir, ports: { firehose: 0, kinesis: 0, dynamo: 0 }, log: () => undefined });
    try {
      const client = firehoseClient(twin.endpoints.firehose);
      const put = firehosePutBatch(client, resourceNames(config, PIPELINE).lakeDeliveryStream);
      const schema = readSchema(PIPELINE);
      const batches = function* () {
        for (let h = 0; h < HOURS; h++) {
          const generator = new TrafficGenerator({ schema, mix: { badRate: 0, blankRate: 0 }, seed: 100 + h, now: new Date(day + (h + 1) * 3_600_000 - 1) });
          for (let i = 0; i < perHour; i += 500) {
            yield { records: generator.chunk(h * perHour + i, h * perHour + Math.min(i + 500, perHour)).map((r) => r.data), firstIndex: h * perHour + i };
          }
        }
      };
      await putConcurrently(put, batches(), 4);
      await twin.settle();
      client.destroy();
    } finally {
      await twin.stop();
    }

    const athena = await LocalAthena.open(dataDir, config);
    const runs = QUICK ? 3 : 7;
    let whole;
    let pruned;
    let typeOnly;
    try {
      whole = await timed(athena, 'SELECT count(*), avg(amount) FROM app_events', runs);
      pruned = await timed(athena, "SELECT count(*), avg(amount) FROM app_events WHERE year = 2026 AND month = 11 AND day = 22 AND hour = 13 AND event_type = 'purchase'", runs);
      typeOnly = await timed(athena, "SELECT count(*), avg(amount) FROM app_events WHERE event_type = 'purchase'", runs);
    } finally {
      athena.close();
    }
    const row = (name: string, r: typeof whole) => [
      name, Number(r.rows[0][0]), r.filesRead, r.filesTotal, (r.filesRead / whole.filesRead).toFixed(3), r.medianMs.toFixed(0), (r.medianMs / whole.medianMs).toFixed(2),
    ];
    console.log(`\nPartition pruning: Parquet files read per query (LocalAthena over DuckDB) — ${machine()}`);
    console.log(`${(perHour * HOURS).toLocaleString('en-US')} ${PIPELINE} records written by the twin over ${HOURS} hours × 4 event types; floor = the whole table; median of ${runs} runs\n`);
    console.log(table(
      ['query', 'rows', 'files read', 'files in table', 'files ratio to floor', 'ms', 'time ratio to floor'],
      [
        row("one hour and one event type (year/month/day/hour, event_type = 'purchase')", pruned),
        row("one event type (event_type = 'purchase')", typeOnly),
        row('floor: the whole table', whole),
      ],
    ));
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

if (require.main === module || path.resolve(process.argv[1] ?? '') === __filename) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
