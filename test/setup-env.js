// The AWS SDK warns on Node 20 that releases after January 2027 need Node 22; in test output it is noise.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// Handlers log INFO per batch and emit EMF metrics to stdout; tests that check them inject their own logger.
process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
