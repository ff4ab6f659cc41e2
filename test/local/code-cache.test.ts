import * as fs from 'fs';
import { mkdtemp, rm } from 'fs/promises';
import { tmpdir } from 'os';
import * as path from 'path';
import { CODE_CACHE_PARTIAL_MS, CODE_CACHE_UNUSED_MS, pruneCodeCaches, PruneFs } from '../../lib/local/code-cache';

const DAY = 24 * 3600 * 1000;
// As kinesis-mock's bootstrap has it: from its source, with nothing of this module's around it.
const embedded = new Function(`return ${pruneCodeCaches.toString()};`)() as typeof pruneCodeCaches;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sluice-code-cache-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Makes `name` in dir, last modified `age` ms ago. */
function made(name: string, age: number): void {
  fs.writeFileSync(path.join(dir, name), 'x');
  const at = (Date.now() - age) / 1000;
  fs.utimesSync(path.join(dir, name), at, at);
}

describe('pruneCodeCaches', () => {
  it('deletes the caches no start has used for 30 days and partials over an hour old; keeps its own, those in use, fresh partials and what is not a cache', () => {
    made('kinesis-mock-own.v8cache', 90 * DAY); // the one the start just wrote (or uses): never
    made('kinesis-mock-node18.v8cache', 31 * DAY);
    made('kinesis-mock-node20.v8cache', 29 * DAY); // another Node.js's, used within 30 days: in use
    made('kinesis-mock-skewed.v8cache', -31 * DAY); // a time far in the future is a clock's mistake
    made('kinesis-mock-own.v8cache.123.tmp', 2 * 3600 * 1000); // a writer that died
    made('kinesis-mock-own.v8cache.456.tmp', 60 * 1000); // a writer still at work
    made('other-tool.v8cache', 90 * DAY);
    made('kinesis-mock-notes.txt', 90 * DAY);
    made('kinesis-mock-data.tmp', 90 * DAY);
    const deleted = pruneCodeCaches(fs, dir, 'kinesis-mock-', 'kinesis-mock-own.v8cache', CODE_CACHE_UNUSED_MS, CODE_CACHE_PARTIAL_MS, Date.now());
    expect(deleted.sort()).toEqual(['kinesis-mock-node18.v8cache', 'kinesis-mock-own.v8cache.123.tmp', 'kinesis-mock-skewed.v8cache']);
    expect(fs.readdirSync(dir).sort()).toEqual([
      'kinesis-mock-data.tmp',
      'kinesis-mock-node20.v8cache',
      'kinesis-mock-notes.txt',
      'kinesis-mock-own.v8cache',
      'kinesis-mock-own.v8cache.456.tmp',
      'other-tool.v8cache',
    ]);
  });

  it('works from its source alone, as the bootstrap embeds it', () => {
    made('kinesis-mock-old.v8cache', 31 * DAY);
    made('kinesis-mock-new.v8cache', 0);
    expect(embedded(fs, dir, 'kinesis-mock-', 'kinesis-mock-new.v8cache', CODE_CACHE_UNUSED_MS, CODE_CACHE_PARTIAL_MS, Date.now())).toEqual(['kinesis-mock-old.v8cache']);
    expect(fs.readdirSync(dir)).toEqual(['kinesis-mock-new.v8cache']);
  });

  it('leaves an entry it cannot read or delete, and prunes the rest; a folder it cannot read is left as it is', () => {
    made('kinesis-mock-a.v8cache', 31 * DAY);
    // A folder with a cache's name cannot be unlinked (as a file of another user in a sticky folder).
    fs.mkdirSync(path.join(dir, 'kinesis-mock-b.v8cache'));
    fs.writeFileSync(path.join(dir, 'kinesis-mock-b.v8cache', 'inside'), 'x');
    const old = (Date.now() - 31 * DAY) / 1000;
    fs.utimesSync(path.join(dir, 'kinesis-mock-b.v8cache'), old, old);
    made('kinesis-mock-c.v8cache', 31 * DAY);
    // Read first, in this order, and the first cannot be read.
    const unreadable: PruneFs = {
      readdirSync: (() => ['kinesis-mock-unreadable.v8cache', 'kinesis-mock-b.v8cache', 'kinesis-mock-a.v8cache', 'kinesis-mock-c.v8cache']) as unknown as PruneFs['readdirSync'],
      lstatSync: ((file: string) => {
        if (file.endsWith('unreadable.v8cache')) throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
        return fs.lstatSync(file);
      }) as PruneFs['lstatSync'],
      unlinkSync: fs.unlinkSync,
    };
    for (const prune of [pruneCodeCaches, embedded]) {
      made('kinesis-mock-a.v8cache', 31 * DAY);
      made('kinesis-mock-c.v8cache', 31 * DAY);
      expect(prune(unreadable, dir, 'kinesis-mock-', 'none', CODE_CACHE_UNUSED_MS, CODE_CACHE_PARTIAL_MS, Date.now())).toEqual(['kinesis-mock-a.v8cache', 'kinesis-mock-c.v8cache']);
      expect(fs.readdirSync(dir)).toEqual(['kinesis-mock-b.v8cache']);
      expect(prune(fs, path.join(dir, 'missing'), 'kinesis-mock-', 'none', CODE_CACHE_UNUSED_MS, CODE_CACHE_PARTIAL_MS, Date.now())).toEqual([]);
      expect(prune(fs, path.join(dir, 'kinesis-mock-b.v8cache', 'inside'), 'kinesis-mock-', 'none', CODE_CACHE_UNUSED_MS, CODE_CACHE_PARTIAL_MS, Date.now())).toEqual([]);
    }
  });
});
