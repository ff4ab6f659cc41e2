/** Finding the processes a command started (and theirs), which the CLI ends with a credential wait it gave up on. */
import { expectShellAndItsChildFound } from './descendants';

test('a shell and the process it started are both found, the shell first; a process with none has none', expectShellAndItsChildFound);
