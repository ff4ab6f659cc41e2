/**
 * Progress for work that takes more than a second: on stderr, only when stderr is a terminal or the
 * user asked with --progress, so stdout stays clean for --json and --csv.
 */
import { escapeControlCharacters, escapeControlCharactersInLines } from './output';

/**
 * Where commands write; tests replace process.stdout/stderr writes, so these read them at call time. Notes on
 * stderr carry names from outside (files in a data dir, a stack's saved queries): their control characters are
 * escaped, as main.ts escapes its error messages, so none can drive the terminal.
 */
export const io = {
  out(text: string): void {
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  },
  err(text: string): void {
    const safe = escapeControlCharactersInLines(text);
    process.stderr.write(safe.endsWith('\n') ? safe : `${safe}\n`);
  },
  stderrIsTTY(): boolean {
    return process.stderr.isTTY === true;
  },
  /** How wide stdout's lines may be: the terminal's width, else 80 (a file, a pipe), as commander wraps --help. */
  stdoutWidth(): number {
    return process.stdout.isTTY === true && process.stdout.columns > 0 ? process.stdout.columns : 80;
  },
};

export interface ProgressOptions {
  /** --progress: report even when stderr is not a terminal. */
  readonly forced?: boolean;
  /** Quiet until the work has taken this long. @default 1000 */
  readonly afterMs?: number;
  /** Least time between two reports when stderr is not a terminal. @default 2000 */
  readonly everyMs?: number;
}

export class Progress {
  private readonly enabled: boolean;
  private readonly tty: boolean;
  // Times here are on the monotonic clock: a wall clock set back an hour would silence the progress for that hour.
  private readonly started = performance.now();
  private readonly afterMs: number;
  private readonly everyMs: number;
  private lastReport = Number.NEGATIVE_INFINITY;
  private lineOpen = false;

  constructor(options: ProgressOptions = {}) {
    const terminal = io.stderrIsTTY();
    // A dumb terminal (TERM=dumb: Emacs shell-mode, some CI consoles) would show the erase-line sequence as text: it gets lines.
    this.tty = terminal && process.env.TERM !== 'dumb';
    this.enabled = terminal || options.forced === true;
    this.afterMs = options.afterMs ?? 1000;
    this.everyMs = options.everyMs ?? 2000;
  }

  /** A silent progress, for library calls that report nothing. */
  static none(): Progress {
    return new Progress({ forced: false, afterMs: Number.POSITIVE_INFINITY });
  }

  get elapsedMs(): number {
    return performance.now() - this.started;
  }

  /** Reports the current state; on a terminal it rewrites one line, elsewhere it prints a line now and then. */
  update(text: string): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.started < this.afterMs) return;
    if (this.tty) {
      if (now - this.lastReport < 100) return;
      this.lastReport = now;
      process.stderr.write(`\r\x1b[2K${escapeControlCharacters(text)}`);
      this.lineOpen = true;
      return;
    }
    if (now - this.lastReport < this.everyMs) return;
    this.lastReport = now;
    io.err(text);
  }

  /** Reports `describe()` every quarter second while `work` runs (shown once it has taken a second). */
  async during<T>(describe: () => string, work: Promise<T>): Promise<T> {
    if (!this.enabled) return work;
    const timer = setInterval(() => this.update(describe()), 250);
    try {
      return await work;
    } finally {
      clearInterval(timer);
    }
  }

  /** Ends the progress line, so what follows starts on a clean line. */
  done(): void {
    if (this.lineOpen) {
      process.stderr.write('\r\x1b[2K');
      this.lineOpen = false;
    }
  }
}
