#!/usr/bin/env node
// The `sluice` command: loads the TypeScript CLI through tsx, so `npm ci` is the only install step.
'use strict';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// The CLI runs the Lambda handlers for the twin (the transform in worker threads, which get this environment):
// keep their INFO logs and metrics off the terminal.
process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
// Ctrl-C ends a command at once unless the command takes it itself (put and replay finish what is in hand, a running
// query is stopped, local up and demo flush), and until one does (while this loads): with the one `sluice:` line every
// exit 130 gives, then by the signal, as before, so the shell reports 130. Written synchronously: the process ends next.
const fs = require('node:fs');
const endAtOnce = () => {
  if (process.listenerCount('SIGINT') > 1) return;
  try {
    fs.writeSync(2, 'sluice: interrupted (Ctrl-C)\n');
  } catch {
    // stderr's reader is gone: nothing to tell.
  }
  process.removeListener('SIGINT', endAtOnce);
  process.kill(process.pid, 'SIGINT');
};
process.on('SIGINT', endAtOnce);
// package.json's engines: the twin's delivery uses zlib.crc32 (Node.js 20.15 and 22.2). On an older Node.js the twin
// would start and then fail each delivery, so say it here, as an environment problem (exit 2).
if (typeof require('node:zlib').crc32 !== 'function') {
  fs.writeSync(2, `sluice: Node.js ${process.version} is too old: Sluice needs 20.15 or later on 20, 22.2 or later on 22 (or 24, 26)\n`);
  process.exit(2);
}
require('./register-tsx');
require('../lib/cli/main.ts');
