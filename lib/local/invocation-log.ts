/**
 * The execution log of one invocation of a function the twin runs in its own process, as Lambda writes it to the
 * function's log stream: a START line, what the function printed, an END line and a REPORT line. Lambda's Invoke
 * answers its last 4 KB to `X-Amz-Log-Type: Tail` (see FunctionAnswer.log).
 *
 * What the function printed is what its Powertools logger printed (the consumer logs nothing else): an
 * {@link InvocationLogger} prints each line as any Logger does and also adds it to the log of the invocation it runs
 * in, told apart by async context, so invocations that overlap (the event source mapping's, other Invokes) each keep
 * their own lines. Lines printed some other way (console.log, the AWS SDK's warnings) are not in it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { performance } from 'node:perf_hooks';
import { Logger, type LogItem } from '@aws-lambda-powertools/logger';

type LoggerOptions = ConstructorParameters<typeof Logger>[0];

const current = new AsyncLocalStorage<string[]>();

/** A Powertools Logger whose lines, and its children's, also go to the log of the invocation printing them. */
export class InvocationLogger extends Logger {
  public override createChild(options?: LoggerOptions): InvocationLogger {
    return super.createChild(options) as InvocationLogger;
  }

  protected override createLogger(options?: LoggerOptions): InvocationLogger {
    return new InvocationLogger(options);
  }

  protected override printLog(logLevel: number, log: LogItem): void {
    super.printLog(logLevel, log);
    // The line as printed (attributes already stripped of empty keys by the print), on a line of its own.
    current.getStore()?.push(`${JSON.stringify(log.getAttributes(), this.getJsonReplacer())}\n`);
  }
}

/**
 * Runs `run` as the invocation `requestId` of `$LATEST`, and answers its result with its execution log: START, the
 * lines an InvocationLogger printed during it, END, and REPORT with its duration (and the memory configured, when
 * given; the twin measures no memory used by one invocation, so REPORT says none).
 */
export async function withInvocationLog<T>(requestId: string, run: () => Promise<T>, memoryMiB?: number): Promise<{ result: T; log: string }> {
  const lines: string[] = [`START RequestId: ${requestId} Version: $LATEST\n`];
  const started = performance.now();
  const result = await current.run(lines, run);
  const ms = performance.now() - started;
  lines.push(`END RequestId: ${requestId}\n`);
  lines.push(`REPORT RequestId: ${requestId}\tDuration: ${ms.toFixed(2)} ms\tBilled Duration: ${Math.max(1, Math.ceil(ms))} ms\t` +
    `${memoryMiB !== undefined ? `Memory Size: ${memoryMiB} MB\t` : ''}\n`);
  return { result, log: lines.join('') };
}
