/**
 * A Kinesis Producer Library aggregated record built by hand (magic, protobuf `AggregatedRecord`, MD5 of the
 * protobuf), as the KPL puts it to a stream: the tests' producer, with no KPL dependency.
 */
import { createHash } from 'node:crypto';

export const KPL_MAGIC = Buffer.from([0xf3, 0x89, 0x9a, 0xc2]);

export interface UserRecordInput {
  readonly partitionKey: string;
  readonly explicitHashKey?: string;
  readonly data: Buffer | string;
  /** Tags (field 4) the KPL can attach; de-aggregation ignores them. */
  readonly tags?: ReadonlyArray<{ key: string; value?: string }>;
}

/** The protobuf `AggregatedRecord` of `records`, partition and explicit hash keys in tables as the KPL writes them. */
export function aggregatedRecordBody(records: readonly UserRecordInput[]): Buffer {
  const partitionKeys: string[] = [];
  const hashKeys: string[] = [];
  const indexOf = (table: string[], key: string): number => {
    const at = table.indexOf(key);
    return at === -1 ? table.push(key) - 1 : at;
  };
  const encoded = records.map((r) => {
    const fields = [varintField(1, indexOf(partitionKeys, r.partitionKey))];
    if (r.explicitHashKey !== undefined) fields.push(varintField(2, indexOf(hashKeys, r.explicitHashKey)));
    fields.push(lengthField(3, Buffer.from(r.data)));
    for (const t of r.tags ?? []) {
      fields.push(lengthField(4, Buffer.concat([lengthField(1, Buffer.from(t.key)), ...(t.value !== undefined ? [lengthField(2, Buffer.from(t.value))] : [])])));
    }
    return Buffer.concat(fields);
  });
  return Buffer.concat([
    ...partitionKeys.map((k) => lengthField(1, Buffer.from(k))),
    ...hashKeys.map((k) => lengthField(2, Buffer.from(k))),
    ...encoded.map((r) => lengthField(3, r)),
  ]);
}

/** Magic + `body` + MD5 of `body`: pass a body of your own to build a broken aggregate with a valid checksum. */
export function aggregatedRecordOf(body: Buffer): Buffer {
  return Buffer.concat([KPL_MAGIC, body, createHash('md5').update(body).digest()]);
}

/** The bytes the KPL puts to the stream for `records`. */
export function aggregatedRecord(records: readonly UserRecordInput[]): Buffer {
  return aggregatedRecordOf(aggregatedRecordBody(records));
}

function varint(value: number): Buffer {
  const bytes: number[] = [];
  let v = value;
  while (v >= 0x80) {
    bytes.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

function varintField(field: number, value: number): Buffer {
  return Buffer.concat([varint(field * 8), varint(value)]);
}

function lengthField(field: number, bytes: Buffer): Buffer {
  return Buffer.concat([varint(field * 8 + 2), varint(bytes.length), bytes]);
}
