/**
 * The data dir's format version (`sluice-data.json`): a data dir without one is today's format and is stamped at the next
 * start; one a newer Sluice wrote is refused, before anything in it changes, by the twin's start and every command that
 * reads the data dir.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { loadConfig } from '../../lib/config';
import { DATA_DIR_FORMAT, DATA_FORMAT_FILE, readDataFormat } from '../../lib/local/data-format';
import { startTwin } from '../../lib/local/twin';
import { EmulatorStateError } from '../../lib/local/state-error';
import { makeDataDir } from '../../lib/local/paths';
import { expectNoStackTrace, sluice, tempDataDir } from './helpers';

/** Every entry under `dir`: its path, mode, and a file's content, to compare a folder before and after. */
function tree(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort().map((name) => {
    const file = path.join(dir, name);
    const stat = fs.lstatSync(file);
    return `${name} ${(stat.mode & 0o7777).toString(8)} ${stat.isFile() ? fs.readFileSync(file, 'base64') : stat.isDirectory() ? '/' : 'other'}`;
  });
}

/** A data dir as a twin leaves it (no format file, as every one before the file was written), mode 755. */
function oldDataDir(): string {
  const dir = tempDataDir();
  fs.mkdirSync(path.join(dir, 'dlq'));
  fs.writeFileSync(path.join(dir, 'dlq', `${loadConfig().prefix}-${loadConfig().env}-dlq.jsonl`), '');
  fs.mkdirSync(path.join(dir, 's3'));
  fs.writeFileSync(path.join(dir, 'lake-layout.json'), '{}\n');
  fs.chmodSync(dir, 0o755);
  return dir;
}

/** Starts a twin on `dataDir` up to kinesis-mock, whose port is taken: what it does to the data dir before then stays. */
async function startUpToKinesis(dataDir: string): Promise<void> {
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const port = (taken.address() as net.AddressInfo).port;
    await expect(startTwin({ config: loadConfig(), dataDir, ports: { kinesis: port }, log: () => undefined })).rejects.toThrow(String(port));
  } finally {
    taken.close();
  }
}

const newer = DATA_DIR_FORMAT + 1;
const refusal = (dir: string) => `the data dir ${dir} is in format ${newer} (its ${DATA_FORMAT_FILE} says so), written by a newer Sluice; `
  + `this Sluice reads format ${DATA_DIR_FORMAT}: nothing was done. Use the newer Sluice on it, or move the data dir aside `
  + '(or give another --data-dir) to start afresh with this one';

