import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The prototype every `fs.promises.FileHandle` shares. Node does not export the class; spying on its
 * prototype (`sync`, `datasync`) is how a test makes the disk fail an fsync. Opens and removes a
 * scratch file in `dir` to reach it.
 */
export async function fileHandlePrototype(dir: string): Promise<fs.promises.FileHandle> {
  const file = path.join(dir, '.file-handle-probe');
  const handle = await fs.promises.open(file, 'w');
  await handle.close();
  await fs.promises.rm(file, { force: true });
  return Object.getPrototypeOf(handle) as fs.promises.FileHandle;
}

/** An error as the kernel reports a failed fsync. */
export function eio(syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`EIO: i/o error, ${syscall}`), { code: 'EIO', syscall });
}
