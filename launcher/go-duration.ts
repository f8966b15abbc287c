/**
 * Go's time.ParseDuration, so that a stage timeout this project accepts is one spawn accepts:
 * an optional sign, then one or more decimal numbers (fraction allowed) each followed by a unit
 * (ns, us, µs, μs, ms, s, m, h); "0" alone needs no unit. The value must fit Go's int64
 * nanoseconds. The reasons follow Go's error texts.
 */

const UNITS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  'µs': 1_000n, // U+00B5 micro sign
  'μs': 1_000n, // U+03BC Greek small letter mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60n * 1_000_000_000n,
  h: 3600n * 1_000_000_000n,
};

const MAX = (1n << 63n) - 1n;

export type DurationResult = { ok: true; nanoseconds: bigint } | { ok: false; reason: string };

const isDigit = (c: string) => c >= '0' && c <= '9';

export function parseGoDuration(text: string): DurationResult {
  const quoted = JSON.stringify(text);
  const invalid: DurationResult = { ok: false, reason: `invalid duration ${quoted}` };
  let s = text;
  let neg = false;
  if (s !== '' && (s[0] === '-' || s[0] === '+')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return { ok: true, nanoseconds: 0n };
  if (s === '') return invalid;
  let total = 0n;
  while (s !== '') {
    if (!(s[0] === '.' || isDigit(s[0]))) return invalid;
    let i = 0;
    while (i < s.length && isDigit(s[i])) i++;
    const intPart = s.slice(0, i);
    s = s.slice(i);
    let fracPart = '';
    if (s[0] === '.') {
      let j = 1;
      while (j < s.length && isDigit(s[j])) j++;
      fracPart = s.slice(1, j);
      s = s.slice(j);
    }
    if (intPart === '' && fracPart === '') return invalid; // "." or ".s"
    let u = 0;
    while (u < s.length && s[u] !== '.' && !isDigit(s[u])) u++;
    if (u === 0) return { ok: false, reason: `missing unit in duration ${quoted}` };
    const unitName = s.slice(0, u);
    s = s.slice(u);
    const unit = UNITS[unitName];
    if (unit === undefined) return { ok: false, reason: `unknown unit ${JSON.stringify(unitName)} in duration ${quoted}` };
    const whole = intPart === '' ? 0n : BigInt(intPart);
    // Go keeps the fraction to about 19 significant digits and truncates; exact enough here.
    const frac = fracPart === '' ? 0n : (BigInt(fracPart) * unit) / 10n ** BigInt(fracPart.length);
    total += whole * unit + frac;
    if (total > MAX + (neg ? 1n : 0n)) return invalid;
  }
  return { ok: true, nanoseconds: neg ? -total : total };
}
