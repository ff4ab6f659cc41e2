import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkLakeLayouts, LAKE_LAYOUT_FILE } from '../../lib/local/lake-layout';
import { EmulatorStateError } from '../../lib/local/state-error';
import { loadModel, type SchemaModel } from '../../lib/schema';

let dataDir: string;
let bucket: string;
beforeEach(() => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-layout-'));
  bucket = path.join(dataDir, 's3', 'bucket');
});
afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

const appEvents = loadModel('app-events');
/** app-events as a schema with `partitionFields: []` makes it: partitioned by time alone. */
const byTimeOnly: SchemaModel = { ...appEvents, partitionKeys: appEvents.partitionKeys.filter((k) => k.name !== 'event_type') };
const put = (relative: string) => {
  const file = path.join(bucket, 'data', 'app-events', relative);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, 'PAR1');
};
const listed = (appEvents.partitionKeys[0].projection.values ?? '').split(',');

describe('the lake layout recorded in the data dir', () => {
  test('a pipeline\'s partition keys are recorded; the same keys start again; changed keys are refused, saying what to do', async () => {
    expect(appEvents.partitionKeys[0].name).toBe('event_type');
    expect(await checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([]);
    expect(JSON.parse(fs.readFileSync(path.join(dataDir, LAKE_LAYOUT_FILE), 'utf8'))).toEqual({ 'app-events': ['event_type', 'year', 'month', 'day', 'hour'] });
    expect(await checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([]);
    put(`event_type=${listed[0]}/year=2026/month=11/day=22/hour=12/a.parquet`);
    const refused = () => checkLakeLayouts(dataDir, bucket, [byTimeOnly]);
    await expect(refused()).rejects.toThrow(EmulatorStateError);
    await expect(refused()).rejects.toThrow(/app-events's files are partitioned by event_type, year, month, day, hour, its schema now by year, month, day, hour\..*new data dir \(--data-dir\), or move that pipeline's folder \([^()]*data\/app-events\) out of this one/);
    // The record is kept as it was: the next start is refused too.
    expect(JSON.parse(fs.readFileSync(path.join(dataDir, LAKE_LAYOUT_FILE), 'utf8'))['app-events']).toContain('event_type');
    await expect(refused()).rejects.toThrow(EmulatorStateError);
    // Moving the pipeline's folder away, as the refusal says, lets it start with its new keys.
    fs.renameSync(path.join(bucket, 'data', 'app-events'), path.join(dataDir, 'app-events-before'));
    expect(await checkLakeLayouts(dataDir, bucket, [byTimeOnly])).toEqual([]);
    expect(JSON.parse(fs.readFileSync(path.join(dataDir, LAKE_LAYOUT_FILE), 'utf8'))['app-events']).toEqual(['year', 'month', 'day', 'hour']);
  });

  test('a data dir from before the record is judged by its files\' folders', async () => {
    put(`event_type=${listed[0]}/year=2026/month=11/day=22/hour=12/a.parquet`);
    await expect(checkLakeLayouts(dataDir, bucket, [byTimeOnly])).rejects.toThrow(/partitioned by event_type, year, month, day, hour, its schema now by year, month, day, hour/);
    expect(await checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([]);
  });

  test('the layout is the one most files have, from key=value folders only; a stray file or folder, or a record of another shape, does not decide', async () => {
    for (const hour of ['12', '13', '14']) put(`event_type=${listed[0]}/year=2026/month=11/day=22/hour=${hour}/a.parquet`);
    put('0-copy.parquet');
    put('backup/x.parquet');
    expect(await checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([]);
    await expect(checkLakeLayouts(dataDir, bucket, [byTimeOnly])).rejects.toThrow(/partitioned by event_type, year, month, day, hour, its schema now by year/);
    fs.writeFileSync(path.join(dataDir, LAKE_LAYOUT_FILE), JSON.stringify({ 'app-events': 'event_type' }));
    expect(await checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([]);
    expect(JSON.parse(fs.readFileSync(path.join(dataDir, LAKE_LAYOUT_FILE), 'utf8'))['app-events']).toEqual(['event_type', 'year', 'month', 'day', 'hour']);
  });

  test('a write cut short (a full disk, a kill) leaves the record as it was', async () => {
    expect(await checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([]);
    const file = path.join(dataDir, LAKE_LAYOUT_FILE);
    const before = fs.readFileSync(file, 'utf8');
    // A child whose files may not grow past a few KB (ulimit -f; the kernel writes up to the limit, then fails the
    // write with EFBIG, as a full disk fails it with ENOSPC) records 300 pipelines more: tens of KB.
    const script = `const { loadModel } = require(${JSON.stringify(require.resolve('../../lib/schema'))});
      const { checkLakeLayouts } = require(${JSON.stringify(require.resolve('../../lib/local/lake-layout'))});
      const appEvents = loadModel('app-events');
      const models = [appEvents, ...Array.from({ length: 300 }, (_, i) => ({ ...appEvents, pipeline: 'pipeline-' + i }))];
      Promise.resolve().then(() => checkLakeLayouts(${JSON.stringify(dataDir)}, ${JSON.stringify(bucket)}, models))
        .then(() => process.stdout.write('written'), (err) => process.stdout.write(String(err.code)));`;
    const child = spawn('sh', ['-c', 'ulimit -f 8 && exec "$@"', 'sh', process.execPath, '--require', require.resolve('tsx/cjs'), '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    expect(await new Promise((resolve) => child.once('exit', resolve))).toBe(0);
    expect(out).toBe('EFBIG');
    // Not the first few KB of the new record, which reads as no record: the old one, whole, and no temporary file.
    expect(fs.readFileSync(file, 'utf8')).toBe(before);
    expect(fs.readdirSync(dataDir).filter((name) => name !== 's3')).toEqual([LAKE_LAYOUT_FILE]);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  }, 20_000);

  test('a record that does not read (cut short by an older Sluice) is judged again from the files\' folders, not taken as no files', async () => {
    put(`event_type=${listed[0]}/year=2026/month=11/day=22/hour=12/a.parquet`);
    const file = path.join(dataDir, LAKE_LAYOUT_FILE);
    for (const cut of ['', '{\n  "app-events": [\n    "event_type",\n    "ye']) {
      fs.writeFileSync(file, cut);
      await expect(checkLakeLayouts(dataDir, bucket, [byTimeOnly])).rejects.toThrow(/partitioned by event_type, year, month, day, hour, its schema now by year, month, day, hour/);
      expect(await checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([]);
      expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({ 'app-events': ['event_type', 'year', 'month', 'day', 'hour'] });
    }
  });

  test('files under enum values the schema no longer lists are counted in a warning that says queries leave them out, as Athena does', async () => {
    put(`event_type=${listed[0]}/year=2026/month=11/day=22/hour=12/a.parquet`);
    put('event_type=retired/year=2026/month=11/day=22/hour=12/a.parquet');
    put('event_type=retired/year=2026/month=11/day=22/hour=13/b.parquet');
    expect(listed).not.toContain('retired');
    expect(await checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([
      expect.stringMatching(/^data\/app-events\/ holds 2 Parquet files under event_type values its schema's enum no longer lists \(retired\): queries leave them out, as Athena's partition projection does on AWS/),
    ]);
  });
});
