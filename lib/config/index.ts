export * from './types';
export { ConfigError, validateConfig } from './validate';
export { configFromContext, contextFileKeys, knownSchemaNames, loadConfig, readCdkJsonContext, PROJECT_ROOT, unconfiguredSchemaWarnings } from './load';
export { resourceNames, type ResourceNames } from './names';
