/** The twin's data dir: what only its owner may read. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isTwinDataDir, localPiiHashKey, makeDirectories } from '../../lib/local/paths';

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

test('the local PII hash key is random per data dir, kept across starts, and readable by its owner alone', () => {
  const first = localPiiHashKey(root);
  expect(first).toMatch(/^[0-9a-f]{64}$/);
  expect(localPiiHashKey(root)).toBe(first);
  expect(modeOf(path.join(root, 'pii-hash-key'))).toBe(0o600);
  const other = fs.mkdtempSync(path.join(root, 'other-'));
  expect(localPiiHashKey(other)).not.toBe(first);
  fs.writeFileSync(path.join(other, 'pii-hash-key'), '\n');
  expect(() => localPiiHashKey(other)).toThrow(/pii-hash-key is empty: delete it and the twin makes a new key/);
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
