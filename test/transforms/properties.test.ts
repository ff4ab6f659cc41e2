import fc from 'fast-check';
import type { FirehoseTransformationEvent } from 'aws-lambda';
import { partitionPath } from '../../lib/schema/layout';
import { describeSchema } from '../../lib/schema/model';
import { compileValidator } from '../../lib/schema/validator';
import { createTransformHandler } from '../../transforms/record-transform/handler';
import { knownPipelines, type PipelineSchema } from '../../transforms/shared/pipeline';
import { transformRecord } from '../../transforms/shared/record';
import { quietTelemetry } from './helpers';

const NOW = new Date('2026-11-22T14:00:00Z');
const SAFE_SEGMENT = /^[a-z0-9_][a-z0-9_-]{0,63}$/;

const handlers = knownPipelines().flatMap((pipeline) =>
  (['lake', 'search'] as const).map((destination) => ({
    pipeline,
    destination,
    handle: createTransformHandler({ pipeline, destination, piiHashKey: 'k', now: () => NOW, ...quietTelemetry() }),
  })),
);

/** Bytes that are sometimes JSON, sometimes near-JSON, sometimes noise. */
const recordBytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.json().map((s) => new Uint8Array(Buffer.from(s))),
  fc.jsonValue().map((v) => new Uint8Array(Buffer.from(JSON.stringify(v) ?? 'null'))),
  fc.string({ unit: 'binary', maxLength: 200 }).map((s) => new Uint8Array(Buffer.from(`{"event_id":"${s}"}`))),
  // Near-valid telemetry: mostly Ok for iot, with arbitrary values in the optional fields.
  fc
    .record({
      device_model: fc.string({ unit: 'binary', maxLength: 70 }),
      temperature_c: fc.double(),
      uptime_s: fc.oneof(fc.nat(), fc.constant(2 ** 60)),
      tags: fc.array(fc.string({ maxLength: 40 }), { maxLength: 18 }),
      event_time: fc.date({ min: new Date('1990-01-01'), max: new Date('2110-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
    }, { requiredKeys: ['event_time'] })
    .map((extra) => new Uint8Array(Buffer.from(JSON.stringify({
      event_id: '5a4d0a3d-7e1f-4f9c-8ca8-000000000001', event_type: 'telemetry', device_id: 'dev-0000a1b2', temperature_c: 20, battery_pct: 50, ...extra,
    })))),
);

describe('properties', () => {
  it('any bytes as record data yield a valid response with one result per record id, in order', async () => {
    let okBatches = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...handlers),
        fc.array(recordBytes, { minLength: 1, maxLength: 12 }),
        async (h, datas) => {
          const event: FirehoseTransformationEvent = {
            invocationId: 'p',
            deliveryStreamArn: 'arn:aws:firehose:us-east-1:1:deliverystream/p',
            region: 'us-east-1',
            records: datas.map((d, i) => ({ recordId: `id-${i}`, approximateArrivalTimestamp: 1795874712345, data: Buffer.from(d).toString('base64') })),
          };
          const out = await h.handle(event);
          if (out.records.some((r) => r.result === 'Ok')) okBatches++;
          expect(out.records.map((r) => r.recordId)).toEqual(event.records.map((r) => r.recordId));
          for (let i = 0; i < out.records.length; i++) {
            const r = out.records[i];
            expect(['Ok', 'Dropped', 'ProcessingFailed']).toContain(r.result);
            expect(typeof r.data).toBe('string');
            if (r.result !== 'Ok') {
              expect(r.data).toBe(event.records[i].data);
              expect(r.metadata).toBeUndefined();
              continue;
            }
            const text = Buffer.from(r.data!, 'base64').toString('utf8');
            expect(text.endsWith('\n')).toBe(true);
            expect(text.slice(0, -1)).not.toContain('\n');
            expect(typeof JSON.parse(text)).toBe('object');
            if (h.destination === 'search') expect(r.metadata).toBeUndefined();
            else for (const v of Object.values(r.metadata!.partitionKeys)) expect(v).toMatch(SAFE_SEGMENT);
          }
        },
      ),
      { numRuns: 300 },
    );
    expect(okBatches).toBeGreaterThan(0);
  });

  it('any string as a partition field yields a path inside the pipeline prefix, or a failure naming the field', () => {
    const schema = {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      'x-sluice': { version: '1.0.0', idField: 'id', eventTimeField: 'at', partitionFields: ['kind'], pii: {} },
      required: ['id', 'at', 'kind'],
      additionalProperties: false,
      properties: { id: { type: 'string' }, at: { type: 'string', format: 'date-time' }, kind: { type: 'string' } },
    };
    const model = describeSchema('prop', schema);
    const open: PipelineSchema = { pipeline: 'prop' as PipelineSchema['pipeline'], model, validate: compileValidator(schema) };
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme', maxLength: 300 }), fc.constantFrom('..', '/', '../x', '.', '%2e%2e', 'a/../../b')), (kind) => {
        const bytes = Buffer.from(JSON.stringify({ id: '1', at: '2026-01-01T00:00:00Z', kind }));
        const o = transformRecord(open, bytes, { arrivalMs: 0 }, { destination: 'lake', piiHashKey: 'k', processedAt: NOW });
        if (o.result === 'Ok') {
          const path = partitionPath(model, o.partitionKeys!);
          expect(path.startsWith('data/prop/kind=')).toBe(true);
          const segments = path.split('/').slice(2, -1);
          expect(segments.map((s) => s.split('=')[0])).toEqual(['kind', 'year', 'month', 'day', 'hour']);
          for (const s of segments) expect(s.split('=')[1]).toMatch(SAFE_SEGMENT);
          expect(path.length).toBeLessThan(200);
        } else {
          expect(o.result === 'ProcessingFailed' && o.failure).toMatchObject({ category: 'partition', field: '/kind' });
        }
      }),
      { numRuns: 2000 },
    );
  });
});
