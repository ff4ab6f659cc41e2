import { throttledLog } from '../../lib/local/log-throttle';

test('a line that repeats within the interval is held, and the next one said counts what was held; keys are apart', () => {
  const lines: string[] = [];
  let t = 0;
  const say = throttledLog((line) => lines.push(line), 10_000, () => t);
  say('iot', 'reading iot: EACCES 1');
  for (t = 1_000; t < 9_000; t += 1_000) say('iot', `reading iot: EACCES ${t}`);
  say('clickstream', 'reading clickstream: EACCES');
  t = 12_000;
  say('iot', 'reading iot: EACCES again');
  t = 30_000;
  say('iot', 'reading iot: EACCES later');
  expect(lines).toEqual([
    'reading iot: EACCES 1',
    'reading clickstream: EACCES',
    'reading iot: EACCES again (8 more like it in the 12 s before)',
    'reading iot: EACCES later',
  ]);
});
