import type { Template } from 'aws-cdk-lib/assertions';
import { resourcesOf } from './synth';

/**
 * The logical ids of the resources that hold data, a key or a read position, in the default (dev) stack, pinned.
 *
 * CloudFormation knows a resource by its logical id (CDK derives it from the construct path: `Storage/Data` →
 * `StorageData6BB23F4E`). A stack deployed from an older commit and updated from this one sees a changed id as one
 * resource removed and another added, so the update replaces it:
 * - unnamed resources (the buckets, the metadata table, the KMS keys, the PII hash key secret, the log groups) are
 *   made again empty, and the old one is deleted (`removalPolicy: destroy`) or left outside the stack (`retain`).
 *   A new data key leaves the lake's objects under a key scheduled for deletion; a new secret hashes the same value
 *   differently from then on;
 * - named ones (streams, queues, delivery streams, the domain, Glue tables, the workgroup) fail the update, as the
 *   name is taken by the old one: the upgrade is blocked until the user deletes it (with what it holds);
 * - a new stream consumer or event source mapping reads its stream again from TRIM_HORIZON.
 *
 * A construct id renamed, a construct moved under another parent, a resource added or removed: each shows here.
 * A new resource: add its id. A construct moved or renamed in a refactoring: keep the deployed id with
 * `(construct.node.defaultChild as CfnResource).overrideLogicalId('<the id here>')`. An id changed on purpose: say in
 * docs/deploy.md ("Checking a change before deploying") what the upgrade does to a deployed stack and what the user
 * does first, then change it here.
 */
export const STATEFUL_TYPES = [
  'AWS::Athena::WorkGroup',
  'AWS::DynamoDB::Table',
  'AWS::Glue::Database',
  'AWS::Glue::Table',
  'AWS::KMS::Key',
  'AWS::Kinesis::Stream',
  'AWS::Kinesis::StreamConsumer',
  'AWS::KinesisFirehose::DeliveryStream',
  'AWS::Lambda::EventSourceMapping',
  'AWS::Logs::LogGroup',
  'AWS::OpenSearchService::Domain',
  'AWS::S3::Bucket',
  'AWS::SQS::Queue',
  'AWS::SecretsManager::Secret',
] as const;

