export * from './types';
export { ConfigError, validateConfig } from './validate';
export { configFromContext, contextFileKeys, knownSchemaNames, loadConfig, readCdkJsonContext, PROJECT_ROOT } from './load';
export { resourceNames, type ResourceNames } from './names';
