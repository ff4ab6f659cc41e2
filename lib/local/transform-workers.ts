/**
 * The twin runs the record-transform Lambda as Lambda does: in runtimes of its own (worker threads),
 * not on the twin's event loop. Its CPU work (decode, validate, enrich, serialize) then runs beside
 * the twin's HTTP, write-ahead log and Parquet work on another core (on 2 cores, copying events and
 * responses between threads costs about what that saves: README, Performance), and a runtime that
 * crashes or hangs costs the invocations it holds, as in Lambda, never the twin.
 *
 * - Every runtime loads the same handler module (`transforms/record-transform/handler.ts`) and makes
 *   one handler per pipeline and destination when it starts, so a missing schema fails the twin's start.
 * - An invocation goes to the runtime with the fewest in flight; its event and result cross by
 *   structured clone, the result as Lambda's Node.js runtime sends it: as JSON (see `answer`). One that
 *   JSON.stringify refuses fails its invocation (`Runtime.JSONStringifyError`), and the runtime serves the next.
 * - A runtime that exits or throws outside an invocation fails what it holds (`Lambda.FunctionError`
 *   in the engine, which retries); the next invocation starts a new runtime, unless the code it would load
 *   changed on disk since the start (`codeChanged`): a new runtime would run other code than the twin started with.
 * - A runtime still holding an invocation a moment after the function's timeout (when the engine has
 *   recorded `Lambda.FunctionTimedOut`) is ended, as Lambda ends a timed-out sandbox; one whose heap would
 *   grow past the function's memory (`memoryMiB`) ends as a sandbox out of memory does.
 * - A runtime takes several invocations at once and runs them one after the other: one that has not answered
 *   for `unresponsiveMs` (a function stuck in a loop) keeps the invocation it runs, to its timeout, and a new
 *   runtime takes its place and the invocations it had not started. In Lambda a stuck invocation holds its own
 *   sandbox only; without this, a record that hangs the function would hold every pipeline's transform.
 */
import * as os from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { FirehoseTransformationResult } from 'aws-lambda';
import type { TransformationEvent } from '../../transforms/shared/firehose-event';
import type { createTransformHandler, TransformHandler } from '../../transforms/record-transform/handler';
import type { TransformProcessor } from './delivery-stream';

export type Destination = 'lake' | 'search';

export interface TransformWorkersOptions {
  /** The handlers every runtime makes. */
  readonly handlers: ReadonlyArray<{ readonly pipeline: string; readonly destination: Destination }>;
  readonly piiHashKey: string;
  /** Runtimes. @default defaultTransformWorkers() */
  readonly size?: number;
  /** The module whose `createTransformHandler` makes the handlers. @default transforms/record-transform/handler */
  readonly handlerModule?: string;
  /**
   * The function's memory (`transform.memoryMiB`): a runtime's heap may not grow past it. One that would ends, as a
   * Lambda sandbox out of memory does, and fails what it holds. @default V8's own limit
   */
  readonly memoryMiB?: number;
  /**
   * What changed on disk, since the start, in the code a runtime loads (the twin: the generated validators), or
   * undefined. Asked before a runtime is started again; while it answers, none is, and invocations fail with its answer.
   * @default nothing is checked
   */
  readonly codeChanged?: () => string | undefined;
  /** Told why a runtime ended (it exited, threw outside an invocation, timed out), not when they are closed. @default nothing */
  readonly onRuntimeEnd?: (reason: string) => void;
  /**
   * How long a runtime holding invocations may go without answering one before a new runtime takes those it has not
   * started (an invocation takes well under a second; more is a function stuck, or a machine very busy). @default 5000
   */
  readonly unresponsiveMs?: number;
}

const HANDLER_MODULE = require.resolve('../../transforms/record-transform/handler');

/** How late past `timeoutMs` a runtime is ended: the engine has recorded the timeout by then. */
const END_GRACE_MS = 1000;

