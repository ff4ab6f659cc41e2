/**
 * The local twin's S3: objects are files at `<dataDir>/s3/<bucket>/<key>`, keys exactly as Firehose
 * writes them.
 *
 * Writes are atomic and durable: the body goes to a temporary file under `<dataDir>/s3/.tmp/`, is
 * fsynced, renamed into place and the directory fsynced, so a reader (or a crash) sees either no
 * object or the whole object. A key that would resolve outside `<dataDir>/s3/<bucket>/` — `..`
 * segments, absolute paths, NUL, a symlink planted inside the bucket — is refused with
 * InvalidObjectKeyError and nothing is written.
 *
 * Disk errors (ENOSPC, EROFS, EACCES, EIO, …) are thrown as the Node errors they are, nothing left
 * behind; the delivery engine retries them. Every successful put emits `objectCreated`.
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { syncDirectory } from './atomic-file';
import { isInside, s3Dir } from './paths';

/** S3's limit on key length, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;
const MAX_SEGMENT_BYTES = 255;
const TEMP_DIR = '.tmp';
/** S3 can hold both `a/b` and `a/b/c`; a file system cannot (Firehose's keys never do this). */
const FILE_FOLDER_CLASH = 'the twin stores keys as files, so a key cannot also be the folder of another key (e.g. "a/b" and "a/b/c")';

export interface ObjectCreatedEvent {
  readonly bucket: string;
  readonly key: string;
  readonly size: number;
}

export interface ObjectSummary {
  readonly key: string;
  readonly size: number;
  readonly lastModified: Date;
  /** The ETag a read of the object answers with now (readObject). */
  readonly etag: string;
}

/** A key or bucket name the store will not map to a file. Not retryable: the name itself is wrong. */
export class InvalidObjectKeyError extends Error {
  constructor(readonly bucket: string, readonly key: string, problem: string) {
    super(`s3://${bucket}/${key.length > 200 ? `${key.slice(0, 200)}…` : key}: ${problem}`);
    this.name = 'InvalidObjectKeyError';
  }
}

/** Thrown by getObjectStream when the object's ETag is not the one asked for (S3's 412 PreconditionFailed to If-Match). */
export class PreconditionFailedError extends Error {
  readonly code = 'PreconditionFailed';

  constructor(readonly bucket: string, readonly key: string, readonly ifMatch: string, readonly etag: string) {
    super(`s3://${bucket}/${key}: its ETag is ${etag}, not ${ifMatch} (PreconditionFailed)`);
    this.name = 'PreconditionFailedError';
  }
}

/** An object read as a stream, with the ETag of the file it reads. */
export interface ObjectStream {
  readonly body: fs.ReadStream;
  readonly etag: string;
}

/** Thrown by getObject for a key that does not exist (S3's NoSuchKey). */
export class NoSuchKeyError extends Error {
  readonly code = 'NoSuchKey';

  constructor(readonly bucket: string, readonly key: string) {
    super(`s3://${bucket}/${key}: no such key`);
    this.name = 'NoSuchKeyError';
  }
}

export interface ObjectStoreOptions {
  /**
   * Called before every write with the file about to be written; what it throws fails the write as
   * the file system would (fault injection, see faults.ts). @default none
   */
  readonly beforeWrite?: (file: string) => void;
}

export interface ObjectStoreEvents {
  objectCreated: [event: ObjectCreatedEvent];
}

export class ObjectStore extends EventEmitter<ObjectStoreEvents> {
  /** `<dataDir>/s3` */
  readonly root: string;
  private readonly tempDir: string;
  private readonly beforeWrite: (file: string) => void;

  constructor(dataDir: string, options: ObjectStoreOptions = {}) {
    super();
    this.root = path.resolve(s3Dir(dataDir));
    this.tempDir = path.join(this.root, TEMP_DIR);
    this.beforeWrite = options.beforeWrite ?? (() => undefined);
  }

  /** The directory that holds a bucket's objects. */
  bucketPath(bucket: string): string {
    const problem = bucketNameProblem(bucket);
    if (problem) throw new InvalidObjectKeyError(bucket, '', `bucket name ${JSON.stringify(bucket)} ${problem}`);
    return path.join(this.root, bucket);
  }

  /** The file an object lives in; throws InvalidObjectKeyError for a key that cannot be one. */
  pathFor(bucket: string, key: string): string {
    const bucketDir = this.bucketPath(bucket);
    const problem = objectKeyProblem(key);
    if (problem) throw new InvalidObjectKeyError(bucket, key, problem);
    const file = path.resolve(bucketDir, ...key.split('/'));
    if (!isInside(bucketDir, file)) throw new InvalidObjectKeyError(bucket, key, `resolves outside ${bucketDir}`);
    return file;
  }

