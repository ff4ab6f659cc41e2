/**
 * Housekeeping for the V8 code caches kinesis-mock's start keeps (KINESIS_BOOTSTRAP in emulators.ts). Each Node.js or
 * kinesis-mock version has a cache file of its own, about 10 MB, and a new version makes a new file: without pruning a
 * long-lived checkout would collect one per upgrade.
 *
 * The rule: a cache no start has used for 30 days is deleted, by a start that writes its own (the time a new file
 * appears). A start that uses its cache marks it used by setting its modification time. Not a count (say the newest 2):
 * twins on several Node.js versions that share the folder (a CI matrix run from one checkout, nvm) would then delete each
 * other's caches at every start and each compile anew, while with the rule every cache in use stays. Deleting a cache
 * another start is reading costs it nothing: it reads the file whole at once, and on Linux and macOS a file deleted while
 * open stays readable (on Windows Node opens files so they can be deleted); a cache deleted before it is read costs that
 * start only the compile, and it writes the cache anew.
 */
import type * as fs from 'fs';

/** A cache no start has used for this long is deleted when another start writes its own. */
export const CODE_CACHE_UNUSED_MS = 30 * 24 * 3600 * 1000;
/** A start that uses its cache marks it used when the last mark is older than this: once a day at most, not a write at every start. */
export const CODE_CACHE_MARK_MS = 24 * 3600 * 1000;
/** A partial (`<cache>.<pid>.tmp`) older than this is from a writer that died before renaming it: a write takes a second at most. */
export const CODE_CACHE_PARTIAL_MS = 3600 * 1000;

/** What pruneCodeCaches uses of `fs`. */
export type PruneFs = Pick<typeof fs, 'readdirSync' | 'lstatSync' | 'unlinkSync'>;

/**
 * Deletes in `dir` the code caches named `<prefix>*.v8cache` other than `keep` (a file name) whose modification time is
 * more than `unusedMs` from `now` (either way: a time far in the future is a clock's mistake), and their partials
 * (`<prefix>*.v8cache.<pid>.tmp`) more than `partialMs` from it. Returns the names deleted. An entry that cannot be read or
 * deleted is left, and the rest are still pruned; a folder that cannot be read is left as it is.
 * Plain JavaScript with no inner functions, on purpose: kinesis-mock's bootstrap embeds its source.
 */
export function pruneCodeCaches(fs: PruneFs, dir: string, prefix: string, keep: string, unusedMs: number, partialMs: number, now: number): string[] {
  const deleted: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return deleted;
  }
  for (const name of names) {
    if (name === keep || !name.startsWith(prefix)) continue;
    const cache = name.endsWith('.v8cache');
    const partial = name.endsWith('.tmp') && name.includes('.v8cache.');
    if (!cache && !partial) continue;
    try {
      const file = dir + '/' + name;
      if (Math.abs(now - fs.lstatSync(file).mtimeMs) <= (cache ? unusedMs : partialMs)) continue;
      fs.unlinkSync(file);
      deleted.push(name);
    } catch {
      // Gone already (another start pruned it), or not a file this user may delete: left.
    }
  }
  return deleted;
}
