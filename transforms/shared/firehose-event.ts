/**
 * The Lambda transformation event as Firehose sends it. @types/aws-lambda types
 * `kinesisRecordMetadata.subsequenceNumber` as a string, but Firehose sends a number: 0 for a record the Kinesis
 * Producer Library did not aggregate, a user record's index in its aggregate otherwise (AWS's sample event,
 * test/fixtures/events/firehose-kinesis.json; aws-lambda-go and Powertools type it as a number). Widened here, so
 * code that reads it is checked against what arrives and still takes events typed by @types/aws-lambda.
 */
import type { FirehoseRecordMetadata, FirehoseTransformationEvent, FirehoseTransformationEventRecord } from 'aws-lambda';

export interface FirehoseKinesisRecordMetadata extends Omit<FirehoseRecordMetadata, 'subsequenceNumber'> {
  subsequenceNumber: number | string;
}

export interface TransformationEventRecord extends Omit<FirehoseTransformationEventRecord, 'kinesisRecordMetadata'> {
  kinesisRecordMetadata?: FirehoseKinesisRecordMetadata | undefined;
}

export interface TransformationEvent extends Omit<FirehoseTransformationEvent, 'records'> {
  records: TransformationEventRecord[];
}
