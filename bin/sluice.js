#!/usr/bin/env node
// The `sluice` command: loads the TypeScript CLI through tsx, so `npm ci` is the only install step.
'use strict';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// The CLI runs the Lambda handlers for the twin (the transform in worker threads, which get this environment):
// keep their INFO logs and metrics off the terminal.
process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
require('tsx/cjs');
require('../lib/cli/main.ts');
