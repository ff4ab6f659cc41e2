/**
 * DynamoDB for the consumer and router tests: dynalite in-process (real expression evaluation),
 * plus a wrapper that adds TransactWriteItems — which dynalite lacks — with DynamoDB's all-or-nothing
 * semantics for the shapes Sluice sends, and fault injection (throttling, conflicts).
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { CreateTableCommand, DynamoDBClient, ProvisionedThroughputExceededException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  ScanCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { METADATA_TABLE_KEYS } from '../../transforms/shared/metadata-table';

type Dynalite = (options: { createTableMs?: number }) => Server;

export interface LocalDynamo {
  readonly client: DynamoDBDocumentClient;
  readonly tableName: string;
  scan(): Promise<Array<Record<string, unknown>>>;
  close(): Promise<void>;
}

let tableCounter = 0;

export async function startDynalite(): Promise<LocalDynamo> {
  const dynalite = require('dynalite') as Dynalite;
  const server = dynalite({ createTableMs: 0 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const raw = new DynamoDBClient({ endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 1 });
  const client = DynamoDBDocumentClient.from(raw, { marshallOptions: { removeUndefinedValues: true } });
  const tableName = `sluice-test-${++tableCounter}`;
  const { partitionKey, sortKey } = METADATA_TABLE_KEYS;
  await raw.send(new CreateTableCommand({
    TableName: tableName,
    KeySchema: [{ AttributeName: partitionKey, KeyType: 'HASH' }, { AttributeName: sortKey, KeyType: 'RANGE' }],
    AttributeDefinitions: [{ AttributeName: partitionKey, AttributeType: 'S' }, { AttributeName: sortKey, AttributeType: 'S' }],
    BillingMode: 'PAY_PER_REQUEST',
  }));
  return {
    client,
    tableName,
    async scan() {
      const out = await client.send(new ScanCommand({ TableName: tableName }));
      return (out.Items ?? []) as Array<Record<string, unknown>>;
    },
    async close() {
      raw.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type Command = { input: unknown; constructor: { name: string } };

export interface Faults {
  /** Fail this many of the next calls (any command) with ProvisionedThroughputExceededException. */
  throttleNext?: number;
  /** Cancel this many of the next transactions with TransactionConflict. */
  conflictNext?: number;
  /** Throttle every call, for good. */
  throttleAlways?: boolean;
}

/** A document client whose TransactWriteCommand is executed atomically against dynalite. */
export function transactional(local: LocalDynamo, faults: Faults = {}): { client: DynamoDBDocumentClient; calls: string[] } {
  const calls: string[] = [];
  const send = async (command: Command): Promise<unknown> => {
    calls.push(command.constructor.name);
    if (faults.throttleAlways || (faults.throttleNext ?? 0) > 0) {
      if (!faults.throttleAlways) faults.throttleNext = faults.throttleNext! - 1;
      throw new ProvisionedThroughputExceededException({ message: 'Rate exceeded', $metadata: {} });
    }
    if (!(command instanceof TransactWriteCommand)) return local.client.send(command as never);
    const items = command.input.TransactItems ?? [];
    if ((faults.conflictNext ?? 0) > 0) {
      faults.conflictNext = faults.conflictNext! - 1;
      throw new TransactionCanceledException({
        message: 'Transaction cancelled',
        $metadata: {},
        CancellationReasons: items.map((_, i) => ({ Code: i === items.length - 1 ? 'TransactionConflict' : 'None' })),
      });
    }
    // Check every condition first (the only conditions Sluice uses in a transaction are
    // attribute_not_exists(pk) on puts), then apply everything: all or nothing.
    const keys = new Set<string>();
    const reasons: Array<{ Code: string }> = [];
    for (const item of items) {
      const put = item.Put;
      const update = item.Update;
      const key = put ? { pk: put.Item!.pk, sk: put.Item!.sk } : update ? update.Key : undefined;
      const id = JSON.stringify(key);
      if (keys.has(id)) throw Object.assign(new Error('Transaction request cannot include multiple operations on one item'), { name: 'ValidationException' });
      keys.add(id);
      if (put?.ConditionExpression) {
        if (put.ConditionExpression !== 'attribute_not_exists(pk)') throw new Error(`unsupported condition in test transaction: ${put.ConditionExpression}`);
        const existing = await local.client.send(new GetCommand({ TableName: put.TableName, Key: key }));
        reasons.push({ Code: existing.Item ? 'ConditionalCheckFailed' : 'None' });
      } else {
        reasons.push({ Code: 'None' });
      }
    }
    if (reasons.some((r) => r.Code !== 'None')) {
      throw new TransactionCanceledException({ message: 'Transaction cancelled, please refer cancellation reasons for specific reasons', $metadata: {}, CancellationReasons: reasons });
    }
    for (const item of items) {
      if (item.Put) {
        const { ConditionExpression: _c, ...put } = item.Put;
        await local.client.send(new PutCommand(put as never));
      } else if (item.Update) {
        await local.client.send(new UpdateCommand(item.Update as never));
      } else if (item.Delete) {
        await local.client.send(new DeleteCommand(item.Delete as never));
      }
    }
    return {};
  };
  return { client: { send } as unknown as DynamoDBDocumentClient, calls };
}

/** A client that throttles or fails through a plain dynalite client (no transactions). */
export function faulty(local: LocalDynamo, faults: Faults = {}): DynamoDBDocumentClient {
  const send = async (command: Command): Promise<unknown> => {
    if (faults.throttleAlways || (faults.throttleNext ?? 0) > 0) {
      if (!faults.throttleAlways) faults.throttleNext = faults.throttleNext! - 1;
      throw new ProvisionedThroughputExceededException({ message: 'Rate exceeded', $metadata: {} });
    }
    return local.client.send(command as never);
  };
  return { send } as unknown as DynamoDBDocumentClient;
}
