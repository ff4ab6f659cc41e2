import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

/** docs/deploy.md's table of every setting: its rows as [setting cell, default cell]. */
function settingRows(): Array<[string, string]> {
  const lines = fs.readFileSync(path.join(ROOT, 'docs', 'deploy.md'), 'utf8').split('\n');
  const header = lines.findIndex((l) => l.startsWith('| setting | default | allowed | sets | twin |'));
  expect(header).toBeGreaterThan(-1);
  const rows: Array<[string, string]> = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    const [setting, defaults] = line.split(' | ').map((c) => c.replace(/^\| /, ''));
    rows.push([setting, defaults]);
  }
  return rows;
}

/** `a.b.c`, `d` → `a.b.c`, `a.b.d`: a name after the first is its sibling. `…x` is under pipelineDefaults. */
function settingPaths(cell: string): string[] {
  const names = [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1].replace(/^…/, 'pipelineDefaults.').replace(/^pipelines\.<p>\./, 'pipelineDefaults.'));
  const parent = names[0].includes('.') ? names[0].slice(0, names[0].lastIndexOf('.') + 1) : '';
  return names.map((n, i) => (i === 0 || n.includes('.') ? n : parent + n));
}

/** The default cell's values, in the settings' order: `(prod …)` left out, backticks off, `none` for unset. */
function defaultValues(cell: string, count: number, isList: boolean): string[] {
  const plain = cell.replace(/\s*\(prod [^)]*\)/g, '').replace(/`/g, '');
  return isList ? [plain] : plain.split(', ').slice(0, count);
}

describe('docs/deploy.md\'s table of settings', () => {
  const context = (JSON.parse(fs.readFileSync(path.join(ROOT, 'cdk.json'), 'utf8')) as { context: Record<string, unknown> }).context;
  const valueAt = (key: string): unknown => key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], context);

  test('gives each setting the default cdk.json gives it', () => {
    const rows = settingRows();
    expect(rows.length).toBeGreaterThan(25);
    const checked: string[] = [];
    for (const [setting, defaults] of rows) {
      const paths = settingPaths(setting);
      const values = paths.map(valueAt);
      const shown = defaultValues(defaults, paths.length, Array.isArray(values[0]));
      expect({ setting, defaults: shown }).toEqual({
        setting,
        defaults: values.map((v) => (v === undefined || v === '' ? 'none' : Array.isArray(v) ? v.join(', ') : String(v))),
      });
      checked.push(...paths);
    }
    // Every setting cdk.json writes is in the table (the pipelines' own entries and environments aside).
    const written = (o: unknown, prefix: string): string[] => Object.entries(o as Record<string, unknown>).flatMap(([k, v]) =>
      (typeof v === 'object' && v !== null && !Array.isArray(v) ? written(v, `${prefix}${k}.`) : [`${prefix}${k}`]));
    const sluiceKeys = Object.fromEntries(Object.entries(context).filter(([k]) => !k.startsWith('@') && k !== 'pipelines' && k !== 'environments'));
    expect(written(sluiceKeys, '').filter((k) => !checked.includes(k))).toEqual([]);
  });
});
