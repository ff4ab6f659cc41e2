import * as fs from 'node:fs';
import * as path from 'node:path';
import { dataRoot, unlistedPartitionValue, type SchemaModel } from '../schema';
import { writeFileAtomic } from './atomic-file';
import { filesUnder } from './paths';
import { EmulatorStateError } from './state-error';

/** Each lake pipeline's partition keys, in order, as its files on the data dir are laid out. */
export const LAKE_LAYOUT_FILE = 'lake-layout.json';

/**
 * Checks each lake pipeline's partition keys against those its files on the data dir were written under, then records
 * them. A pipeline whose keys changed is refused: its new files would sit beside the old ones under other folders, and
 * no table reads both (DuckDB fails on the mismatch; on AWS the new projection no longer finds the old prefixes). A
 * data dir from before the record was kept is judged by the folders of one of its files; a pipeline with no files takes
 * its schema's keys. Returns warnings for files under enum partition values the schema no longer lists, which Athena's
 * projection leaves out (and so does `sluice query`).
 */
export async function checkLakeLayouts(
  dataDir: string, bucketDir: string, models: readonly SchemaModel[],
  /** Where a pipeline's lake delivery stream logs its records, and how many wait there: a refusal names them. */
  waiting: (pipeline: string) => { readonly records: number; readonly dir: string } = () => ({ records: 0, dir: '' }),
): Promise<string[]> {
  const file = path.join(dataDir, LAKE_LAYOUT_FILE);
  const recorded = readLayouts(file);
  const changed: string[] = [];
  /** The folders of the pipelines whose layout changed, as the refusal names them to move. */
  const folders: string[] = [];
  const warnings: string[] = [];
  /** Records the pipelines whose layout changed still hold in their write-ahead logs, said with the refusal. */
  const unsent: string[] = [];
  for (const model of models) {
    const keys = model.partitionKeys.map((k) => k.name);
    const root = path.join(bucketDir, dataRoot(model.pipeline));
    const files = filesUnder(root, '.parquet');
    // No files, nothing to conflict with: a pipeline whose folder was moved away (as the refusal says) starts anew.
    const before = files.length === 0 ? undefined : recorded[model.pipeline] ?? commonestLayout(root, files);
    if (before !== undefined && before.join('/') !== keys.join('/')) {
      changed.push(`${model.pipeline}'s files are partitioned by ${before.join(', ') || 'nothing'}, its schema now by ${keys.join(', ') || 'nothing'}`);
      folders.push(path.resolve(root));
      const { records, dir } = waiting(model.pipeline);
      // Records taken before the change: moving the folder delivers them under the new keys; a new data dir strands them.
      if (records > 0) {
        unsent.push(`${records} record${records === 1 ? '' : 's'} of ${model.pipeline} not yet delivered wait in ${dir}: moving the folder delivers them under`
          + ' the new keys at the next start; a new data dir leaves them there, undelivered, unless you first start once more here with the old'
          + ' partitionFields (and `npm run generate`) and stop, which delivers them under the old keys');
      }
      continue;
    }
    recorded[model.pipeline] = keys;
    const unlisted = new Map<string, Map<string, number>>();
    for (const f of files) {
      const found = unlistedPartitionValue(model, path.relative(root, f));
      if (found === undefined) continue;
      const values = unlisted.get(found.key) ?? new Map<string, number>();
      values.set(found.value, (values.get(found.value) ?? 0) + 1);
      unlisted.set(found.key, values);
    }
    for (const [key, values] of unlisted) {
      const count = [...values.values()].reduce((a, b) => a + b, 0);
      warnings.push(`${dataRoot(model.pipeline)} holds ${count} Parquet file${count === 1 ? '' : 's'} under ${key} values its schema's enum no longer lists`
        + ` (${[...values.keys()].sort().join(', ')}): queries leave them out, as Athena's partition projection does on AWS;`
        + ' list the values in the enum again to read them');
    }
  }
  if (changed.length > 0) {
    throw new EmulatorStateError(`the lake's layout changed: ${changed.join('; ')}. The old and new files cannot be read as one table`
      + ` (nor on AWS, where the new partition projection no longer finds the old prefixes). Start with a new data dir (--data-dir),`
      + ` or move ${changed.length === 1 ? 'that pipeline\'s folder' : 'those pipelines\' folders'} (${folders.join(', ')}) out of this one${unsent.length > 0 ? ` (${unsent.join('; ')})` : ''}; see schemas/README.md, "Changing a schema"`);
  }
  // Replaced whole: a write cut short (a kill, a full disk) leaves the record as it was, not a truncated one.
  await writeFileAtomic(file, `${JSON.stringify(recorded, null, 2)}\n`, { mode: 0o600 });
  return warnings;
}

function readLayouts(file: string): Record<string, string[]> {
  if (!fs.existsSync(file)) return {};
  const layouts: Record<string, string[]> = {};
  try {
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
    // Written by the twin alone; an entry of another shape is judged again from what the files show.
    for (const [pipeline, keys] of Object.entries(parsed)) {
      if (Array.isArray(keys) && keys.every((k) => typeof k === 'string')) layouts[pipeline] = keys as string[];
    }
  } catch {
    // One that does not read (an older Sluice wrote it in place, and a kill or a full disk could cut it short) is
    // judged again from what the files show, as a data dir from before the record, and written again.
  }
  return layouts;
}

/**
 * The partition keys most of the files are laid out by (`event_type=a/year=2026/x.parquet` → event_type, year): only
 * `key=value` folders count, and a stray file or folder does not decide.
 */
function commonestLayout(root: string, files: readonly string[]): string[] {
  const counts = new Map<string, { keys: string[]; files: number }>();
  for (const f of files) {
    const keys = path.relative(root, f).split(path.sep).slice(0, -1).filter((s) => s.includes('=')).map((s) => s.slice(0, s.indexOf('=')));
    const seen = counts.get(keys.join('/')) ?? { keys, files: 0 };
    seen.files++;
    counts.set(keys.join('/'), seen);
  }
  return [...counts.values()].sort((a, b) => b.files - a.files)[0].keys;
}
