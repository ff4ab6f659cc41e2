import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { estimateCost, MODEL, roundUsd, shardsNeeded } from '../../lib/cli/cost';
import { loadConfig, MAX_PROVISIONED_SHARDS, PROJECT_ROOT, type SluiceConfig } from '../../lib/config';
import { PRICES, PRICES_ASSUMED_ON } from '../../lib/cli/prices';
import { synthesize, type Synthesized } from '../infra/synth';
import { config, sluice } from './helpers';

const MONTH_SECONDS = 730 * 3600;
const line = (e: ReturnType<typeof estimateCost>, pipeline: string, item: string) => {
  const found = e.lines.find((l) => l.pipeline === pipeline && l.item === item);
  if (!found) throw new Error(`no line ${pipeline} / ${item}; lines: ${e.lines.map((l) => `${l.pipeline}/${l.item}`).join(', ')}`);
  return found;
};

describe('shards needed (1 MiB/s and 1,000 records/s per shard)', () => {
  test('examples', () => {
    expect(shardsNeeded(1000, 1024)).toEqual({ forBytes: 1, forRecords: 1, needed: 1 });
    expect(shardsNeeded(1001, 100)).toEqual({ forBytes: 1, forRecords: 2, needed: 2 });
    expect(shardsNeeded(500, 5000)).toEqual({ forBytes: 3, forRecords: 1, needed: 3 });
    expect(shardsNeeded(0.01, 10)).toEqual({ forBytes: 1, forRecords: 1, needed: 1 });
  });

  test('property: the count is enough, and one fewer is not', () => {
    fc.assert(fc.property(fc.double({ min: 0.001, max: 1e6, noNaN: true }), fc.integer({ min: 1, max: 1024 * 1024 }), (rate, size) => {
      const { needed } = shardsNeeded(rate, size);
      expect(needed * 1024 * 1024).toBeGreaterThanOrEqual(rate * size);
      expect(needed * 1000).toBeGreaterThanOrEqual(rate);
      if (needed > 1) expect((needed - 1) * 1024 * 1024 < rate * size || (needed - 1) * 1000 < rate).toBe(true);
    }));
  });
});