interface WorkerSetup {
  readonly sluiceTransformWorker: true;
  readonly handlers: TransformWorkersOptions['handlers'];
  readonly piiHashKey: string;
  readonly handlerModule: string;
}

interface Invocation {
  readonly id: number;
  readonly key: string;
  readonly event: TransformationEvent;
}

type Reply =
  | { readonly ready: true }
  | { readonly ready: false; readonly message: string }
  | { readonly id: number; readonly result: FirehoseTransformationResult }
  | { readonly id: number; readonly error: { readonly name: string; readonly message: string } };

/** An invocation a runtime holds; it moves to another runtime with its deadline. */
interface Pending {
  readonly invocation: Invocation;
  readonly timeoutMs: number;
  /** When the runtime holding it is ended (`performance.now()` ms): a moment after the function's timeout. */
  readonly deadline: number;
  readonly resolve: (result: FirehoseTransformationResult) => void;
  readonly reject: (error: Error) => void;
}

/** One runtime per core beyond the twin's own, at least one and at most four. */
export function defaultTransformWorkers(): number {
  return Math.min(4, Math.max(1, os.availableParallelism() - 1));
}

function handlerKey(pipeline: string, destination: Destination): string {
  return `${pipeline}\u0000${destination}`;
}

class Runtime {
  readonly pending = new Map<number, Pending & { readonly timer: NodeJS.Timeout }>();
  readonly ready: Promise<void>;
  private ended = false;
  private isReady = false;
  /**
   * When the runtime last answered, or last became busy: what `unresponsiveMs` is counted from. On the monotonic
   * clock, as every time here: a wall clock set back would leave a hung runtime unreplaced for as long, and one set
   * forward would replace a runtime that answers.
   */
  private lastHeard = performance.now();
  private watchdog: NodeJS.Timeout | undefined;
  /** Replaced (it stopped answering): ended once it holds nothing, then told here. */
  private retired: (() => void) | undefined;
  /** Why the runtime could not make its handlers: what the invocations it holds fail with. */
  private startFailure: string | undefined;

  constructor(
    private readonly worker: Worker,
    private readonly onEnd: (runtime: Runtime, reason: string) => void,
    private readonly unresponsive: { readonly afterMs: number; readonly then: (runtime: Runtime) => void },
  ) {
    this.ready = new Promise((resolve, reject) => {
      worker.on('message', (reply: Reply) => {
        this.lastHeard = performance.now();
        if ('ready' in reply) {
          if (reply.ready) {
            resolve();
          } else {
            this.startFailure = reply.message;
            reject(new Error(reply.message));
          }
        } else {
          this.settle(reply);
        }
      });
      const end = (reason: string) => {
        if (this.ended) return;
        this.ended = true;
        reject(new Error(`the transform's runtime ended before it was ready: ${reason}`));
        onEnd(this, reason);
      };
      worker.on('error', (error) => end(`${error.name}: ${error.message}`));
      worker.on('exit', (code) => end(this.startFailure === undefined ? `it exited with code ${code}` : `it could not make its handlers: ${this.startFailure}`));
    });
    // Not ready yet is not idle: a runtime starting holds the process until it is ready or ends.
    this.ready.then(() => {
      this.isReady = true;
      this.lastHeard = performance.now();
      this.refIfBusy();
      this.watch();
    }, () => undefined);
  }

  invoke(invocation: Invocation, timeoutMs: number): Promise<FirehoseTransformationResult> {
    return new Promise((resolve, reject) => {
      this.hold({ invocation, timeoutMs, deadline: performance.now() + timeoutMs + END_GRACE_MS, resolve, reject });
    });
  }

