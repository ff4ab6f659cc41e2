/**
 * package.json against the code: every package the code imports is declared (in `dependencies` when the `sluice`
 * command, the twin, `npm run generate` or a Lambda loads it at run time, since README says `npm ci --omit=dev`
 * installs what those need), `engines` admits only Node.js versions with every API the code uses, and `allowScripts`
 * names exactly the packages with install scripts.
 */
import { spawnSync } from 'node:child_process';
import { builtinModules } from 'node:module';
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  engines: { node: string };
  allowScripts: Record<string, boolean>;
};

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && /\.(ts|js)$/.test(e.name))
    .map((e) => path.relative(ROOT, path.join(e.parentPath, e.name)));
}

interface Use { readonly file: string; readonly pkg: string; readonly typeOnly: boolean }

/** `@scope/name/sub` → `@scope/name`, `name/sub` → `name`; undefined for relative paths and Node's own modules. */
function packageOf(specifier: string): string | undefined {
  if (specifier.startsWith('.') || specifier.startsWith('node:') || builtinModules.includes(specifier.split('/')[0] as string)) return undefined;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

function uses(file: string): Use[] {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  const found: Use[] = [];
  const add = (specifier: string | undefined, typeOnly: boolean): void => {
    const name = specifier === undefined ? undefined : packageOf(specifier);
    if (name !== undefined) found.push({ file, pkg: name, typeOnly });
  };
  for (const m of text.matchAll(/^\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/gm)) add(m[2], m[1] !== undefined);
  for (const m of text.matchAll(/(typeof\s+)?\b(?:require|require\.resolve|import|jest\.mock)\(\s*['"]([^'"]+)['"]\s*\)/g)) add(m[2], m[1] !== undefined);
  return found;
}

const files = ['lib', 'transforms', 'bin', 'bench', 'test'].flatMap(sourceFiles).concat(['eslint.config.js', 'jest.config.js']);
const allUses = files.flatMap(uses);

/** What runs from a `npm ci --omit=dev` install: all but the tests, the benchmarks and the CDK app (`cdk synth`). */
const runsWithoutDevDependencies = (file: string): boolean =>
  /^(lib|transforms|bin)\//.test(file) && file !== path.join('bin', 'app.ts');

describe('dependencies', () => {
  test('the scan finds the imports (a broken pattern would make the checks below pass on nothing)', () => {
    const names = new Set(allUses.map((u) => u.pkg));
    for (const name of ['@aws-sdk/client-kinesis', 'commander', 'aws-cdk-lib', 'kinesis-local', 'dynalite', 'jest', 'fast-check']) expect(names).toContain(name);
    expect(allUses.some((u) => u.typeOnly)).toBe(true);
  });

  test('every imported package is declared in package.json (none is used only because another package brings it)', () => {
    const declared = new Set([...Object.keys(pkg.dependencies), ...Object.keys(pkg.devDependencies)]);
    // `import type … from 'aws-lambda'` is @types/aws-lambda's: there is no package of that name to install.
    const undeclared = allUses.filter((u) => !declared.has(u.pkg) && !(u.typeOnly && declared.has(`@types/${u.pkg}`)));
    expect(undeclared.map((u) => `${u.pkg} (${u.file})`)).toEqual([]);
  });

  test('what the sluice command, the twin, generate and the Lambdas load at run time is in dependencies', () => {
    const misplaced = allUses.filter((u) => !u.typeOnly && runsWithoutDevDependencies(u.file) && !(u.pkg in pkg.dependencies));
    expect(misplaced.map((u) => `${u.pkg} (${u.file})`)).toEqual([]);
  });

  test('every dependency is imported or required somewhere', () => {
    const used = new Set(allUses.map((u) => u.pkg));
    const unused = Object.keys(pkg.dependencies).filter((name) => !used.has(name));
    expect(unused).toEqual([]);
  });
});

/**
 * The Node.js APIs the code uses that arrived latest, with the first release of each line that has them. A Node.js
 * without one fails only when that code runs (a missing zlib.crc32 stops the twin's first delivery), so `engines`
 * must leave the older releases out, and README and docs/deploy.md say the same.
 */
const LATE_APIS: readonly { api: string; pattern: RegExp; node20: string; node22: string }[] = [
  { api: 'zlib.crc32', pattern: /import \{[^}]*\bcrc32\b[^}]*\} from 'node:zlib'/, node20: '20.15.0', node22: '22.2.0' },
  { api: 'Dirent.parentPath', pattern: /\.parentPath\b/, node20: '20.12.0', node22: '22.0.0' },
];

const newer = (a: string, b: string): string => {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number)) as [number[], number[]];
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return (x[i] as number) > (y[i] as number) ? a : b;
  return a;
};

describe('engines', () => {
  const code = ['lib', 'transforms', 'bin'].flatMap(sourceFiles).map((f) => fs.readFileSync(path.join(ROOT, f), 'utf8')).join('\n');

  test.each(LATE_APIS)('$api is still used (else drop it from the table)', ({ pattern }) => {
    expect(code).toMatch(pattern);
  });

  test('engines.node starts each supported line at the release with every API above, and the docs say so', () => {
    const min20 = LATE_APIS.map((a) => a.node20).reduce(newer);
    const min22 = LATE_APIS.map((a) => a.node22).reduce(newer);
    expect(pkg.engines.node).toBe(`^${min20} || >=${min22}`);
    const short = (v: string): string => v.replace(/\.0$/, '');
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    expect(readme).toContain(`Node.js 20 (${short(min20)} or later), 22 (${short(min22)} or later`);
    const deploy = fs.readFileSync(path.join(ROOT, 'docs', 'deploy.md'), 'utf8');
    expect(deploy).toContain(`Node.js ${short(min20)} or later on 20, ${short(min22)} or later on 22`);
    expect(fs.readFileSync(path.join(ROOT, 'bin', 'sluice.js'), 'utf8')).toContain(`Sluice needs ${short(min20)} or later on 20, ${short(min22)} or later on 22`);
  });

  test('on a Node.js without zlib.crc32 the sluice command says so and exits 2 instead of starting', () => {
    // An older Node.js, as far as Sluice can tell: the preload removes crc32 before bin/sluice.js runs.
    const preload = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-old-node-')), 'no-crc32.js');
    fs.writeFileSync(preload, "delete require('node:zlib').crc32;\n");
    const run = spawnSync(process.execPath, ['-r', preload, path.join(ROOT, 'bin', 'sluice.js'), '--version'], { encoding: 'utf8' });
    fs.rmSync(path.dirname(preload), { recursive: true, force: true });
    expect({ status: run.status, stdout: run.stdout, stderr: run.stderr }).toEqual({
      status: 2,
      stdout: '',
      stderr: `sluice: Node.js ${process.version} is too old: Sluice needs 20.15 or later on 20, 22.2 or later on 22 (or 24, 26)\n`,
    });
  });
});

test('allowScripts names exactly the packages in the lockfile with install scripts', () => {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { hasInstallScript?: boolean }>;
  };
  const withScripts = Object.entries(lock.packages)
    .filter(([, p]) => p.hasInstallScript === true)
    .map(([where]) => where.replace(/^.*node_modules\//, ''));
  expect(Object.keys(pkg.allowScripts).sort()).toEqual([...new Set(withScripts)].sort());
});