describe('estimateCost', () => {
  test('Firehose bills each record in 5 KB increments', () => {
    const at = (size: number) => line(estimateCost(config, { ratePerSecond: 1, recordBytes: size, pipelines: ['app-events'] }), 'app-events', 'ingestion (lake)').monthlyUsd!;
    const perGB = PRICES.firehoseIngestionGB.usd;
    expect(at(1)).toBeCloseTo((MONTH_SECONDS * 5120) / 1024 ** 3 * perGB, 10);
    expect(at(5120)).toBe(at(1));
    expect(at(5121)).toBeCloseTo(2 * at(1), 10);
  });

  test('Kinesis lines: shard-hours with the shards the rate needs, PUT units of 25 KB, retention, enhanced fan-out', () => {
    const e = estimateCost(config, { ratePerSecond: 3000, recordBytes: 2000, pipelines: ['transactions'] });
    const shards = line(e, 'transactions', 'shard-hours');
    expect(shards.monthlyUsd).toBeCloseTo(6 * 730 * 0.015, 10); // 3000 × 2000 B = 5.7 MiB/s → 6 shards
    expect(shards.formula).toBe('6 shards (configured 1; the rate needs 6) × 730 h × $0.015');
    expect(line(e, 'transactions', 'PUT payload units').monthlyUsd).toBeCloseTo((3000 * MONTH_SECONDS / 1e6) * 0.014, 10);
    expect(line(e, 'transactions', 'extended retention (to 7 days)').monthlyUsd).toBeCloseTo(6 * 730 * 0.02, 10);
    expect(line(e, 'transactions', 'long-term retention (beyond 7 days)').formula).toMatch(/held for the 552 h beyond 7 days/);
    expect(line(e, 'transactions', 'enhanced fan-out consumer (metadata)').monthlyUsd).toBeCloseTo(6 * 730 * 0.015, 10);
    expect(line(e, 'transactions', 'stream key').monthlyUsd).toBe(1);
    expect(e.shards).toEqual([expect.objectContaining({ pipeline: 'transactions', configured: 1, needed: 6, enough: false })]);
  });

  test('every line of a pipeline: conversion and dynamic partitioning per GB, Lambda GB-seconds, S3, DynamoDB; OpenSearch shared', () => {
    const e = estimateCost(config, { ratePerSecond: 100, recordBytes: 1000 });
    const items = new Set(e.lines.filter((l) => l.pipeline === 'clickstream').map((l) => `${l.service}: ${l.item}`));
    for (const expected of [
      'Kinesis: shard-hours', 'Kinesis: PUT payload units', 'Firehose: ingestion (lake)', 'Firehose: ingestion (search)',
      'Firehose: format conversion (Parquet)', 'Firehose: dynamic partitioning (data)', 'Firehose: dynamic partitioning (objects)',
      'Lambda: transform duration (lake)', 'Lambda: transform requests (lake)', 'Lambda: metadata consumer duration',
      'S3: Standard storage (steady state)', 'S3: PUT requests (Parquet objects)', 'DynamoDB: metadata writes', 'DynamoDB: metadata storage',
    ]) expect(items).toContain(expected);
    expect(line(e, '(shared)', 'instances (t3.small.search)').monthlyUsd).toBeCloseTo(730 * 0.036, 10);
    expect(e.total).toBeCloseTo(e.lines.reduce((s, l) => s + (l.monthlyUsd ?? 0), 0), 6);
    // A DirectPut pipeline has no Kinesis lines.
    expect(e.lines.filter((l) => l.pipeline === 'app-events' && l.service === 'Kinesis')).toEqual([]);
    expect(e.shards.map((s) => s.pipeline)).toEqual(['clickstream', 'iot', 'transactions']);
  });

  test('a rate that needs more shards than the configuration takes is priced, and suggested, as on-demand', () => {
    const needing600 = { ratePerSecond: 600_000, recordBytes: 1000, pipelines: ['iot'] };
    const e = estimateCost(config, needing600);
    expect(e.shards).toEqual([expect.objectContaining({ configured: 1, needed: 600, enough: false, priced: 'on-demand' })]);
    expect(line(e, 'iot', 'on-demand stream').formula).toMatch(/configured 1 shard; the rate needs 600 shards, more than the 500 the configuration takes/);
    expect(e.lines.some((l) => l.item === 'shard-hours')).toBe(false);
    // What is suggested is what is priced: the estimate of the suggested setting.
    const suggested = estimateCost(loadConfig(['pipelines.iot.shards=on-demand']), needing600);
    expect(e.lines.map((l) => [l.item, l.monthlyUsd])).toEqual(suggested.lines.map((l) => [l.item, l.monthlyUsd]));
    expect(e.total).toBe(suggested.total);
  });

  test('property: the shards suggested for a rate are a setting the configuration takes, and priced as suggested', () => {
    fc.assert(fc.property(fc.double({ min: 1, max: 2e6, noNaN: true }), fc.integer({ min: 1, max: 100_000 }), (rate, size) => {
      const inputs = { ratePerSecond: rate, recordBytes: size, pipelines: ['iot'] };
      const [need] = estimateCost(config, inputs).shards;
      if (need.enough) return;
      const suggested = loadConfig([`pipelines.iot.shards=${need.priced}`]);
      expect(estimateCost(suggested, inputs).total).toBeCloseTo(estimateCost(config, inputs).total, 6);
      if (need.needed <= MAX_PROVISIONED_SHARDS) expect(need.priced).toBe(need.needed);
    }), { numRuns: 100 });
  });

  test('the shared keys, the PII hash key secret, alarms and point-in-time recovery are priced', () => {
    const e = estimateCost(config, { ratePerSecond: 10, recordBytes: 1000 });
    expect(e.lines.filter((l) => l.service === 'KMS').map((l) => `${l.pipeline}: ${l.item}`)).toEqual(['transactions: stream key', '(shared): data key', '(shared): alarm topic key']);
    expect(line(e, '(shared)', 'PII hash key')).toEqual(expect.objectContaining({ service: 'Secrets Manager', monthlyUsd: 0.4 }));
    expect(line(e, '(shared)', 'alarms').formula).toBe('21 alarms (9 for the failure router, 1 for the metadata table, 2 for the consumer dead-letter queue, 9 for the OpenSearch domain) × $0.1');
    expect(line(e, 'clickstream', 'alarms').formula).toBe('33 alarms (1 for the stream, 20 for 2 delivery streams and their transforms, 3 for the lake\'s open partitions and failed conversions, 1 for the search stream\'s backup to S3, 1 for its error objects not reaching the failure router, 7 for the metadata consumer) × $0.1');
    expect(line(e, 'app-events', 'alarms').formula).toBe('12 alarms (8 for the delivery stream and its transform, 3 for the lake\'s open partitions and failed conversions, 1 for its error objects not reaching the failure router) × $0.1');
    expect(line(e, 'iot', 'point-in-time recovery').monthlyUsd).toBeCloseTo(line(e, 'iot', 'metadata storage').monthlyUsd! * (0.2 / 0.25), 10);
    // Only the pipelines estimated: iot hashes no PII and has no search.
    const iot = estimateCost(config, { ratePerSecond: 10, recordBytes: 1000, pipelines: ['iot'] });
    expect(iot.lines.filter((l) => l.service === 'Secrets Manager')).toEqual([]);
    expect(line(iot, '(shared)', 'alarms').formula).toBe('12 alarms (9 for the failure router, 1 for the metadata table, 2 for the consumer dead-letter queue) × $0.1');
  });

  test('Parquet objects under 128 KiB stay in Standard: no Standard-IA, Glacier or transition lines', () => {
    const items = (rate: number) => estimateCost(config, { ratePerSecond: rate, recordBytes: 1000, pipelines: ['iot'] }).lines
      .filter((l) => l.service === 'S3').map((l) => l.item);
    // 10/s: 4 partitions flushed every 300 s hold ~110 KiB of Parquet each; 100/s: ~1.1 MiB.
    expect(items(10)).toEqual(['PUT requests (Parquet objects)', 'Standard storage (steady state)', 'Standard storage (per month kept)']);
    expect(items(100)).toEqual(['PUT requests (Parquet objects)', 'Standard storage (steady state)', 'Standard-IA storage (steady state)',
      'Glacier Instant Retrieval (per month kept)', 'lifecycle transitions']);
    const small = estimateCost(config, { ratePerSecond: 10, recordBytes: 1000, pipelines: ['iot'] });
    expect(line(small, 'iot', 'Standard storage (steady state)').formula).toMatch(/Parquet objects of 110 KiB on average stay in Standard/);
  });

  test('Firehose writes no object for an empty buffer: a trickle is billed an object per record, not per interval', () => {
    const objects = (rate: number) => Number(/^([\d.,]+) objects/.exec(line(estimateCost(config, { ratePerSecond: rate, recordBytes: 1000, pipelines: ['iot'] }), 'iot', 'PUT requests (Parquet objects)').formula)![1].replace(/,/g, ''));
    expect(objects(0.00001)).toBeCloseTo(0.00001 * MONTH_SECONDS, 0);
    expect(line(estimateCost(config, { ratePerSecond: 0.00001, recordBytes: 1000, pipelines: ['iot'] }), 'iot', 'dynamic partitioning (objects)').formula).toMatch(/at most one per record/);
    // At a real rate, a flush every 300 s of each active partition (iot's four event types).
    expect(objects(10)).toBe(4 * MONTH_SECONDS / 300);
  });

  test('a transform interval of 0 is priced as an invocation per read (about one a second per shard), not one per record', () => {
    const requests = (overrides: string[]) => line(estimateCost(loadConfig(overrides), { ratePerSecond: 100, recordBytes: 1000, pipelines: ['iot'] }), 'iot', 'transform requests (lake)');
    const zero = requests(['pipelines.iot.transform.processorIntervalSeconds=0']);
    expect(zero.formula).toMatch(/^2,628,000 invocations \(one per 1 MiB or 1 s \(interval 0: each read\) per shard\)/);
    expect(requests([]).monthlyUsd).toBeLessThan(zero.monthlyUsd!);
  });

  test('cost grows with the rate', () => {
    fc.assert(fc.property(fc.double({ min: 0.1, max: 5000, noNaN: true }), fc.double({ min: 1.01, max: 10, noNaN: true }), (rate, factor) => {
      const low = estimateCost(config, { ratePerSecond: rate, recordBytes: 800 }).total;
      const high = estimateCost(config, { ratePerSecond: rate * factor, recordBytes: 800 }).total;
      expect(high).toBeGreaterThanOrEqual(low);
    }), { numRuns: 50 });
  });
});

