/**
 * The twin's transform runtimes come in one pool per function memory size (`transform.memoryMiB`), as each Lambda
 * function has its own memory: a pipeline's runtime may not use more heap than its own function could.
 */
import { loadConfig } from '../../lib/config';
import { transformRuntimePools } from '../../lib/local/twin';

describe('transform runtime pools', () => {
  test('the default configuration (one memory size) has one pool with every lake and search transform', () => {
    expect(transformRuntimePools(loadConfig([]), 3)).toEqual([{
      memoryMiB: 512,
      runtimes: 3,
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
    expect(transformRuntimePools(config, 4)).toEqual([
      { memoryMiB: 512, handlers: [{ pipeline: 'clickstream', destination: 'lake' }, { pipeline: 'clickstream', destination: 'search' }, { pipeline: 'app-events', destination: 'lake' }], runtimes: 1 },
      { memoryMiB: 128, handlers: [{ pipeline: 'iot', destination: 'lake' }], runtimes: 1 },
      { memoryMiB: 1024, handlers: [{ pipeline: 'transactions', destination: 'lake' }], runtimes: 1 },
    ]);
    // The runtimes are shared out, at least one per pool: other memory sizes start no more threads than asked for.
    expect(transformRuntimePools(config, 6).map((p) => p.runtimes)).toEqual([2, 2, 2]);
    expect(transformRuntimePools(config, 1).map((p) => p.runtimes)).toEqual([1, 1, 1]);
  });

  test('a metadata-only pipeline runs no transform, so its memory makes no pool', () => {
    // (The configuration refuses a transform setting on a metadata-only pipeline; one from pipelineDefaults stays.)
    const { pipelines } = loadConfig(['pipelines.iot.destinations=metadata']);
    const config = { pipelines: { ...pipelines, iot: { ...pipelines.iot, transform: { ...pipelines.iot.transform, memoryMiB: 128 } } } };
    expect(transformRuntimePools(config).map((p) => p.memoryMiB)).toEqual([512]);
  });
});
