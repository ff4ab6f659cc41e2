/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.(t|j)s$': ['@swc/jest', { jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'commonjs' } }],
  },
  transformIgnorePatterns: ['/node_modules/'],
  setupFiles: ['<rootDir>/test/setup-env.js'],
  // Without cached durations (a fresh clone, as in CI) the slowest suites first, not last by file size.
  testSequencer: '<rootDir>/test/sequencer.js',
  testTimeout: 60000,
  // Suites close their child processes (kinesis-mock) and DuckDB instances; what stays is the native
  // `DuckDBNapiRefReaper` handle @duckdb/node-bindings opens when it loads (`jest --detectOpenHandles` names it),
  // which no API closes.
  forceExit: true,
  maxWorkers: 2,
};
