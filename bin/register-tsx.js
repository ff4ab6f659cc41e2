// Loads tsx, so the TypeScript sources run as they are (bin/sluice.js, bin/run-ts.js). tsx caches what it compiles
// in a folder under the temporary folder and, when it cannot make that folder (TMPDIR read-only, gone, or a file),
// throws from every require: then it compiles without the cache (TSX_DISABLE_CACHE, which the twin's workers inherit).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
try {
  if (!fs.statSync(os.tmpdir()).isDirectory()) throw new Error('not a folder');
  fs.accessSync(os.tmpdir(), fs.constants.W_OK);
} catch {
  process.env.TSX_DISABLE_CACHE ??= '1';
}
require('tsx/cjs');
