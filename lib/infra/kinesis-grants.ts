import { Aws } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as firehose from 'aws-cdk-lib/aws-kinesisfirehose';

/** The Kinesis actions AWS lists for the role of a Firehose stream with a Kinesis source. */
export const FIREHOSE_KINESIS_READ_ACTIONS: readonly string[] = ['kinesis:DescribeStream', 'kinesis:GetShardIterator', 'kinesis:GetRecords', 'kinesis:ListShards'];

/**
 * Lets a Firehose role read `stream` as AWS's policy for a Kinesis source lists it, and decrypt with the stream's own key
 * (when it has one) only through Kinesis for this stream. `stream.grantRead` would add the key's use from anywhere.
 */
export function grantFirehoseRead(stream: kinesis.IStream, grantee: iam.IGrantable): iam.Grant {
  const grant = stream.grant(grantee, ...FIREHOSE_KINESIS_READ_ACTIONS);
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

/** The L2 Kinesis source, granting what `grantFirehoseRead` grants instead of `stream.grantRead`. */
export class FirehoseKinesisSource extends firehose.KinesisStreamSource {
  constructor(private readonly source: kinesis.IStream) {
    super(source);
  }

  override grantRead(grantee: iam.IGrantable): iam.Grant {
    return grantFirehoseRead(this.source, grantee);
  }
}
