import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { loadConfig } from '../../lib/config';
import { DlqFile } from '../../lib/local/dlq-file';
import { KINESIS_STATE_WARN_BYTES } from '../../lib/local/emulators';
import { LAKE_LAYOUT_FILE } from '../../lib/local/lake-layout';
import { loadModel } from '../../lib/schema';
import { startTwin } from '../../lib/local/twin';

/**
 * What a twin says as it starts on `dataDir` with `overrides`, up to kinesis-mock: a port in use stops the start there,
 * after the warnings about the data dir.
 */
async function startLines(dataDir: string, overrides: readonly string[], sluiceCommand?: string): Promise<string[]> {
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const lines: string[] = [];
    const port = (taken.address() as net.AddressInfo).port;
    await expect(startTwin({ config: loadConfig([...overrides]), dataDir, ports: { kinesis: port }, log: (line) => lines.push(line), sluiceCommand })).rejects.toThrow(String(port));
    return lines;
  } finally {
    taken.close();
  }
}

/** Write-ahead log frames as a delivery stream writes them (lib/local/delivery-stream.ts): records, and a delivered mark. */
const frame = (type: number, body: Buffer) => {
  const payload = Buffer.concat([Buffer.from([type]), body]);
  const header = Buffer.alloc(8);
  header.writeUInt32BE(payload.length, 0);
  header.writeUInt32BE(crc32(payload), 4);
  return Buffer.concat([header, payload]);
};
const records = (seqs: number[]) => {
  const header = Buffer.from(JSON.stringify(seqs.map((seq) => [seq, `id-${seq}`, 0, 2, null])));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(header.length, 0);
  return frame(1, Buffer.concat([length, header, ...seqs.map(() => Buffer.from('{}'))]));
};
const delivered = (through: number) => frame(2, Buffer.from(JSON.stringify({ through })));
const writeWal = (dataDir: string, stream: string, bytes: Buffer) => {
  const dir = path.join(dataDir, 'firehose', stream, 'wal');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, '0000000000000000.log'), bytes);
  return path.join(dir, '0000000000000000.log');
};