/** `<type> <logical id>`, sorted: the dev stack of cdk.json's default configuration. */
export const PINNED_STATEFUL_IDS: readonly string[] = [
  'AWS::Athena::WorkGroup AthenaWorkGroup3D21B179',
  'AWS::DynamoDB::Table MetadataTableC8A01DE2',
  'AWS::Glue::Database CatalogDatabaseE63956BB',
  'AWS::Glue::Table Catalogappeventserrorstable62D3A8F9',
  'AWS::Glue::Table Catalogappeventstable37D56AEC',
  'AWS::Glue::Table Catalogclickstreamerrorstable6A534A3F',
  'AWS::Glue::Table CatalogclickstreamtableAF276334',
  'AWS::Glue::Table Catalogioterrorstable592ECB06',
  'AWS::Glue::Table CatalogiottableD1629B17',
  'AWS::Glue::Table Catalogtransactionserrorstable50F0B08C',
  'AWS::Glue::Table CatalogtransactionstableB592BD08',
  'AWS::KMS::Key MonitoringTopicKey423AF5B2',
  'AWS::KMS::Key StorageKeyBAA9457B',
  'AWS::KMS::Key transactionsStreamKey4E3A6BDA',
  'AWS::Kinesis::Stream clickstreamStreamFF5EF84A',
  'AWS::Kinesis::Stream iotStream4858B4C0',
  'AWS::Kinesis::Stream transactionsStreamFFBA86AD',
  'AWS::Kinesis::StreamConsumer clickstreamMetadataConsumerStreamConsumer0874F001',
  'AWS::Kinesis::StreamConsumer iotMetadataConsumerStreamConsumer15F079CE',
  'AWS::Kinesis::StreamConsumer transactionsMetadataConsumerStreamConsumerB0DB55C3',
  'AWS::KinesisFirehose::DeliveryStream appeventsLakeDeliveryStream250372AF',
  'AWS::KinesisFirehose::DeliveryStream clickstreamLakeDeliveryStream791B9F97',
  'AWS::KinesisFirehose::DeliveryStream clickstreamSearchDeliveryStream5E067395',
  'AWS::KinesisFirehose::DeliveryStream iotLakeDeliveryStream0119BF5C',
  'AWS::KinesisFirehose::DeliveryStream transactionsLakeDeliveryStreamB998134F',
  // CDK names a mapping after its stream consumer's path, stack name included (`sluicedev`).
  'AWS::Lambda::EventSourceMapping clickstreamMetadataConsumerFunctionKinesisConsumerEventSourcesluicedevclickstreamMetadataConsumerStreamConsumerF210801073323C47',
  'AWS::Lambda::EventSourceMapping iotMetadataConsumerFunctionKinesisConsumerEventSourcesluicedeviotMetadataConsumerStreamConsumerB34D717C3E771E91',
  'AWS::Lambda::EventSourceMapping transactionsMetadataConsumerFunctionKinesisConsumerEventSourcesluicedevtransactionsMetadataConsumerStreamConsumer7858D4238548DD43',
  'AWS::Logs::LogGroup BucketNotificationsHandler050a0587b7544547bf325f094a3db834ResourceLogs1C22566A',
  // Only with `removalPolicy: destroy`: the log group of the function that empties the buckets.
  'AWS::Logs::LogGroup CustomS3AutoDeleteObjectsCustomResourceProviderHandlerLogs5E5D1456',
  'AWS::Logs::LogGroup FailuresRouterLogsDF73E07A',
  'AWS::Logs::LogGroup IndexTemplatesApplyLogs1A7D62E7',
  'AWS::Logs::LogGroup IndexTemplatesProviderLogs6B62540C',
  'AWS::Logs::LogGroup SearchAppLogs6B800BF9',
  'AWS::Logs::LogGroup SearchSlowIndexLogs2BFF44D6',
  'AWS::Logs::LogGroup SearchSlowSearchLogs16E0407F',
  'AWS::Logs::LogGroup appeventsLakeDeliveryLogsFAD8808E',
  'AWS::Logs::LogGroup appeventsLakeTransformLogsA27FF841',
  'AWS::Logs::LogGroup clickstreamLakeDeliveryLogsDEDBE0B6',
  'AWS::Logs::LogGroup clickstreamLakeTransformLogs5A95318E',
  'AWS::Logs::LogGroup clickstreamMetadataConsumerLogs2C7792B7',
  'AWS::Logs::LogGroup clickstreamSearchDeliveryLogs7B40BA92',
  'AWS::Logs::LogGroup clickstreamSearchTransformLogsB8704B99',
  'AWS::Logs::LogGroup iotLakeDeliveryLogs78FDD7D8',
  'AWS::Logs::LogGroup iotLakeTransformLogs123B815F',
  'AWS::Logs::LogGroup iotMetadataConsumerLogsE05A3A29',
  'AWS::Logs::LogGroup transactionsLakeDeliveryLogsEDD32215',
  'AWS::Logs::LogGroup transactionsLakeTransformLogs1F17B511',
  'AWS::Logs::LogGroup transactionsMetadataConsumerLogs7882EE62',
  'AWS::OpenSearchService::Domain SearchDomain62FD613E',
  'AWS::S3::Bucket StorageAccessLogs96FB524C',
  'AWS::S3::Bucket StorageData6BB23F4E',
  'AWS::SQS::Queue FailuresDlq23E2C6AA',
  'AWS::SQS::Queue FailuresFailedEventsC4C19CCB',
  'AWS::SQS::Queue MetadataConsumerDlqF0614C6A',
  'AWS::SecretsManager::Secret PiiHashKeySecret123F7354',
];

/** The template's stateful resources as `<type> <logical id>`, sorted. */
export function statefulIds(template: Template): string[] {
  return STATEFUL_TYPES.flatMap((type) => resourcesOf(template, type).map(([id]) => `${type} ${id}`)).sort();
}

/** What differs from the pinned list: ids it lacks (`added`) and ids the template lacks (`removed`). */
export function differenceFromPinned(ids: readonly string[], pinned: readonly string[] = PINNED_STATEFUL_IDS): { removed: string[]; added: string[] } {
  return { removed: pinned.filter((id) => !ids.includes(id)), added: ids.filter((id) => !pinned.includes(id)) };
}
