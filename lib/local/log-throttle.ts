/**
 * At most one line per key and interval: a failure that repeats every poll (a read-only disk under a reader's
 * checkpoints, say) is said once, then again with how many times it came meanwhile, not dozens of times a second.
 */
export function throttledLog(log: (line: string) => void, intervalMs: number, now: () => number = Date.now): (key: string, line: string) => void {
  const seen = new Map<string, { at: number; held: number }>();
  return (key, line) => {
    const last = seen.get(key);
    const t = now();
    if (last !== undefined && t - last.at < intervalMs) {
      last.held++;
      return;
    }
    const held = last?.held ?? 0;
    log(held > 0 ? `${line} (${held} more like it in the ${Math.round((t - (last?.at ?? t)) / 1000)} s before)` : line);
    seen.set(key, { at: t, held: 0 });
  };
}
