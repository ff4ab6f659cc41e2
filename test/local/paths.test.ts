/** The twin's data dir: what only its owner may read. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isTwinDataDir, localPiiHashKey, makeDataDir, makeDirectories } from '../../lib/local/paths';

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-paths-'));
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

const modeOf = (file: string) => fs.statSync(file).mode & 0o777;

test('a data dir the twin makes is its owner\'s alone; the folders above it are made as the umask says', () => {
  const dataDir = path.join(root, 'a', 'b', '.sluice');
  makeDirectories(dataDir, { mode: 0o700 });
  expect(modeOf(dataDir)).toBe(0o700);
  expect(modeOf(path.join(root, 'a'))).toBe(0o777 & ~process.umask());
  // A folder that exists is left as it is.
  fs.chmodSync(dataDir, 0o750);
  makeDirectories(dataDir, { mode: 0o700 });
  expect(modeOf(dataDir)).toBe(0o750);
});

test('a data dir that exists is made its owner\'s alone when it is empty or a twin\'s, and said; a folder of other files is left, with a warning', () => {
  const made = path.join(root, 'new');
  expect(makeDataDir(made)).toBeUndefined();
  expect(modeOf(made)).toBe(0o700);

  const empty = path.join(root, 'empty');
  fs.mkdirSync(empty, { mode: 0o755 });
  fs.chmodSync(empty, 0o755);
  expect(makeDataDir(empty)).toBe(`made the data dir ${empty} readable by its owner alone (mode 700; it was 755): it holds raw records`);
  expect(modeOf(empty)).toBe(0o700);
  expect(makeDataDir(empty)).toBeUndefined();

  // A twin's data dir holds the lake's layout file at its top, beside its folders.
  const twins = path.join(root, 'twins');
  fs.mkdirSync(path.join(twins, 'dlq'), { recursive: true });
  fs.writeFileSync(path.join(twins, 'lake-layout.json'), '{}');
  // and what a write of one of its files killed halfway leaves beside it
  fs.writeFileSync(path.join(twins, '.twin.json.4242.9f8e7d6c.tmp'), '{"pi');
  fs.chmodSync(twins, 0o750);
  expect(makeDataDir(twins)).toMatch(/it was 750\)/);
  expect(modeOf(twins)).toBe(0o700);

  // A data dir `sluice query` has read holds its footer cache too: still the twin's alone. A .cache alone is no twin's.
  const queried = path.join(root, 'queried');
  fs.mkdirSync(path.join(queried, 'dlq'), { recursive: true });
  fs.mkdirSync(path.join(queried, '.cache'));
  fs.chmodSync(queried, 0o755);
  expect(makeDataDir(queried)).toMatch(/it was 755\)/);
  expect(modeOf(queried)).toBe(0o700);
  const home = path.join(root, 'home');
  fs.mkdirSync(path.join(home, '.cache'), { recursive: true });
  expect(isTwinDataDir(home)).toBe(false);

  // A folder once used as a data dir that holds other files too (`--data-dir .` in a project): not the twin's to close.
  const mixed = path.join(root, 'mixed');
  fs.mkdirSync(path.join(mixed, 'dlq'), { recursive: true });
  fs.writeFileSync(path.join(mixed, 'package.json'), '{}');
  fs.chmodSync(mixed, 0o755);
  expect(makeDataDir(mixed)).toMatch(/^warning: others can read the data dir .* \(mode 755, a folder of other files\)/);
  expect(modeOf(mixed)).toBe(0o755);

  const project = path.join(root, 'project');
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, 'notes.txt'), 'x');
  fs.chmodSync(project, 0o755);
  expect(makeDataDir(project)).toBe(`warning: others can read the data dir ${project} (mode 755, a folder of other files), and the twin keeps raw records there: chmod 700 it, or choose another --data-dir`);
  expect(modeOf(project)).toBe(0o755);
});

test('the local PII hash key is random per data dir, kept across starts, and readable by its owner alone', () => {
  const first = localPiiHashKey(root);
  expect(first).toMatch(/^[0-9a-f]{64}$/);
  expect(localPiiHashKey(root)).toBe(first);
  expect(modeOf(path.join(root, 'pii-hash-key'))).toBe(0o600);
  const other = fs.mkdtempSync(path.join(root, 'other-'));
  expect(localPiiHashKey(other)).not.toBe(first);
  fs.writeFileSync(path.join(other, 'pii-hash-key'), '\n');
  expect(() => localPiiHashKey(other)).toThrow(/pii-hash-key is empty: delete it and the twin makes a new key/);
  // Said as state to fix (the CLI exits 2), not as a raw EISDIR.
  fs.rmSync(path.join(other, 'pii-hash-key'));
  fs.mkdirSync(path.join(other, 'pii-hash-key'));
  expect(() => localPiiHashKey(other)).toThrow(expect.objectContaining({
    name: 'EmulatorStateError',
    message: `${path.join(other, 'pii-hash-key')} is a folder: move it away and the twin makes a new key (local hashes made before will not match)`,
  }));
});

test('a twin\'s data dir is told by what a twin keeps there: not an empty folder, nor one of other files', () => {
  expect(isTwinDataDir(root)).toBe(false);
  fs.writeFileSync(path.join(root, 'notes.txt'), 'x');
  fs.mkdirSync(path.join(root, 'data'));
  expect(isTwinDataDir(root)).toBe(false);
  expect(isTwinDataDir(path.join(root, 'missing'))).toBe(false);
  // What `local up` makes before any record, one at a time: the emulators' state, the delivery logs, the hash key.
  for (const entry of ['dynamodb', 'kinesis', 'firehose']) {
    fs.mkdirSync(path.join(root, entry));
    expect(isTwinDataDir(root)).toBe(true);
    fs.rmdirSync(path.join(root, entry));
  }
  localPiiHashKey(root);
  expect(isTwinDataDir(root)).toBe(true);
});
