import { takeInterrupts } from '../../lib/cli/interrupt';

test('a SIGTERM repeated at once is one stop on the monotonic clock: the wall clock set forward an hour between the two does not make it a second', () => {
  const realNow = Date.now.bind(Date);
  let setForward = 0;
  const wallClock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + setForward);
  const first: string[] = [];
  const second: string[] = [];
  const dispose = takeInterrupts((by) => first.push(by.signal), (signal) => second.push(signal));
  try {
    // As GNU timeout delivers it: to the process, then to its group, microseconds apart.
    process.emit('SIGTERM', 'SIGTERM');
    setForward = 3_600_000;
    process.emit('SIGTERM', 'SIGTERM');
    expect(first).toEqual(['SIGTERM']);
    expect(second).toEqual([]);
    // A Ctrl-C is a second signal all the same.
    process.emit('SIGINT', 'SIGINT');
    expect(second).toEqual(['SIGINT']);
  } finally {
    dispose();
    wallClock.mockRestore();
  }
});
