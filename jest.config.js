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
  testTimeout: 60000,
  // Child processes (kinesis-mock) and DuckDB handles are closed by each suite; this only guards CI from a stray timer.
  forceExit: true,
  maxWorkers: 2,
};
