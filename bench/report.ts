/**
 * What every benchmark prints alongside its numbers: the machine, tables in one style, medians.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';

/** "2 cores (AMD EPYC …), Node v20.20.2, linux x64": printed with each table, since every number depends on it. */
export function machine(): string {
  const cpus = os.cpus();
  const model = cpus[0]?.model.trim().replace(/\s+/g, ' ') ?? 'unknown CPU';
  return `${os.availableParallelism()} cores (${model}), Node ${process.version}, ${os.platform()} ${os.arch()}`;
}

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, c) => Math.max(...cells.map((r) => r[c].length)));
  const line = (r: string[]) => `| ${r.map((v, c) => (c === 0 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.slice(1).map(line)].join('\n');
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** 51234.5 → "51,235" */
export function perSecond(count: number, ms: number): string {
  return Math.round(count / (ms / 1000)).toLocaleString('en-US');
}

export const QUICK = process.argv.includes('--quick');

/**
 * CPU time (ms) the calling thread has used, from /proc/thread-self/stat (Linux); undefined elsewhere.
 * Tells the event loop's own work apart from other threads' (GC helpers, libuv's file I/O, DuckDB).
 */
export function threadCpuMs(): number | undefined {
  try {
    const stat = fs.readFileSync('/proc/thread-self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime (fields 14 and 15 of stat(5)), in clock ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** CPU time (ms) of the whole process, every thread. */
export function processCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
