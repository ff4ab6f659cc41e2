/**
 * Fault injection for the local twin: the failures a pipeline meets in AWS, on demand, so tests
 * (test/faults/) and the soak test can prove that nothing acknowledged is lost or duplicated.
 *
 * One FaultInjector per twin, given as `TwinOptions.faults` or built from `SLUICE_FAULTS`:
 * - transform: an invocation of the transform Lambda throws, times out, answers a malformed
 *   response, or answers fewer records than it got — the delivery engine retries it as Firehose
 *   does, then writes the chunk's records as processing-failed error objects;
 * - dynamo: a request of the metadata consumer is answered with a throttling error (inside the AWS
 *   SDK's retry loop, as DynamoDB would answer it), answered late, or applied and its answer lost (the
 *   connection resets; the SDK sends it again), so the consumer's retries, partial batch failures,
 *   the event source mapping's bisection after a timeout, and exactly-once counting are exercised;
 * - storage: a write under the data dir (object store, write-ahead logs) fails with ENOSPC, EROFS, …
 *   — by a rate, or switched on and off with `failStorage()` / `healStorage()`;
 * - dlq: a send of the failure router to the dead-letter queue fails, as SendMessageBatch does while
 *   SQS is unreachable — the router retries it, then fails the invocation, and the twin retries the
 *   event as S3's asynchronous invocation does.
 * OpenSearch faults need no hook: point `OPENSEARCH_URL` at a server that answers as you like.
 *
 * `SLUICE_FAULTS` (read by `startTwin` when `TwinOptions.faults` is not given), comma-separated:
 *   seed=7                      random choices are reproducible (default 1)
 *   transform=0.2               share of transform invocations that fail
 *   transform.kinds=throw+timeout+malformed+fewer-records   kinds to choose from (default all)
 *   transform.timeoutMs=2000    the transform timeout while transform faults are on (default 2000)
 *   dynamo=0.1                  share of DynamoDB requests throttled
 *   dynamo.operations=PutItem+UpdateItem   which operations (default all)
 *   dynamo.lost=0.05            share of DynamoDB requests applied whose answer is then lost
 *   storage=0.01                share of writes under the data dir that fail
 *   storage.code=ENOSPC         the error they fail with (default ENOSPC)
 *   dlq=0.05                    share of the failure router's sends to the dead-letter queue that fail
 * e.g. `SLUICE_FAULTS=transform=0.2,dynamo=0.1,storage=0.01 npx sluice local up`.
 */
