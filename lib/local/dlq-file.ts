/**
 * The local twin's stand-in for an SQS queue: `<data-dir>/dlq/<queue>.jsonl`, one message body per
 * line (DESIGN.md "The local twin"). No SQS emulator speaks today's SQS JSON protocol, so the twin's
 * failure router and event source mapping append here and `sluice replay` receives and deletes here.
 *
 * Files of one queue, all in `<data-dir>/dlq/`:
 * - `<queue>.jsonl`   the messages, exactly one body per line, in send order. Users may read it.
 * - `<queue>.deleted` the delete ledger: a header naming the data file's identity (device and inode),
 *                     then one `<line> <hash>` entry per deleted message. The file is only appended to,
 *                     so a delete survives a crash once `delete()` returns.
 * - `<queue>.dedupe`  claimed dedupe keys, one JSON string per line, appended to; rewritten only to drop the keys of
 *                     error objects wholly routed (below).
 * - `<queue>.routed`  the failure router's error objects wholly routed: one JSON line per object and version, appended
 *                     once its messages and their dedupe keys are on disk, so a start reads only the objects not in it.
 * - `<queue>.lock`    present only while an operation runs; it holds the owner's pid and a token on its first
 *                     line, and on Linux when that process started (as twin.pid does) on a second, so a pid
 *                     given to another process since (a container restarted) does not hold it.
 *
 * Why the ledger instead of rewriting the data file on every delete: an append is atomic and cheap,
 * a rewrite is neither. Deleted lines are dropped by compaction (an atomic rewrite), only when no
 * message received here is still in flight and most lines are deleted. A ledger entry applies only
 * if the data file is the one its header names AND the line still hashes the same, so a crash in the
 * middle of a compaction (new data file in place, old ledger still there) or a hand-edited file can
 * at worst bring deleted messages back (a duplicate), never hide a message that was not deleted.
 *
 * The dedupe keys of an object marked routed are no longer looked up (the start does not read the object again): once
 * enough of them pile up, the dedupe file is rewritten without them (an atomic rewrite), then the markers are
 * rewritten to say so. A crash between the two leaves markers whose keys are gone already: dropping them again is a
 * no-op. Keys of objects not marked (a crash after their messages, before their marker) stay, and make routing them
 * again send nothing twice. A data dir written before markers existed has keys and no markers: its objects are routed
 * as before (every message skipped by its key), then marked.
 *
 * Operations are serialized per file within a process (every DlqFile on the same path shares one
 * queue) and across processes by the lock file, so the twin appending and `sluice replay` deleting
 * at the same time never interleave partial lines or lose an append to a compaction.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { dedupeKeyOf } from '../../transforms/failure-router/dedupe-key';
import { syncDirectory, writeFileAtomic } from './atomic-file';
import { dlqPath } from './paths';
import { linkOrCreate } from './pid-lock';
import { holderRuns, ownProcessStart, pidLockContent, pidLockHolder, type PidLockHolder } from './process-alive';

export interface DlqFileOptions {
  /** The twin's data dir; the queue lives in `<dataDir>/dlq/`. */
  readonly dataDir: string;
  /** Queue name, as SQS allows it: 1–80 of `A-Z a-z 0-9 - _`, optionally ending in `.fifo`. */
  readonly queue: string;
  /**
   * How long a received message stays hidden from further receives, as SQS's visibility timeout.
   * Kept in memory: a restart makes every undeleted message visible again. @default 30
   */
  readonly visibilityTimeoutSeconds?: number;
  /** Compact once at least this many lines are deleted and they are at least half the file. @default 1000 */
  readonly compactAfterDeleted?: number;
  /** How long an operation waits for another process's lock before failing. @default 10_000 */
  readonly lockTimeoutMs?: number;
  /**
   * Rewrite the dedupe file without the keys of error objects marked routed once at least this many may be dropped and
   * they are at least an eighth of its keys (DEDUPE_COMPACTION_SHARE). @default 1000
   */
  readonly compactDedupeAfter?: number;
}

