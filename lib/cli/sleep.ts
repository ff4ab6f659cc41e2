/**
 * Waiting in the CLI. Node fires a timer set longer than 2^31-1 ms (about 24.8 days) after 1 ms, so a
 * duration a user typed (`put --verify --poll 30d`) must never go to setTimeout as it is.
 */

/** The longest delay one Node timer holds. */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/** Resolves after `ms`, however long: a wait longer than one timer holds is several timers, one after another. */
export async function sleep(ms: number): Promise<void> {
  let left = ms;
  do {
    const step = Math.min(Math.max(left, 0), MAX_TIMER_DELAY_MS);
    await new Promise<void>((resolve) => setTimeout(resolve, step));
    left -= step;
  } while (left > 0);
}