import type { FirehoseTransformationResult } from 'aws-lambda';
import { setTimeout as delay } from 'node:timers/promises';
import type { TransformationEvent } from '../../transforms/shared/firehose-event';
import { ProvisionedThroughputExceededException, ThrottlingException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { createRng } from '../schema/sample';
import type { TransformProcessor } from './delivery-stream';

export const TRANSFORM_FAULT_KINDS = ['throw', 'timeout', 'malformed', 'fewer-records'] as const;
export type TransformFaultKind = (typeof TRANSFORM_FAULT_KINDS)[number];

export const STORAGE_FAULT_CODES = ['ENOSPC', 'EROFS', 'EDQUOT', 'EIO', 'EACCES'] as const;
export type StorageFaultCode = (typeof STORAGE_FAULT_CODES)[number];

/** A throttling error, or `AnswerLost`: the request is applied, then the connection resets before its answer arrives. */
export type DynamoFaultKind = 'ProvisionedThroughputExceededException' | 'ThrottlingException' | 'AnswerLost';
/** A throttling error, a lost answer, or a slow answer: the request goes through after `delayMs` (a hot partition, a long queue). */
export type DynamoFault = DynamoFaultKind | { readonly delayMs: number };

/** What the transform wrapper is told about one invocation. */
export interface TransformInvocation {
  readonly event: TransformationEvent;
  /** 0-based, counted per FaultInjector across every delivery stream. */
  readonly index: number;
  /** The delivery stream's pipeline and destination. */
  readonly pipeline: string;
  readonly destination: 'lake' | 'search';
}

export interface TransformFaults {
  /** Share of invocations that fail, 0–1. @default 0 */
  readonly rate?: number;
  /** Kinds a failing invocation picks from, uniformly. @default all of TRANSFORM_FAULT_KINDS */
  readonly kinds?: readonly TransformFaultKind[];
  /** Decides each invocation instead of `rate` (scripted faults); undefined lets it through. */
  readonly decide?: (invocation: TransformInvocation) => TransformFaultKind | undefined;
  /** The transform timeout while these faults are on; a `timeout` fault answers this + 1 s late. @default 2000 */
  readonly timeoutMs?: number;
}

/** What the DynamoDB hook is told about one HTTP attempt (SDK retries included). */
export interface DynamoRequest {
  /** e.g. PutItem, UpdateItem, TransactWriteItems. */
  readonly operation: string;
  /** The JSON request body. */
  readonly body: string;
  /** 0-based, counted per FaultInjector. */
  readonly index: number;
}

export interface DynamoFaults {
  /** Share of requests throttled, 0–1. @default 0 */
  readonly rate?: number;
  /** Share of requests applied whose answer is then lost (after the throttled ones are chosen), 0–1. @default 0 */
  readonly lostRate?: number;
  /** Only these operations. @default all */
  readonly operations?: readonly string[];
  /** Decides each request instead of `rate`; undefined lets it through. */
  readonly decide?: (request: DynamoRequest) => DynamoFault | undefined;
}

export interface StorageFaults {
  /** Share of writes that fail, 0–1. @default 0 */
  readonly rate?: number;
  /** @default 'ENOSPC' */
  readonly code?: StorageFaultCode;
}

/** What the dead-letter queue hook is told about one send (one SQS batch, up to 10 messages). */
export interface DlqSend {
  /** The queue's name. */
  readonly queue: string;
  readonly messages: number;
  /** 0-based, counted per FaultInjector. */
  readonly index: number;
}

export interface DlqFaults {
  /** Share of sends that fail, 0–1. @default 0 */
  readonly rate?: number;
  /** Decides each send instead of `rate`: true fails it. */
  readonly decide?: (send: DlqSend) => boolean;
}

export interface FaultPlan {
  /** Seed of the random choices. @default 1 */
  readonly seed?: number;
  readonly transform?: TransformFaults;
  readonly dynamo?: DynamoFaults;
  readonly storage?: StorageFaults;
  readonly dlq?: DlqFaults;
}

/** Faults injected so far, by kind (a soak test prints these next to its counts). */
export interface InjectedFaults {
  readonly transform: Readonly<Record<TransformFaultKind, number>>;
  readonly dynamo: number;
  readonly storage: number;
  readonly dlq: number;
}

const STORAGE_MESSAGES: Readonly<Record<StorageFaultCode, { errno: number; text: string }>> = {
  ENOSPC: { errno: -28, text: 'no space left on device' },
  EROFS: { errno: -30, text: 'read-only file system' },
  EDQUOT: { errno: -122, text: 'disk quota exceeded' },
  EIO: { errno: -5, text: 'i/o error' },
  EACCES: { errno: -13, text: 'permission denied' },
};

/** An error shaped like the one Node's fs throws, e.g. `ENOSPC: no space left on device, write '<file>'`. */
export function storageError(code: StorageFaultCode, file: string, syscall = 'write'): NodeJS.ErrnoException {
  const { errno, text } = STORAGE_MESSAGES[code];
  return Object.assign(new Error(`${code}: ${text}, ${syscall} '${file}'`), { code, errno, syscall, path: file });
}

export class FaultInjector {
  private readonly plan: FaultPlan;
  private readonly random: () => number;
  private transformIndex = 0;
  private dynamoIndex = 0;
  private dlqIndex = 0;
  private storageSwitch: { code: StorageFaultCode; until: number } | undefined;
  private readonly counts = {
    transform: { throw: 0, timeout: 0, malformed: 0, 'fewer-records': 0 } as Record<TransformFaultKind, number>,
    dynamo: 0,
    storage: 0,
    dlq: 0,
  };

  constructor(plan: FaultPlan = {}) {
    const problems = planProblems(plan);
    if (problems.length > 0) throw new Error(`fault plan: ${problems.join('; ')}`);
    this.plan = plan;
    this.random = createRng(plan.seed ?? 1);
  }

  /** The plan in `SLUICE_FAULTS`, or undefined when it is unset or empty. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): FaultInjector | undefined {
    const text = env.SLUICE_FAULTS?.trim();
    return text ? new FaultInjector(parseFaultPlan(text)) : undefined;
  }

  /** True when transform faults are planned: the twin then lowers the transform timeout to `transformTimeoutMs`. */
  get hasTransformFaults(): boolean {
    return this.plan.transform !== undefined;
  }

  get transformTimeoutMs(): number {
    return this.plan.transform?.timeoutMs ?? 2000;
  }

  injected(): InjectedFaults {
    return { transform: { ...this.counts.transform }, dynamo: this.counts.dynamo, storage: this.counts.storage, dlq: this.counts.dlq };
  }

  // ---- transform -----------------------------------------------------------------------------

  /** The processor the delivery engine invokes, failing as planned. */
  wrapTransform(processor: TransformProcessor, stream: { pipeline: string; destination: 'lake' | 'search' }): TransformProcessor {
    const faults = this.plan.transform;
    if (!faults) return processor;
    return async (event) => {
      const index = this.transformIndex++;
      const kind = faults.decide ? faults.decide({ event, index, ...stream }) : this.pick(faults.rate, faults.kinds ?? TRANSFORM_FAULT_KINDS);
      if (kind === undefined) return processor(event);
      this.counts.transform[kind]++;
      const where = `${stream.pipeline} ${stream.destination} invocation ${index}`;
      switch (kind) {
        case 'throw':
          throw new Error(`injected fault: the transform threw (${where})`);
        case 'timeout': {
          // Answers, correctly, after the engine has given up on it: a late Lambda response is ignored.
          await delay(this.transformTimeoutMs + 1000, undefined, { ref: false });
          return processor(event);
        }
        case 'malformed': {
          const result = await processor(event);
          return { records: result.records.map((r, i) => (i === 0 ? { ...r, data: 'not base64!' } : r)) } as FirehoseTransformationResult;
        }
        case 'fewer-records': {
          const result = await processor(event);
          return { records: result.records.slice(0, -1) };
        }
      }
    };
  }

  // ---- DynamoDB ------------------------------------------------------------------------------

  /**
   * Throttles, delays or loses the answers of the client's requests as planned. The fault comes per HTTP
   * attempt, inside the SDK's retry loop, so the SDK's own retries run first, as against DynamoDB.
   * Works on a DynamoDBClient or a DynamoDBDocumentClient (they share one middleware stack).
   */
  instrumentDynamo<T extends DynamoDBClient | DynamoDBDocumentClient>(client: T): T {
    const faults = this.plan.dynamo;
    if (!faults) return client;
    const stack = client.middlewareStack as DynamoDBClient['middlewareStack'];
    stack.add(
      (next) => async (args) => {
        const request = args.request as { headers?: Record<string, string>; body?: unknown };
        const operation = (request.headers?.['x-amz-target'] ?? '').split('.').pop() ?? '';
        // The JSON protocols serialize to a string or to UTF-8 bytes, depending on the SDK version.
        const raw = request.body;
        const body = typeof raw === 'string' ? raw : raw instanceof Uint8Array ? Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8') : '';
        const index = this.dynamoIndex++;
        const kind: DynamoFault | undefined = faults.decide ? faults.decide({ operation, body, index }) : this.plannedDynamoFault(faults, operation);
        if (kind === undefined) return next(args);
        this.counts.dynamo++;
        if (typeof kind === 'object') {
          await delay(kind.delayMs, undefined, { ref: false });
          return next(args);
        }
        if (kind === 'AnswerLost') {
          await next(args);
          // The SDK takes ECONNRESET for a network error and sends the request again, as after a real reset.
          throw Object.assign(new Error(`socket hang up (injected fault: ${operation} was applied, its answer lost)`), { code: 'ECONNRESET', $metadata: {} });
        }
        const $metadata = { httpStatusCode: 400, requestId: `injected-${index}`, attempts: 1, totalRetryDelay: 0 };
        throw kind === 'ThrottlingException'
          ? new ThrottlingException({ message: 'Rate of requests exceeds the allowed throughput. (injected fault)', $metadata })
          : new ProvisionedThroughputExceededException({
            message: 'The level of configured provisioned throughput for the table was exceeded. (injected fault)', $metadata,
          });
      },
      // The innermost step: after the retry middleware, before the HTTP request goes out.
      { step: 'deserialize', name: 'sluiceInjectedDynamoFaults', priority: 'low' },
    );
    return client;
  }

  private plannedDynamoFault(faults: DynamoFaults, operation: string): DynamoFaultKind | undefined {
    if (faults.operations !== undefined && !faults.operations.includes(operation)) return undefined;
    if (this.random() < (faults.rate ?? 0)) return 'ProvisionedThroughputExceededException';
    return faults.lostRate !== undefined && this.random() < faults.lostRate ? 'AnswerLost' : undefined;
  }

  // ---- storage -------------------------------------------------------------------------------

  /**
   * Every write under the data dir fails with `code` until healStorage(), or for `forMs`, counted on the monotonic
   * clock: the wall clock set forward or back (NTP, a resumed laptop) neither ends the fault early nor stretches it.
   */
  failStorage(code: StorageFaultCode = 'ENOSPC', forMs = Number.POSITIVE_INFINITY): void {
    this.storageSwitch = { code, until: performance.now() + forMs };
  }

  healStorage(): void {
    this.storageSwitch = undefined;
  }

  /**
   * The hook the object store and the write-ahead logs call before writing `file`: throws the
   * planned storage error, or returns. Bound, so it can be passed around as a function.
   */
  readonly beforeWrite = (file: string): void => {
    const switched = this.storageSwitch;
    if (switched && performance.now() >= switched.until) this.storageSwitch = undefined;
    let code: StorageFaultCode | undefined = this.storageSwitch?.code;
    if (code === undefined && this.plan.storage && this.random() < (this.plan.storage.rate ?? 0)) code = this.plan.storage.code ?? 'ENOSPC';
    if (code === undefined) return;
    this.counts.storage++;
    throw storageError(code, file);
  };

  // ---- dead-letter queue ---------------------------------------------------------------------

  /**
   * The hook the failure router's DLQ sender calls before sending `messages` to `queue`: throws as SendMessageBatch
   * does while SQS is unreachable, or returns. Bound, so it can be passed around as a function.
   */
  readonly beforeDlqSend = (queue: string, messages: number): void => {
    const faults = this.plan.dlq;
    if (!faults) return;
    const index = this.dlqIndex++;
    const fails = faults.decide ? faults.decide({ queue, messages, index }) : this.random() < (faults.rate ?? 0);
    if (!fails) return;
    this.counts.dlq++;
    throw new Error(`injected fault: SendMessageBatch to ${queue} failed (${messages} messages, send ${index}): the queue did not answer`);
  };

  private pick<K extends string>(rate: number | undefined, kinds: readonly K[]): K | undefined {
    if (!(this.random() < (rate ?? 0)) || kinds.length === 0) return undefined;
    return kinds[Math.floor(this.random() * kinds.length)];
  }
}

/** Parses the `SLUICE_FAULTS` syntax (see the file comment); errors name the entry and the allowed values. */
export function parseFaultPlan(text: string): FaultPlan {
  const problems: string[] = [];
  let seed: number | undefined;
  const transform: { rate?: number; kinds?: TransformFaultKind[]; timeoutMs?: number } = {};
  const dynamo: { rate?: number; lostRate?: number; operations?: string[] } = {};
  const storage: { rate?: number; code?: StorageFaultCode } = {};
  const dlq: { rate?: number } = {};
  /** Groups a setting names (transform for transform.kinds), and the keys given as they are. */
  const used = new Set<string>();
  const given = new Set<string>();
  const rate = (key: string, value: string): number | undefined => {
    const n = Number(value);
    if (value.trim() === '' || !(n >= 0 && n <= 1)) {
      problems.push(`${key}=${value}: expected a share between 0 and 1, e.g. ${key}=0.1`);
      return undefined;
    }
    return n;
  };
  const list = (value: string) => value.split('+').map((s) => s.trim()).filter((s) => s !== '');
  for (const entry of text.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const eq = entry.indexOf('=');
    const key = eq < 0 ? entry : entry.slice(0, eq).trim();
    const value = eq < 0 ? '' : entry.slice(eq + 1).trim();
    used.add(key.split('.')[0]);
    given.add(key);
    switch (key) {
      case 'seed': {
        const n = Number(value);
        if (value === '' || !Number.isInteger(n)) problems.push(`seed=${value}: expected a whole number`);
        else seed = n;
        break;
      }
      case 'transform': transform.rate = rate(key, value); break;
      case 'transform.kinds': {
        const kinds = list(value);
        const unknown = kinds.filter((k) => !(TRANSFORM_FAULT_KINDS as readonly string[]).includes(k));
        if (unknown.length > 0 || kinds.length === 0) problems.push(`transform.kinds=${value}: expected some of ${TRANSFORM_FAULT_KINDS.join('+')}`);
        else transform.kinds = kinds as TransformFaultKind[];
        break;
      }
      case 'transform.timeoutMs': {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 100 || n > 300_000) problems.push(`transform.timeoutMs=${value}: expected whole milliseconds 100–300000`);
        else transform.timeoutMs = n;
        break;
      }
      case 'dynamo': dynamo.rate = rate(key, value); break;
      case 'dynamo.lost': dynamo.lostRate = rate(key, value); break;
      case 'dynamo.operations': {
        const operations = list(value);
        if (operations.length === 0 || operations.some((o) => !/^[A-Z][A-Za-z]+$/.test(o))) {
          problems.push(`dynamo.operations=${value}: expected DynamoDB operation names joined by +, e.g. PutItem+UpdateItem`);
        } else {
          dynamo.operations = operations;
        }
        break;
      }
      case 'storage': storage.rate = rate(key, value); break;
      case 'storage.code':
        if (!(STORAGE_FAULT_CODES as readonly string[]).includes(value)) problems.push(`storage.code=${value}: expected one of ${STORAGE_FAULT_CODES.join(', ')}`);
        else storage.code = value as StorageFaultCode;
        break;
      case 'dlq': dlq.rate = rate(key, value); break;
      default:
        problems.push(`"${key}" is not a fault setting; expected seed, transform, transform.kinds, transform.timeoutMs, dynamo, dynamo.lost, dynamo.operations, storage, storage.code, dlq`);
    }
  }
  // Settings without their share would inject nothing while the twin says faults are on.
  for (const name of ['transform', 'dynamo', 'storage']) {
    const shareGiven = given.has(name) || (name === 'dynamo' && given.has('dynamo.lost'));
    if (used.has(name) && !shareGiven) {
      problems.push(`${name}.* settings need ${name}=<share> to say how often, e.g. ${name}=0.1${name === 'dynamo' ? ' (or dynamo.lost=<share>)' : ''}`);
    }
  }
  if (problems.length > 0) throw new Error(`SLUICE_FAULTS: ${problems.join('; ')}`);
  return {
    ...(seed !== undefined ? { seed } : {}),
    ...(used.has('transform') ? { transform } : {}),
    ...(used.has('dynamo') ? { dynamo } : {}),
    ...(used.has('storage') ? { storage } : {}),
    ...(used.has('dlq') ? { dlq } : {}),
  };
}

function planProblems(plan: FaultPlan): string[] {
  const problems: string[] = [];
  const share = (key: string, value: number | undefined) => {
    if (value !== undefined && !(value >= 0 && value <= 1)) problems.push(`${key} must be between 0 and 1, got ${value}`);
  };
  share('transform.rate', plan.transform?.rate);
  share('dynamo.rate', plan.dynamo?.rate);
  share('dynamo.lostRate', plan.dynamo?.lostRate);
  share('storage.rate', plan.storage?.rate);
  share('dlq.rate', plan.dlq?.rate);
  const timeoutMs = plan.transform?.timeoutMs;
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs >= 100 && timeoutMs <= 300_000)) {
    problems.push(`transform.timeoutMs must be whole milliseconds 100–300000, got ${timeoutMs}`);
  }
  return problems;
}
