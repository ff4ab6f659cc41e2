#!/usr/bin/env node
// The `sluice` command: loads the TypeScript CLI through tsx, so `npm ci` is the only install step.
'use strict';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
require('tsx/cjs');
require('../lib/cli/main.ts');
