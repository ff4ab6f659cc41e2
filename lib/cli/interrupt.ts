/**
 * Ctrl-C (SIGINT) and SIGTERM while `put` or `replay` has work in hand (sending, verifying, a batch of dead letters): the
 * first asks it to stop after what it holds and report; a second ends the process at once, by that signal. local up and
 * demo take them the same way (their second signal also lets go of the twin's lock).
 */
import * as os from 'node:os';

/**
 * A SIGTERM this soon after the SIGTERM that stopped the command is the same stop, delivered twice: GNU `timeout`
 * signals its child and then its process group, and supervisors that signal the group do likewise. A second SIGINT is
 * never taken for the first: it is a deliberate second Ctrl-C.
 */
export const REPEATED_SIGTERM_MS = 2_000;

/** How long a command stopping after the work in hand waits before it says so (a call that is answered at once needs no note). */
export const STOPPING_NOTE_MS = 1000;

export interface Interruption {
  readonly signal: 'SIGINT' | 'SIGTERM';
  /** How messages name it: "Ctrl-C", "SIGTERM". */
  readonly label: string;
  /** The shell's status for a process the signal ended: 130, 143. */
  readonly exitCode: number;
}

/** The shell's status for a process a signal ended: 130 for SIGINT, 143 for SIGTERM. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + os.constants.signals[signal];
}

export function interruptionBy(signal: 'SIGINT' | 'SIGTERM'): Interruption {
  return { signal, label: signal === 'SIGINT' ? 'Ctrl-C' : 'SIGTERM', exitCode: signalExitCode(signal) };
}

/**
 * Calls `onFirst` at the first Ctrl-C or SIGTERM, until the returned function is called. A second signal (but a
 * repeated SIGTERM) goes to `onSecond`; without one, it stops taking them and sends the process that signal again,
 * which ends it as Node's default does (for SIGINT, with the `sluice: interrupted` line bin/sluice.js writes).
 */
export function takeInterrupts(onFirst: (interruption: Interruption) => void, onSecond?: (signal: 'SIGINT' | 'SIGTERM') => void): () => void {
  let first: { signal: NodeJS.Signals; at: number } | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (first === undefined) {
      first = { signal, at: performance.now() };
      onFirst(interruptionBy(signal as 'SIGINT' | 'SIGTERM'));
      return;
    }
    if (signal === 'SIGTERM' && first.signal === 'SIGTERM' && performance.now() - first.at < REPEATED_SIGTERM_MS) return;
    if (onSecond !== undefined) {
      onSecond(signal as 'SIGINT' | 'SIGTERM');
      return;
    }
    dispose();
    process.kill(process.pid, signal);
  };
  const dispose = (): void => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return dispose;
}
