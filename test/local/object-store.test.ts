/**
 * The twin's S3 on a real temp directory: keys map to files exactly, writes are atomic, keys that
 * would leave the bucket are refused, and disk errors surface as they are, leaving nothing behind.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { S3Event } from 'aws-lambda';
import fc from 'fast-check';
import {
  InvalidObjectKeyError,
  NoSuchKeyError,
  ObjectStore,
  objectKeyProblem,
  PreconditionFailedError,
  type ObjectCreatedEvent,
} from '../../lib/local/object-store';
import { createFailureRouter, type DlqMessage } from '../../transforms/failure-router/handler';
import { quietTelemetry } from '../transforms/helpers';
import { eio, fileHandlePrototype } from '../file-handle';

let dataDir: string;
let store: ObjectStore;

beforeEach(async () => {
  dataDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sluice-s3-'));
  store = new ObjectStore(dataDir);
});

afterEach(async () => {
  jest.restoreAllMocks();
  await fs.promises.rm(dataDir, { recursive: true, force: true });
});

/** Every file under a directory, relative, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.promises.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort();
}

describe('ObjectStore', () => {
  it('stores objects at <dataDir>/s3/<bucket>/<key> and reads them back', async () => {
    await store.putObject('lake', 'data/clickstream/event_type=click/part-1.parquet', Buffer.from('PAR1'));
    await store.putObject('lake', 'errors/x.json', '{"a":1}\n');
    expect(await fs.promises.readFile(path.join(dataDir, 's3/lake/data/clickstream/event_type=click/part-1.parquet'), 'utf8')).toBe('PAR1');
    expect((await store.getObject('lake', 'errors/x.json')).toString()).toBe('{"a":1}\n');
    await expect(store.getObject('lake', 'errors/missing.json')).rejects.toThrow(NoSuchKeyError);
  });

  it('streams an object in chunks; a missing key or a folder is NoSuchKey, as getObject says', async () => {
    const body = Buffer.alloc(200_000, 'x');
    await store.putObject('lake', 'errors/big.json', body);
    const chunks: Buffer[] = [];
    for await (const chunk of (await store.getObjectStream('lake', 'errors/big.json')).body) chunks.push(chunk as Buffer);
    expect(chunks.length).toBeGreaterThan(1);
    expect(Buffer.concat(chunks).equals(body)).toBe(true);
    await expect(store.getObjectStream('lake', 'errors/missing.json')).rejects.toThrow(NoSuchKeyError);
    await expect(store.getObjectStream('lake', 'errors')).rejects.toThrow(NoSuchKeyError);
    await expect(store.getObject('lake', 'errors')).rejects.toThrow(NoSuchKeyError);
  });

  it('gives each stream the ETag of the object it reads; If-Match another ETag is PreconditionFailed, as in S3', async () => {
    await store.putObject('lake', 'errors/e.json', 'one\n');
    const first = await store.getObjectStream('lake', 'errors/e.json');
    first.body.destroy();
    expect(first.etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/);
    const same = await store.getObjectStream('lake', 'errors/e.json', { ifMatch: first.etag });
    same.body.destroy();
    expect(same.etag).toBe(first.etag);
    // Replaced, even by the same bytes: another object, another ETag.
    await store.putObject('lake', 'errors/e.json', 'one\n');
    const error = await store.getObjectStream('lake', 'errors/e.json', { ifMatch: first.etag }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PreconditionFailedError);
    expect(error).toMatchObject({ code: 'PreconditionFailed', message: expect.stringMatching(/^s3:\/\/lake\/errors\/e\.json: its ETag is "[^"]+", not "[^"]+" \(PreconditionFailed\)$/) });
    const now = await store.getObjectStream('lake', 'errors/e.json');
    now.body.destroy();
    expect(now.etag).not.toBe(first.etag);
    await expect(store.getObjectStream('lake', 'errors/missing.json', { ifMatch: first.etag })).rejects.toThrow(NoSuchKeyError);
  });

  it('the failure router on the twin\'s S3: a gzip error object replaced between its two reads fails the event with nothing sent; the retry routes the new one', async () => {
    const bucket = 'sluice-dev-lake';
    const key = 'search-backup/iot/AmazonOpenSearchService-failed/2026/11/22/13/replaced.gz';
    const object = (label: string, lines: number) => gzipSync(Buffer.from(Array.from({ length: lines }, (_, i) =>
      JSON.stringify({ attemptsMade: 1, arrivalTimestamp: i, errorCode: '400', errorMessage: label, rawData: Buffer.from(`{"n":${i}}`).toString('base64') })).join('\n')));
    await store.putObject(bucket, key, object('old', 2));
    let reads = 0;
    const sent: DlqMessage[] = [];
    const router = (replaceAfterFirstRead: boolean) => createFailureRouter({
      async readObject(b, k, pin) {
        const got = await store.readObject(b, k, pin);
        // Firehose (or a person) writes the key again while the router checks the old object's gzip data.
        if (replaceAfterFirstRead && ++reads === 1) await store.putObject(bucket, key, object('new', 3));
        return got;
      },
      send: async (messages) => {
        sent.push(...messages);
        return { failedIds: [] };
      },
      alreadySent: async () => new Set(),
      markSent: async () => undefined,
      ...quietTelemetry(),
    });
    const event: S3Event = { Records: [{ eventName: 'ObjectCreated:Put', s3: { bucket: { name: bucket }, object: { key } } } as S3Event['Records'][number]] };
    await expect(router(true)(event)).rejects.toThrow(/failed, so none of it was sent \(ObjectChangedError: it changed after its gzip data was checked \(S3 answered PreconditionFailed to If-Match "[^"]+"\)/);
    expect(sent).toEqual([]);
    expect(await router(false)(event)).toEqual({ sent: 3, duplicates: 0, pointers: 0, unreadableLines: 0, damagedObjects: 0 });
    expect(sent.map((m) => m.errorMessage)).toEqual(['new', 'new', 'new']);
  });

  it('lists by prefix in S3 key order, without temp files', async () => {
    for (const key of ['b/2', 'a/1', 'a/10', 'a/1x/y', 'ab', 'a/é', 'a/Z']) await store.putObject('lake', key, key);
    expect((await store.listObjects('lake')).map((o) => o.key)).toEqual(['a/1', 'a/10', 'a/1x/y', 'a/Z', 'a/é', 'ab', 'b/2']);
    expect((await store.listObjects('lake', 'a/1')).map((o) => o.key)).toEqual(['a/1', 'a/10', 'a/1x/y']);
    expect((await store.listObjects('lake', 'a/')).map((o) => o.key)).toEqual(['a/1', 'a/10', 'a/1x/y', 'a/Z', 'a/é']);
    expect((await store.listObjects('lake', 'a')).map((o) => o.key)).toEqual(['a/1', 'a/10', 'a/1x/y', 'a/Z', 'a/é', 'ab']);
    expect((await store.listObjects('lake', 'a/1x/')).map((o) => o.key)).toEqual(['a/1x/y']);
    expect(await store.listObjects('lake', 'nothing/')).toEqual([]);
    expect(await store.listObjects('empty-bucket')).toEqual([]);
    const [first] = await store.listObjects('lake', 'a/1');
    expect(first.size).toBe(3);
    expect(await filesUnder(path.join(dataDir, 's3', '.tmp'))).toEqual([]);
  });

  it('emits objectCreated after each put, and a throwing subscriber does not fail the put', async () => {
    const events: ObjectCreatedEvent[] = [];
    store.on('objectCreated', (e) => events.push(e));
    store.on('objectCreated', () => {
      throw new Error('subscriber bug');
    });
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    await store.putObject('lake', 'errors/a', 'abc');
    const temp = await store.newTempFile('.parquet');
    await fs.promises.writeFile(temp, 'PAR1PAR1');
    await store.putObjectFromFile('lake', 'data/b.parquet', temp);
    expect(events).toEqual([{ bucket: 'lake', key: 'errors/a', size: 3 }, { bucket: 'lake', key: 'data/b.parquet', size: 8 }]);
    expect(fs.existsSync(temp)).toBe(false);
    expect(warn).toHaveBeenCalled();
  });

  it('replaces an object atomically: a reader sees the old or the new body, never a mix', async () => {
    await store.putObject('lake', 'k', 'old');
    const file = store.pathFor('lake', 'k');
    const before = fs.statSync(file).ino;
    await store.putObject('lake', 'k', 'new-body');
    expect(fs.readFileSync(file, 'utf8')).toBe('new-body');
    // A rename, not an in-place rewrite.
    expect(fs.statSync(file).ino).not.toBe(before);
  });

  it('says clearly that a key cannot also be the folder of another key (a file-system limit)', async () => {
    await store.putObject('lake', 'a/1', 'x');
    await expect(store.putObject('lake', 'a/1/x', 'y')).rejects.toThrow(/cannot also be the folder of another key/);
    await store.putObject('lake', 'b/1/x', 'y');
    await expect(store.putObject('lake', 'b/1', 'x')).rejects.toThrow(InvalidObjectKeyError);
  });

  it.each([
    ['a parent traversal', '../outside', /"\.\." path segment/],
    ['a nested traversal', 'a/../../outside', /"\.\." path segment/],
    ['an absolute path', '/etc/passwd', /starts with "\/"/],
    ['an empty segment', 'a//b', /empty path segment/],
    ['an empty key', '', /empty/],
    ['a folder marker', 'folder/', /ends with "\/"/],
    ['NUL', 'nul\u0000', /NUL/],
    ['a dot segment', './x', /"\." path segment/],
    ['1025 bytes', 'k'.repeat(1025), /longer than 1024 bytes/],
    ['a 256-byte segment', `${'s'.repeat(256)}/x`, /longer than 255 bytes/],
  ])('refuses a key with %s and writes nothing', async (_label, key, message) => {
    await expect(store.putObject('lake', key, 'x')).rejects.toThrow(InvalidObjectKeyError);
    await expect(store.putObject('lake', key, 'x')).rejects.toThrow(message);
    expect(await filesUnder(dataDir)).toEqual([]);
  });

  it('refuses bad bucket names', async () => {
    for (const bucket of ['..', 'a', 'UPPER', 'a/b', '.tmp', 'x'.repeat(64), 'a..b']) {
      await expect(store.putObject(bucket, 'k', 'x')).rejects.toThrow(/bucket name/);
    }
  });

  it('refuses a write through a symlink planted inside the bucket', async () => {
    const outside = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sluice-outside-'));
    try {
      await fs.promises.mkdir(path.join(dataDir, 's3', 'lake'), { recursive: true });
      await fs.promises.symlink(outside, path.join(dataDir, 's3', 'lake', 'link'));
      await expect(store.putObject('lake', 'link/escaped', 'x')).rejects.toThrow(/outside the bucket/);
      expect(await filesUnder(outside)).toEqual([]);
    } finally {
      await fs.promises.rm(outside, { recursive: true, force: true });
    }
  });

  it('surfaces a disk error as it is and leaves no object or temp file behind; the same put then succeeds', async () => {
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, rename'), { code: 'ENOSPC' });
    jest.spyOn(fs.promises, 'rename').mockRejectedValueOnce(enospc);
    const error = await store.putObject('lake', 'data/x', 'body').catch((e: unknown) => e);
    expect(error).toBe(enospc);
    expect(await filesUnder(dataDir)).toEqual([]);
    await store.putObject('lake', 'data/x', 'body');
    expect((await store.getObject('lake', 'data/x')).toString()).toBe('body');
  });

  it('a folder sync that fails after the rename leaves the put done, said in a warning: no second copy from a retry, no jam', async () => {
    const realOpen = fs.promises.open;
    const failure = eio('open');
    // Only the open of a folder to sync it fails (files are opened with other flags or by path with a suffix).
    jest.spyOn(fs.promises, 'open').mockImplementation(async (...args: Parameters<typeof realOpen>) => {
      if (args[1] === 'r' && fs.statSync(args[0] as string).isDirectory()) throw failure;
      return realOpen(...args);
    });
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const temp = await store.newTempFile('.parquet');
    await fs.promises.writeFile(temp, 'PAR1PAR1');
    await expect(store.putObjectFromFile('lake', 'data/b.parquet', temp)).resolves.toEqual({ bucket: 'lake', key: 'data/b.parquet', size: 8 });
    await expect(store.putObject('lake', 'errors/a', 'abc')).resolves.toEqual({ bucket: 'lake', key: 'errors/a', size: 3 });
    expect(warn.mock.calls.map(([message]) => message)).toEqual([
      's3://lake/data/b.parquet is written, but its folder could not be synced to disk (EIO: i/o error, open); a power cut now could lose it',
      's3://lake/errors/a is written, but its folder could not be synced to disk (EIO: i/o error, open); a power cut now could lose it',
    ]);
    expect(await filesUnder(dataDir)).toEqual([path.join('s3', 'lake', 'data', 'b.parquet'), path.join('s3', 'lake', 'errors', 'a')]);
  });

  it('syncs the folders a put makes into their parents, so that a power cut cannot lose the way to the object', async () => {
    const realOpen = fs.promises.open;
    const synced: string[] = [];
    jest.spyOn(fs.promises, 'open').mockImplementation(async (...args: Parameters<typeof realOpen>) => {
      if (args[1] === 'r' && fs.statSync(args[0] as string).isDirectory()) synced.push(path.relative(dataDir, args[0] as string));
      return realOpen(...args);
    });
    await store.putObject('lake', 'data/p=1/q=2/x', 'one');
    expect(synced).toEqual(['s3/lake/data/p=1/q=2', 's3/lake/data/p=1', 's3/lake/data', 's3/lake', 's3'].map((d) => d.split('/').join(path.sep)));
    synced.length = 0;
    await store.putObject('lake', 'data/p=1/q=2/y', 'two');
    expect(synced).toEqual([['s3', 'lake', 'data', 'p=1', 'q=2'].join(path.sep)]);
  });

  it('a failed fsync of the written file fails the put and leaves no object behind', async () => {
    const sync = jest.spyOn(await fileHandlePrototype(dataDir), 'sync').mockRejectedValueOnce(eio('fsync'));
    await expect(store.putObject('lake', 'data/x', 'body')).rejects.toMatchObject({ code: 'EIO' });
    expect(sync).toHaveBeenCalledTimes(1);
    expect(await store.listObjects('lake')).toEqual([]);
    expect(await filesUnder(dataDir)).toEqual([]);

    // A file DuckDB wrote is left where it was, for the retry.
    const source = path.join(dataDir, 'part.parquet');
    await fs.promises.writeFile(source, 'rows');
    sync.mockRejectedValueOnce(eio('fsync'));
    await expect(store.putObjectFromFile('lake', 'data/y', source)).rejects.toMatchObject({ code: 'EIO' });
    expect(await store.listObjects('lake')).toEqual([]);
    expect(await fs.promises.readFile(source, 'utf8')).toBe('rows');
  });

  it("fsyncs the object's directory once the object is renamed into it", async () => {
    const opened = new Map<fs.promises.FileHandle, string>();
    const open = fs.promises.open;
    jest.spyOn(fs.promises, 'open').mockImplementation(async (...args: Parameters<typeof open>) => {
      const handle = await open(...args);
      opened.set(handle, String(args[0]));
      return handle;
    });
    const prototype = await fileHandlePrototype(dataDir);
    const sync = prototype.sync;
    const target = store.pathFor('lake', 'data/year=2026/x');
    const synced: Array<{ file: string | undefined; objectThere: boolean }> = [];
    jest.spyOn(prototype, 'sync').mockImplementation(function (this: fs.promises.FileHandle) {
      synced.push({ file: opened.get(this), objectThere: fs.existsSync(target) });
      return sync.call(this);
    });
    await store.putObject('lake', 'data/year=2026/x', 'body');
    expect(synced).toContainEqual({ file: path.dirname(target), objectThere: true });
  });

  it('a segment that only starts with two dots is a name, not the parent directory', () => {
    const bucketDir = store.bucketPath('lake');
    for (const key of ['.. /%2F', '..a/b', 'x/...', '.. ']) {
      expect(objectKeyProblem(key)).toBeUndefined();
      expect(path.relative(bucketDir, store.pathFor('lake', key)).split(path.sep).join('/')).toBe(key);
    }
  });

  it('maps any key it accepts to a file inside the bucket (property)', () => {
    const bucketDir = store.bucketPath('lake');
    const segment = fc.oneof(fc.constantFrom('..', '.', '', '%2F', '\\', '\u0000', 'a'), fc.string({ maxLength: 20 }));
    fc.assert(fc.property(fc.array(segment, { minLength: 1, maxLength: 8 }).map((s) => s.join('/')), (key) => {
      if (objectKeyProblem(key) !== undefined) {
        expect(() => store.pathFor('lake', key)).toThrow(InvalidObjectKeyError);
        return;
      }
      const file = store.pathFor('lake', key);
      expect(file.startsWith(bucketDir + path.sep)).toBe(true);
      expect(path.relative(bucketDir, file).split(path.sep).join('/')).toBe(key);
    }), { numRuns: 2000 });
  });
});
