/** The data dir's lock (twin.pid): its release never fails a stop. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { takePidLock, type PidLockErrors } from '../../lib/local/pid-lock';

/** While set, removing a file fails as on a data dir made read-only (root ignores chmod, so a real one cannot be made here). */
const mockRemoval = { fails: false };
jest.mock('node:fs', () => {
  const actual = jest.requireActual<typeof import('node:fs')>('node:fs');
  return {
    ...actual,
    rmSync: (...args: Parameters<typeof actual.rmSync>) => {
      if (mockRemoval.fails) throw Object.assign(new Error(`EACCES: permission denied, unlink '${String(args[0])}'`), { code: 'EACCES' });
      return actual.rmSync(...args);
    },
  };
});

const errors: PidLockErrors = {
  inUse: (pid) => new Error(`held by ${pid}`),
  cannot: (what, error) => new Error(`cannot ${what}: ${error.message}`),
  contended: () => new Error('contended'),
};

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-pid-lock-'));
});
afterEach(() => {
  mockRemoval.fails = false;
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a lock file that cannot be removed (the data dir made read-only meanwhile) is left for the next start, which takes it over', () => {
  const file = path.join(dir, 'twin.pid');
  const release = takePidLock(file, errors);
  mockRemoval.fails = true;
  expect(() => fs.rmSync(file)).toThrow(/EACCES/);
  expect(() => release()).not.toThrow();
  mockRemoval.fails = false;
  expect(fs.existsSync(file)).toBe(true);
  // The next start (another pid; this one's process is gone by then) finds it stale and holds the data dir.
  const next = takePidLock(file, errors, { pid: 2 ** 22 + 11, isAlive: () => false });
  expect(fs.readFileSync(file, 'utf8').split('\n')[0]).toBe(String(2 ** 22 + 11));
  next();
});
