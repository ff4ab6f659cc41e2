// Jest's order of test files, with the slowest suites first when jest has no timing for them.
//
// Jest runs the files it has a duration for (its cache, under /tmp/jest_*, keyed by the project's path) slowest
// first and the files it has none for by size, biggest first. A fresh clone, as in CI, has no cache, and by size the
// 50,000-record soak (a small file, 87th of 99) starts near the end: in the eight CI runs of 2026-12-06 it was the
// last suite to finish each time, with the other worker idle for its last 29–42 s. This sequencer puts the files of
// SLOW_SUITES that have no cached duration first, slowest first, and leaves every other file where jest's own
// sequencer puts it; once jest has timed a file, its cache decides.
const path = require('node:path');
const Sequencer = require('@jest/test-sequencer').default;

// Seconds per suite (endTime - startTime in its --json results) in the newest full run of the suite on Node 20 when
// this list was written, 2026-12-06: the ten slowest of the 99 suites; the next ones took 21 s or less. Only the order
// matters (CI's runs that day took up to 1.3 × as long, in nearly the same order). A path that no longer exists
// matches no file and changes nothing.
const SLOW_SUITES = {
  'test/cli/local-command.test.ts': 149.1,
  'test/cli/put.test.ts': 71.9,
  'test/cli/query.test.ts': 55.0,
  'test/local/emulators.test.ts': 46.3,
  'test/load/soak.test.ts': 41.7,
  'test/cli/search.test.ts': 29.9,
  'test/cli/cli.e2e.test.ts': 29.9,
  'test/cli/aws-query-put.test.ts': 25.6,
  'test/cli/replay.test.ts': 24.3,
  'test/infra/variants.test.ts': 23.1,
};

/** The listed seconds of a test file (by its path relative to the project's root), or undefined. */
function listedSeconds(test, slowSuites) {
  const relative = path.relative(test.context.config.rootDir, test.path).split(path.sep).join('/');
  return Object.hasOwn(slowSuites, relative) ? slowSuites[relative] : undefined;
}

class SlowFirstSequencer extends Sequencer {
  /** `slowSuites` is for tests of this class; jest passes only its options. */
  constructor(options, slowSuites = SLOW_SUITES) {
    super(options);
    this.slowSuites = slowSuites;
  }

  sort(tests) {
    // Jest's order: the files that failed last time, then the files without a cached duration (by size), then the
    // others (slowest first). The listed files without a cached duration go first in the second group.
    const ordered = super.sort(tests);
    const slow = ordered.filter((test) => this.time(test) == null && listedSeconds(test, this.slowSuites) !== undefined);
    if (slow.length === 0) return ordered;
    slow.sort((a, b) => listedSeconds(b, this.slowSuites) - listedSeconds(a, this.slowSuites));
    const rest = ordered.filter((test) => !slow.includes(test));
    const at = rest.findIndex((test) => !this.hasFailed(test));
    return at === -1 ? [...rest, ...slow] : [...rest.slice(0, at), ...slow, ...rest.slice(at)];
  }
}

module.exports = SlowFirstSequencer;
module.exports.SLOW_SUITES = SLOW_SUITES;
