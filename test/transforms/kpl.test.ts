/**
 * The KPL de-aggregation the twin's Kinesis-sourced delivery streams and the metadata consumer share, on
 * aggregated records built by hand (test/kpl-encoder.ts): what is one, what is a plain record after all.
 */
import fc from 'fast-check';
import { deaggregate } from '../../transforms/shared/kpl';
import { aggregatedRecord, aggregatedRecordBody, aggregatedRecordOf, KPL_MAGIC } from '../kpl-encoder';

describe('deaggregate', () => {
  test('gives the user records of an aggregate in order, with their partition and explicit hash keys; tags are ignored', () => {
    const bytes = aggregatedRecord([
      { partitionKey: 'd1', data: '{"a":1}' },
      { partitionKey: 'd2', explicitHashKey: '170141183460469231731687303715884105728', data: '{"a":2}', tags: [{ key: 'k', value: 'v' }] },
      { partitionKey: 'd1', data: Buffer.from([0xff, 0x00]) },
    ]);
    expect(deaggregate(bytes)).toEqual([
      { partitionKey: 'd1', data: Buffer.from('{"a":1}') },
      { partitionKey: 'd2', explicitHashKey: '170141183460469231731687303715884105728', data: Buffer.from('{"a":2}') },
      { partitionKey: 'd1', data: Buffer.from([0xff, 0x00]) },
    ]);
  });

  test('an aggregate of no records holds no user records', () => {
    expect(deaggregate(aggregatedRecord([]))).toEqual([]);
  });

  test('the magic with a wrong MD5 is a plain record', () => {
    const bytes = aggregatedRecord([{ partitionKey: 'd1', data: '{"a":1}' }]);
    bytes[bytes.length - 1] ^= 0x01;
    expect(deaggregate(bytes)).toBeUndefined();
  });

  test('a truncated protobuf (with the MD5 of what is there) is a plain record', () => {
    const body = aggregatedRecordBody([{ partitionKey: 'd1', data: '{"a":1}' }, { partitionKey: 'd2', data: '{"a":2}' }]);
    for (let cut = 1; cut < body.length; cut++) {
      const parsed = deaggregate(aggregatedRecordOf(body.subarray(0, body.length - cut)));
      // A cut exactly between two fields leaves a shorter valid message; anywhere else it does not parse.
      if (parsed !== undefined) expect(parsed.length).toBeLessThan(2);
    }
    expect(deaggregate(aggregatedRecordOf(body.subarray(0, body.length - 1)))).toBeUndefined();
  });

  test('a record without its required data, or naming a partition key the table does not have, is no aggregate', () => {
    // records { partition_key_index: 0 } with no data
    expect(deaggregate(aggregatedRecordOf(Buffer.from([0x0a, 0x01, 0x6b, 0x1a, 0x02, 0x08, 0x00])))).toBeUndefined();
    // records { partition_key_index: 1, data: "x" } with a one-key table
    expect(deaggregate(aggregatedRecordOf(Buffer.from([0x0a, 0x01, 0x6b, 0x1a, 0x05, 0x08, 0x01, 0x1a, 0x01, 0x78])))).toBeUndefined();
  });

  test('bytes without the magic, or too short to hold it and an MD5, are plain records', () => {
    expect(deaggregate(Buffer.from('{"event_id":"x"}'))).toBeUndefined();
    expect(deaggregate(Buffer.concat([KPL_MAGIC, Buffer.alloc(3)]))).toBeUndefined();
    expect(deaggregate(new Uint8Array())).toBeUndefined();
  });

  test('reads back whatever the encoder aggregates (property)', () => {
    const userRecord = fc.record({
      partitionKey: fc.string({ minLength: 1, maxLength: 20 }),
      explicitHashKey: fc.option(fc.bigInt({ min: 0n, max: 2n ** 128n - 1n }).map(String), { nil: undefined }),
      data: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    });
    fc.assert(fc.property(fc.array(userRecord, { maxLength: 30 }), (records) => {
      const out = deaggregate(aggregatedRecord(records));
      expect(out).toEqual(records.map((r) => (r.explicitHashKey === undefined ? { partitionKey: r.partitionKey, data: r.data } : r)));
    }));
  });

  test('never throws on arbitrary bytes after the magic (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (body) => {
      const out = deaggregate(aggregatedRecordOf(Buffer.from(body)));
      expect(out === undefined || Array.isArray(out)).toBe(true);
    }));
  });
});
