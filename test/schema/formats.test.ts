import fc from 'fast-check';
import { fullFormats } from 'ajv-formats/dist/formats';
import { formats, isDateTime } from '../../lib/schema/formats';

const ajvDateTime = (fullFormats['date-time'] as { validate: (s: string) => boolean }).validate;

const digits = (n: number, max: number) => fc.integer({ min: 0, max }).map((v) => String(v).padStart(n, '0'));
/** Mostly in range, sometimes anything two digits can say. */
const field = (min: number, max: number) => fc.oneof(fc.integer({ min, max }).map((v) => String(v).padStart(2, '0')), digits(2, 99));

/** Date-times near the plain UTC form: every field may be out of range, the separators and zone vary. */
const dateTimeLike = fc
  .record({
    year: digits(4, 9999),
    month: field(1, 12),
    day: field(1, 31),
    separator: fc.constantFrom('T', 'T', 'T', 't', ' ', '\u00a0', '\u2028', 'x', 'TT'),
    hour: fc.oneof(field(0, 23), fc.constant('23')),
    minute: fc.oneof(field(0, 59), fc.constant('59')),
    second: fc.oneof(field(0, 59), fc.constantFrom('59', '60', '61')),
    fraction: fc.oneof(
      fc.constant(''),
      fc.stringMatching(/^\.[0-9]{1,20}$/),
      fc.integer({ min: 1, max: 20 }).map((n) => `.${'9'.repeat(n)}`),
      fc.constant('.'),
    ),
    zone: fc.constantFrom('Z', 'Z', 'Z', 'z', '', '+00:00', '-01:00', '+0530', '+05', '+24:00', '-00:60', 'ZZ'),
  })
  .map((f) => `${f.year}-${f.month}-${f.day}${f.separator}${f.hour}:${f.minute}:${f.second}${f.fraction}${f.zone}`);

/** Valid instants with one character changed. */
const mutated = fc
  .tuple(
    fc.date({ min: new Date('0000-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true }),
    fc.nat(),
    fc.constantFrom('0', '9', '-', ':', '.', 'T', 't', 'Z', ' ', '+', 'a', '\u0660'),
  )
  .map(([d, at, c]) => {
    const s = d.toISOString();
    const i = at % s.length;
    return s.slice(0, i) + c + s.slice(i + 1);
  });

describe('date-time format', () => {
  it('accepts exactly what ajv-formats (full mode) accepts', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          dateTimeLike,
          mutated,
          fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
          fc.string({ maxLength: 40 }),
        ),
        (s) => {
          expect(isDateTime(s)).toBe(ajvDateTime(s));
        },
      ),
      { numRuns: 20_000 },
    );
  });

  it.each([
    ['2026-11-22T13:45:12Z', true],
    ['2026-11-22T13:45:12.123Z', true],
    ['2024-02-29T00:00:00Z', true],
    ['2023-02-29T00:00:00Z', false],
    ['2016-12-31T23:59:60Z', true], // leap second at the end of a UTC day
    ['2016-12-31T23:59:60.999999999999Z', true],
    ['2016-12-31T12:59:60Z', false],
    ['2026-01-01T12:00:59.99999999999999999Z', false], // ajv-formats reads 60 seconds, and so must we
    ['2026-01-01T24:00:00Z', false],
  ])('%s → %s, as ajv-formats says', (s, valid) => {
    expect(isDateTime(s)).toBe(valid);
    expect(ajvDateTime(s)).toBe(valid);
  });

  it('leaves every other format as ajv-formats defines it', () => {
    for (const [name, format] of Object.entries(fullFormats)) {
      if (name !== 'date-time') expect(formats[name as keyof typeof formats]).toBe(format);
    }
  });
});
