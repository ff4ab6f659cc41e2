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
  test('a pipeline\'s partition keys are recorded; the same keys start again; changed keys are refused, saying what to do', () => {
    expect(appEvents.partitionKeys[0].name).toBe('event_type');
    expect(checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([]);
    expect(JSON.parse(fs.readFileSync(path.join(dataDir, LAKE_LAYOUT_FILE), 'utf8'))).toEqual({ 'app-events': ['event_type', 'year', 'month', 'day', 'hour'] });
    expect(checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([]);
    put(`event_type=${listed[0]}/year=2026/month=11/day=22/hour=12/a.parquet`);
    const refused = () => checkLakeLayouts(dataDir, bucket, [byTimeOnly]);
    expect(refused).toThrow(EmulatorStateError);
    expect(refused).toThrow(/app-events's files are partitioned by event_type, year, month, day, hour, its schema now by year, month, day, hour\..*new data dir \(--data-dir\), or move that pipeline's folder \([^()]*data\/app-events\) out of this one/);
    // The record is kept as it was: the next start is refused too.
    expect(JSON.parse(fs.readFileSync(path.join(dataDir, LAKE_LAYOUT_FILE), 'utf8'))['app-events']).toContain('event_type');
    expect(refused).toThrow(EmulatorStateError);
    // Moving the pipeline's folder away, as the refusal says, lets it start with its new keys.
    fs.renameSync(path.join(bucket, 'data', 'app-events'), path.join(dataDir, 'app-events-before'));
    expect(checkLakeLayouts(dataDir, bucket, [byTimeOnly])).toEqual([]);
    expect(JSON.parse(fs.readFileSync(path.join(dataDir, LAKE_LAYOUT_FILE), 'utf8'))['app-events']).toEqual(['year', 'month', 'day', 'hour']);
  });

  test('a data dir from before the record is judged by its files\' folders', () => {
    put(`event_type=${listed[0]}/year=2026/month=11/day=22/hour=12/a.parquet`);
    expect(() => checkLakeLayouts(dataDir, bucket, [byTimeOnly])).toThrow(/partitioned by event_type, year, month, day, hour, its schema now by year, month, day, hour/);
    expect(checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([]);
  });

  test('the layout is the one most files have, from key=value folders only; a stray file or folder, or a record of another shape, does not decide', () => {
    for (const hour of ['12', '13', '14']) put(`event_type=${listed[0]}/year=2026/month=11/day=22/hour=${hour}/a.parquet`);
    put('0-copy.parquet');
    put('backup/x.parquet');
    expect(checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([]);
    expect(() => checkLakeLayouts(dataDir, bucket, [byTimeOnly])).toThrow(/partitioned by event_type, year, month, day, hour, its schema now by year/);
    fs.writeFileSync(path.join(dataDir, LAKE_LAYOUT_FILE), JSON.stringify({ 'app-events': 'event_type' }));
    expect(checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([]);
    expect(JSON.parse(fs.readFileSync(path.join(dataDir, LAKE_LAYOUT_FILE), 'utf8'))['app-events']).toEqual(['event_type', 'year', 'month', 'day', 'hour']);
  });

  test('files under enum values the schema no longer lists are counted in a warning that says queries leave them out, as Athena does', () => {
    put(`event_type=${listed[0]}/year=2026/month=11/day=22/hour=12/a.parquet`);
    put('event_type=retired/year=2026/month=11/day=22/hour=12/a.parquet');
    put('event_type=retired/year=2026/month=11/day=22/hour=13/b.parquet');
    expect(listed).not.toContain('retired');
    expect(checkLakeLayouts(dataDir, bucket, [appEvents])).toEqual([
      expect.stringMatching(/^data\/app-events\/ holds 2 Parquet files under event_type values its schema's enum no longer lists \(retired\): queries leave them out, as Athena's partition projection does on AWS/),
    ]);
  });
});
