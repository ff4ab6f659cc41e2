/**
 * Firehose prefix expressions and object keys: the documented examples, Sluice's own prefixes, and
 * (property-based) that no partition key value can make a key leave the data prefix.
 */
import * as path from 'node:path';
import fc from 'fast-check';
import {
  DEFAULT_TIME_PREFIX,
  evaluatePrefix,
  formatTimestamp,
  objectKey,
  parsePrefix,
  partitionValueProblem,
  PrefixEvaluationError,
  PrefixSyntaxError,
  randomString,
} from '../../lib/local/prefix';
import { firehoseDataPrefix, firehoseErrorPrefix } from '../../lib/schema/layout';
import { loadModel } from '../../lib/schema/registry';

// 10:30:15.123 UTC on 27 Aug 2018, the instant of the Firehose guide's prefix examples.
const AUG_27_2018 = Date.UTC(2018, 7, 27, 10, 30, 15, 123);

describe('evaluatePrefix: the Firehose developer guide examples', () => {
  it('evaluates !{timestamp:yyyy/MM/dd}', () => {
    expect(evaluatePrefix(parsePrefix('!{timestamp:yyyy/MM/dd}', 'data'), { arrivalTimestamp: AUG_27_2018 })).toBe('2018/08/27');
  });

  it('evaluates every timestamp of a prefix at the same instant, with literal text around it', () => {
    const template = parsePrefix('myPrefix/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/', 'data');
    expect(evaluatePrefix(template, { arrivalTimestamp: AUG_27_2018 })).toBe('myPrefix/year=2018/month=08/day=27/hour=10/');
  });

  it("takes 'quoted' text in a timestamp pattern literally", () => {
    const template = parsePrefix("myErrorPrefix/!{timestamp:'year='yyyy'/month='MM'/day='dd'/hour='HH}/!{firehose:error-output-type}", 'error');
    expect(evaluatePrefix(template, { arrivalTimestamp: AUG_27_2018, errorOutputType: 'processing-failed' }))
      .toBe('myErrorPrefix/year=2018/month=08/day=27/hour=10/processing-failed');
  });

  it('appends yyyy/MM/dd/HH/ literally (no "/" inserted) to a prefix without expressions', () => {
    expect(evaluatePrefix(parsePrefix('myFirehosePrefix/', 'data'), { arrivalTimestamp: AUG_27_2018 })).toBe('myFirehosePrefix/2018/08/27/10/');
    expect(evaluatePrefix(parsePrefix('raw-', 'data'), { arrivalTimestamp: AUG_27_2018 })).toBe('raw-2018/08/27/10/');
    expect(evaluatePrefix(parsePrefix('', 'data'), { arrivalTimestamp: AUG_27_2018 })).toBe('2018/08/27/10/');
    expect(DEFAULT_TIME_PREFIX).toBe('yyyy/MM/dd/HH/');
  });

  it('does not append the default time prefix to a prefix that has expressions (dynamic partitioning)', () => {
    const template = parsePrefix('key1=!{partitionKeyFromLambda:key1}/key2=!{partitionKeyFromLambda:key2}/', 'data');
    expect(evaluatePrefix(template, { arrivalTimestamp: AUG_27_2018, partitionKeys: { key1: 'recordA', key2: 'PARTITION1' } }))
      .toBe('key1=recordA/key2=PARTITION1/');
  });

  it('makes !{firehose:random-string} 11 characters, new for every use', () => {
    const template = parsePrefix('a/!{firehose:random-string}/b/!{firehose:random-string}/', 'data');
    const evaluated = evaluatePrefix(template, { arrivalTimestamp: AUG_27_2018 });
    const [, first, , second] = evaluated.split('/');
    expect(first).toHaveLength(11);
    expect(second).toHaveLength(11);
    expect(first).not.toBe(second);
    expect(randomString()).toMatch(/^[0-9a-f]{8}-[0-9a-f]{2}$/);
  });

  it('uses the configured IANA time zone, UTC by default', () => {
    const template = parsePrefix('!{timestamp:yyyy-MM-dd HH}/', 'data');
    const newYearUtc = Date.UTC(2025, 11, 31, 20, 0, 0);
    expect(evaluatePrefix(template, { arrivalTimestamp: newYearUtc })).toBe('2025-12-31 20/');
    expect(evaluatePrefix(template, { arrivalTimestamp: newYearUtc, timeZone: 'Asia/Tokyo' })).toBe('2026-01-01 05/');
    expect(evaluatePrefix(template, { arrivalTimestamp: newYearUtc, timeZone: 'America/New_York' })).toBe('2025-12-31 15/');
  });
});

