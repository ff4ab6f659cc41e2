import type { FirehoseTransformationEvent } from 'aws-lambda';
import { loadConfig } from '../../lib/config';
import { readSchema } from '../../lib/schema/registry';
import { sampleRecords } from '../../lib/schema/sample';
import { createTransformHandler } from '../../transforms/record-transform/handler';
import { estimateResponseBudget, processorBufferWarnings } from '../../transforms/record-transform/response-budget';
import { quietTelemetry } from './helpers';

const MiB = 1024 * 1024;

/** An event of `mib` MiB of the pipeline's sample records (another seed than the estimate's), as Firehose would send it. */
function eventOf(pipeline: string, mib: number): FirehoseTransformationEvent {
  const pool = sampleRecords(readSchema(pipeline), 500, 7).map((r) => Buffer.from(JSON.stringify(r)));
  const records: FirehoseTransformationEvent['records'] = [];
  for (let bytes = 0, i = 0; ; i++) {
    const data = pool[i % pool.length];
    if (bytes + data.length > mib * MiB) break;
    bytes += data.length;
    records.push({ recordId: `49${'6'.repeat(13)}${String(i).padStart(41, '0')}`, approximateArrivalTimestamp: Date.UTC(2026, 0, 1), data: data.toString('base64') });
  }
  return { invocationId: 'i', deliveryStreamArn: 'arn:aws:firehose:us-east-1:123456789012:deliverystream/s', region: 'us-east-1', records };
}

/** Records the handler fails for the event: the samples are valid, so these failed for the response's size alone. */
async function failures(pipeline: string, destination: 'lake' | 'search', mib: number): Promise<number> {
  const handle = createTransformHandler({ pipeline, destination, piiHashKey: 'k', ...quietTelemetry() });
  const response = await handle(eventOf(pipeline, mib));
  return response.records.filter((r) => r.result !== 'Ok').length;
}

describe('response budget of the transform', () => {
  it.each([
    ['app-events', 'lake'],
    ['iot', 'lake'],
    ['transactions', 'lake'],
    ['clickstream', 'search'],
  ] as const)('%s %s: the estimated largest processor buffer fits the handler\'s response; 0.3 MiB more does not', async (pipeline, destination) => {
    const { maxBufferMiB, responseBytesPerDataByte } = estimateResponseBudget(pipeline, destination);
    expect(responseBytesPerDataByte).toBeGreaterThan(1);
    expect(await failures(pipeline, destination, maxBufferMiB)).toBe(0);
    expect(await failures(pipeline, destination, maxBufferMiB + 0.3)).toBeGreaterThan(0);
  });

  it('a pipeline whose samples cannot be made is a warning, not a failure', () => {
    const config = loadConfig([]);
    const broken = { pipelines: { 'no-such-schema': { ...config.pipelines.iot, name: 'no-such-schema' } } };
    expect(processorBufferWarnings(broken)).toEqual([expect.stringMatching(/^pipelines\.no-such-schema: the lake transform's response size could not be estimated from the schema's samples \(.+\); check transform\.processorBufferMiB/)]);
  });

  it('warns about no pipeline of the default configuration', () => {
    expect(processorBufferWarnings(loadConfig([]))).toEqual([]);
  });

  it('warns about a processor buffer the response cannot answer, naming the setting and what fits', () => {
    const warnings = processorBufferWarnings(loadConfig(['pipelines.app-events.transform.processorBufferMiB=3']));
    const fits = estimateResponseBudget('app-events', 'lake').maxBufferMiB;
    expect(warnings).toEqual([expect.stringMatching(new RegExp(
      `^pipelines\\.app-events\\.transform\\.processorBufferMiB is 3, but the lake transform's response to a full invocation would be about \\d+\\.\\d MB .*`
      + `over Lambda's 6 MB response limit: .*response-size.*At most ${fits} fits`,
    ))]);
  });
});
