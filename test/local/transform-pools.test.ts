/**
 * The twin's transform runtimes come in one pool per function memory size (`transform.memoryMiB`), as each Lambda
 * function has its own memory: a pipeline's runtime may not use more heap than its own function could.
 */
import { loadConfig } from '../../lib/config';
import { transformRuntimePools } from '../../lib/local/twin';

describe('transform runtime pools', () => {
  test('the default configuration (one memory size) has one pool with every lake and search transform', () => {
    expect(transformRuntimePools(loadConfig([]))).toEqual([{
      memoryMiB: 512,
      handlers: [
        { pipeline: 'clickstream', destination: 'lake' },
        { pipeline: 'clickstream', destination: 'search' },
        { pipeline: 'iot', destination: 'lake' },
        { pipeline: 'transactions', destination: 'lake' },
        { pipeline: 'app-events', destination: 'lake' },
      ],
    }]);
  });

  test('a pipeline whose function has less memory gets its own pool, held to that memory', () => {
    const config = loadConfig(['pipelines.iot.transform.memoryMiB=128', 'pipelines.transactions.transform.memoryMiB=1024']);
    expect(transformRuntimePools(config)).toEqual([
      { memoryMiB: 512, handlers: [{ pipeline: 'clickstream', destination: 'lake' }, { pipeline: 'clickstream', destination: 'search' }, { pipeline: 'app-events', destination: 'lake' }] },
      { memoryMiB: 128, handlers: [{ pipeline: 'iot', destination: 'lake' }] },
      { memoryMiB: 1024, handlers: [{ pipeline: 'transactions', destination: 'lake' }] },
    ]);
  });

  test('a metadata-only pipeline runs no transform, so its memory makes no pool', () => {
    // (The configuration refuses a transform setting on a metadata-only pipeline; one from pipelineDefaults stays.)
    const { pipelines } = loadConfig(['pipelines.iot.destinations=metadata']);
    const config = { pipelines: { ...pipelines, iot: { ...pipelines.iot, transform: { ...pipelines.iot.transform, memoryMiB: 128 } } } };
    expect(transformRuntimePools(config).map((p) => p.memoryMiB)).toEqual([512]);
  });
});
