import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildProgram } from '../../lib/cli/main';

const read = (file: string) => fs.readFileSync(path.join(__dirname, '..', '..', 'docs', file), 'utf8');

/** The rows of docs/cli.md's "Permissions for `--aws`" table: command → what it calls. */
function permissionRows(): Map<string, string> {
  const section = read('cli.md').split('## Permissions for `--aws`')[1]?.split('\n## ')[0] ?? '';
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    const m = /^\| `([a-z-]+)` \| (.*) \|$/.exec(line);
    if (m) rows.set(m[1], m[2]);
  }
  return rows;
}

describe('docs: the permissions --aws needs', () => {
  test('cli.md\'s "Permissions for --aws" has a row for every command that takes --aws', () => {
    const aws = buildProgram().commands.filter((c) => c.options.some((o) => o.long === '--aws')).map((c) => c.name());
    expect(aws).toContain('redrive-consumer');
    const rows = permissionRows();
    expect(aws.filter((command) => !rows.has(command))).toEqual([]);
  });

  test('redrive-consumer: the consumer dead-letter queue is encrypted with the data key, and invoking a consumer writes the metadata table', () => {
    expect(permissionRows().get('redrive-consumer')).toMatch(/`kms:Decrypt` with the data key/);
    const section = read('deploy.md').split('## When the metadata consumer gives up')[1]?.split('\n## ')[0] ?? '';
    // Its prose is wrapped: any white space between words.
    expect(section).toMatch(/`kms:Decrypt`\s+with\s+the\s+data\s+key/);
    expect(section).toMatch(/`cloudformation:DescribeStacks`/);
    expect(section).toMatch(/writes\s+the\s+pipeline's\s+metadata\s+items/);
  });
});
