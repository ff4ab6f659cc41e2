/**
 * Kinesis Producer Library (KPL) aggregated records: the magic bytes F3 89 9A C2, a protobuf
 * `AggregatedRecord`, then the 16-byte MD5 of that protobuf.
 *
 *   AggregatedRecord { repeated string partition_key_table = 1; repeated string explicit_hash_key_table = 2;
 *                      repeated Record records = 3; }
 *   Record { required uint64 partition_key_index = 1; optional uint64 explicit_hash_key_index = 2;
 *            required bytes data = 3; repeated Tag tags = 4; }
 *
 * Firehose de-aggregates them when it reads a Kinesis source; Lambda's event source mapping does not, so the
 * metadata consumer does.
 * A record whose magic matches but whose MD5 or protobuf does not is a plain record, as the KPL's own
 * de-aggregation (KCL, the kinesis-aggregation modules) reads it. No dependency: the few wire types
 * the format uses are read here.
 */
import { createHash } from 'node:crypto';

export const KPL_MAGIC = Buffer.from([0xf3, 0x89, 0x9a, 0xc2]);
const MD5_BYTES = 16;

/** One user record of an aggregated record. Its index in `deaggregate`'s answer is its subsequence number. */
export interface UserRecord {
  readonly partitionKey: string;
  readonly explicitHashKey?: string;
  readonly data: Buffer;
}

/**
 * The user records of a KPL-aggregated record, in the order the producer added them (none for an aggregate
 * that holds none); undefined when `bytes` is not an aggregated record: no magic, a wrong MD5, or a protobuf
 * that does not parse (truncated, a required field missing, a table index out of range).
 */
export function deaggregate(bytes: Uint8Array): UserRecord[] | undefined {
  const all = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (all.length < KPL_MAGIC.length + MD5_BYTES || !all.subarray(0, KPL_MAGIC.length).equals(KPL_MAGIC)) return undefined;
  const body = all.subarray(KPL_MAGIC.length, all.length - MD5_BYTES);
  if (!createHash('md5').update(body).digest().equals(all.subarray(all.length - MD5_BYTES))) return undefined;
  try {
    return userRecords(body);
  } catch (error) {
    if (error instanceof MalformedProtobuf) return undefined;
    throw error;
  }
}

class MalformedProtobuf extends Error {}

function userRecords(body: Buffer): UserRecord[] {
  const partitionKeys: string[] = [];
  const explicitHashKeys: string[] = [];
  const records: Array<{ partitionKeyIndex: number; explicitHashKeyIndex?: number; data: Buffer }> = [];
  const top = new ProtobufReader(body);
  while (!top.done()) {
    const { field, wireType } = top.tag();
    if (field === 1 && wireType === LEN) partitionKeys.push(top.bytes().toString('utf8'));
    else if (field === 2 && wireType === LEN) explicitHashKeys.push(top.bytes().toString('utf8'));
    else if (field === 3 && wireType === LEN) records.push(record(top.bytes()));
    else top.skip(wireType);
  }
  return records.map((r) => {
    const partitionKey = partitionKeys[r.partitionKeyIndex];
    if (partitionKey === undefined) throw new MalformedProtobuf();
    if (r.explicitHashKeyIndex === undefined) return { partitionKey, data: r.data };
    const explicitHashKey = explicitHashKeys[r.explicitHashKeyIndex];
    if (explicitHashKey === undefined) throw new MalformedProtobuf();
    return { partitionKey, explicitHashKey, data: r.data };
  });
}

function record(bytes: Buffer): { partitionKeyIndex: number; explicitHashKeyIndex?: number; data: Buffer } {
  let partitionKeyIndex: number | undefined;
  let explicitHashKeyIndex: number | undefined;
  let data: Buffer | undefined;
  const reader = new ProtobufReader(bytes);
  while (!reader.done()) {
    const { field, wireType } = reader.tag();
    if (field === 1 && wireType === VARINT) partitionKeyIndex = reader.varint();
    else if (field === 2 && wireType === VARINT) explicitHashKeyIndex = reader.varint();
    else if (field === 3 && wireType === LEN) data = reader.bytes();
    else reader.skip(wireType); // tags (4) and fields a later KPL may add
  }
  // Both are proto2 `required`: a parser refuses the message without them.
  if (partitionKeyIndex === undefined || data === undefined) throw new MalformedProtobuf();
  return { partitionKeyIndex, explicitHashKeyIndex, data: Buffer.from(data) };
}

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

class ProtobufReader {
  private at = 0;
  constructor(private readonly buffer: Buffer) {}

  done(): boolean {
    return this.at >= this.buffer.length;
  }

  tag(): { field: number; wireType: number } {
    const key = this.varint();
    const field = Math.floor(key / 8);
    if (field === 0) throw new MalformedProtobuf();
    return { field, wireType: key % 8 };
  }

  /** An unsigned varint; one beyond 2^53 cannot index a table here, so it is refused rather than rounded. */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.buffer.length) throw new MalformedProtobuf();
      const byte = this.buffer[this.at++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (!Number.isSafeInteger(value)) throw new MalformedProtobuf();
        return value;
      }
      scale *= 128;
    }
    throw new MalformedProtobuf();
  }

  bytes(): Buffer {
    const length = this.varint();
    if (length > this.buffer.length - this.at) throw new MalformedProtobuf();
    const out = this.buffer.subarray(this.at, this.at + length);
    this.at += length;
    return out;
  }

  skip(wireType: number): void {
    if (wireType === VARINT) this.varint();
    else if (wireType === LEN) this.bytes();
    else if (wireType === I64 || wireType === I32) {
      const width = wireType === I64 ? 8 : 4;
      if (width > this.buffer.length - this.at) throw new MalformedProtobuf();
      this.at += width;
    } else {
      throw new MalformedProtobuf(); // groups (3, 4) are not in this format; 6 and 7 are no wire type
    }
  }
}
