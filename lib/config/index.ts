export * from './types';
export { ConfigError, didYouMean, validateConfig } from './validate';
export { configFromContext, contextFileKeys, knownSchemaNames, loadConfig, readCdkJsonContext, PROJECT_ROOT, unconfiguredSchemaWarnings } from './load';
export { resourceNames, type ResourceNames } from './names';
