import * as fs from 'node:fs';
import * as path from 'node:path';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';

// Handler tests pass their own telemetry; anything else (e.g. EMF from singleMetric) stays quiet.
process.env.POWERTOOLS_METRICS_DISABLED = 'true';

export const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'events');

export function fixture<T>(name: string): T {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, name), 'utf8')) as T;
}

export function fixtureBytes(name: string): Buffer {
  return fs.readFileSync(path.join(FIXTURES, name));
}

export const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64');
export const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');

/**
 * A Powertools logger and metrics pair whose output is captured: every structured log line and
 * every EMF blob, parsed. POWERTOOLS_DEV routes both through the global console.
 */
export function capturedTelemetry(): { logger: Logger; metrics: Metrics; lines: Array<Record<string, unknown>>; restore(): void } {
  const before = { dev: process.env.POWERTOOLS_DEV, disabled: process.env.POWERTOOLS_METRICS_DISABLED };
  process.env.POWERTOOLS_DEV = 'true';
  process.env.POWERTOOLS_METRICS_DISABLED = 'false';
  const lines: Array<Record<string, unknown>> = [];
  const capture = (...args: unknown[]) => {
    for (const a of args) {
      if (typeof a === 'string') {
        try {
          lines.push(JSON.parse(a) as Record<string, unknown>);
        } catch {
          // not a structured line
        }
      }
    }
  };
  const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((m) => jest.spyOn(console, m).mockImplementation(capture));
  const logger = new Logger({ serviceName: 'test', logLevel: 'DEBUG' });
  const metrics = new Metrics({ namespace: 'Sluice', serviceName: 'test' });
  return {
    logger,
    metrics,
    lines,
    restore() {
      for (const s of spies) s.mockRestore();
      if (before.dev === undefined) delete process.env.POWERTOOLS_DEV;
      else process.env.POWERTOOLS_DEV = before.dev;
      if (before.disabled === undefined) delete process.env.POWERTOOLS_METRICS_DISABLED;
      else process.env.POWERTOOLS_METRICS_DISABLED = before.disabled;
    },
  };
}

/** A logger/metrics pair that prints nothing (for tests that do not look at telemetry). */
export function quietTelemetry(): { logger: Logger; metrics: Metrics } {
  const logger = new Logger({ serviceName: 'test', logLevel: 'SILENT' });
  const metrics = new Metrics({ namespace: 'Sluice', serviceName: 'test' });
  return { logger, metrics };
}
