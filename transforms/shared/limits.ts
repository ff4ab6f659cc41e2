/** Service limits the Lambdas are built against (AWS-FACTS.md; Firehose, Lambda and SQS quotas). */

/** Firehose's largest record, 1,000 KiB: a bigger transformed record cannot be delivered. */
export const FIREHOSE_MAX_RECORD_BYTES = 1_024_000;

/** Lambda's synchronous response payload limit (6 MB = 6,291,456 bytes). */
export const LAMBDA_MAX_RESPONSE_BYTES = 6_291_456;

/** Lambda's synchronous request payload limit, the same 6 MB: Invoke answers a larger body with 413 RequestEntityTooLargeException. */
export const LAMBDA_MAX_REQUEST_BYTES = 6_291_456;

/**
 * Lambda's asynchronous (Event) request payload limit, 1 MB (1,048,576 bytes; 256 KB before 2025): the Invoke API
 * reference, "For asynchronous invocations, the maximum payload size is 1 MB".
 */
export const LAMBDA_MAX_ASYNC_REQUEST_BYTES = 1_048_576;

/**
 * What the transform lets its response grow to: the Lambda limit less a margin for the response
 * envelope and for rounding in the size estimate of each entry.
 */
export const TRANSFORM_RESPONSE_BUDGET_BYTES = LAMBDA_MAX_RESPONSE_BYTES - 64 * 1024;

/**
 * The dead-letter queues' MaximumMessageSize (256 KiB, set by the stack; a queue may be set up to 1 MiB since 2025), the
 * most the failure router puts in one message, and in one SendMessageBatch (which SQS allows 1 MiB).
 */
export const SQS_MAX_MESSAGE_BYTES = 262_144;
export const SQS_MAX_BATCH_ENTRIES = 10;

/** DynamoDB TransactWriteItems: at most 100 actions per call. */
export const DYNAMO_MAX_TRANSACTION_ITEMS = 100;

/** DynamoDB BatchGetItem: at most 100 keys per call. */
export const DYNAMO_MAX_BATCH_GET_KEYS = 100;

/** DynamoDB BatchWriteItem: at most 25 put or delete requests per call. */
export const DYNAMO_MAX_BATCH_WRITE_ITEMS = 25;

/** How much of an untrusted value a reason or log line quotes. */
export const MAX_REASON_CHARS = 1_000;
