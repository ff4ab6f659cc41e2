/**
 * The data dir's format version: `<data-dir>/sluice-data.json` (`{"format": 1}`) names the shape of everything the twin
 * keeps there (twin.json, the readers' checkpoints, lake-layout.json, the write-ahead logs, …). A Sluice that changes a
 * file's shape raises it; one that finds a format newer than it knows refuses the data dir before it reads or writes
 * anything in it, rather than misread it. A data dir without the file is of format 1 (from before it was written); the
 * next start stamps it. Its own module, so the CLI can check a data dir without loading the twin.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from './atomic-file';
import { EmulatorStateError } from './state-error';

/** The data dir format this Sluice reads and writes. */
export const DATA_DIR_FORMAT = 1;

export const DATA_FORMAT_FILE = 'sluice-data.json';

export function dataFormatPath(dataDir: string): string {
  return path.join(dataDir, DATA_FORMAT_FILE);
}

/** The data dir's format, and whether its file says so (a data dir without it is of format 1). Reads only. */
export function readDataFormat(dataDir: string): { readonly format: number; readonly stamped: boolean } {
  const file = dataFormatPath(dataDir);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // No data dir, or none stamped yet: today's format.
    if (code === 'ENOENT' || code === 'ENOTDIR') return { format: 1, stamped: false };
    // Not a file to delete: a folder holds no format (a start writes the file there), and one this user cannot read may
    // say any format (a data dir another user's twin made, mode 700).
    if (code === 'EISDIR') {
      throw new EmulatorStateError(`${file} is a folder, where a twin's start writes which format the data dir is in (none of the twin's data is in it): nothing was done. `
        + 'Move the folder away, then try again');
    }
    throw new EmulatorStateError(`${file}, which says which format the data dir is in, cannot be read (${code ?? (error as Error).message}): nothing was done. `
      + 'Make it readable to you (a twin makes its data dir its owner\'s alone, mode 700: run the command as that user)');
  }
  let format: unknown;
  try {
    format = (JSON.parse(text) as { format?: unknown } | null)?.format;
  } catch {
    throw unreadable(file, 'it is not JSON');
  }
  if (typeof format !== 'number' || !Number.isInteger(format) || format < 1) throw unreadable(file, 'it names no format version (a whole number from 1)');
  return { format, stamped: true };
}

function unreadable(file: string, why: string): EmulatorStateError {
  return new EmulatorStateError(`${file} says which format the data dir is in, and ${why}: nothing was done. If only this Sluice (format ${DATA_DIR_FORMAT}) `
    + 'wrote this data dir, delete the file (the next start writes it again); otherwise use the Sluice that wrote it');
}

/**
 * Refuses a data dir of a newer format than this Sluice's, before anything reads or writes it: its files may not mean
 * what this code would read in them. Returns what readDataFormat found.
 */
export function checkDataFormat(dataDir: string): { readonly format: number; readonly stamped: boolean } {
  const found = readDataFormat(dataDir);
  if (found.format > DATA_DIR_FORMAT) {
    throw new EmulatorStateError(`the data dir ${dataDir} is in format ${found.format} (its ${DATA_FORMAT_FILE} says so), written by a newer Sluice; `
      + `this Sluice reads format ${DATA_DIR_FORMAT}: nothing was done. Use the newer Sluice on it, or move the data dir aside `
      + '(or give another --data-dir) to start afresh with this one');
  }
  return found;
}

/**
 * Writes this Sluice's format into the data dir, atomically, when `found` (what checkDataFormat answered for it) says
 * none (or an older one).
 */
export async function stampDataFormat(dataDir: string, found: ReturnType<typeof checkDataFormat>): Promise<void> {
  if (found.stamped && found.format === DATA_DIR_FORMAT) return;
  await writeFileAtomic(dataFormatPath(dataDir), `${JSON.stringify({ format: DATA_DIR_FORMAT })}\n`);
}
