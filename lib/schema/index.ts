export * from './model';
export * from './artifacts';
export * from './layout';
export { loadModel, readSchema, listSchemas } from './registry';
