/**
 * `promise`, or `late` when it has not settled within `ms`. The timer is cleared either way: a pending timer
 * would keep the Jest worker alive after its suite, and Jest would force it out ("a worker process has
 * failed to exit gracefully").
 */
export async function within<T, const L>(promise: Promise<T>, ms: number, late: L): Promise<T | L> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<L>((resolve) => {
      timer = setTimeout(() => resolve(late), ms);
    })]);
  } finally {
    clearTimeout(timer);
  }
}
