/**
 * A state file under the data dir that an emulator cannot load, or a folder the twin cannot make (the temp dir): the
 * user's to move away or fix (the CLI exits 2, as for other environment problems), not a bug. Its own module, so the CLI can recognise it without
 * loading the emulators.
 */
export class EmulatorStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmulatorStateError';
  }
}
