/**
 * How the user can run this `sluice` again, for the commands its messages suggest (`start the twin with \`… local up\``).
 * `npx sluice` works only where npm finds this package (the checkout, or a project that depends on it): anywhere else
 * npx asks the npm registry for a package named sluice, which is not this one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { escapeControlCharacters, shellWord } from './output';

/** What the answer depends on; each defaults to this process's. */
export interface Invocation {
  /** @default process.cwd() */
  readonly cwd?: string;
  /** The script node ran (process.argv[1]): a bin link on PATH when the user typed `sluice`. @default process.argv[1] */
  readonly script?: string;
  /** @default process.env.PATH */
  readonly pathVariable?: string;
  /** The folder holding bin/sluice.js and package.json. @default this module's package */
  readonly packageRoot?: string;
}

const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');
const BIN_NAME = 'sluice';

/**
 * `sluice` when the user ran it through a bin link on PATH (`npm link`, a global install) that leads to this package;
 * `npx sluice` when npm, from the working directory, finds this package's bin; else `sluice` when a link on PATH leads
 * here all the same; else `node <bin/sluice.js>`, relative to the working directory when that is shorter. For the
 * terminal: a control character in that path is escaped.
 */
export function sluiceCommand(invocation: Invocation = {}): string {
  const cwd = path.resolve(invocation.cwd ?? process.cwd());
  const root = invocation.packageRoot ?? PACKAGE_ROOT;
  const bin = path.join(root, 'bin', 'sluice.js');
  const target = realPath(bin);
  const leadsHere = (file: string | undefined) => file !== undefined && target !== undefined && realPath(file) === target;
  const onPath = binOnPath(invocation.pathVariable ?? process.env.PATH ?? '', cwd);
  const script = invocation.script ?? process.argv[1];
  if (leadsHere(onPath) && script !== undefined && path.resolve(cwd, script) === onPath) return BIN_NAME;
  if (npxFinds(cwd, root, leadsHere)) return `npx ${BIN_NAME}`;
  if (leadsHere(onPath)) return BIN_NAME;
  const relative = path.relative(cwd, bin);
  return `node ${escapeControlCharacters(shellWord(relative.length < bin.length ? relative : bin))}`;
}

/**
 * The `sluice` a shell finds on PATH. npx and npm scripts put `node_modules/.bin` folders first on the PATH of what
 * they run (npx its cache's, which links this package): those are not the user's shell's, so they are passed over.
 */
function binOnPath(pathVariable: string, cwd: string): string | undefined {
  for (const dir of pathVariable.split(path.delimiter)) {
    if (dir === '') continue;
    const folder = path.resolve(cwd, dir);
    if (path.basename(folder) === '.bin' && path.basename(path.dirname(folder)) === 'node_modules') continue;
    const file = path.join(folder, BIN_NAME);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not there, or not executable: the shell looks further
    }
  }
  return undefined;
}

/**
 * Whether `npx sluice` in `cwd` runs this package: npm takes the nearest folder up from `cwd` with a package.json or a
 * node_modules as the project, and runs its own bin when the project is this package, else its node_modules/.bin's.
 */
function npxFinds(cwd: string, root: string, leadsHere: (file: string) => boolean): boolean {
  for (let dir = cwd; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) || fs.existsSync(path.join(dir, 'node_modules'))) {
      return realPath(dir) === realPath(root) || leadsHere(path.join(dir, 'node_modules', '.bin', BIN_NAME));
    }
    if (path.dirname(dir) === dir) return false;
  }
}

function realPath(file: string): string | undefined {
  try {
    return fs.realpathSync(file);
  } catch {
    return undefined;
  }
}
