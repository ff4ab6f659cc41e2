/**
 * Amounts in a currency's minor units (cents, pence, yen), computed exactly from the decimal the
 * producer wrote rather than by floating-point multiplication (19.99 × 100 is 1998.9999999999998).
 */

/** ISO 4217 currencies whose minor unit is not 1/100; every other three-letter code has two decimals. */
const MINOR_UNIT_DIGITS: Readonly<Record<string, number>> = {
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0, UYI: 0, VND: 0, VUV: 0,
  XAF: 0, XOF: 0, XPF: 0,
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
  CLF: 4, UYW: 4,
};

/** Decimal digits of a currency's minor unit; undefined when the code is not an ISO 4217 form (three capitals). */
export function minorUnitDigits(currency: string): number | undefined {
  if (!/^[A-Z]{3}$/.test(currency)) return undefined;
  return Object.prototype.hasOwnProperty.call(MINOR_UNIT_DIGITS, currency) ? MINOR_UNIT_DIGITS[currency] : 2;
}

export type MinorUnits = { readonly ok: true; readonly value: number } | { readonly ok: false; readonly message: string };

/**
 * `amount` in minor units of `currency` (the value of the record's `currencyField`, named in a reason). Fails, saying why, when the currency is not an ISO code,
 * when the amount has more decimals than the currency has (19.999 USD is not a whole number of
 * cents: rounding would invent money), or when the result is beyond 2^53 (no exact JSON number).
 */
export function toMinorUnits(amount: number, currency: string, currencyField = 'currency'): MinorUnits {
  const digits = minorUnitDigits(currency);
  // Named, not quoted: the currency field is a free string unless its schema gives an enum, and a reason reaches log lines.
  if (digits === undefined) return { ok: false, message: `has no minor units: its currency, "${currencyField}", is not an ISO 4217 code (three capital letters, e.g. "USD")` };
  if (!Number.isFinite(amount)) return { ok: false, message: 'amount is not a finite number' };
  const scaled = scaledMinorUnits(amount, digits);
  if (scaled !== undefined) return { ok: true, value: scaled };
  // The shortest decimal that round-trips to the same double: what the producer most likely wrote.
  return exactMinorUnits(String(amount), amount, currency, digits);
}

/** Below 2^38 a double's spacing is under 10^-4, the smallest minor unit: no two such decimals share a double. */
const SCALED_LIMIT = 2 ** 38;

/**
 * Minor units without formatting the amount, when an integer m has m / 10^digits === amount: the
 * amount is then the double nearest the decimal m·10^-digits, and (below SCALED_LIMIT) no other
 * decimal with at most `digits` places is, so that decimal is the one String(amount) writes.
 * Undefined when there is no such m (the amount has more places, or is too large to tell).
 */
function scaledMinorUnits(amount: number, digits: number): number | undefined {
  if (!(Math.abs(amount) < SCALED_LIMIT)) return undefined;
  const scale = 10 ** digits;
  const m = Math.round(amount * scale);
  return m / scale === amount ? m + 0 : undefined;
}

/**
 * `toMinorUnits` for any finite amount, in BigInt arithmetic on the decimal `text` of `amount`.
 * Exported for the test that proves the fast path equal to it.
 */
export function exactMinorUnits(text: string, amount: number, currency: string, digits: number): MinorUnits {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(text);
  if (!m) return { ok: false, message: 'amount is not a decimal number' };
  const [, sign, whole, fraction = '', exp = '0'] = m;
  const scale = digits + Number(exp) - fraction.length;
  let mantissa = BigInt(whole + fraction);
  if (scale >= 0) {
    mantissa *= 10n ** BigInt(scale);
  } else {
    const divisor = 10n ** BigInt(-scale);
    if (mantissa % divisor !== 0n) {
      return { ok: false, message: `${amount} ${currency} has more than ${digits} decimal place${digits === 1 ? '' : 's'}, the currency's minor unit` };
    }
    mantissa /= divisor;
  }
  const value = Number(sign === '-' ? -mantissa : mantissa);
  if (!Number.isSafeInteger(value)) return { ok: false, message: `${amount} ${currency} in minor units is beyond 2^53 and has no exact JSON number` };
  return { ok: true, value: value === 0 ? 0 : value };
}
