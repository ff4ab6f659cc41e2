import { Aws } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as firehose from 'aws-cdk-lib/aws-kinesisfirehose';
import { withGrant } from './grant-override';

/** The Kinesis actions AWS lists for the role of a Firehose stream with a Kinesis source. */
export const FIREHOSE_KINESIS_READ_ACTIONS: readonly string[] = ['kinesis:DescribeStream', 'kinesis:GetShardIterator', 'kinesis:GetRecords', 'kinesis:ListShards'];

/**
 * Lets a Firehose role read `stream` as AWS's policy for a Kinesis source lists it, and decrypt with the stream's own key
 * (when it has one) only through Kinesis for this stream. `stream.grantRead` would add the key's use from anywhere.
 */
export function grantFirehoseRead(stream: kinesis.IStream, grantee: iam.IGrantable): iam.Grant {
  return grantStreamKeyThroughKinesis(stream, grantee, stream.grant(grantee, ...FIREHOSE_KINESIS_READ_ACTIONS));
}

/**
 * Adds to `grant` the use of the stream's own key (when it has one) to decrypt, only through Kinesis and for this
 * stream: "Kinesis Data Streams uses the stream ARN as the encryption context in all AWS KMS calls" (Kinesis Data
 * Streams developer guide, "Permissions to use user-generated KMS keys").
 */
export function grantStreamKeyThroughKinesis(stream: kinesis.IStream, grantee: iam.IGrantable, grant: iam.Grant): iam.Grant {
  if (!stream.encryptionKey) return grant;
  return grant.combine(iam.Grant.addToPrincipal({
    grantee,
    actions: ['kms:Decrypt'],
    resourceArns: [stream.encryptionKey.keyArn],
    conditions: {
      StringEquals: {
        'kms:ViaService': `kinesis.${Aws.REGION}.amazonaws.com`,
        'kms:EncryptionContext:aws:kinesis:arn': stream.streamArn,
      },
    },
  }));
}

/** What a Lambda event source mapping reads a stream with (aws-cdk-lib's stream read grant, less ListStreams, which no stream ARN can grant). */
const CONSUMER_STREAM_READ_ACTIONS: readonly string[] = [
  'kinesis:DescribeStream', 'kinesis:DescribeStreamSummary', 'kinesis:GetRecords', 'kinesis:GetShardIterator', 'kinesis:ListShards', 'kinesis:SubscribeToShard',
];

/**
 * `consumer`, except that `grantRead` (which the L2 KinesisConsumerEventSource calls for the function's role) grants
 * the stream's key as `grantFirehoseRead` does, only through Kinesis for this stream; the L2's grant is the key's
 * Decrypt from anywhere.
 */
export function withKeyThroughKinesis(consumer: kinesis.IStreamConsumer): kinesis.IStreamConsumer {
  return withGrant(consumer, 'grantRead', (grantee) => grantStreamKeyThroughKinesis(consumer.stream, grantee,
    consumer.grant(grantee, 'kinesis:DescribeStreamConsumer', 'kinesis:SubscribeToShard').combine(consumer.stream.grant(grantee, ...CONSUMER_STREAM_READ_ACTIONS))));
}

/** The L2 Kinesis source, granting what `grantFirehoseRead` grants instead of `stream.grantRead`. */
export class FirehoseKinesisSource extends firehose.KinesisStreamSource {
  constructor(private readonly source: kinesis.IStream) {
    super(source);
  }

  override grantRead(grantee: iam.IGrantable): iam.Grant {
    return grantFirehoseRead(this.source, grantee);
  }
}
