/**
 * Files the twin replaces whole (checkpoints, ledgers, the search sink's bodies) and the folder syncs that make a
 * rename or a new file survive a crash: one way to do both, for every part of the twin.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Writes `data` to `file` so that a reader or a crash sees either the old content or the new, never a
 * mix: write a temporary file beside it, fsync, rename over, fsync the directory. `mode` is the new file's (less the
 * umask), as fs.writeFile's.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, options: { readonly mode?: number } = {}): Promise<void> {
  const dir = path.dirname(file);
  await fs.promises.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const handle = await fs.promises.open(tmp, 'w', options.mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
  await syncDirectory(dir);
}

/** fsync of a folder: its entries (a file renamed or made in it) reach the disk. */
export async function syncDirectory(dir: string): Promise<void> {
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(dir, 'r');
    await handle.sync();
  } catch (error) {
    // Some file systems refuse fsync on directories (EINVAL/EISDIR); the rename itself is still atomic.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw error;
  } finally {
    await handle?.close();
  }
}
