/**
 * Waiting in the CLI. Node fires a timer set longer than 2^31-1 ms (about 24.8 days) after 1 ms, so a
 * duration a user typed (`put --verify --poll 30d`) must never go to setTimeout as it is. A wait for an answer
 * under a deadline (`search --timeout`) ends when the deadline does, whatever the call is waiting on.
 */
import { formatDuration } from './options';
import { UserError } from './output';

/** The longest delay one Node timer holds. */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/** A command's --timeout, counted from when it was made: what its waits end on, and what to say of the stage it ended. */
export interface CommandDeadline {
  /** Aborts when the command's time is up. */
  readonly signal: AbortSignal;
  /** The --timeout it stands for. */
  readonly timeoutMs: number;
  /** "STS gave no answer in 2.0 s (--timeout 2.0 s) when …": who kept the command waiting until the deadline, and `rest`. */
  noAnswer(who: string, rest: string): UserError;
}

/**
 * The deadline of a command's --timeout, from now. A timer holds at most 2^31 - 1 ms (24.8 days): beyond it Node fires it
 * at once (or AbortSignal.timeout throws), so a longer --timeout waits that long, which is as good as forever here.
 */
export function commandDeadline(timeoutMs: number): CommandDeadline {
  // On the monotonic clock, as the signal's timer runs: the wall clock set back an hour would say "-3599950 ms".
  const since = performance.now();
  return {
    signal: AbortSignal.timeout(Math.min(timeoutMs, MAX_TIMER_DELAY_MS)),
    timeoutMs,
    noAnswer: (who, rest) => new UserError(`${who} gave no answer in ${formatDuration(Math.round(performance.now() - since))} (--timeout ${formatDuration(timeoutMs)})${rest}`),
  };
}

/**
 * Resolves after `ms`, however long: a wait longer than one timer holds is several timers, one after another. Resolves
 * early when `signal` aborts (the caller then checks it).
 */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  let left = ms;
  do {
    if (signal?.aborted) return;
    const step = Math.min(Math.max(left, 0), MAX_TIMER_DELAY_MS);
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, step);
      signal?.addEventListener('abort', done, { once: true });
    });
    left -= step;
  } while (left > 0);
}

/**
 * `call`'s outcome, or `signal.reason` as soon as `signal` aborts. A client's own abort ends its HTTP request, but not
 * a wait before it (credentials from SSO, STS or the instance metadata service): this ends those too.
 */
export function untilAborted<T>(call: PromiseLike<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return Promise.resolve(call);
  let onAbort = (): void => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([call, aborted]).finally(() => signal.removeEventListener('abort', onAbort));
}

let callLeftWaiting = false;

/**
 * Notes that a deadline ended the wait on a call nothing can end: the SDK's credential chain takes no abort signal, and its
 * request to a container endpoint or an instance metadata service, or a credential_process, may never return. The CLI's
 * process then ends once its command has, instead of staying until that call does, and ends the credential_process such a
 * call ran (endChildProcesses), which would outlive it.
 */
export function leaveWaiting(): void {
  callLeftWaiting = true;
}

/** Whether a command left a call waiting that nothing can end (see leaveWaiting). */
export function callsAreLeftWaiting(): boolean {
  return callLeftWaiting;
}