describe('sluice cost', () => {
  test('prints each line with its formula, the totals, the shards needed and the prices with their sources', async () => {
    const { code, stdout } = await sluice('cost', '--rate', '5k/s', '--size', '1.2KB');
    expect(code).toBe(0);
    expect(stdout).toMatch(/Monthly cost estimate \(env dev\) at 5,000 records\/s of 1,200 bytes per pipeline/);
    expect(stdout).toMatch(/iot\s+Firehose\s+ingestion \(lake\)\s+\$[\d,]+\.\d\d\s+13,140,000,000 records × 5 KiB \(1,200 B rounded up to a multiple of 5 KiB\) = [\d,]+ GiB × \$0\.029/);
    expect(stdout).toMatch(/clickstream\s+5\.72\s+6\s+5\s+6\s+2\s+too few: set -c pipelines\.clickstream\.shards=6/);
    expect(stdout).toMatch(/total\s+\$[\d,]+\.\d\d/);
    expect(stdout).toContain(`AWS us-east-1 list prices as of ${PRICES_ASSUMED_ON}; assumptions to check`);
    expect(stdout).toMatch(/Amazon Data Firehose\s+GB ingested \(each record rounded up to 5 KB\), first 500 TB\/month\s+\$0\.029\s+https:\/\/aws\.amazon\.com\/firehose\/pricing\//);
    expect(stdout).toMatch(/Not included\n {2}Athena queries: \$5 per TB scanned/);
  });

  test('without -p every configured pipeline is estimated; the help says so once', async () => {
    const all = JSON.parse((await sluice('cost', '--json')).stdout) as { lines: Array<{ pipeline: string }> };
    expect(new Set(all.lines.map((l) => l.pipeline))).toEqual(new Set([...Object.keys(config.pipelines), '(shared)']));
    const help = await sluice('cost', '--help');
    expect(help.stdout).toMatch(/default: every\s+configured pipeline\)/);
    expect(help.stdout).not.toContain('(default: [])');
  });

  test('a schema without a pipelines entry has no lines, and a warning on stderr says why and what to add', async () => {
    const { code, stdout, stderr } = await sluice('cost', '--json', '-c', 'pipelines={"iot":{},"clickstream":{},"transactions":{}}');
    expect(code).toBe(0);
    expect(new Set((JSON.parse(stdout) as { lines: Array<{ pipeline: string }> }).lines.map((l) => l.pipeline))).not.toContain('app-events');
    expect(stderr).toBe('sluice: warning: schemas/app-events.schema.json has no entry under "pipelines" in cdk.json, so nothing deploys or runs it: '
      + 'add "app-events": {} there (or -c \'pipelines.app-events={}\' for one command); a schema kept for later can stay as it is\n');
    // Every schema configured: nothing on stderr.
    expect((await sluice('cost', '--json')).stderr).toBe('');
  });

  test('--json and -p for scripts; -c applies configuration overrides', async () => {
    const { code, stdout } = await sluice('cost', '--rate', '100', '--size', '500B', '-p', 'iot', '-c', 'pipelines.iot.shards=4', '--json');
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as { total: number; lines: Array<{ pipeline: string; item: string; monthlyUsd: number }>; shards: unknown[]; prices: Record<string, { usd: number; source: string }>; pricesAssumedOn: string };
    expect(new Set(report.lines.map((l) => l.pipeline))).toEqual(new Set(['iot', '(shared)']));
    expect(report.lines.find((l) => l.item === 'shard-hours')?.monthlyUsd).toBeCloseTo(4 * 730 * 0.015, 10);
    expect(report.shards).toEqual([expect.objectContaining({ configured: 4, needed: 1, enough: true })]);
    expect(report.prices.kinesisShardHour).toEqual(expect.objectContaining({ usd: 0.015, source: 'https://aws.amazon.com/kinesis/data-streams/pricing/' }));
    expect(report.pricesAssumedOn).toBe(PRICES_ASSUMED_ON);
  });

  test.each([['100/s'], ['1/h']])('--json amounts at %s are the amounts the table prints (cents; two significant digits below a cent), not float noise', async (rate) => {
    const json = JSON.parse((await sluice('cost', '--rate', rate, '--json')).stdout) as { lines: Array<{ monthlyUsd: number | null }>; totalsByPipeline: Record<string, number>; total: number };
    const printed = (await sluice('cost', '--rate', rate)).stdout;
    // A table's rows: from under its rule to the blank line. The lines' table has them in the JSON's order.
    const rowsOf = (header: RegExp) => printed.split(header)[1].split('\n\n')[0].split('\n').slice(2).map((row) => row.split(/ {2,}/));
    const lineUsd = rowsOf(/\n(?=pipeline +service +item +USD\/month)/).map((row) => row[3]);
    const totalUsd: Record<string, string> = Object.fromEntries(rowsOf(/\n(?=pipeline +USD\/month\n)/));
    const asPrinted = (usd: string) => Number(usd.replace(/[$,]/g, ''));
    expect(json.lines.map((l) => l.monthlyUsd)).toEqual(lineUsd.map((usd) => (usd === 'n/a' ? null : asPrinted(usd))));
    expect(json.totalsByPipeline).toEqual(Object.fromEntries(Object.entries(totalUsd).filter(([p]) => p !== 'total').map(([p, usd]) => [p, asPrinted(usd)])));
    expect(json.total).toBe(asPrinted(totalUsd.total));
  });

  test('units printed match the quantities: AWS\'s binary GB and 5 KB increments are shown as GiB and KiB', async () => {
    const { stdout, stderr } = await sluice('cost', '--size', '1KB', '-p', 'app-events');
    expect(stderr).toBe('');
    // 100/s × 1,000 B × 730 h = 262.8 × 10⁹ B = 244.75 GiB.
    expect(stdout).toMatch(/\n= 262,800,000 records and 245 GiB per pipeline per month \(730 h\)\n/);
    expect(stdout).toMatch(/262,800,000 records × 5 KiB \(1,000 B rounded up to a multiple of 5 KiB\) = 1,253 GiB × \$0\.029/);
    expect(stdout).toMatch(/AWS prices data per GB of 1,024³ bytes and rounds Firehose records up to 5 KB of 5,120 bytes/);
    // The unit-price table keeps AWS's own names ("GB ingested"); the line above says what they mean.
    expect(stdout.split('Unit prices assumed')[0]).not.toMatch(/\d GB\b|\d KB\b/);

    const big = await sluice('cost', '--size', '2MB', '-p', 'app-events');
    expect(big.code).toBe(0);
    expect(big.stdout).toMatch(/262,800,000 records × 1,955 KiB \(2,000,000 B rounded up to a multiple of 5 KiB\)/);
    expect(big.stderr).toBe('sluice: warning: --size 2MB (2,000,000 B) is more than Firehose takes per record (1,000 KiB = 1,024,000 B): such records are refused, so split them; the estimate prices them as given\n');
    expect((await sluice('cost', '--size', '1000KiB', '-p', 'app-events')).stderr).toBe('');
  });

  test('the metadata consumer\'s counters and the handlers\' custom metrics have lines of their own', async () => {
    const { stdout } = await sluice('cost', '--rate', '10/s', '--size', '1KB', '-p', 'iot');
    // 10/s in 1,051,200 invocations a month: 25 events each, one transaction; 4 event types, all likely among 25 events.
    expect(stdout).toMatch(/iot\s+DynamoDB\s+metadata counter writes\s+\$5\.25\s+1,051,200 transactions \(≤ 50 events each\) × 4 per-minute counters \(event types among 25 events, of 4 types\) × 2 units \(transactional\) = 8,403,271 write request units ÷ 1M × \$0\.625/);
    expect(stdout).toMatch(/iot\s+CloudWatch\s+custom metrics \(EMF\)\s+\$2\.40\s+8 metrics \(3 per transform, 5 of the metadata consumer\) × 100 % of the hours \(those with a record\) × \$0\.3/);
    // One record an hour on average: a metric is published in about 63 % of the hours.
    const rare = await sluice('cost', '--rate', '1/h', '-p', 'iot');
    expect(rare.stdout).toMatch(/iot\s+CloudWatch\s+custom metrics \(EMF\)\s+\$1\.52\s+8 metrics \(3 per transform, 5 of the metadata consumer\) × 63 % of the hours/);
    // A lake-only direct-put pipeline: its transform's 3 metrics, no consumer, no counters.
    const app = await sluice('cost', '--rate', '10/s', '-p', 'app-events');
    expect(app.stdout).toMatch(/app-events\s+CloudWatch\s+custom metrics \(EMF\)\s+\$0\.90\s+3 metrics \(3 per transform\)/);
    expect(app.stdout).not.toContain('counter writes');
  });

  test('a rate below one a second is shown, not rounded to 0', async () => {
    const { stdout } = await sluice('cost', '--rate', '1/h', '-p', 'app-events');
    expect(stdout).toMatch(/at 0\.00028 records\/s \(1 per hour\) of 1,000 bytes per pipeline\n= 730 records and 0\.00068 GiB per pipeline/);
    expect(stdout).toMatch(/730 records × 5 KiB \(1,000 B rounded up to a multiple of 5 KiB\) = 0\.0035 GiB × \$0\.029/);
  });

  test('the shards check never suggests a count the configuration refuses', async () => {
    const { stdout } = await sluice('cost', '--rate', '600k/s', '-p', 'iot');
    expect(stdout).toMatch(/iot\s+572\.21\s+573\s+600\s+600\s+1\s+too few: set -c pipelines\.iot\.shards=on-demand \(the configuration takes at most 500 shards\)/);
    expect(stdout).toMatch(/iot\s+Kinesis\s+on-demand stream\s+\$29\.20/);
    expect(stdout).not.toMatch(/shards=600/);
    expect((await sluice('cost', '--rate', '400k/s', '-p', 'iot')).stdout).toMatch(/too few: set -c pipelines\.iot\.shards=400\n/);
  });

  test('--json lists every price the table lists, the OpenSearch instance-hour too', async () => {
    const json = JSON.parse((await sluice('cost', '--json')).stdout) as { prices: Record<string, { usd: number }> };
    expect(json.prices['openSearchInstanceHour:t3.small.search']).toMatchObject({ usd: 0.036, unit: 'instance-hour' });
  });

  test('-p twice for one pipeline prices it once', async () => {
    const once = JSON.parse((await sluice('cost', '-p', 'iot', '--json')).stdout) as { total: number };
    expect(JSON.parse((await sluice('cost', '-p', 'iot', '-p', 'iot', '--json')).stdout)).toMatchObject({ total: once.total });
  });

  test('a lower-case m in a rate is neither millions nor per minute until the user says which', async () => {
    const { code, stderr } = await sluice('cost', '--rate', '5m');
    expect({ code, stderr }).toEqual({ code: 2, stderr: 'sluice: --rate "5m": write 5M for 5 million per second or 5/min for 5 per minute\n' });
    expect((await sluice('cost', '--rate', '2M/h', '--json')).code).toBe(0);
    expect((await sluice('cost', '--rate', '5/m', '--json')).code).toBe(0);
  });

  test('a rate or size too large to be a number exits 2, not an estimate of Infinity (null in --json)', async () => {
    const nines = '9'.repeat(400);
    const rate = await sluice('cost', '--rate', nines, '--json');
    expect({ code: rate.code, stdout: rate.stdout }).toEqual({ code: 2, stdout: '' });
    expect(rate.stderr).toBe(`sluice: --rate "${nines}": the rate is too large a number\n`);
    const size = await sluice('cost', '--size', `${nines}B`);
    expect({ code: size.code, stdout: size.stdout }).toEqual({ code: 2, stdout: '' });
    expect(size.stderr).toBe(`sluice: --size "${nines}B": the size is too large a number\n`);
  });

  test('usage mistakes exit 2', async () => {
    expect((await sluice('cost', '--size', 'big')).stderr).toMatch(/--size "big": expected a size such as 800B, 1KB, 1KiB or 2.5MB/);
    expect((await sluice('cost', '-p', 'orders')).code).toBe(2);
    // Control characters in the name print escaped: a name typed or pasted cannot clear or retitle the terminal.
    expect(await sluice('cost', '-p', 'or\u001b[2Jders\u009b')).toMatchObject({
      code: 2, stdout: '', stderr: 'sluice: unknown pipeline "or\\u001b[2Jders\\u009b"; configured pipelines: clickstream, iot, transactions, app-events\n',
    });
    // A pipeline with a schema file but no cdk.json entry: the message says where to add it.
    expect(await sluice('cost', '-p', 'app-events', '-c', 'pipelines={"iot":{}}')).toMatchObject({
      code: 2, stdout: '', stderr: 'sluice: unknown pipeline "app-events"; configured pipelines: iot. schemas/app-events.schema.json exists: add "app-events": {} under "pipelines" in cdk.json (or -c \'pipelines.app-events={}\' for one command)\n',
    });
    const bad = await sluice('cost', '-c', 'pipelines.iot.shards=0');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/pipelines\.iot\.shards: 0 is out of range/);
  });
});

