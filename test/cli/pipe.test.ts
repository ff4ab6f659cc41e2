/**
 * The real `sluice` binary piped into a reader that stops early (`sluice cost | head -1`): EPIPE means
 * the reader is gone, so the command finishes its work quietly, with its own exit code, without an
 * unhandled 'error' event and its stack trace.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expectNoStackTrace } from './helpers';

const bin = path.resolve(__dirname, '../../bin/sluice.js');

/** Runs sluice with stdout a pipe whose reader has already gone. */
function withReaderGone(...args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Closed before the CLI has loaded: its first write to stdout meets EPIPE.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('a reader that stops early', () => {
  test.each(['cost', 'put --help', 'cost --json'])('sluice %s exits 0 with nothing on stderr', async (command) => {
    const { code, stderr } = await withReaderGone(...command.split(' '));
    expectNoStackTrace(stderr);
    expect(stderr).toBe('');
    expect(code).toBe(0);
  }, 60_000);

  test('the work goes on: a demo whose reader is gone still delivers, stops its twin and releases the data dir', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-pipe-'));
    try {
      const { code, stderr } = await withReaderGone('demo', '--count', '5', '--data-dir', dataDir);
      expectNoStackTrace(stderr);
      expect(code).toBe(0);
      const files = fs.readdirSync(path.join(dataDir, 's3'), { recursive: true }).map(String);
      expect(files.filter((f) => f.endsWith('.parquet')).length).toBeGreaterThan(0);
      expect(fs.existsSync(path.join(dataDir, 'twin.pid'))).toBe(false);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }, 90_000);
});