// What the twin says as it starts, before it makes anything: a data dir it cannot make ends the start right after.
describe('the twin as it starts', () => {
  let scratch: string;
  beforeEach(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-twin-start-'));
  });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  test('warns of each schema file it runs no pipeline for, naming the cdk.json entry to add', async () => {
    const file = path.join(scratch, 'a-file');
    fs.writeFileSync(file, '');
    const lines: string[] = [];
    const config = loadConfig(['pipelines={"iot":{}}']);
    await expect(startTwin({ config, dataDir: path.join(file, 'data'), log: (line) => lines.push(line) })).rejects.toThrow();
    expect(lines).toEqual(expect.arrayContaining(['app-events', 'clickstream', 'transactions'].map((p) =>
      `sluice: warning: schemas/${p}.schema.json has no entry under "pipelines" in cdk.json, so nothing deploys or runs it: add "${p}": {} there (or -c 'pipelines.${p}={}' for one command); a schema kept for later can stay as it is`)));
    expect(lines.filter((l) => l.includes('iot.schema.json'))).toEqual([]);
  });

  test("warns of a kinesis-mock state grown past 128 MiB (it keeps every record put), before it starts kinesis-mock on it", async () => {
    const dataDir = path.join(scratch, 'data');
    fs.mkdirSync(path.join(dataDir, 'kinesis'), { recursive: true, mode: 0o700 });
    fs.chmodSync(dataDir, 0o700);
    const state = path.join(dataDir, 'kinesis', 'kinesis-data.json');
    fs.writeFileSync(state, '');
    fs.truncateSync(state, KINESIS_STATE_WARN_BYTES); // sparse
    const lines = await startLines(dataDir, ['pipelines={"iot":{}}']);
    expect(lines).toContain(`sluice: warning: ${state} holds 128 MiB: kinesis-mock keeps every record put to the streams since this data dir was made (it does not`
      + " apply a stream's retention) and writes them whole every 5 s; at about 512 MiB its saves fail and the state no longer loads."
      + ' Once what was sent is delivered (a stop flushes), start again on a new --data-dir (or move this one away)');
  });
  test('names each delivery stream the configuration no longer runs whose write-ahead log holds records not delivered, and leaves it as it is', async () => {
    const dataDir = path.join(scratch, 'data');
    // A pipeline removed with three records logged, one delivered; one removed with all delivered; one still run.
    const removed = writeWal(dataDir, 'sluice-dev-app-events-lake', Buffer.concat([records([0, 1]), delivered(0), records([2])]));
    writeWal(dataDir, 'sluice-dev-old-lake', Buffer.concat([records([0]), delivered(0)]));
    writeWal(dataDir, 'sluice-dev-iot-lake', records([0]));
    fs.chmodSync(dataDir, 0o700);
    const before = fs.readFileSync(removed);
    const lines = await startLines(dataDir, ['pipelines={"iot":{}}']);
    const left = lines.filter((l) => l.includes('not yet delivered'));
    expect(left).toEqual([`sluice: warning: ${path.join(dataDir, 'firehose', 'sluice-dev-app-events-lake')} holds 2 records not yet delivered, of delivery stream`
      + ' sluice-dev-app-events-lake, which this configuration does not run (a pipeline or destination removed or renamed, or another prefix or env):'
      + ' they stay there, undelivered. To deliver them, start once more with the configuration that had it, and stop (a stop flushes); to discard them,'
      + ' delete that folder. (On AWS, the deploy that removes a delivery stream deletes the records it holds.)']);
    expect(fs.readFileSync(removed)).toEqual(before);
  });
  test('refusing a lake whose partition keys changed, says how many records wait in its write-ahead log and how to deliver them', async () => {
    const dataDir = path.join(scratch, 'data');
    const model = loadModel('app-events');
    const file = path.join(dataDir, 's3', 'sluice-dev-data', 'data', 'app-events', 'year=2026', 'month=12', 'day=05', 'hour=17', 'a.parquet');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, 'PAR1');
    // The files were written by time alone; the schema now partitions by event_type first.
    fs.writeFileSync(path.join(dataDir, LAKE_LAYOUT_FILE), JSON.stringify({ 'app-events': ['year', 'month', 'day', 'hour'] }));
    expect(model.partitionKeys.map((k) => k.name)).toEqual(['event_type', 'year', 'month', 'day', 'hour']);
    const wal = writeWal(dataDir, 'sluice-dev-app-events-lake', records([0, 1, 2]));
    fs.chmodSync(dataDir, 0o700);
    const config = loadConfig(['pipelines={"app-events":{"source":"direct-put","destinations":["lake"]}}']);
    await expect(startTwin({ config, dataDir, log: () => undefined })).rejects.toThrow(`(3 records of app-events not yet delivered wait in ${path.join(dataDir, 'firehose', 'sluice-dev-app-events-lake')}:`
      + ' moving the folder delivers them under the new keys at the next start; a new data dir leaves them there, undelivered, unless you first start'
      + ' once more here with the old partitionFields (and `npm run generate`) and stop, which delivers them under the old keys)');
    expect(fs.readFileSync(wal)).toEqual(records([0, 1, 2]));
  });
  test('names dead-letter files of another prefix or env that hold messages, which this run does not count or replay, and the replay to run as the CLI is run', async () => {
    const dataDir = path.join(scratch, 'data');
    fs.mkdirSync(dataDir, { mode: 0o700 });
    await new DlqFile({ dataDir, queue: 'sluice-dev-dlq' }).send(['{"a":1}', '{"a":2}']);
    await new DlqFile({ dataDir, queue: 'sluice-dev-consumer-dlq' }).send([]);
    await new DlqFile({ dataDir, queue: 'other-dev-dlq' }).send(['{"a":3}']);
    // A file no queue wrote, named like one: not counted, and the start goes on.
    fs.writeFileSync(path.join(dataDir, 'dlq', 'my notes-dlq.jsonl'), '{"a":4}\n');
    const lines = await startLines(dataDir, ['pipelines={"iot":{}}', 'prefix=other'], 'node ../sluice/bin/sluice.js');
    expect(lines.filter((l) => l.includes('dead-letter'))).toEqual([`sluice: warning: ${path.join(dataDir, 'dlq', 'sluice-dev-dlq.jsonl')} holds 2 dead-letter`
      + " messages of queue sluice-dev-dlq, which this configuration does not use (another prefix or env): this run's summary and `node ../sluice/bin/sluice.js replay` read"
      + ' other-dev-dlq.jsonl. They stay there; to replay them, run `node ../sluice/bin/sluice.js replay` with the settings that wrote them (-c prefix=…, -c env=…)']);
  });
});