/** How many of a resource the estimate prices, by what its lines say. */
function pricedCounts(e: ReturnType<typeof estimateCost>): Record<string, number> {
  const count = (service: string, item?: RegExp) => e.lines.filter((l) => l.service === service && (!item || item.test(l.item))).length;
  return {
    'AWS::KMS::Key': count('KMS'),
    'AWS::SecretsManager::Secret': count('Secrets Manager'),
    'AWS::CloudWatch::Alarm': e.lines.filter((l) => l.item === 'alarms').reduce((n, l) => n + Number(/^(\d+) alarms?/.exec(l.formula)![1]), 0),
    'AWS::CloudWatch::Dashboard': count('CloudWatch', /^dashboard$/),
    'AWS::Kinesis::Stream': new Set(e.lines.filter((l) => l.service === 'Kinesis').map((l) => l.pipeline)).size,
    'AWS::Kinesis::StreamConsumer': count('Kinesis', /^enhanced fan-out consumer/) + count('Kinesis', /^on-demand enhanced fan-out/),
    'AWS::KinesisFirehose::DeliveryStream': count('Firehose', /^ingestion/),
    'AWS::OpenSearchService::Domain': count('OpenSearch', /^instances/),
  };
}

/**
 * Every resource type the stack creates, and where the estimate accounts for it: in lines of these services, or in
 * "Not included" (each pattern must match an entry). A new type in the stack fails the test until it is placed here.
 */
