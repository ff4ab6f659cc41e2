import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Each Parquet file's footer schema (a digest of it), kept in the data dir between queries so that a `sluice query`
 * reads the footers of only the files written (or changed) since the last one, not the whole lake's every time: at
 * 10,000 files that read was most of a query's time. A file is known by its path and its stamp (size, modification
 * and change times, inode): one replaced or rewritten reads again, even at the same size with its modification time
 * set back (the change time cannot be set back). The cache is a hint only: a file missing, unreadable, or not in its format (another
 * version, a torn write) reads as empty, and its files' footers are read again.
 */
export interface FooterEntry {
  /** fileStamp of the file when its footer was read. */
  readonly stamp: string;
  /** A digest of the footer's schema elements (footerDigest): files with the same one are read as the same columns. */
  readonly schema: string;
}

/** Bumped when the entries change meaning: a cache of another version is read as empty. */
const CACHE_VERSION = 2;

export class FooterCache {
  /** Each folder's entries as last read or written here, by the file's path relative to the folder. */
  private readonly known = new Map<string, ReadonlyMap<string, FooterEntry>>();

  /** `dir`: where the cache files are (`<data-dir>/.cache/parquet-footers`). */
  constructor(private readonly dir: string) {}

  /** The entries kept for the files of `name` (a table's folder, e.g. `sluice-dev-data/iot`). */
  entries(name: string): ReadonlyMap<string, FooterEntry> {
    const known = this.known.get(name);
    if (known) return known;
    const read = readEntries(this.fileOf(name));
    this.known.set(name, read);
    return read;
  }

  /**
   * Keeps `entries` as the folder's, when they differ from what is kept: written to a file aside and renamed over the
   * cache, so a reader never sees half of it. A cache that cannot be written (a read-only data dir) is only not kept.
   */
  update(name: string, entries: ReadonlyMap<string, FooterEntry>): void {
    const before = this.entries(name);
    if (before.size === entries.size && [...entries].every(([file, e]) => sameEntry(before.get(file), e))) return;
    this.known.set(name, entries);
    const file = this.fileOf(name);
    const aside = `${file}.${process.pid}.${Date.now()}.tmp`;
    try {
      // Its owner's alone, as the data dir is: it names the lake's files.
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      fs.writeFileSync(aside, JSON.stringify({ version: CACHE_VERSION, files: Object.fromEntries([...entries].map(([f, e]) => [f, [e.stamp, e.schema]])) }), { mode: 0o600 });
      fs.renameSync(aside, file);
    } catch {
      try {
        fs.rmSync(aside, { force: true });
      } catch {
        // No folder to have written it in.
      }
    }
  }

  private fileOf(name: string): string {
    return path.join(this.dir, `${name.split(/[\\/]/).map(encodeURIComponent).join('/')}.json`);
  }
}

function sameEntry(a: FooterEntry | undefined, b: FooterEntry): boolean {
  return a !== undefined && a.stamp === b.stamp && a.schema === b.schema;
}

function readEntries(file: string): ReadonlyMap<string, FooterEntry> {
  const entries = new Map<string, FooterEntry>();
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return entries;
  }
  const { version, files } = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as { version?: unknown; files?: unknown };
  if (version !== CACHE_VERSION || typeof files !== 'object' || files === null || Array.isArray(files)) return entries;
  for (const [name, value] of Object.entries(files)) {
    // Any entry not as written here makes the whole cache suspect: none of it is used.
    if (!Array.isArray(value) || value.length !== 2) return new Map();
    const [stamp, schema] = value as unknown[];
    if (typeof stamp !== 'string' || typeof schema !== 'string' || !/^[0-9a-f]{40}$/.test(schema)) return new Map();
    entries.set(name, { stamp, schema });
  }
  return entries;
}

/** What a file is known by in the cache: size, modification and change times (ns), inode. */
export function fileStamp(stat: fs.BigIntStats): string {
  return `${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}:${stat.ino}`;
}

/** The digest a footer schema (parquet_schema's elements of one file, as text) is kept as. */
export function footerDigest(schema: string): string {
  return createHash('sha1').update(schema).digest('hex');
}
