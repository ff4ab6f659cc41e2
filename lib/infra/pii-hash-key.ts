import type { RemovalPolicy } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { acknowledgeRule } from './nag';

export interface PiiHashKeyProps {
  /** Encrypts the secret. */
  readonly key: kms.IKey;
  readonly removalPolicy: RemovalPolicy;
}

/**
 * The secret key of the keyed hash (HMAC) the transform applies to PII fields masked with "hash": the same input
 * hashes to the same value, so masked values still join and count, but cannot be reversed without the key.
 */
export class PiiHashKey extends Construct {
  readonly secret: secretsmanager.Secret;

  constructor(scope: Construct, id: string, props: PiiHashKeyProps) {
    super(scope, id);
    this.secret = new secretsmanager.Secret(this, 'Secret', {
      description: 'Sluice: key of the keyed hash applied to PII fields (x-sluice.pii "hash")',
      encryptionKey: props.key,
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
      removalPolicy: props.removalPolicy,
    });
    acknowledgeRule(this.secret, 'AwsSolutions-SMG4',
      'Not rotated automatically: a new key changes every hashed value, breaking joins and counts across the change; rotate deliberately, with a backfill.');
  }

  /** Lets a transform read the key. */
  grantRead(grantee: iam.IGrantable): void {
    this.secret.grantRead(grantee);
  }
}