const ACCOUNTED: Record<string, { services?: string[]; notIncluded?: RegExp[] }> = {
  'AWS::Kinesis::Stream': { services: ['Kinesis'] },
  'AWS::Kinesis::StreamConsumer': { services: ['Kinesis'] },
  'AWS::KinesisFirehose::DeliveryStream': { services: ['Firehose'] },
  'AWS::Lambda::Function': { services: ['Lambda'], notIncluded: [/The failure router \(Lambda\)/, /custom resources that run only when the stack deploys/] },
  'AWS::S3::Bucket': { services: ['S3'], notIncluded: [/server access logs \(stored in the access-log bucket/] },
  'AWS::DynamoDB::Table': { services: ['DynamoDB'] },
  'AWS::OpenSearchService::Domain': { services: ['OpenSearch'] },
  'AWS::KMS::Key': { services: ['KMS'] },
  'AWS::SecretsManager::Secret': { services: ['Secrets Manager'] },
  'AWS::CloudWatch::Alarm': { services: ['CloudWatch'] },
  'AWS::CloudWatch::Dashboard': { services: ['CloudWatch'] },
  'AWS::Logs::LogGroup': { notIncluded: [/CloudWatch Logs ingestion and storage of the log groups/] },
  'AWS::SQS::Queue': { notIncluded: [/SQS dead-letter queues/] },
  'AWS::SNS::Topic': { notIncluded: [/SNS alarm notifications/] },
  'AWS::Glue::Database': { notIncluded: [/Glue Data Catalog/] },
  'AWS::Glue::Table': { notIncluded: [/Glue Data Catalog/] },
  'AWS::Athena::WorkGroup': { notIncluded: [/the workgroup and saved queries cost nothing/] },
  'AWS::Athena::NamedQuery': { notIncluded: [/the workgroup and saved queries cost nothing/] },
  ...Object.fromEntries([
    'AWS::IAM::Role', 'AWS::IAM::Policy', 'AWS::S3::BucketPolicy', 'AWS::SQS::QueuePolicy', 'AWS::SNS::TopicPolicy', 'AWS::Logs::ResourcePolicy',
    'AWS::Lambda::EventSourceMapping', 'AWS::Lambda::Permission', 'AWS::Lambda::EventInvokeConfig', 'AWS::Logs::LogStream', 'AWS::CDK::Metadata',
    'Custom::S3AutoDeleteObjects', 'Custom::S3BucketNotifications', 'Custom::SluiceIndexTemplate',
  ].map((type) => [type, { notIncluded: [/^No charge of their own/] }])),
};

describe('sluice cost accounts for every resource the stack creates (synthesized templates)', () => {
  const variants: Array<[string, Record<string, string>]> = [
    ['the default configuration', {}],
    ['an existing domain, an on-demand customer-key stream, no PII hashing', {
      'opensearch.mode': 'existing',
      'opensearch.endpoint': 'https://search-logs-abc123.eu-west-1.es.amazonaws.com',
      'opensearch.domainArn': 'arn:aws:es:eu-west-1:123456789012:domain/logs',
      pipelines: JSON.stringify({
        clickstream: { shards: 2, destinations: ['lake', 'search'] },
        iot: { shards: 'on-demand', streamEncryption: 'customer-managed' },
        'app-events': { source: 'direct-put', destinations: ['lake'] },
      }),
    }],
  ];
  const synthesized = new Map<string, Synthesized>();
  beforeAll(() => {
    for (const [name, overrides] of variants) synthesized.set(name, synthesize(overrides));
  }, 240_000);
  const counts = (s: Synthesized) => Object.fromEntries(Object.keys(pricedCounts(estimateOf(s.config))).map((type) => [type, Object.keys(s.template.findResources(type)).length]));
  const estimateOf = (c: SluiceConfig) => estimateCost(c, { ratePerSecond: 10, recordBytes: 1000 });

  test.each(variants.map(([name]) => [name]))('%s: as many keys, secrets, alarms, streams and domains as the template', (name) => {
    const s = synthesized.get(name)!;
    expect(pricedCounts(estimateOf(s.config))).toEqual(counts(s));
  });

  test('the default configuration: 3 KMS keys, 1 secret, 110 alarms', () => {
    expect(counts(synthesized.get('the default configuration')!)).toEqual(expect.objectContaining({ 'AWS::KMS::Key': 3, 'AWS::SecretsManager::Secret': 1, 'AWS::CloudWatch::Alarm': 110 }));
  });

  test.each(variants.map(([name]) => [name]))('%s: every resource type is priced or named under "Not included"', (name) => {
    const s = synthesized.get(name)!;
    const e = estimateOf(s.config);
    const types = [...new Set(Object.values(s.template.toJSON().Resources as Record<string, { Type: string }>).map((r) => r.Type))];
    for (const type of types) {
      const where = ACCOUNTED[type];
      expect({ type, accounted: where !== undefined }).toEqual({ type, accounted: true });
      for (const service of where.services ?? []) expect({ type, priced: e.lines.some((l) => l.service === service) }).toEqual({ type, priced: true });
      for (const entry of where.notIncluded ?? []) expect({ type, listed: e.notModelled.some((n) => entry.test(n)) }).toEqual({ type, listed: true });
    }
  });
});

describe('docs/cli.md agrees with sluice cost', () => {
  test('its price table holds every price the estimate uses', () => {
    const doc = fs.readFileSync(path.join(PROJECT_ROOT, 'docs', 'cli.md'), 'utf8');
    const table = doc.slice(doc.indexOf('| price | USD | source |')).split('\n\n')[0];
    const listed = new Set(table.split('\n').slice(2).flatMap((row) => row.split('|')[2].split(/[/,]/).map((x) => Number(x.trim()))));
    const missing = Object.entries(PRICES).filter(([, p]) => !listed.has(p.usd)).map(([name, p]) => `${name} ${p.usd}`);
    expect(missing).toEqual([]);
  });
});

describe('docs/deploy.md agrees with sluice cost', () => {
  const doc = fs.readFileSync(path.join(PROJECT_ROOT, 'docs', 'deploy.md'), 'utf8');
  const costSection = doc.slice(doc.indexOf('## What it costs'), doc.indexOf('\n## ', doc.indexOf('## What it costs') + 1));

  test('each block shown as what a `sluice cost` command prints is what it prints', async () => {
    const blocks = [...costSection.matchAll(/`sluice cost ([^`]+)` prints[\s\S]*?```\n([\s\S]*?)\n```/g)];
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    for (const [, args, block] of blocks) {
      const { code, stdout } = await sluice('cost', ...args.split(' '));
      expect(code).toBe(0);
      expect({ args, block, printed: stdout.includes(`${block}\n`) }).toEqual({ args, block, printed: true });
    }
  });

  test.each([['dev', /\*\*Total, no traffic\*\* \| \| \*\*([\d,.]+)\*\*/], ['prod', /so \*\*\$([\d,.]+)\*\* a month before traffic/]])(
    'the cost with no traffic (env=%s) is the sum of the lines that do not change with the rate', (env, pattern) => {
      const c = loadConfig([`env=${env}`]);
      const low = estimateCost(c, { ratePerSecond: 1 / 3600, recordBytes: 1000 });
      const high = estimateCost(c, { ratePerSecond: 10, recordBytes: 1000 });
      const fixed = high.lines.filter((l, i) => l.monthlyUsd === low.lines[i].monthlyUsd).reduce((sum, l) => sum + (l.monthlyUsd ?? 0), 0);
      expect(pattern.exec(costSection)?.[1]).toBe(roundUsd(fixed).toFixed(2));
    });

  test('Destroy\'s bill of what a retained prod stack leaves is sluice cost\'s lines for those resources', () => {
    const destroy = doc.slice(doc.indexOf('## Destroy'), doc.indexOf('## What it costs')).replace(/\s+/g, ' ');
    const lines = estimateCost(loadConfig(['env=prod']), { ratePerSecond: 1, recordBytes: 1000 }).lines;
    const usd = (item: RegExp) => lines.filter((l) => item.test(l.item)).reduce((sum, l) => sum + (l.monthlyUsd ?? 0), 0);
    const retained = [/^instances /, /^storage \(gp3\)$/, /^shard-hours$/, /^extended retention/, /^data key$/, /^stream key$/, /^PII hash key$/];
    expect(destroy).toContain(`the domain $${usd(/^instances /).toFixed(2)} a month`);
    expect(destroy).toContain(`its volumes $${usd(/^storage \(gp3\)$/).toFixed(2)}`);
    expect(destroy).toContain(`30-day retention $${usd(/^extended retention/).toFixed(2)}`);
    expect(destroy).toContain(`About $${Math.round(retained.reduce((sum, item) => sum + usd(item), 0))} a month before storage`);
  });

  test('the assumptions it states are the model\'s', () => {
    const prose = costSection.replace(/\s+/g, ' ');
    expect(prose).toContain(`Parquet is ${MODEL.parquetRatio} × the size of the JSON`);
    expect(prose).toContain(`transform runs ${MODEL.transformBaseMs} ms + ${MODEL.transformPerRecordMs} ms per record per invocation`);
    expect(prose).toContain(`consumer runs ${MODEL.consumerBaseMs} ms + ${MODEL.consumerPerRecordMs} ms per record`);
    expect(prose).toContain(`uses ${MODEL.metadataWriteUnitsPerRecord} write request units per record`);
    expect(prose).toContain(`keeps a ${MODEL.metadataItemBytes}-byte item per record`);
    expect(prose).toContain(': 110 in the default configuration');
  });
});

describe('sluice cost prices every setting that changes what the stack costs', () => {
  // 3,000 records/s fill the buffers (and make Parquet objects large enough for lifecycle rules to move); at 1/s the
  // intervals decide how often the transform and the consumer run.
  const monthly = (overrides: string[], pipeline: string, item: RegExp, ratePerSecond: number) =>
    estimateCost(loadConfig(overrides), { ratePerSecond, recordBytes: 1000, pipelines: [pipeline] }).lines
      .filter((l) => (l.pipeline === pipeline || l.pipeline === '(shared)') && item.test(l.item))
      .reduce((sum, l) => sum + (l.monthlyUsd ?? 0), 0);

  test.each<[string, string, RegExp, number]>([
    ['pipelines.iot.shards=4', 'iot', /^shard-hours$/, 3000],
    ['pipelines.iot.retentionHours=48', 'iot', /^extended retention/, 3000],
    ['pipelines.iot.streamEncryption=customer-managed', 'iot', /^stream key$/, 3000],
    ['pipelines.iot.buffering.intervalSeconds=60', 'iot', /^dynamic partitioning \(objects\)$/, 3000],
    ['pipelines.iot.buffering.sizeMiB=64', 'iot', /^dynamic partitioning \(objects\)$/, 3000],
    ['pipelines.iot.transform.memoryMiB=1024', 'iot', /^transform duration \(lake\)$/, 3000],
    ['pipelines.iot.transform.processorBufferMiB=0.5', 'iot', /^transform requests \(lake\)$/, 3000],
    ['pipelines.iot.transform.processorIntervalSeconds=10', 'iot', /^transform requests \(lake\)$/, 1],
    ['pipelines.iot.consumer.batchSize=50', 'iot', /^metadata consumer requests$/, 3000],
    ['pipelines.iot.consumer.memoryMiB=1024', 'iot', /^metadata consumer duration$/, 3000],
    ['pipelines.iot.consumer.parallelization=10', 'iot', /^metadata consumer requests$/, 1],
    ['pipelines.iot.consumer.batchWindowSeconds=0', 'iot', /^metadata consumer requests$/, 1],
    ['metadata.ttlDays=90', 'iot', /^metadata storage$/, 3000],
    ['lifecycle.infrequentAccessDays=60', 'iot', /^Standard/, 3000],
    ['lifecycle.glacierDays=180', 'iot', /^Standard-IA/, 3000],
    ['opensearch.instanceType=r6g.large.search', 'clickstream', /^instances /, 3000],
    ['opensearch.instanceCount=2', 'clickstream', /^instances |^storage \(gp3\)$/, 3000],
    ['opensearch.volumeGiB=50', 'clickstream', /^storage \(gp3\)$/, 3000],
  ])('%s: costs more', (override, pipeline, item, ratePerSecond) => {
    expect(monthly([override], pipeline, item, ratePerSecond)).toBeGreaterThan(monthly([], pipeline, item, ratePerSecond));
  });
});