describe('the data dir format', () => {
  test('a data dir without one reads as format 1, and the next start stamps it (atomically: nothing left beside it)', async () => {
    const dir = oldDataDir();
    expect(readDataFormat(dir)).toEqual({ format: 1, stamped: false });
    await startUpToKinesis(dir);
    expect(JSON.parse(fs.readFileSync(path.join(dir, DATA_FORMAT_FILE), 'utf8'))).toEqual({ format: DATA_DIR_FORMAT });
    expect(readDataFormat(dir)).toEqual({ format: DATA_DIR_FORMAT, stamped: true });
    expect(fs.readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  test('a data dir of this format starts, and its file is left as it is', async () => {
    const dir = oldDataDir();
    const file = path.join(dir, DATA_FORMAT_FILE);
    fs.writeFileSync(file, `{ "format": ${DATA_DIR_FORMAT} }`);
    const inode = fs.statSync(file).ino;
    await startUpToKinesis(dir);
    expect(fs.readFileSync(file, 'utf8')).toBe(`{ "format": ${DATA_DIR_FORMAT} }`);
    expect(fs.statSync(file).ino).toBe(inode);
  });

  test('a twin refuses a data dir of a newer format before it changes anything in it (its mode included)', async () => {
    // Only what a twin keeps at the top: a start that did not refuse first would make it mode 700, as it does the same
    // folder of this format.
    const [dir, ours] = [oldDataDir(), oldDataDir()];
    for (const d of [dir, ours]) fs.rmSync(path.join(d, 'lake-layout.json'));
    fs.writeFileSync(path.join(ours, DATA_FORMAT_FILE), `{"format": ${DATA_DIR_FORMAT}}\n`);
    expect(makeDataDir(ours)).toMatch(/mode 700/);
    fs.writeFileSync(path.join(dir, DATA_FORMAT_FILE), `{"format": ${newer}, "more": "of the newer shape"}\n`);
    const before = tree(dir);
    const mode = fs.statSync(dir).mode;
    expect(mode & 0o777).toBe(0o755);
    const start = startTwin({ config: loadConfig(), dataDir: dir, log: () => undefined });
    await expect(start).rejects.toThrow(EmulatorStateError);
    await expect(start).rejects.toThrow(refusal(dir));
    expect(tree(dir)).toEqual(before);
    expect(fs.statSync(dir).mode).toBe(mode);
  });

  test('every command that opens the data dir refuses one of a newer format: the message, exit 2, nothing written in it', async () => {
    const dir = oldDataDir();
    fs.writeFileSync(path.join(dir, DATA_FORMAT_FILE), `{"format": ${newer}}\n`);
    const before = tree(dir);
    const ports = ['--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0'];
    for (const argv of [
      ['local', 'up', '--data-dir', dir, ...ports],
      ['demo', '--data-dir', dir, '--count', '10'],
      ['query', 'SELECT 1', '--data-dir', dir],
      ['replay', '--dry-run', '--data-dir', dir],
      ['redrive-consumer', '--dry-run', '--data-dir', dir],
      ['put', 'iot', '--count', '1', '--data-dir', dir],
    ]) {
      const run = await sluice(...argv);
      expect({ argv, code: run.code, stderr: run.stderr }).toEqual({ argv, code: 2, stderr: `sluice: ${refusal(dir)}\n` });
      expectNoStackTrace(run.stderr);
      expect(tree(dir)).toEqual(before);
    }
  });

  test('a format file that is a folder, or that this user cannot read, is refused without the advice to delete it', async () => {
    const dir = oldDataDir();
    const file = path.join(dir, DATA_FORMAT_FILE);
    fs.mkdirSync(file);
    const folder = await sluice('query', 'SELECT 1', '--data-dir', dir);
    expect({ code: folder.code, stderr: folder.stderr }).toEqual({
      code: 2,
      stderr: `sluice: ${file} is a folder, where a twin's start writes which format the data dir is in (none of the twin's data is in it): nothing was done. `
        + 'Move the folder away, then try again\n',
    });
    fs.rmdirSync(file);
    // One it cannot read (as another user's data dir, mode 700, is; root reads every file, so a link to itself stands in).
    fs.symlinkSync(DATA_FORMAT_FILE, file);
    const unreadable = await sluice('query', 'SELECT 1', '--data-dir', dir);
    expect({ code: unreadable.code, stderr: unreadable.stderr }).toEqual({
      code: 2,
      stderr: `sluice: ${file}, which says which format the data dir is in, cannot be read (ELOOP): nothing was done. `
        + 'Make it readable to you (a twin makes its data dir its owner\'s alone, mode 700: run the command as that user)\n',
    });
  });

  test('a format file that names no version is refused, saying what to do', async () => {
    const dir = oldDataDir();
    const file = path.join(dir, DATA_FORMAT_FILE);
    for (const [text, why] of [['{"format": "2"}', 'it names no format version (a whole number from 1)'], ['not json', 'it is not JSON']]) {
      fs.writeFileSync(file, text);
      const run = await sluice('query', 'SELECT 1', '--data-dir', dir);
      expect({ code: run.code, stderr: run.stderr }).toEqual({
        code: 2,
        stderr: `sluice: ${file} says which format the data dir is in, and ${why}: nothing was done. If only this Sluice (format ${DATA_DIR_FORMAT}) `
          + 'wrote this data dir, delete the file (the next start writes it again); otherwise use the Sluice that wrote it\n',
      });
    }
  });
});
