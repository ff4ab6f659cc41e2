import * as fs from 'node:fs';
import * as path from 'node:path';
import { PROJECT_ROOT } from '../../lib/config';
import { resourcesOf, type Synthesized } from './synth';

/**
 * The kind of each alarm a stack has: its name without `<stack>-`, and a pipeline's name as `<p>`
 * (`sluice-dev-iot-lake-freshness` → `<p>-lake-freshness`), as docs/deploy.md's "Alarms" lists them.
 */
export function alarmKinds(s: Synthesized): string[] {
  const stack = s.stack.stackName;
  // Longest first: a pipeline whose name starts another's (`app`, `app-events`) must not take its alarms.
  const pipelines = Object.keys(s.config.pipelines).sort((a, b) => b.length - a.length);
  const kinds = resourcesOf(s.template, 'AWS::CloudWatch::Alarm').map(([, a]) => {
    const id = String(a.AlarmName).slice(`${stack}-`.length);
    const pipeline = pipelines.find((p) => id.startsWith(`${p}-`));
    return pipeline ? `<p>-${id.slice(pipeline.length + 1)}` : id;
  });
  return [...new Set(kinds)].sort();
}

/** The alarm ids docs/deploy.md's "Alarms" section has an entry for: the backquoted ids in each entry's bold lead. */
export function runbookAlarmKinds(): string[] {
  const doc = fs.readFileSync(path.join(PROJECT_ROOT, 'docs', 'deploy.md'), 'utf8');
  const section = /^## Alarms\n([\s\S]*?)(?=^## )/m.exec(doc)?.[1] ?? '';
  // An entry is a list item that leads with its ids in bold, up to the colon (`- **`<p>-lake-freshness`, …**: …`).
  const leads = [...section.matchAll(/^- \*\*([\s\S]*?)\*\*:/gm)].map(([, lead]) => lead);
  return [...new Set(leads.flatMap((lead) => [...lead.matchAll(/`([^`]+)`/g)].map(([, id]) => id)))].sort();
}