  /** Takes an invocation, new or moved from another runtime (its deadline kept). */
  hold(waiting: Pending): void {
    if (this.ended) {
      waiting.reject(new Error("the transform's runtime ended before the invocation reached it"));
      return;
    }
    const { invocation, timeoutMs } = waiting;
    const timer = setTimeout(() => this.onEnd(this, `an invocation was unanswered after ${timeoutMs} ms`), Math.max(0, waiting.deadline - performance.now()));
    timer.unref();
    if (this.pending.size === 0) this.lastHeard = performance.now();
    // Counted at once, so the next invocation sees this runtime busy even while it starts.
    this.pending.set(invocation.id, { ...waiting, timer });
    this.refIfBusy();
    this.watch();
    // A runtime that ends before it is ready has failed what it holds already.
    this.ready.then(() => {
      if (this.pending.has(invocation.id)) this.worker.postMessage(invocation);
    }, () => undefined);
  }

  /**
   * Stops taking invocations: gives back those it holds but the first (the one it runs, since it runs them in
   * order), and ends once that one is answered or timed out.
   */
  retire(whenEnded: () => void): Pending[] {
    this.retired = whenEnded;
    const [, ...notStarted] = [...this.pending.values()];
    for (const waiting of notStarted) {
      clearTimeout(waiting.timer);
      this.pending.delete(waiting.invocation.id);
    }
    this.endIfRetiredAndIdle();
    return notStarted;
  }

  /** Fails what the runtime holds and stops it. */
  end(reason: string): void {
    const error = new Error(this.startFailure === undefined ? `the transform's runtime ended: ${reason}` : `the transform's runtime could not start: ${this.startFailure}`);
    for (const [id, waiting] of this.pending) {
      clearTimeout(waiting.timer);
      this.pending.delete(id);
      waiting.reject(error);
    }
    clearTimeout(this.watchdog);
    if (!this.ended) {
      this.ended = true;
      void this.worker.terminate();
    }
  }

  private settle(reply: Extract<Reply, { id: number }>): void {
    const waiting = this.pending.get(reply.id);
    if (!waiting) return;
    this.pending.delete(reply.id);
    clearTimeout(waiting.timer);
    this.refIfBusy();
    if ('result' in reply) waiting.resolve(reply.result);
    else waiting.reject(Object.assign(new Error(reply.error.message), { name: reply.error.name }));
    this.endIfRetiredAndIdle();
  }

  private endIfRetiredAndIdle(): void {
    if (this.retired && this.pending.size === 0 && !this.ended) {
      this.end('replaced');
      this.retired();
    }
  }

  /** While it holds invocations, checks that the runtime answers one at least every `unresponsive.afterMs`. */
  private watch(): void {
    if (this.watchdog !== undefined || this.retired || this.ended || !this.isReady || this.pending.size === 0) return;
    const silentFor = performance.now() - this.lastHeard;
    this.watchdog = setTimeout(() => {
      this.watchdog = undefined;
      if (this.retired || this.ended || this.pending.size === 0) return;
      if (performance.now() - this.lastHeard >= this.unresponsive.afterMs) this.unresponsive.then(this);
      else this.watch();
    }, Math.max(0, this.unresponsive.afterMs - silentFor));
    this.watchdog.unref();
  }

  /** An idle runtime does not keep the process alive; one holding an invocation does (a flush waits on it). */
  private refIfBusy(): void {
    if (this.pending.size > 0) this.worker.ref();
    else this.worker.unref();
  }
}

export class TransformWorkers {
  private readonly runtimes: Runtime[] = [];
  /** Runtimes that stopped answering, each still holding the invocation it runs until that times out. */
  private readonly retired = new Set<Runtime>();
  private readonly size: number;
  private nextId = 0;
  private closed = false;

  private constructor(private readonly options: TransformWorkersOptions) {
    this.size = Math.max(1, options.size ?? defaultTransformWorkers());
  }

  /** Starts the runtimes; rejects (and stops them) when a handler cannot be made, e.g. a pipeline without a schema. */
  static async start(options: TransformWorkersOptions): Promise<TransformWorkers> {
    const workers = new TransformWorkers(options);
    for (let i = 0; i < workers.size; i++) workers.runtimes.push(workers.spawn());
    try {
      await Promise.all(workers.runtimes.map((r) => r.ready));
    } catch (error) {
      await workers.close();
      throw error;
    }
    return workers;
  }