  /** Writes an object atomically (temp file, fsync, rename, directory fsync). */
  async putObject(bucket: string, key: string, body: Uint8Array | string): Promise<ObjectCreatedEvent> {
    const target = this.pathFor(bucket, key);
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    const temp = await this.newTempFile();
    try {
      const handle = await fs.promises.open(temp, 'wx');
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await this.commit(bucket, key, temp, target);
    } catch (error) {
      await fs.promises.rm(temp, { force: true }).catch(() => undefined);
      throw error;
    }
    return this.created(bucket, key, bytes.byteLength);
  }

  /**
   * Moves a finished file (e.g. a Parquet file DuckDB wrote) into place as an object, atomically.
   * The source is fsynced first and is gone afterwards; on failure it is left where it was, so the
   * caller can retry with the same file.
   */
  async putObjectFromFile(bucket: string, key: string, sourceFile: string): Promise<ObjectCreatedEvent> {
    const target = this.pathFor(bucket, key);
    this.beforeWrite(target);
    const handle = await fs.promises.open(sourceFile, 'r+');
    let size: number;
    try {
      size = (await handle.stat()).size;
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await this.commit(bucket, key, sourceFile, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      // Different file systems: copy through a temp file next to the target, then drop the source.
      await this.putObject(bucket, key, await fs.promises.readFile(sourceFile));
      await fs.promises.rm(sourceFile, { force: true });
      return { bucket, key, size };
    }
    return this.created(bucket, key, size);
  }

  async getObject(bucket: string, key: string): Promise<Buffer> {
    try {
      return await fs.promises.readFile(this.pathFor(bucket, key));
    } catch (error) {
      throw noSuchKeyFor(error, bucket, key);
    }
  }

  /**
   * An object's bytes in chunks as they are read, for objects not to be held whole (the failure router's error objects),
   * and its ETag. With `ifMatch`, throws PreconditionFailedError unless the object's ETag is that one, as S3 does: the
   * stream reads the file it opened, so a read pinned this way gives exactly the object that had the ETag.
   */
  async getObjectStream(bucket: string, key: string, options: { readonly ifMatch?: string } = {}): Promise<ObjectStream> {
    let handle: fs.promises.FileHandle | undefined;
    let etag: string;
    try {
      handle = await fs.promises.open(this.pathFor(bucket, key), 'r');
      const stat = await handle.stat({ bigint: true });
      // Opening a directory succeeds on Linux, reading it does not: no object, as getObject says.
      if (stat.isDirectory()) throw Object.assign(new Error(`EISDIR: illegal operation on a directory, read '${key}'`), { code: 'EISDIR' });
      etag = etagOf(stat);
      if (options.ifMatch !== undefined && options.ifMatch !== etag) throw new PreconditionFailedError(bucket, key, options.ifMatch, etag);
    } catch (error) {
      await handle?.close();
      throw noSuchKeyFor(error, bucket, key);
    }
    return { body: handle.createReadStream(), etag };
  }

  /**
   * An object as the failure router and `sluice replay` read error objects (ObjectReader): a stream and its ETag, undefined
   * when there is no such key. The twin keeps no versions (its events carry no versionId), so a pin is its ETag.
   */
  async readObject(bucket: string, key: string, pin?: { readonly etag?: string }): Promise<ObjectStream | undefined> {
    try {
      return await this.getObjectStream(bucket, key, { ifMatch: pin?.etag });
    } catch (error) {
      if (error instanceof NoSuchKeyError) return undefined;
      throw error;
    }
  }

  async deleteObject(bucket: string, key: string): Promise<void> {
    await fs.promises.rm(this.pathFor(bucket, key), { force: true });
  }

  /** Objects whose key starts with `prefix`, in S3's order (UTF-8 byte order of keys). */
  async listObjects(bucket: string, prefix = ''): Promise<ObjectSummary[]> {
    const bucketDir = this.bucketPath(bucket);
    // Walk only the deepest directory the prefix names.
    const dirPart = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    if (dirPart && objectKeyProblem(`${dirPart}/x`)) return [];
    const start = dirPart ? path.join(bucketDir, ...dirPart.split('/')) : bucketDir;
    if (start !== bucketDir && !isInside(bucketDir, start)) return [];
    const out: ObjectSummary[] = [];
    const walk = async (dir: string, keyPrefix: string): Promise<void> => {
      let entries: fs.Dirent[];
      try {
        entries = await fs.promises.readdir(dir, { withFileTypes: true });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw error;
      }
      for (const entry of entries) {
        const key = keyPrefix + entry.name;
        if (entry.isDirectory()) {
          if (prefix.startsWith(`${key}/`) || `${key}/`.startsWith(prefix)) await walk(path.join(dir, entry.name), `${key}/`);
        } else if (entry.isFile() && key.startsWith(prefix)) {
          const stat = await fs.promises.stat(path.join(dir, entry.name), { bigint: true });
          out.push({ key, size: Number(stat.size), lastModified: new Date(Number(stat.mtimeMs)), etag: etagOf(stat) });
        }
      }
    };
    await walk(start, dirPart ? `${dirPart}/` : '');
    return out.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
  }

  /**
   * Removes what a process killed mid-write left in the temp directory (a Parquet file DuckDB was writing, a body not yet
   * renamed into place): never an object, and never read again. For the one process that writes to the store, at its start.
   */
  async removeLeftovers(): Promise<void> {
    await fs.promises.rm(this.tempDir, { recursive: true, force: true });
  }

  /** A fresh path in the store's temp directory (same file system as the buckets, so renames are atomic). */
  async newTempFile(suffix = ''): Promise<string> {
    const file = path.join(this.tempDir, `${randomUUID()}${suffix}`);
    this.beforeWrite(file);
    await fs.promises.mkdir(this.tempDir, { recursive: true });
    return file;
  }

  private async commit(bucket: string, key: string, source: string, target: string): Promise<void> {
    const dir = path.dirname(target);
    let firstMade: string | undefined;
    try {
      firstMade = await fs.promises.mkdir(dir, { recursive: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTDIR') throw new InvalidObjectKeyError(bucket, key, FILE_FOLDER_CLASH);
      throw error;
    }
    // A symlink planted inside the bucket must not carry the write elsewhere.
    const [realBucket, realDir] = await Promise.all([
      fs.promises.realpath(this.bucketPath(bucket)),
      fs.promises.realpath(dir),
    ]);
    if (!isInside(realBucket, realDir) && realBucket !== realDir) {
      throw new InvalidObjectKeyError(bucket, key, `its directory resolves to ${realDir}, outside the bucket (symlink?)`);
    }
    try {
      await fs.promises.rename(source, target);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'ENOTDIR') throw new InvalidObjectKeyError(bucket, key, FILE_FOLDER_CLASH);
      throw error;
    }
    try {
      await syncDirectory(dir);
      // Folders made for it (a new partition's).
      await syncFoldersMade(dir, firstMade);
    } catch (error) {
      // The object is in place and readable: a put reported failed now would be written again (a second copy of its
      // records) from a source the rename already moved. Only a power cut before the folder reaches the disk could lose it.
      process.emitWarning(`s3://${bucket}/${key} is written, but its folder could not be synced to disk (${(error as Error).message}); a power cut now could lose it`);
    }
  }

  private created(bucket: string, key: string, size: number): ObjectCreatedEvent {
    const event: ObjectCreatedEvent = { bucket, key, size };
    try {
      this.emit('objectCreated', event);
    } catch (error) {
      // The object is written; a failing subscriber must not make the write look failed (the writer would retry and duplicate it).
      process.emitWarning(`objectCreated listener failed for s3://${bucket}/${key}: ${(error as Error).message}`);
    }
    return event;
  }
}

/**
 * The twin's ETag of an object: its file's inode, size and modification time, quoted as S3 quotes its ETags. Every put
 * renames a new file into place, so a replaced object has another inode (the new file existed beside the old one); size
 * and time also change when a file is edited in place by hand. Not an MD5 of the content: S3's ETags are opaque to readers
 * too (a multipart upload's is not one), and hashing would read every object twice.
 */
function etagOf(stat: fs.BigIntStats): string {
  return `"${stat.ino.toString(16)}-${stat.size.toString(16)}-${stat.mtimeNs.toString(16)}"`;
}

/** A file system error reading an object, as S3 would say it: NoSuchKey when there is no file of that name. */
function noSuchKeyFor(error: unknown, bucket: string, key: string): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR' ? new NoSuchKeyError(bucket, key) : error;
}

/** Why a key cannot be an object in the twin, or undefined when it can. */
export function objectKeyProblem(key: string): string | undefined {
  if (typeof key !== 'string' || key === '') return 'the key is empty';
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) return `the key is longer than ${MAX_KEY_BYTES} bytes`;
  if (key.includes('\u0000')) return 'the key contains NUL';
  if (key.startsWith('/')) return 'the key starts with "/"';
  if (key.endsWith('/')) return 'the key ends with "/" (a folder marker cannot be a file here)';
  for (const segment of key.split('/')) {
    if (segment === '') return 'the key has an empty path segment ("//")';
    if (segment === '.' || segment === '..') return `the key has a "${segment}" path segment`;
    if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES) return `a path segment is longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return undefined;
}

/** S3 bucket naming rules (3–63 characters: lower-case letters, digits, "." and "-"). */
export function bucketNameProblem(bucket: string): string | undefined {
  if (typeof bucket !== 'string' || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    return 'must be 3–63 characters of lower-case letters, digits, "." and "-", starting and ending with a letter or digit';
  }
  if (bucket.includes('..')) return 'must not contain ".."';
  return undefined;
}

/**
 * After `fs.promises.mkdir(dir, { recursive: true })` answered `firstMade` (the top folder it made, undefined when
 * none): syncs each made folder's entry into its parent, or a power cut could lose the way to what is inside.
 */
export async function syncFoldersMade(dir: string, firstMade: string | undefined): Promise<void> {
  for (let made = dir; firstMade !== undefined; made = path.dirname(made)) {
    await syncDirectory(path.dirname(made));
    if (made === firstMade) break;
  }
}
