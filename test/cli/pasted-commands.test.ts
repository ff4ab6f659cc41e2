/**
 * Commands the CLI suggests (`start the twin with \`npx sluice local up --data-dir …\``) paste into a shell as
 * printed, whatever the data dir's path holds: a laptop's folders have spaces, quotes, `#` and `$` in their names.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { shellWord } from '../../lib/cli/output';
import { sluice, tempDataDir } from './helpers';

/** The arguments /bin/sh makes of `words`, as it would of a pasted command's. */
function argumentsAsShellReadsThem(words: string): string[] {
  const out = execFileSync('/bin/sh', ['-c', `printf '%s\\0' ${words}`], { encoding: 'utf8' });
  return out.split('\0').slice(0, -1);
}

test('shellWord: the shell reads back exactly the text, as one argument, and a plain path is left as it is', () => {
  fc.assert(fc.property(fc.string({ unit: 'grapheme', minLength: 0, maxLength: 24 }).filter((s) => !s.includes('\0')), (text) => {
    expect(argumentsAsShellReadsThem(shellWord(text))).toEqual([text]);
  }), { numRuns: 60 });
  for (const text of ["Jäne Doé's #1 projects", '$HOME', '`id`', 'a b', '~/x', '[x]*?{a,b}', "'", '', 'tab\there', 'new\nline']) {
    expect(argumentsAsShellReadsThem(shellWord(text))).toEqual([text]);
  }
  expect(shellWord('/tmp/sluice-cli-x1/.sluice')).toBe('/tmp/sluice-cli-x1/.sluice');
  expect(shellWord('../data_2026-11,v1:a=b@c+%d')).toBe('../data_2026-11,v1:a=b@c+%d');
  // zsh, macOS's shell, expands a word that starts with = to a command's path (=ls → /bin/ls); sh does not.
  expect(shellWord('=data')).toBe("'=data'");
});

test('the start hint for a missing data dir whose path has a quote, #, $ and spaces pastes into a shell as that path', async () => {
  const odd = path.join(tempDataDir(), "Jäne Doé's #1 $HOME [x] projects");
  fs.mkdirSync(odd);
  const missing = path.join(odd, 'nope');
  const { code, stderr } = await sluice('query', 'SELECT 1', '--data-dir', missing);
  expect(code).toBe(2);
  const command = /`npx sluice local up --data-dir (.*)`/.exec(stderr)?.[1];
  expect(command).toBeDefined();
  expect(argumentsAsShellReadsThem(command!)).toEqual([missing]);
});