  /**
   * The processor a delivery engine invokes for one pipeline and destination. `timeoutMs` is the
   * function's timeout: a runtime still holding an invocation a moment after it is ended.
   */
  processor(pipeline: string, destination: Destination, timeoutMs: number): TransformProcessor {
    const key = handlerKey(pipeline, destination);
    if (!this.options.handlers.some((h) => handlerKey(h.pipeline, h.destination) === key)) {
      throw new Error(`no transform handler was started for ${pipeline} ${destination}`);
    }
    return async (event) => {
      if (this.closed) throw new Error('the twin is stopping: the transform runtimes are closed');
      return this.leastBusy().invoke({ id: this.nextId++, key, event }, timeoutMs);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const runtime of [...this.runtimes.splice(0), ...this.retired]) runtime.end('the twin is stopping');
    this.retired.clear();
  }

  /** A runtime that stopped answering is replaced: the invocations it has not started go to the others. */
  private replace(stuck: Runtime): void {
    const at = this.runtimes.indexOf(stuck);
    if (this.closed || at < 0) return;
    this.runtimes.splice(at, 1);
    this.retired.add(stuck);
    for (const waiting of stuck.retire(() => this.retired.delete(stuck))) {
      let runtime: Runtime;
      try {
        runtime = this.leastBusy();
      } catch (error) {
        waiting.reject(error as Error);
        continue;
      }
      runtime.hold(waiting);
    }
  }

  private leastBusy(): Runtime {
    if (this.runtimes.length < this.size) {
      const changed = this.options.codeChanged?.();
      if (changed === undefined) {
        while (this.runtimes.length < this.size) this.runtimes.push(this.spawn());
      } else if (this.runtimes.length === 0) {
        throw new Error(`the transform's runtime ended and is not started again: ${changed}`);
      }
    }
    let best = this.runtimes[0];
    for (const runtime of this.runtimes) if (runtime.pending.size < best.pending.size) best = runtime;
    return best;
  }

  private spawn(): Runtime {
    const setup: WorkerSetup = {
      sluiceTransformWorker: true,
      handlers: this.options.handlers,
      piiHashKey: this.options.piiHashKey,
      handlerModule: this.options.handlerModule ?? HANDLER_MODULE,
    };
    // The handler is TypeScript: the runtime loads it through tsx, as the CLI does.
    const source = `require(${JSON.stringify(require.resolve('tsx/cjs'))}); require(${JSON.stringify(__filename)});`;
    // `env`: the environment as this realm sees it (under jest, the test's own copy), not the process's.
    const worker = new Worker(source, {
      eval: true,
      workerData: setup,
      env: { ...process.env },
      ...(this.options.memoryMiB ? { resourceLimits: { maxOldGenerationSizeMb: this.options.memoryMiB } } : {}),
    });
    const runtime: Runtime = new Runtime(worker, (ended, reason) => {
      ended.end(reason);
      const at = this.runtimes.indexOf(ended);
      if (at >= 0) this.runtimes.splice(at, 1);
      else if (!this.retired.delete(ended)) return; // closed
      this.options.onRuntimeEnd?.(reason);
    }, { afterMs: this.options.unresponsiveMs ?? 5000, then: (stuck) => this.replace(stuck) });
    return runtime;
  }
}

/** Inside a runtime: make the handlers, say ready, then answer invocations. */
function serve(port: NonNullable<typeof parentPort>, setup: WorkerSetup): void {
  const handlers = new Map<string, TransformHandler>();
  try {
    const { createTransformHandler: create } = require(setup.handlerModule) as { createTransformHandler: typeof createTransformHandler };
    for (const { pipeline, destination } of setup.handlers) {
      handlers.set(handlerKey(pipeline, destination), create({ pipeline, destination, piiHashKey: setup.piiHashKey }));
    }
  } catch (error) {
    port.postMessage({ ready: false, message: (error as Error).message } satisfies Reply);
    return;
  }
  port.on('message', (invocation: Invocation) => {
    const handler = handlers.get(invocation.key)!;
    handler(invocation.event).then(
      (result) => answer(port, invocation.id, result),
      (error: unknown) => {
        const { name, message } = (error ?? {}) as { name?: unknown; message?: unknown };
        const reply: Reply = {
          id: invocation.id,
          error: { name: typeof name === 'string' ? name : 'Error', message: typeof message === 'string' ? message : String(error) },
        };
        port.postMessage(reply);
      },
    );
  });
  port.postMessage({ ready: true } satisfies Reply);
}

