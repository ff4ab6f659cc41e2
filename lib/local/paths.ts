import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SluiceConfig } from '../config';

/** The twin's data-dir layout (DESIGN.md "The local twin"), written once. */

/**
 * Whether `child` lies strictly inside `parent` (both resolved). A first segment that merely starts with
 * two dots (`.. x`, `..a`) is a name, not the parent directory.
 */
export function isInside(parent: string, child: string): boolean {
  const relative = path.relative(parent, child);
  return relative !== '' && relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative);
}

/**
 * `mkdir -p`, one level at a time from the nearest folder that exists. Node's recursive mkdir never
 * returns for a path under /proc (each level answers ENOENT, and it retries the parent forever).
 */
export function makeDirectories(dir: string): void {
  const missing: string[] = [];
  let at = path.resolve(dir);
  while (!fs.existsSync(at)) {
    missing.push(at);
    const parent = path.dirname(at);
    if (parent === at) break;
    at = parent;
  }
  for (const folder of missing.reverse()) {
    try {
      fs.mkdirSync(folder);
    } catch (error) {
      // Made meanwhile (another twin starting on the same folder) is fine.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir} is not a folder`);
}

/** Default data dir: `.sluice/` in the working directory. */
export function defaultDataDir(cwd: string = process.cwd()): string {
  return path.join(cwd, '.sluice');
}

/** The one data bucket the twin writes, as the stack's data bucket (whose AWS name CloudFormation picks). */
export function localBucketName(config: Pick<SluiceConfig, 'prefix' | 'env'>): string {
  return `${config.prefix}-${config.env}-data`;
}

export function s3Dir(dataDir: string): string {
  return path.join(dataDir, 's3');
}

export function bucketDir(dataDir: string, bucket: string): string {
  return path.join(s3Dir(dataDir), bucket);
}

export function dlqDir(dataDir: string): string {
  return path.join(dataDir, 'dlq');
}

export function dlqPath(dataDir: string, queue: string): string {
  return path.join(dlqDir(dataDir), `${queue}.jsonl`);
}

export function openSearchDir(dataDir: string): string {
  return path.join(dataDir, 'opensearch');
}
