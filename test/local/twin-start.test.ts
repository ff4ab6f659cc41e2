import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../../lib/config';
import { startTwin } from '../../lib/local/twin';

// What the twin says as it starts, before it makes anything: a data dir it cannot make ends the start right after.
describe('the twin as it starts', () => {
  let scratch: string;
  beforeEach(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-twin-start-'));
  });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  test('warns of each schema file it runs no pipeline for, naming the cdk.json entry to add', async () => {
    const file = path.join(scratch, 'a-file');
    fs.writeFileSync(file, '');
    const lines: string[] = [];
    const config = loadConfig(['pipelines={"iot":{}}']);
    await expect(startTwin({ config, dataDir: path.join(file, 'data'), log: (line) => lines.push(line) })).rejects.toThrow();
    expect(lines).toEqual(expect.arrayContaining(['app-events', 'clickstream', 'transactions'].map((p) =>
      `sluice: warning: schemas/${p}.schema.json has no entry under "pipelines" in cdk.json, so nothing deploys or runs it: add "${p}": {} there (or -c 'pipelines.${p}={}' for one command); a schema kept for later can stay as it is`)));
    expect(lines.filter((l) => l.includes('iot.schema.json'))).toEqual([]);
  });
});
