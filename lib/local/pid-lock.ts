/**
 * A pid file as a lock held by one process at a time: `twin.pid` (one twin per data dir) and
 * `<queue>.replay.pid` (one replay per dead-letter file). A file left by a process that died is taken
 * over. The lock appears with its pid already in it (written aside, then hard-linked into place, which
 * fails if a lock exists), and a stale one is taken over by moving it aside first: of two processes racing
 * for the same stale file only one moves it, and one that finds it moved a live process's new lock puts it
 * back and gives way. Beside the pid the file keeps when its process started (Linux), so that a pid given to another
 * process since (a container restarted, the pids counted from 1 again) does not hold it.
 */
import * as fs from 'node:fs';
import { holderRuns, ownProcessStart, pidLockContent, readPid, readPidLock, type PidLockHolder } from './process-alive';

export interface PidLockOptions {
  readonly pid?: number;
  /** When `pid` started, as processStart says. @default this process's when `pid` is not given, else none */
  readonly start?: string;
  readonly isAlive?: (pid: number) => boolean;
  /** Called after a lock file was judged stale, before it is taken over (tests stage races with it). */
  readonly beforeTakeover?: () => void;
}

export interface PidLockErrors {
  /** A live process holds the lock. */
  readonly inUse: (holder: number) => Error;
  /** The lock file could not be written, or taken over. */
  readonly cannot: (what: 'write' | 'take over', cause: Error) => Error;
  /** Other processes kept changing the lock file. */
  readonly contended: () => Error;
}

/** Takes the lock at `file`; returns its release. */
export function takePidLock(file: string, errors: PidLockErrors, options: PidLockOptions = {}): () => void {
  const pid = options.pid ?? process.pid;
  const content = pidLockContent({ pid, start: options.pid === undefined ? ownProcessStart() : options.start });
  for (let attempt = 0; attempt < 5; attempt++) {
    const mine = `${file}.${pid}.new`;
    try {
      fs.writeFileSync(mine, content);
      linkOrCreate(mine, file, content);
      return () => {
        // A file that cannot go (the data dir made read-only meanwhile) holds nothing: the next start finds its pid gone
        // and takes the lock over, so the stop still ends with its summary.
        try {
          if (readPid(file) === pid) fs.rmSync(file, { force: true });
        } catch {
          // left for the next start, as above
        }
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw errors.cannot('write', error as Error);
    } finally {
      fs.rmSync(mine, { force: true });
    }
    const holder = readPidLock(file);
    if (holder !== undefined && holder.pid !== pid && holderRuns(holder, options.isAlive)) throw errors.inUse(holder.pid);
    options.beforeTakeover?.();
    const aside = `${file}.${pid}.stale`;
    try {
      fs.renameSync(file, aside);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue; // another process took it over first
      throw errors.cannot('take over', error as Error);
    }
    const moved = readPidLock(aside);
    if (moved !== undefined && !sameHolder(moved, holder) && moved.pid !== pid && holderRuns(moved, options.isAlive)) {
      // A racing process's new lock, not the stale file: back in place (unless yet another holds it now).
      try {
        linkOrCreate(aside, file, pidLockContent(moved));
      } catch {
        // EEXIST: a third process has the lock; it stays theirs.
      }
      fs.rmSync(aside, { force: true });
      throw errors.inUse(moved.pid);
    }
    fs.rmSync(aside, { force: true });
  }
  throw errors.contended();
}

function sameHolder(a: PidLockHolder, b: PidLockHolder | undefined): boolean {
  return a.pid === b?.pid && a.start === b.start;
}

/** `link(from, to)`, failing with EEXIST if `to` exists; where hard links are not supported, an exclusive create. */
export function linkOrCreate(from: string, to: string, content: string): void {
  try {
    fs.linkSync(from, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw error;
    fs.writeFileSync(to, content, { flag: 'wx' });
  }
}
