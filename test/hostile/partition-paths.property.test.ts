import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { evaluatePrefix, objectKey, parsePrefix, PrefixEvaluationError } from '../../lib/local/prefix';
import { ObjectStore } from '../../lib/local/object-store';
import { dataRoot, firehoseDataPrefix } from '../../lib/schema/layout';
import { describeSchema, type SchemaModel } from '../../lib/schema/model';
import { compileValidator } from '../../lib/schema/validator';
import { schemas } from '../../transforms/shared/generated';
import { knownPipelines, pipelineSchema, type PipelineSchema } from '../../transforms/shared/pipeline';
import { transformRecord } from '../../transforms/shared/record';
import { CORPUS_DIR, ESCAPE_MARKER } from './corpus';

/**
 * Whatever a producer puts in the partition field and the event-time field, the whole chain the
 * twin runs — transform → `metadata.partitionKeys` → Firehose data prefix → object key → file in the
 * object store — ends in a file under `<data-dir>/s3/<bucket>/data/<pipeline>/`, or the record fails
 * before a path is made. (test/transforms/properties.test.ts and test/local/prefix.test.ts check
 * the transform's partition values and the prefix evaluation each on their own.)
 */

const NOW = new Date('2026-11-22T14:00:00Z');
const DATA_DIR = path.resolve('/sluice-property-data-dir');
const BUCKET = 'sluice-dev-data';
const store = new ObjectStore(DATA_DIR);
const bases = (JSON.parse(fs.readFileSync(path.join(CORPUS_DIR, 'manifest.json'), 'utf8')) as { bases: Record<string, Record<string, unknown>> }).bases;

const hostileString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.array(fc.constantFrom('..', '/', '.', '\\', '%2F', '%2e', '\u0000', '\u202e', 'ｌｏｇｉｎ', 'login', ESCAPE_MARKER), { maxLength: 10 }).map((p) => p.join('')),
  fc.constantFrom('', '.', '..', '../..', `../../../../${ESCAPE_MARKER}`, `/tmp/${ESCAPE_MARKER}`, 'a'.repeat(70_000)),
);

/** Mostly instants around the lake's 2000–2100 range written at any UTC offset; some anywhere in 0001–9999; some noise. */
const eventTime = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.tuple(fc.date({ min: new Date('1999-12-30T00:00:00Z'), max: new Date('2101-01-02T00:00:00Z'), noInvalidDate: true }), fc.integer({ min: -23 * 60 - 59, max: 23 * 60 + 59 }))
      .map(([d, offset]) => withOffset(d, offset)),
  },
  { weight: 1, arbitrary: fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true }).map((d) => d.toISOString()) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
);

/** The instant written in local time at a UTC offset of `minutes`, e.g. 2026-01-15T23:30:00-09:30. */
function withOffset(d: Date, minutes: number): string {
  const local = new Date(d.getTime() + minutes * 60_000).toISOString().slice(0, 19);
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

/** The file the twin would write the record's Parquet object to, or undefined when the record fails first. */
function fileFor(schema: PipelineSchema, record: Record<string, unknown>): string | undefined {
  const outcome = transformRecord(schema, Buffer.from(JSON.stringify(record)), { arrivalMs: NOW.getTime() }, { destination: 'lake', piiHashKey: 'k', processedAt: NOW });
  if (outcome.result !== 'Ok') return undefined;
  let prefix: string;
  try {
    prefix = evaluatePrefix(parsePrefix(firehoseDataPrefix(schema.model), 'data'), { arrivalTimestamp: NOW.getTime(), partitionKeys: outcome.partitionKeys });
  } catch (error) {
    // The twin's last line of defence: such a record goes to partitioning-failed, never to a path.
    expect(error).toBeInstanceOf(PrefixEvaluationError);
    return undefined;
  }
  const key = objectKey(prefix, { streamName: `sluice-dev-${schema.pipeline}-lake`, timestamp: NOW.getTime(), extension: '.parquet' });
  return store.pathFor(BUCKET, key);
}

function expectInsideDataRoot(model: SchemaModel, file: string): void {
  const root = path.join(DATA_DIR, 's3', BUCKET, dataRoot(model.pipeline));
  const relative = path.relative(root, file);
  expect(relative.startsWith('..') || path.isAbsolute(relative)).toBe(false);
  const segments = relative.split(path.sep);
  expect(segments).toHaveLength(model.partitionKeys.length + 1);
  segments.slice(0, -1).forEach((segment, i) => expect(segment).toMatch(new RegExp(`^${model.partitionKeys[i].name}=[a-z0-9_-]{1,64}$`)));
}

describe('partition fields and event times from a hostile producer never make a path outside data/<pipeline>/', () => {
  it.each(knownPipelines())('%s (its own schema: enum partition values)', (pipeline) => {
    const schema = pipelineSchema(pipeline);
    const { partitionFields: [field], eventTimeField } = schema.model.extensions;
    // The enum refuses hostile values, so half the values come from it: those records reach a path
    // with hostile event times, the others must fail before any path is made.
    const allowed = (schemas[pipeline] as { properties: Record<string, { enum: string[] }> }).properties[field].enum;
    let delivered = 0;
    fc.assert(fc.property(fc.oneof(fc.constantFrom(...allowed), hostileString), eventTime, fc.boolean(), (value, time, keepTime) => {
      const record = { ...bases[pipeline], event_id: '5f0c6d3e-1b2a-4c3d-8e9f-0a1b2c3d4e5f', [field]: value, ...(keepTime ? {} : { [eventTimeField]: time }) };
      const file = fileFor(schema, record);
      if (file === undefined) return;
      delivered++;
      expectInsideDataRoot(schema.model, file);
    }), { numRuns: 300 });
    expect(delivered).toBeGreaterThan(50);
  });

  it('an open partition field (any string the schema admits)', () => {
    const raw = {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      'x-sluice': { version: '1.0.0', idField: 'id', eventTimeField: 'at', partitionFields: ['kind', 'region'], pii: {} },
      required: ['id', 'at', 'kind', 'region'],
      additionalProperties: false,
      properties: { id: { type: 'string' }, at: { type: 'string', format: 'date-time' }, kind: { type: 'string' }, region: { type: 'string' } },
    };
    const schema: PipelineSchema = { pipeline: 'hostile' as PipelineSchema['pipeline'], model: describeSchema('hostile', raw), validate: compileValidator(raw) };
    let delivered = 0;
    fc.assert(fc.property(hostileString, hostileString, eventTime, (kind, region, at) => {
      const file = fileFor(schema, { id: '1', at, kind, region });
      if (file === undefined) return;
      delivered++;
      expectInsideDataRoot(schema.model, file);
    }), { numRuns: 1000 });
    // The property means something only if hostile values do get through to a path (about 7 % do).
    expect(delivered).toBeGreaterThan(20);
  });
});
