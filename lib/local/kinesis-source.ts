/**
 * What a delivery stream with a Kinesis source makes of the records it reads: one Firehose record per
 * Kinesis record, or, for a record the Kinesis Producer Library aggregated, one per user record in it —
 * Firehose de-aggregates before the transform sees them ("Amazon Data Firehose de-aggregates the records
 * before it delivers them", Firehose developer guide, "Configure source settings for Amazon Kinesis Data
 * Streams").
 *
 * The user records of one Kinesis record share its shard, sequence number and arrival time, and carry their
 * index in it as the subsequence number (0, 1, …: "the indexing of KPL user records contained within an
 * aggregated Kinesis Data Streams record [starts] at 0", KPL aggregation best practices); a plain record's is 0,
 * a number, as in Firehose's events (test/fixtures/events/firehose-kinesis.json). The delivery engine recognises a re-read Kinesis record by shard and
 * sequence number, and logs all the records of one ingest in one write-ahead-log frame, so the user records
 * of a Kinesis record are logged all or none and recognised all or none.
 */
import type { _Record } from '@aws-sdk/client-kinesis';
import { deaggregate } from '../../transforms/shared/kpl';
import type { IncomingRecord } from './delivery-stream';

export function firehoseRecordsOf(shardId: string, r: _Record): IncomingRecord[] {
  const arrival = r.ApproximateArrivalTimestamp?.getTime() ?? Date.now();
  const data = r.Data ?? new Uint8Array();
  const metadata = {
    shardId,
    partitionKey: r.PartitionKey ?? '',
    approximateArrivalTimestamp: arrival,
    sequenceNumber: r.SequenceNumber ?? '',
    subsequenceNumber: 0,
  };
  const users = deaggregate(data);
  if (users === undefined) return [{ data, arrivalTimestamp: arrival, kinesisRecordMetadata: metadata }];
  return users.map((u, index) => ({
    data: u.data,
    arrivalTimestamp: arrival,
    kinesisRecordMetadata: { ...metadata, partitionKey: u.partitionKey, subsequenceNumber: index },
  }));
}
