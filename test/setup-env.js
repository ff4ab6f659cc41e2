// The AWS SDK warns on Node 20 that releases after January 2027 need Node 22; in test output it is noise.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
