/** sizedSlices: the batching that put, the failure router and redrive-consumer share. */
import fc from 'fast-check';
import { sizedSlices } from '../../transforms/shared/retry';

describe('sizedSlices', () => {
  it('keeps every item in order, each slice within the count and the bytes unless one item alone is over', () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 120 }), { maxLength: 60 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 300 }), (sizes, maxCount, maxBytes) => {
        const slices = sizedSlices(sizes, maxCount, maxBytes, (n) => n);
        expect(slices.flat()).toEqual(sizes);
        for (const slice of slices) {
          expect(slice.length).toBeGreaterThan(0);
          expect(slice.length).toBeLessThanOrEqual(maxCount);
          if (slice.length > 1) expect(slice.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(maxBytes);
        }
        // Greedy: no slice could have taken the next slice's first item.
        for (let i = 0; i + 1 < slices.length; i++) {
          const bytes = slices[i].reduce((a, b) => a + b, 0);
          expect(slices[i].length === maxCount || bytes + slices[i + 1][0] > maxBytes).toBe(true);
        }
      }),
    );
  });

  it('puts an item larger than the bytes in a slice of its own', () => {
    expect(sizedSlices([5, 50, 5, 5], 10, 20, (n) => n)).toEqual([[5], [50], [5, 5]]);
  });
});
