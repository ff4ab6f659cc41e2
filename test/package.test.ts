/**
 * package.json against the code: every package the code imports is declared (in `dependencies` when the `sluice`
 * command, the twin, `npm run generate` or a Lambda loads it at run time, since README says `npm ci --omit=dev`
 * installs what those need), and `allowScripts` names exactly the packages with install scripts.
 */
import { builtinModules } from 'node:module';
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

test('allowScripts names exactly the packages in the lockfile with install scripts', () => {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { hasInstallScript?: boolean }>;
  };
  const withScripts = Object.entries(lock.packages)
    .filter(([, p]) => p.hasInstallScript === true)
    .map(([where]) => where.replace(/^.*node_modules\//, ''));
  expect(Object.keys(pkg.allowScripts).sort()).toEqual([...new Set(withScripts)].sort());
});