/** How routedVersions() names an error object. */
export function routedObjectName(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/** An error object whose every line the failure router sent (its messages and their dedupe keys on disk). */
export interface RoutedObject {
  readonly bucket: string;
  readonly key: string;
  /** The version read, as its dedupe keys name it (dedupeKeyOf): the twin's ETag without its quotes. */
  readonly version: string;
  /** Its last line: its dedupe keys are among those of lines 1 to this one. */
  readonly lines: number;
}

export interface DlqMessage {
  /** Opaque; pass it to `delete()`. Valid until the file is compacted or rewritten. */
  readonly receiptHandle: string;
  /** The message body, exactly as sent. */
  readonly body: string;
  /** 1-based line of the body in `<queue>.jsonl` (as `sed -n '<line>p'` shows it). */
  readonly line: number;
}

export interface DlqDeleteResult {
  /** Messages this call deleted. */
  readonly deleted: number;
  /**
   * Handles that named no current message: already deleted, or issued before the file was compacted, replaced
   * or written anew in place (its line now another message). Like SQS, a stale handle is not an error; the message (if any) stays and shows up again.
   */
  readonly unknown: string[];
}

/** The largest message body a queue may be set to take (SQS's MaximumMessageSize up to 1 MiB; Sluice's own queues take 256 KiB). */
export const DLQ_MAX_BODY_BYTES = 1_048_576;
/** SQS's ReceiveMessage MaxNumberOfMessages range is 1–10. */
export const DLQ_MAX_RECEIVE = 10;

const QUEUE_NAME = /^[A-Za-z0-9_-]{1,75}(\.fifo)?$|^[A-Za-z0-9_-]{1,80}$/;

/** Whether `name` is one SQS takes for a queue, as a DlqFile's queue must be. */
export function isQueueName(name: string): boolean {
  return QUEUE_NAME.test(name);
}
const LEDGER_VERSION = 1;
const NEWLINE = 0x0a;
const NEWLINE_BYTES = Buffer.from('\n');
/**
 * A dedupe compaction rewrites the file once the keys it drops are at least 1/this of it, so a rewrite costs at most this
 * many lines per key dropped. Not a half: `sluice replay`'s ledger, two keys per message replayed, stays in the file for
 * good, and a user who replays what the router sends never has half the file droppable: the keys would pile up for ever.
 */
const DEDUPE_COMPACTION_SHARE = 8;
/** Lines read per slice when walking the whole queue. */
const READ_SLICE_LINES = 1000;

/**
 * One line of the data file: where it is and what it hashes to. The body stays on disk (read back by
 * receive() and compaction): a twin that fails records for hours must not hold every message in memory.
 */
interface Line {
  /** Byte offset of the line in the data file, and its length without the newline. */
  readonly offset: number;
  readonly length: number;
  readonly hash: string;
}

/** A file read a piece at a time: its identity when last read (undefined: there was none), and the bytes of complete lines read. */
class FileRead {
  id: string | undefined;
  bytes = 0;
}

/** What one process knows of a queue's files; shared by every DlqFile on the same path. */
class QueueState {
  /** Serializes this process's operations on the queue. */
  tail: Promise<unknown> = Promise.resolve();
  // The data file as last read, and its lines.
  dataFile = new FileRead();
  lines: Line[] = [];
  // The ledger as last read; `ledgerFor` is the data identity its header names.
  ledgerFile = new FileRead();
  ledgerFor: string | undefined;
  ledgerEntries: Array<{ line: number; hash: string }> = [];
  // The dedupe set as last read.
  dedupeFile = new FileRead();
  dedupeKeys = new Set<string>();
  // The routed markers as last read: the last one of each object (by objectName), and the markers whose keys may still
  // be in the dedupe file (with the count of those keys).
  routedFile = new FileRead();
  routed = new Map<string, RoutedObject>();
  routedKeysKept: RoutedObject[] = [];
  routedKeysKeptCount = 0;
  /** Markers given to markRouted and not yet written, and the operation that writes them (one append, one fsync). */
  markersToWrite: RoutedObject[] = [];
  markersWritten: Promise<void> | undefined;
  /**
   * Lines received here and not deleted, with the time they become visible again: on the monotonic clock, as every time
   * here (a wall clock set back an hour would hide them, and hold a lock wait, for that hour more).
   */
  inFlight = new Map<number, number>();
}

const queues = new Map<string, QueueState>();

export class DlqFile {
  /** `<dataDir>/dlq/<queue>.jsonl` */
  readonly path: string;
  readonly deletedPath: string;
  readonly dedupePath: string;
  readonly routedPath: string;
  readonly lockPath: string;
  private readonly visibilityMs: number;
  private readonly compactAfterDeleted: number;
  private readonly lockTimeoutMs: number;
  private readonly compactDedupeAfter: number;
  private readonly state: QueueState;

  constructor(options: DlqFileOptions) {
    if (!isQueueName(options.queue)) {
      throw new Error(
        `DLQ queue name "${options.queue}" is not a valid SQS queue name: use 1–80 characters of A-Z, a-z, 0-9, "-" and "_" (a FIFO queue ends in ".fifo").`,
      );
    }
    const visibility = options.visibilityTimeoutSeconds ?? 30;
    if (!Number.isFinite(visibility) || visibility < 0 || visibility > 43_200) {
      throw new Error(`visibilityTimeoutSeconds must be 0–43,200 (SQS's range), got ${visibility}.`);
    }
    this.visibilityMs = visibility * 1000;
    this.compactAfterDeleted = Math.max(1, options.compactAfterDeleted ?? 1000);
    this.lockTimeoutMs = options.lockTimeoutMs ?? 10_000;
    this.compactDedupeAfter = Math.max(1, options.compactDedupeAfter ?? 1000);
    this.path = path.resolve(dlqPath(options.dataDir, options.queue));
    const stem = this.path.slice(0, -'.jsonl'.length);
    this.deletedPath = `${stem}.deleted`;
    this.dedupePath = `${stem}.dedupe`;
    this.routedPath = `${stem}.routed`;
    this.lockPath = `${stem}.lock`;
    let state = queues.get(this.path);
    if (!state) {
      state = new QueueState();
      queues.set(this.path, state);
    }
    this.state = state;
  }

  /** Appends the bodies, in order, and returns once they are on disk (fsync). */
  async send(bodies: readonly string[]): Promise<void> {
    bodies.forEach((body, index) => assertValidBody(body, index));
    if (bodies.length === 0) return;
    await this.exclusive(async () => {
      await this.refreshData();
      await this.appendData(bodies);
    });
  }

  /**
   * Sends each message unless its dedupe key was claimed before, and claims the keys: the bodies
   * whose key was never claimed are appended in one write, then their keys in another (so a crash in
   * between repeats, never loses, a message, as claim-then-send could). Answers how many were sent;
   * a key repeated within the call is sent once.
   */
  async sendOnceEach(messages: ReadonlyArray<{ readonly dedupeKey: string; readonly body: string }>): Promise<number> {
    messages.forEach((m, index) => {
      assertValidDedupeKey(m.dedupeKey);
      assertValidBody(m.body, index);
    });
    if (messages.length === 0) return 0;
    return this.exclusive(async () => {
      await this.refreshDedupe();
      const fresh = new Map<string, string>();
      for (const m of messages) if (!this.state.dedupeKeys.has(m.dedupeKey) && !fresh.has(m.dedupeKey)) fresh.set(m.dedupeKey, m.body);
      if (fresh.size === 0) return 0;
      await this.refreshData();
      await this.appendData([...fresh.values()]);
      await this.appendDedupe(...fresh.keys());
      return fresh.size;
    });
  }

  /** Claims a dedupe key persistently: true the first time it is claimed, false ever after. */
  async claim(dedupeKey: string): Promise<boolean> {
    assertValidDedupeKey(dedupeKey);
    return this.exclusive(async () => {
      await this.refreshDedupe();
      if (this.state.dedupeKeys.has(dedupeKey)) return false;
      await this.appendDedupe(dedupeKey);
      return true;
    });
  }

  /** Claims dedupe keys persistently, in one write: on disk (fsync) when this returns. Keys claimed before are left as they are. */
  async claimAll(dedupeKeys: readonly string[]): Promise<void> {
    dedupeKeys.forEach(assertValidDedupeKey);
    await this.exclusive(async () => {
      await this.refreshDedupe();
      const fresh = [...new Set(dedupeKeys)].filter((k) => !this.state.dedupeKeys.has(k));
      if (fresh.length > 0) await this.appendDedupe(...fresh);
    });
  }

  async hasDedupeKey(dedupeKey: string): Promise<boolean> {
    return this.exclusive(async () => {
      await this.refreshDedupe();
      return this.state.dedupeKeys.has(dedupeKey);
    });
  }

  /** The dedupe keys that start with `prefix`. */
  async dedupeKeysStartingWith(prefix: string): Promise<string[]> {
    return this.exclusive(async () => {
      await this.refreshDedupe();
      return [...this.state.dedupeKeys].filter((k) => k.startsWith(prefix));
    });
  }

  /** The version last marked routed of each error object, by `s3://<bucket>/<key>`. */
  async routedVersions(): Promise<ReadonlyMap<string, string>> {
    // No markers file: nothing marked, and asking makes no dlq/ folder (a start that routes nothing leaves none).
    if ((await stat(this.routedPath).catch(() => undefined)) === undefined) return new Map();
    return this.exclusive(async () => {
      await this.refreshRouted();
      return new Map([...this.state.routed].map(([name, object]) => [name, object.version]));
    });
  }

  /**
   * Marks an error object wholly routed, on disk (fsync) when this returns. Call it only once every message of the object
   * was sent (sendOnceEach returned): a start then no longer reads the object, and its dedupe keys can go, which this does
   * once enough of them may (compactDedupeAfter).
   */
  async markRouted(object: RoutedObject): Promise<void> {
    assertValidRoutedObject(object);
    const s = this.state;
    s.markersToWrite.push(object);
    // Markers given while an earlier operation runs are written together: a start marks thousands of objects at once.
    if (s.markersWritten) return s.markersWritten;
    const written = this.exclusive(async () => {
      const markers = s.markersToWrite;
      s.markersToWrite = [];
      s.markersWritten = undefined;
      await this.refreshRouted();
      const created = this.state.routedFile.id === undefined;
      await appendDurably(this.routedPath, this.state.routedFile.bytes, markers.map((marker) => routedLine(marker, false)).join(''));
      if (created) await syncDirectory(path.dirname(this.routedPath));
      await this.refreshRouted();
      await this.refreshDedupe();
      const droppable = this.state.routedKeysKeptCount;
      if (droppable >= this.compactDedupeAfter && droppable * DEDUPE_COMPACTION_SHARE >= this.state.dedupeKeys.size) {
        // The markers are on disk: a compaction that fails (a full disk cannot hold the rewrite) keeps every key, and the
        // next marker tries again. Failing the mark would have the caller route the object again and call it unrouted.
        await this.compactDedupeLocked().catch(() => undefined);
      }
    });
    s.markersWritten = written;
    // Failed before it took its markers (the lock not had): they go with the next call's.
    written.catch(() => {
      if (s.markersWritten === written) s.markersWritten = undefined;
    });
    return written;
  }

  /** Rewrites the dedupe file without the keys of the error objects marked routed; every other key stays. */
  async compactDedupe(): Promise<void> {
    await this.exclusive(async () => {
      await this.refreshRouted();
      await this.refreshDedupe();
      await this.compactDedupeLocked();
    });
  }

  /**
   * Up to `max` (1–10, as SQS) visible messages, oldest first. Each stays hidden from further receives
   * in this process for the visibility timeout, or until it is deleted.
   */
  async receive(max: number = DLQ_MAX_RECEIVE): Promise<DlqMessage[]> {
    if (!Number.isInteger(max) || max < 1 || max > DLQ_MAX_RECEIVE) {
      throw new Error(`receive(max): max must be an integer 1–${DLQ_MAX_RECEIVE} (SQS's MaxNumberOfMessages), got ${max}.`);
    }
    return this.exclusive(async () => {
      await this.refreshAll();
      const now = performance.now();
      const deleted = this.deletedLines();
      const chosen: number[] = [];
      for (let index = 0; index < this.state.lines.length && chosen.length < max; index++) {
        const line = index + 1;
        if (deleted.has(line)) continue;
        const visibleAt = this.state.inFlight.get(line);
        if (visibleAt !== undefined && visibleAt > now) continue;
        chosen.push(line);
      }
      const bodies = await readSpans(this.path, chosen.map((line) => this.state.lines[line - 1]));
      return chosen.map((line, i) => {
        this.state.inFlight.set(line, now + this.visibilityMs);
        return { receiptHandle: receiptHandle(this.state.dataFile.id as string, line, this.state.lines[line - 1].hash), body: bodies[i].toString('utf8'), line };
      });
    });
  }

  /** Deletes received messages; the deletion is on disk when this returns. */
  async delete(receiptHandles: readonly string[]): Promise<DlqDeleteResult> {
    return this.exclusive(async () => {
      await this.refreshAll();
      const deleted = this.deletedLines();
      const entries: Array<{ line: number; hash: string }> = [];
      const unknown: string[] = [];
      for (const handle of receiptHandles) {
        const parsed = parseReceiptHandle(handle);
        const line = parsed && parsed.dataId === this.state.dataFile.id ? parsed.line : undefined;
        if (line === undefined || line < 1 || line > this.state.lines.length || deleted.has(line) || this.state.lines[line - 1].hash !== parsed?.hash) {
          unknown.push(handle);
          continue;
        }
        deleted.add(line);
        entries.push({ line, hash: this.state.lines[line - 1].hash });
        this.state.inFlight.delete(line);
      }
      if (entries.length > 0) await this.appendLedger(entries);
      if (this.compactionIsSafe(deleted.size)) await this.compactLocked();
      return { deleted: entries.length, unknown };
    });
  }

  /** Messages not deleted (visible or in flight), as SQS's ApproximateNumberOfMessages plus NotVisible. */
  async count(): Promise<number> {
    return this.exclusive(async () => {
      await this.refreshAll();
      return this.state.lines.length - this.deletedLines().size;
    });
  }

  /**
   * Calls `visit` with the body of every message not deleted (visible or in flight), oldest first,
   * without receiving them: nothing is hidden. Reads a slice at a time, so a long queue never sits in memory.
   */
  async forEachBody(visit: (body: string) => void): Promise<void> {
    await this.exclusive(async () => {
      await this.refreshAll();
      const deleted = this.deletedLines();
      const kept = this.state.lines.filter((_, index) => !deleted.has(index + 1));
      for (let start = 0; start < kept.length; start += READ_SLICE_LINES) {
        for (const body of await readSpans(this.path, kept.slice(start, start + READ_SLICE_LINES))) visit(body.toString('utf8'));
      }
    });
  }

  /**
   * Rewrites the data file without deleted lines and starts a fresh ledger. Receipt handles issued
   * before become unknown, so this runs on its own only when none is in flight here.
   */
  async compact(): Promise<void> {
    await this.exclusive(async () => {
      await this.refreshAll();
      await this.compactLocked();
    });
  }

  // ---- serialization -------------------------------------------------------------------------

  /** Runs `action` after every earlier operation of this process on the queue, holding the lock file. */
  private exclusive<T>(action: () => Promise<T>): Promise<T> {
    const run = this.state.tail.then(async () => {
      await mkdir(path.dirname(this.path), { recursive: true });
      const release = await this.lock();
      try {
        return await action();
      } finally {
        await release();
      }
    });
    this.state.tail = run.catch(() => undefined);
    return run;
  }

  /** Takes `<queue>.lock` (exclusive create), breaking it when the process that holds it is gone. */
  private async lock(): Promise<() => Promise<void>> {
    const deadline = performance.now() + this.lockTimeoutMs;
    const mine = pidLockContent({ pid: process.pid, start: ownProcessStart() }, randomBytes(6).toString('hex'));
    // The lock appears with its holder already in it: written aside, then hard-linked into place, which fails if a lock
    // exists. An exclusive create and then a write left an empty lock, naming no one to wait for, for good, when its
    // process was killed between the two.
    const aside = `${this.lockPath}.${process.pid}.new`;
    for (let wait = 2; ; wait = Math.min(wait * 2, 50)) {
      try {
        await writeFile(aside, mine);
        linkOrCreate(aside, this.lockPath, mine);
        return async () => {
          // Only remove the lock if it is still ours (a stale-lock breaker could have replaced it).
          const current = await readFile(this.lockPath, 'utf8').catch(() => undefined);
          if (current === mine) await rm(this.lockPath, { force: true });
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      } finally {
        await rm(aside, { force: true });
      }
      // Empty: created by its holder an instant ago where hard links are not supported, its content not written yet.
      const content = await readFile(this.lockPath, 'utf8').catch(() => '');
      const holder = pidLockHolder(content);
      if (content !== '' && !lockHolderRuns(holder)) {
        // The holder died mid-operation; appends are single writes and torn tails are repaired on
        // the next append, so its lock can go.
        const again = await readFile(this.lockPath, 'utf8').catch(() => '');
        if (again === content) await rm(this.lockPath, { force: true });
        continue;
      }
      if (performance.now() > deadline) {
        throw new Error(
          `DLQ ${this.path} is locked by process ${holder?.pid ?? 'unknown'} (lock file ${this.lockPath}) for more than ${this.lockTimeoutMs} ms. ` +
            'If no such process is running, delete the lock file.',
        );
      }
      await delay(wait);
    }
  }

  // ---- reading -------------------------------------------------------------------------------

  private async refreshAll(): Promise<void> {
    await this.refreshData();
    await this.refreshLedger();
  }

  /** Brings `lines` up to date with the data file, reading only what was appended when it can. */
  private async refreshData(): Promise<void> {
    const s = this.state;
    const read = s.dataFile;
    let size = await sizeToReadTo(this.path, read, () => {
      // Replaced, or cut short and written anew in place: a line's number may now name another message, which a
      // visibility kept by number would hide for the receive of one it no longer holds.
      s.inFlight.clear();
      s.lines = [];
    });
    if (size === undefined) return;
    let { text, lengths, bytes } = await readCompleteLines(this.path, read.bytes, size);
    if (read.bytes + bytes < size && await this.completeTail(read.bytes + bytes, size)) {
      // A whole message whose newline is missing (the file edited by hand, or a write cut just before its
      // last byte): given its newline rather than cut off by the next append.
      await appendDurably(this.path, size, '\n');
      size += 1;
      ({ text, lengths, bytes } = await readCompleteLines(this.path, read.bytes, size));
    }
    let offset = read.bytes;
    text.forEach((body, i) => {
      s.lines.push({ offset, length: lengths[i], hash: hashOf(body) });
      offset += lengths[i] + 1;
    });
    read.bytes += bytes;
  }

  /** Whether the data file's bytes [from, to), after its last newline, are one JSON object: a message, not a torn write. */
  private async completeTail(from: number, to: number): Promise<boolean> {
    if (to - from > MAX_TAIL_BYTES) return false;
    const [tail] = await readSpans(this.path, [{ offset: from, length: to - from }]);
    try {
      const value: unknown = JSON.parse(tail.toString('utf8'));
      return typeof value === 'object' && value !== null && !Array.isArray(value);
    } catch {
      return false;
    }
  }

  private async refreshLedger(): Promise<void> {
    const s = this.state;
    const text = await readNewLines(this.deletedPath, s.ledgerFile, () => {
      s.ledgerFor = undefined;
      s.ledgerEntries = [];
    });
    for (const line of text) {
      if (s.ledgerFor === undefined) {
        s.ledgerFor = parseLedgerHeader(line) ?? 'unreadable';
        continue;
      }
      const match = /^(\d+) ([0-9a-f]+)$/.exec(line);
      if (match) s.ledgerEntries.push({ line: Number(match[1]), hash: match[2] });
    }
  }

  private async refreshDedupe(): Promise<void> {
    const s = this.state;
    const text = await readNewLines(this.dedupePath, s.dedupeFile, () => {
      s.dedupeKeys = new Set();
    });
    for (const line of text) {
      try {
        const key: unknown = JSON.parse(line);
        if (typeof key === 'string') s.dedupeKeys.add(key);
      } catch {
        // A line that is not a JSON string was not written by claim(); it claims nothing.
      }
    }
  }

  private async refreshRouted(): Promise<void> {
    const s = this.state;
    const text = await readNewLines(this.routedPath, s.routedFile, () => {
      s.routed = new Map();
      s.routedKeysKept = [];
      s.routedKeysKeptCount = 0;
    });
    for (const line of text) {
      const marker = parseRoutedLine(line);
      // A line markRouted did not write marks nothing: its object is read again at the start, as an unmarked one is.
      if (marker === undefined) continue;
      s.routed.set(objectName(marker.object), marker.object);
      if (!marker.keysDropped) {
        s.routedKeysKept.push(marker.object);
        s.routedKeysKeptCount += marker.object.lines;
      }
    }
  }

  /**
   * The dedupe file without the routed objects' keys, in place (fsynced) before the markers are rewritten to say the
   * keys are gone: a crash between the two leaves markers whose keys are dropped again, which drops nothing.
   */
  private async compactDedupeLocked(): Promise<void> {
    const s = this.state;
    if (s.routedKeysKept.length === 0) return;
    const dropped = new Set<string>();
    for (const object of s.routedKeysKept) {
      for (let line = 1; line <= object.lines; line++) dropped.add(dedupeKeyOf(object.bucket, object.key, line, object.version));
    }
    const kept = [...s.dedupeKeys].filter((key) => !dropped.has(key));
    if (s.dedupeFile.id !== undefined && kept.length < s.dedupeKeys.size) {
      await writeFileAtomic(this.dedupePath, kept.map((key) => `${JSON.stringify(key)}\n`).join(''));
      await this.refreshDedupe();
    }
    // One marker per object, its last version: an earlier version's marker has no keys left to drop either.
    await writeFileAtomic(this.routedPath, [...s.routed.values()].map((object) => routedLine(object, true)).join(''));
    await this.refreshRouted();
  }

  /** Lines the ledger deletes: only entries for this data file whose line still has the same content. */
  private deletedLines(): Set<number> {
    const s = this.state;
    const deleted = new Set<number>();
    if (s.ledgerFor === undefined || s.ledgerFor !== s.dataFile.id) return deleted;
    for (const { line, hash } of s.ledgerEntries) {
      if (line >= 1 && line <= s.lines.length && s.lines[line - 1].hash === hash) deleted.add(line);
    }
    return deleted;
  }

  // ---- writing -------------------------------------------------------------------------------

  private async appendData(bodies: readonly string[]): Promise<void> {
    const s = this.state;
    const created = s.dataFile.id === undefined;
    await appendDurably(this.path, s.dataFile.bytes, bodies.map((body) => `${body}\n`).join(''));
    if (created) await syncDirectory(path.dirname(this.path));
    // Re-read: picks up the new file's identity and the appended lines alike.
    await this.refreshData();
  }

  private async appendDedupe(...keys: string[]): Promise<void> {
    const created = this.state.dedupeFile.id === undefined;
    await appendDurably(this.dedupePath, this.state.dedupeFile.bytes, keys.map((key) => `${JSON.stringify(key)}\n`).join(''));
    if (created) await syncDirectory(path.dirname(this.dedupePath));
    await this.refreshDedupe();
  }

  private async appendLedger(entries: ReadonlyArray<{ line: number; hash: string }>): Promise<void> {
    const s = this.state;
    const text = entries.map((e) => `${e.line} ${e.hash}\n`).join('');
    if (s.ledgerFile.id !== undefined && s.ledgerFor === s.dataFile.id) {
      await appendDurably(this.deletedPath, s.ledgerFile.bytes, text);
    } else {
      // No ledger yet, or one left over from a data file that was since replaced: start afresh.
      await writeFileAtomic(this.deletedPath, ledgerHeader(s.dataFile.id as string) + text);
    }
    await this.refreshLedger();
  }

  private compactionIsSafe(deletedCount: number): boolean {
    if (deletedCount === 0) return false;
    const now = performance.now();
    for (const visibleAt of this.state.inFlight.values()) if (visibleAt > now) return false;
    const all = deletedCount === this.state.lines.length;
    return all || (deletedCount >= this.compactAfterDeleted && deletedCount * 2 >= this.state.lines.length);
  }

  /**
   * The new data file is complete and fsynced before it replaces the old one, and its fresh ledger
   * (naming the new file) replaces the old ledger only after that, so every crash point leaves either
   * the old pair, or the new data file with a ledger that no longer applies to it — and the new file
   * already lacks the deleted lines.
   */
  private async compactLocked(): Promise<void> {
    const s = this.state;
    if (s.dataFile.id === undefined) return;
    const deleted = this.deletedLines();
    if (deleted.size === 0) return;
    const kept = await readSpans(this.path, s.lines.filter((_, index) => !deleted.has(index + 1)));
    const dir = path.dirname(this.path);
    const tmp = path.join(dir, `.${path.basename(this.path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      const handle = await open(tmp, 'w');
      let newId: string;
      try {
        await handle.writeFile(Buffer.concat(kept.flatMap((body) => [body, NEWLINE_BYTES])));
        await handle.sync();
        newId = fileId(await handle.stat());
      } finally {
        await handle.close();
      }
      await rename(tmp, this.path);
      await syncDirectory(dir);
      await writeFileAtomic(this.deletedPath, ledgerHeader(newId));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    s.inFlight.clear();
    await this.refreshAll();
  }
}

function assertValidBody(body: unknown, index: number): asserts body is string {
  if (typeof body !== 'string' || body.length === 0) {
    throw new Error(`DLQ message ${index}: a body must be a non-empty string, got ${typeof body === 'string' ? 'an empty string' : typeof body}.`);
  }
  const newline = body.search(/[\r\n]/);
  if (newline !== -1) {
    throw new Error(
      `DLQ message ${index}: the body has a raw line break at character ${newline}; the queue file holds one body per line. ` +
        'Serialize bodies compactly with JSON.stringify(value), which escapes line breaks.',
    );
  }
  const bad = firstCharacterSqsRejects(body);
  if (bad !== undefined) {
    throw new Error(
      `DLQ message ${index}: character ${bad.index} (U+${bad.code.toString(16).toUpperCase().padStart(4, '0')}) is not allowed in an SQS message body. ` +
        'Build bodies with toSqsBody(value), which escapes every character SQS refuses.',
    );
  }
  const bytes = Buffer.byteLength(body, 'utf8');
  if (bytes > DLQ_MAX_BODY_BYTES) {
    throw new Error(`DLQ message ${index}: the body is ${bytes} bytes; SQS takes at most ${DLQ_MAX_BODY_BYTES} (1 MiB).`);
  }
}

function assertValidDedupeKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new Error(`A dedupe key must be a non-empty string, got ${typeof key === 'string' ? 'an empty string' : typeof key}.`);
  }
}

/** SQS accepts #x9 | #xA | #xD | #x20–#xD7FF | #xE000–#xFFFD | #x10000–#x10FFFF; line breaks are refused earlier. */
function firstCharacterSqsRejects(body: string): { index: number; code: number } | undefined {
  for (let index = 0; index < body.length; index++) {
    const code = body.charCodeAt(index);
    if (code >= 0x20 && code < 0xd800) continue;
    if (code === 0x09) continue;
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = body.charCodeAt(index + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        index++;
        continue;
      }
      return { index, code };
    }
    if (code >= 0xe000 && code <= 0xfffd) continue;
    return { index, code };
  }
  return undefined;
}

function assertValidRoutedObject(object: RoutedObject): void {
  const { bucket, key, version, lines } = object;
  if (typeof bucket !== 'string' || bucket === '' || bucket.includes('/') || typeof key !== 'string' || key === '' || typeof version !== 'string' || version === '') {
    throw new Error(`markRouted: an error object is named by a bucket (no "/"), a key and a version, all non-empty; got ${JSON.stringify({ bucket, key, version })}.`);
  }
  if (!Number.isInteger(lines) || lines < 0) throw new Error(`markRouted: lines must be a whole number ≥ 0 (the last line with a message), got ${lines}.`);
}

function objectName(object: Pick<RoutedObject, 'bucket' | 'key'>): string {
  return routedObjectName(object.bucket, object.key);
}

/** A marker line: `keysDropped` once its dedupe keys are gone from the dedupe file. */
function routedLine(object: RoutedObject, keysDropped: boolean): string {
  const { bucket, key, version, lines } = object;
  return `${JSON.stringify(keysDropped ? { bucket, key, version, lines, keysDropped } : { bucket, key, version, lines })}\n`;
}

function parseRoutedLine(line: string): { object: RoutedObject; keysDropped: boolean } | undefined {
  try {
    const value = JSON.parse(line) as Partial<RoutedObject> & { keysDropped?: unknown };
    const { bucket, key, version, lines } = value;
    const object = { bucket, key, version, lines } as RoutedObject;
    assertValidRoutedObject(object);
    return { object, keysDropped: value.keysDropped === true };
  } catch {
    return undefined;
  }
}

function hashOf(body: string): string {
  // Hex of the first 8 bytes, not a slice of the full hex digest: a slice would keep its 64-character parent alive.
  return createHash('sha256').update(body, 'utf8').digest().toString('hex', 0, 8);
}

function fileId(info: Stats): string {
  return `${info.dev}.${info.ino}`;
}

function ledgerHeader(dataId: string): string {
  return `${JSON.stringify({ sluiceDlqLedger: LEDGER_VERSION, data: dataId })}\n`;
}

function parseLedgerHeader(line: string): string | undefined {
  try {
    const header = JSON.parse(line) as { sluiceDlqLedger?: unknown; data?: unknown };
    return header.sluiceDlqLedger === LEDGER_VERSION && typeof header.data === 'string' ? header.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A received message's handle: the data file, the line, and the hash of the line's body, so a handle outlives neither
 * its file (replaced) nor its line's content (the file cut short and written anew in place).
 */
function receiptHandle(dataId: string, line: number, hash: string): string {
  return `${dataId}.${line}.${hash}`;
}

function parseReceiptHandle(handle: string): { dataId: string; line: number; hash: string } | undefined {
  const match = /^(\d+\.\d+)\.(\d+)\.([0-9a-f]{16})$/.exec(handle);
  return match ? { dataId: match[1], line: Number(match[2]), hash: match[3] } : undefined;
}

async function statOrUndefined(file: string): Promise<Stats | undefined> {
  try {
    return await stat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * How far `file` is to be read now: its size, `read` kept when it is the file read before and no shorter, else first
 * `restart` (told whether it is another file or none) drops what was made of the lines read before and `read` goes back
 * to the start. Undefined when there is no file.
 */
async function sizeToReadTo(file: string, read: FileRead, restart: (replaced: boolean) => void): Promise<number | undefined> {
  const info = await statOrUndefined(file);
  const id = info && fileId(info);
  if (!info || id !== read.id || info.size < read.bytes) {
    restart(id !== read.id);
    read.id = id;
    read.bytes = 0;
    if (!info) return undefined;
  }
  return info.size;
}

/** The complete lines written to `file` since `read` last read it, `read` moved past them (see sizeToReadTo). */
async function readNewLines(file: string, read: FileRead, restart: () => void): Promise<string[]> {
  const size = await sizeToReadTo(file, read, restart);
  if (size === undefined) return [];
  const { text, bytes } = await readCompleteLines(file, read.bytes, size);
  read.bytes += bytes;
  return text;
}

/**
 * The complete lines in [from, size) of a file: a trailing fragment without its newline (a write cut
 * short by a crash) is left out and not counted, so the next append truncates it away.
 */
async function readCompleteLines(file: string, from: number, size: number): Promise<{ text: string[]; lengths: number[]; bytes: number }> {
  if (size <= from) return { text: [], lengths: [], bytes: 0 };
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(size - from);
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, from + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    const end = buffer.lastIndexOf(NEWLINE, filled - 1);
    if (end === -1) return { text: [], lengths: [], bytes: 0 };
    // Split the bytes, not the decoded text: a line's length on disk is what receive() reads back.
    const text: string[] = [];
    const lengths: number[] = [];
    for (let start = 0; start <= end;) {
      const stop = buffer.indexOf(NEWLINE, start);
      text.push(buffer.toString('utf8', start, stop));
      lengths.push(stop - start);
      start = stop + 1;
    }
    return { text, lengths, bytes: end + 1 };
  } finally {
    await handle.close();
  }
}

/** The bytes of the given lines of the data file, in the order given. */
async function readSpans(file: string, lines: ReadonlyArray<Pick<Line, 'offset' | 'length'>>): Promise<Buffer[]> {
  if (lines.length === 0) return [];
  const handle = await open(file, 'r');
  try {
    const out: Buffer[] = [];
    for (const { offset, length } of lines) {
      const buffer = Buffer.alloc(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
        if (bytesRead === 0) throw new Error(`${file} is shorter than the line at byte ${offset} it held when last read`);
        filled += bytesRead;
      }
      out.push(buffer);
    }
    return out;
  } finally {
    await handle.close();
  }
}

/**
 * Appends `text` in one write and fsyncs it. `completeBytes` is where the last complete line ends; a
 * torn fragment after it (from a writer that crashed) is cut off first so lines never run together.
 */
async function appendDurably(file: string, completeBytes: number, text: string): Promise<void> {
  const handle = await open(file, 'a+');
  try {
    const { size } = await handle.stat();
    if (size > completeBytes) await handle.truncate(completeBytes);
    await handle.write(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** An unterminated tail longer than the largest message is no message. */
const MAX_TAIL_BYTES = DLQ_MAX_BODY_BYTES;

function lockHolderRuns(holder: PidLockHolder | undefined): boolean {
  if (holder === undefined) return false;
  // Operations in this process are serialized before they take the lock, so a lock naming this pid
  // was left by an earlier process that had the same pid (a container restarted as pid 1, say).
  if (holder.pid === process.pid) return false;
  return holderRuns(holder);
}