/**
 * Sends a handler's result as Lambda's Node.js runtime sends it: `JSON.stringify(result ?? null)`. A result JSON.stringify
 * refuses (a BigInt, a cycle, a toJSON or getter that throws) fails that invocation with the runtime's error, which
 * Firehose records as `Lambda.FunctionError`, and the sandbox serves the next; what JSON leaves out or writes
 * otherwise (functions, symbols, undefined, a Date, a Map, NaN) reaches Firehose left out or written so. Structured
 * clone alone would refuse some of those (and end the runtime), and pass others on that Lambda never would.
 *
 * Writing and parsing every response as JSON would be exact, but a response is megabytes of records and JSON text
 * between the threads was measured slower than structured clone (README, Performance). So a result that is JSON
 * already, as every response of a correct handler is, crosses by structured clone as it is (`isJsonAlready` reads
 * its values' types, not its strings: about 1 ms for 5,000 records, against 6 ms to clone them and 13 ms to write
 * and parse them as JSON); any other goes through JSON.stringify and JSON.parse, as it would in Lambda.
 */
function answer(port: NonNullable<typeof parentPort>, id: number, result: FirehoseTransformationResult): void {
  try {
    if (isJsonAlready(result, 0)) {
      port.postMessage({ id, result } satisfies Reply);
      return;
    }
  } catch {
    // A getter that throws; or a Proxy, which passes for the plain object it wraps and which structured clone refuses:
    // JSON.stringify judges them, as Lambda's runtime does.
  }
  let reply: Reply;
  try {
    const text = JSON.stringify(result === undefined ? null : result) as string | undefined;
    // A function or a symbol on its own has no JSON: Firehose gets no response object.
    reply = { id, result: (text === undefined ? null : JSON.parse(text)) as FirehoseTransformationResult };
  } catch (error) {
    // The name and message Lambda's runtime reports (aws-lambda-nodejs-runtime-interface-client), and why.
    const why = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    reply = { id, error: { name: 'Runtime.JSONStringifyError', message: `Unable to stringify response body (${why})` } };
  }
  port.postMessage(reply);
}

/** Deeper than a transform's response goes: JSON.stringify judges what is below (and finds a cycle, which never ends here). */
const JSON_CHECK_DEPTH = 16;

/**
 * Whether JSON.stringify and JSON.parse would give `value` back as structured clone does: strings, finite numbers,
 * booleans and null in arrays without holes and in objects whose prototype is Object's (or none). Anything else (a
 * Date, a Map, a Buffer, a class instance, undefined, NaN, -0, a BigInt, a function) is left for JSON to judge.
 */
function isJsonAlready(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0);
    case 'object':
      break;
    default:
      return false;
  }
  if (value === null) return true;
  if (depth === JSON_CHECK_DEPTH) return false;
  const prototype = Object.getPrototypeOf(value) as unknown;
  if (Array.isArray(value)) {
    if (prototype !== Array.prototype) return false;
    // A hole reads as undefined: JSON writes it as null.
    for (let i = 0; i < value.length; i++) if (!isJsonAlready(value[i], depth + 1)) return false;
    return true;
  }
  if (prototype !== Object.prototype && prototype !== null) return false;
  for (const key of Object.keys(value)) if (!isJsonAlready((value as Record<string, unknown>)[key], depth + 1)) return false;
  return true;
}

const setup = workerData as Partial<WorkerSetup> | undefined;
if (!isMainThread && parentPort && setup?.sluiceTransformWorker === true) serve(parentPort, setup as WorkerSetup);
