/**
 * test/sequencer.js, jest's order of test files: the listed slow suites first while jest has no duration cached for
 * them (a fresh clone, as in CI), jest's own order otherwise. Jest constructs a sequencer with `{ contexts,
 * globalConfig }` and reads the cached durations from `<cacheDirectory>/perf-cache-<config.id>-…`, which
 * `cacheResults` writes after a run; the tests build those from a context with a cache directory of their own.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Sequencer from '@jest/test-sequencer';

type Test = Parameters<Sequencer['sort']>[0][number];
type TestContext = Test['context'];

const SlowFirstSequencer = require('./sequencer') as {
  new (options: ConstructorParameters<typeof Sequencer>[0], slowSuites?: Record<string, number>): Sequencer;
  SLOW_SUITES: Record<string, number>;
};

const ROOT = path.join(__dirname, '..');

let cacheDirectory: string;
beforeEach(() => { cacheDirectory = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-sequencer-')); });
afterEach(() => fs.rmSync(cacheDirectory, { recursive: true, force: true }));

/** A context as jest builds one, with what the sequencer reads: the config's root, cache and id, and file sizes. */
function context(sizes: Record<string, number>): TestContext {
  return {
    config: { rootDir: ROOT, cache: true, cacheDirectory, id: 'sequencer-test', haste: {} },
    hasteFS: { getSize: (file: string) => sizes[path.relative(ROOT, file)] ?? null },
  } as unknown as TestContext;
}

function tests(ctx: TestContext, files: string[]): Test[] {
  return files.map((file) => ({ context: ctx, path: path.join(ROOT, file), duration: undefined }));
}

const options = (ctx: TestContext) => ({ contexts: [ctx], globalConfig: {} as never });
const names = (sorted: Test[] | Promise<Test[]>): string[] => (sorted as Test[]).map((t) => path.relative(ROOT, t.path));

/** What a finished run leaves in jest's cache: each file's duration (ms) and whether it failed. */
function cacheRun(ctx: TestContext, durations: Record<string, number>, failed: string[] = []): void {
  const all = tests(ctx, Object.keys(durations));
  new Sequencer(options(ctx)).cacheResults(all, {
    testResults: all.map((t) => {
      const file = path.relative(ROOT, t.path);
      return { testFilePath: t.path, numFailingTests: failed.includes(file) ? 1 : 0, perfStats: { runtime: durations[file], start: 0, end: durations[file] } };
    }),
  } as never);
}

const SOAK = 'test/load/soak.test.ts';
const BIG = 'test/big.test.ts';
const SMALL = 'test/small.test.ts';
const sizes = { [SOAK]: 2_000, 'test/cli/put.test.ts': 1_000, [BIG]: 90_000, [SMALL]: 100 };

describe('without cached durations (a fresh clone)', () => {
  test('a listed slow suite runs before a bigger unlisted file, where jest alone puts it after', () => {
    const ctx = context(sizes);
    expect(SlowFirstSequencer.SLOW_SUITES[SOAK]).toBeGreaterThan(0);
    expect(SlowFirstSequencer.SLOW_SUITES[BIG]).toBeUndefined();
    expect(names(new Sequencer(options(ctx)).sort(tests(ctx, [SMALL, SOAK, BIG])))).toEqual([BIG, SOAK, SMALL]);
    expect(names(new SlowFirstSequencer(options(ctx)).sort(tests(ctx, [SMALL, SOAK, BIG])))).toEqual([SOAK, BIG, SMALL]);
  });

  test('listed suites run slowest first by their listed seconds, not by size', () => {
    const ctx = context(sizes);
    const slowSuites = { 'test/cli/put.test.ts': 70, [SOAK]: 40 };
    expect(names(new SlowFirstSequencer(options(ctx), slowSuites).sort(tests(ctx, [BIG, SOAK, 'test/cli/put.test.ts']))))
      .toEqual(['test/cli/put.test.ts', SOAK, BIG]);
  });

  test('a listed path with no such file changes nothing: the other listed ones still go first, and with none the order is jest\'s', () => {
    const ctx = context(sizes);
    const gone = 'test/removed-long-ago.test.ts';
    expect(fs.existsSync(path.join(ROOT, gone))).toBe(false);
    expect(names(new SlowFirstSequencer(options(ctx), { [gone]: 500, [SMALL]: 5 }).sort(tests(ctx, [BIG, SOAK, SMALL]))))
      .toEqual([SMALL, BIG, SOAK]);
    expect(names(new SlowFirstSequencer(options(ctx), { [gone]: 500 }).sort(tests(ctx, [SMALL, SOAK, BIG]))))
      .toEqual(names(new Sequencer(options(ctx)).sort(tests(ctx, [SMALL, SOAK, BIG]))));
  });
});

describe('with cached durations', () => {
  test('the cache decides: a listed suite that ran fast last time runs after an unlisted one that ran slow', () => {
    const ctx = context(sizes);
    cacheRun(ctx, { [SOAK]: 1_000, [BIG]: 90_000, [SMALL]: 5_000 });
    const sorted = names(new SlowFirstSequencer(options(ctx)).sort(tests(ctx, [SOAK, SMALL, BIG])));
    expect(sorted).toEqual([BIG, SMALL, SOAK]);
    expect(sorted).toEqual(names(new Sequencer(options(ctx)).sort(tests(ctx, [SOAK, SMALL, BIG]))));
  });

  test('a file that failed last time still runs first; a listed one with no cached duration runs next, before unlisted uncached and cached ones', () => {
    const ctx = context(sizes);
    cacheRun(ctx, { [SMALL]: 200, 'test/cli/put.test.ts': 70_000 }, [SMALL]);
    expect(names(new SlowFirstSequencer(options(ctx)).sort(tests(ctx, ['test/cli/put.test.ts', BIG, SOAK, SMALL]))))
      .toEqual([SMALL, SOAK, BIG, 'test/cli/put.test.ts']);
  });
});

test('jest.config.js uses test/sequencer.js', () => {
  const config = require('../jest.config.js') as { testSequencer?: string };
  expect(config.testSequencer?.replace('<rootDir>', ROOT)).toBe(path.join(ROOT, 'test', 'sequencer.js'));
});