describe('Sluice prefixes from lib/schema/layout', () => {
  const model = loadModel('clickstream');

  it('puts the transform partition keys into the data prefix', () => {
    const template = parsePrefix(firehoseDataPrefix(model), 'data');
    expect(template.partitionKeys).toEqual(['event_type', 'year', 'month', 'day', 'hour']);
    expect(template.root).toBe('data/clickstream/event_type=');
    const prefix = evaluatePrefix(template, {
      arrivalTimestamp: AUG_27_2018,
      partitionKeys: { event_type: 'page_view', year: '2018', month: '08', day: '27', hour: '09' },
    });
    expect(prefix).toBe('data/clickstream/event_type=page_view/year=2018/month=08/day=27/hour=09/');
  });

  it('puts failures under errors/<pipeline>/<error type>/<arrival hour>/', () => {
    const template = parsePrefix(firehoseErrorPrefix('clickstream'), 'error');
    expect(evaluatePrefix(template, { arrivalTimestamp: AUG_27_2018, errorOutputType: 'format-conversion-failed' }))
      .toBe('errors/clickstream/format-conversion-failed/2018/08/27/10/');
  });
});

describe('objectKey', () => {
  it('is <prefix><stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><ext>', () => {
    const key = objectKey('data/x/', { streamName: 'sluice-dev-iot-lake', timestamp: AUG_27_2018, uuid: '0f8fad5b-d9cb-469f-a165-70867728950e', extension: '.parquet' });
    expect(key).toBe('data/x/sluice-dev-iot-lake-1-2018-08-27-10-30-15-0f8fad5b-d9cb-469f-a165-70867728950e.parquet');
    expect(objectKey('', { streamName: 's', timestamp: AUG_27_2018 })).toMatch(/^s-1-2018-08-27-10-30-15-[0-9a-f-]{36}$/);
  });

  it('uses the time zone for the suffix too', () => {
    expect(objectKey('', { streamName: 's', timestamp: AUG_27_2018, timeZone: 'Asia/Tokyo', uuid: 'u' })).toBe('s-1-2018-08-27-19-30-15-u');
  });
});

describe('formatTimestamp (Java DateTimeFormatter subset)', () => {
  it.each([
    ['yyyy/MM/dd/HH', '2018/08/27/10'],
    ['yy-M-d H:m:s', '18-8-27 10:30:15'],
    ['yyyy-MM-dd-HH-mm-ss', '2018-08-27-10-30-15'],
    ['HH:mm:ss.SSS', '10:30:15.123'],
    ["'it''s' yyyy", "it's 2018"],
    ["''", "'"],
    ['uuuu', '2018'],
  ])('%s → %s', (pattern, expected) => {
    expect(formatTimestamp(pattern, AUG_27_2018)).toBe(expected);
  });
});

describe('parsePrefix rejects what Firehose rejects (and what the twin cannot do)', () => {
  it.each([
    ['!{timestamp:yyyy', 'data', /not closed/],
    ['!{unknown:x}/', 'data', /unknown expression namespace "unknown"/],
    ['!{firehose:nope}/', 'data', /unknown firehose expression/],
    ['!{firehose:error-output-type}/', 'data', /only be used in the error output prefix/],
    ['errors/!{timestamp:yyyy}/', 'error', /must contain !\{firehose:error-output-type\}/],
    ['errors/!{firehose:error-output-type}/!{partitionKeyFromLambda:x}/', 'error', /partition keys cannot be used in the error output prefix/],
    ['!{partitionKeyFromQuery:customer_id}/', 'data', /not emulated/],
    ['!{timestamp:yyyy-bb}/', 'data', /pattern letter "b" is not supported/],
    ['!{timestamp:MMMM}/', 'data', /month names are not supported/],
    ["!{timestamp:'open}/", 'data', /not closed/],
    ['!{timestamp}/', 'data', /!\{namespace:value\}/],
    ['!{partitionKeyFromLambda:a/b}/', 'data', /partition key name/],
    ['/absolute/!{timestamp:yyyy}', 'data', /must not start with "\/"/],
  ] as const)('%s (%s)', (prefix, kind, message) => {
    expect(() => parsePrefix(prefix, kind)).toThrow(PrefixSyntaxError);
    expect(() => parsePrefix(prefix, kind)).toThrow(message);
  });
});

