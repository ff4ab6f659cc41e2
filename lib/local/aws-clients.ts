/**
 * AWS SDK clients pointed at the local twin's emulators (kinesis-mock, dynalite, the Firehose API).
 *
 * Every client speaks HTTP/1.1, signs with static dummy credentials (so the SDK never walks the
 * credential chain or touches ~/.aws), and uses the same region as the emulators.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { FirehoseClient } from '@aws-sdk/client-firehose';
import { KinesisClient } from '@aws-sdk/client-kinesis';
import type { LambdaClient } from '@aws-sdk/client-lambda';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { NodeHttpHandler } from '@smithy/node-http-handler';

// The SDK warns once per process on Node 20 (releases after January 2027 need Node 22). The check
// runs when a client is constructed, so setting the switch here, before any factory runs, is enough.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** Credentials the emulators accept; kinesis-mock maps any non-numeric key id to its default account. */
const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' } as const;

/** The region the local twin signs with and its emulators namespace resources under. */
export function localRegion(): string {
  return process.env.AWS_REGION || 'us-east-1';
}

export interface LocalClientOptions {
  /**
   * Attempts per call, retries included. Local calls fail fast: a dead emulator should surface in
   * seconds, not after a long backoff. @default 3
   */
  readonly maxAttempts?: number;
  /** How long one request may take before it fails. @default 30_000 */
  readonly requestTimeoutMs?: number;
  /** The region to sign with: a running twin's own (its twin.json) when known. @default localRegion() */
  readonly region?: string;
}

interface LocalClientConfig {
  endpoint: string;
  region: string;
  credentials: typeof LOCAL_CREDENTIALS;
  maxAttempts: number;
  requestHandler: NodeHttpHandler;
}

function localClientConfig(endpoint: string, options: LocalClientOptions): LocalClientConfig {
  return {
    endpoint,
    region: options.region ?? localRegion(),
    credentials: LOCAL_CREDENTIALS,
    maxAttempts: options.maxAttempts ?? 3,
    // The Kinesis client defaults to an HTTP/2 handler, which kinesis-mock rejects with a protocol
    // error; HTTP/1.1 everywhere keeps all clients alike. A hung emulator fails the call instead
    // of stalling the twin (without throwOnRequestTimeout the SDK only logs a warning).
    requestHandler: new NodeHttpHandler({
      connectionTimeout: 2_000,
      requestTimeout: options.requestTimeoutMs ?? 30_000,
      throwOnRequestTimeout: true,
    }),
  };
}

export function kinesisClient(endpoint: string, options: LocalClientOptions = {}): KinesisClient {
  return new KinesisClient(localClientConfig(endpoint, options));
}

export function dynamoClient(endpoint: string, options: LocalClientOptions = {}): DynamoDBClient {
  return new DynamoDBClient(localClientConfig(endpoint, options));
}

/** A DocumentClient that drops `undefined` attributes, as records parsed from JSON often carry them. */
export function dynamoDocumentClient(endpoint: string, options: LocalClientOptions = {}): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(dynamoClient(endpoint, options), {
    marshallOptions: { removeUndefinedValues: true },
  });
}

export function firehoseClient(endpoint: string, options: LocalClientOptions = {}): FirehoseClient {
  return new FirehoseClient(localClientConfig(endpoint, options));
}

/** Lambda's Invoke of the twin's own functions, which its Firehose endpoint answers (see FirehoseBackend.invokeFunction). */
export function lambdaClient(endpoint: string, options: LocalClientOptions = {}): LambdaClient {
  // Required here: only redrive-consumer invokes, and every command that starts or reads a twin loads this module.
  const { LambdaClient: Client } = require('@aws-sdk/client-lambda') as typeof import('@aws-sdk/client-lambda');
  return new Client(localClientConfig(endpoint, options));
}