describe('evaluatePrefix refuses unsafe partition key values', () => {
  const template = parsePrefix('data/clickstream/event_type=!{partitionKeyFromLambda:event_type}/', 'data');
  const evaluate = (value: unknown): string => evaluatePrefix(template, { arrivalTimestamp: AUG_27_2018, partitionKeys: { event_type: value } });

  it.each([
    ['parent traversal', '../x', /contains "\/"/],
    ['a slash', 'a/b', /contains "\/"/],
    ['encoded slash and dots', '%2F..', /contains "\.\."/],
    ['empty', '', /is empty/],
    ['a lone dot', '.', /is "\."/],
    ['a backslash', 'a\\b', /contains "\\"/],
    ['NUL', 'nul\u0000byte', /control character/],
    ['a tab', 'tab\there', /control character/],
    ['a C1 control', '\u0085', /control character/],
    ['a lone surrogate', '\ud800lonely', /unpaired UTF-16 surrogate/],
    ['5000 characters', 'x'.repeat(5000), /longer than 512/],
  ])('%s', (_label, value, message) => {
    expect(() => evaluate(value)).toThrow(PrefixEvaluationError);
    expect(() => evaluate(value)).toThrow(message);
  });

  it('refuses a missing key and a value that is not a string', () => {
    expect(() => evaluatePrefix(template, { arrivalTimestamp: 0, partitionKeys: {} })).toThrow(/"event_type" is missing/);
    expect(() => evaluatePrefix(template, { arrivalTimestamp: 0 })).toThrow(/"event_type" is missing/);
    expect(() => evaluate(42)).toThrow(/must be a string/);
  });

  it('refuses a prefix that evaluates beyond 512 characters or to a segment the file system cannot hold', () => {
    expect(() => evaluate('x'.repeat(500))).toThrow(/at most 512/);
    const wide = parsePrefix('!{partitionKeyFromLambda:a}!{partitionKeyFromLambda:b}/', 'data');
    expect(() => evaluatePrefix(wide, { arrivalTimestamp: 0, partitionKeys: { a: 'é'.repeat(100), b: 'ü'.repeat(100) } })).toThrow(/longer than 255 bytes/);
  });

  // Every partition key value that is or makes "." or ".." is refused by its own check first; these dots come from
  // the prefix itself, so only the check of the evaluated prefix stands between them and the key.
  it.each([
    ['quoted timestamp text', "data/!{timestamp:yyyy}/!{timestamp:'..'}/", 'data', '..'],
    ['quoted timestamp text beside a valid key', "data/!{timestamp:'.'}/!{partitionKeyFromLambda:event_type}/", 'data', '.'],
    ['a prefix without expressions', 'data/../other/', 'data', '..'],
    ['an error prefix', "errors/!{firehose:error-output-type}/!{timestamp:'..'}/", 'error', '..'],
  ])('refuses a "." or ".." segment the prefix itself makes: %s', (_label, source, kind, segment) => {
    const template = parsePrefix(source, kind as 'data' | 'error');
    const context = { arrivalTimestamp: AUG_27_2018, partitionKeys: { event_type: 'click' }, errorOutputType: 'processing-failed' as const };
    let thrown: unknown;
    try {
      evaluatePrefix(template, context);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(PrefixEvaluationError);
    expect(thrown).toMatchObject({ problem: 'escapes-root', message: expect.stringContaining(`has a "${segment}" path segment`) });
  });

  it('accepts ordinary values, including non-ASCII and percent signs', () => {
    expect(evaluate('page_view')).toBe('data/clickstream/event_type=page_view/');
    expect(evaluate('café %2F')).toBe('data/clickstream/event_type=café %2F/');
    expect(partitionValueProblem('2018')).toBeUndefined();
  });
});

describe('path safety (property)', () => {
  const model = loadModel('clickstream');
  const template = parsePrefix(firehoseDataPrefix(model), 'data');
  const root = '/data-dir/s3/bucket';
  const dataRoot = path.posix.join(root, 'data/clickstream');

  it('never yields a key outside data/<pipeline>/, whatever the transform returns as partition keys', () => {
    const hostile = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 600 }),
      fc.constantFrom('..', '.', '/', '\\', '../..', '%2F..', '\u0000', '', 'a/../../b', '....', './x', '..\\..'),
      fc.array(fc.constantFrom('..', '/', '.', 'a', '\\', '\u0000', '%2F'), { maxLength: 12 }).map((parts) => parts.join('')),
      // Values that pass, some only just (dots, percent signs): without them every key of the five is hardly ever
      // acceptable at once, and the property would hold by refusing everything.
      { arbitrary: fc.stringMatching(/^[\w.%=-]{1,20}$/), weight: 6 },
    );
    let accepted = 0;
    fc.assert(fc.property(fc.record({ event_type: hostile, year: hostile, month: hostile, day: hostile, hour: hostile }), (keys) => {
      let prefix: string;
      try {
        prefix = evaluatePrefix(template, { arrivalTimestamp: AUG_27_2018, partitionKeys: keys });
      } catch (error) {
        expect(error).toBeInstanceOf(PrefixEvaluationError);
        return;
      }
      accepted++;
      const key = objectKey(prefix, { streamName: 'sluice-dev-clickstream-lake', timestamp: AUG_27_2018, extension: '.parquet' });
      const file = path.posix.resolve(root, key);
      expect(file.startsWith(`${dataRoot}/`)).toBe(true);
      expect(key.split('/')).not.toContain('..');
      expect(key).not.toContain('\u0000');
      // What was written is what is read back: normalisation would hide a traversal.
      expect(path.posix.normalize(key)).toBe(key);
    }), { numRuns: 2000 });
    expect(accepted).toBeGreaterThan(0);
  });
});
