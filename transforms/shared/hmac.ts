/**
 * HMAC-SHA-256 (RFC 2104, FIPS 180-4) of short strings, as lowercase hex: the `hash` PII mask.
 *
 * `createHmac(...).update(...).digest('hex')` costs about 2 µs per value in Node, nearly all of it in
 * setting up the HMAC (hashing the key's two padded blocks) and the objects around it — more than
 * parsing and serializing a whole record. Here the two padded-key states are computed once per key,
 * so a value costs two SHA-256 compressions when it is under 56 bytes. The output is identical to
 * node:crypto's for every key and value (test/transforms/fast-path.test.ts: RFC 4231's test case 2, and
 * node:crypto's own output for generated keys and values).
 */
import { createHash, createHmac } from 'node:crypto';

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
  0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
  0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
  0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
  0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
  0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const INITIAL_STATE = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
const BLOCK_BYTES = 64;
const DIGEST_BYTES = 32;
const HEX_DIGITS = Buffer.from('0123456789abcdef');
/** Longer values go to node:crypto, where the setup cost no longer matters (and the scratch buffer stays small). */
const MAX_SCRATCH_CHARS = 4096;

// Working storage, reused: the functions below run to completion without yielding.
const schedule = new Int32Array(64);
const state = new Int32Array(8);
const message = Buffer.alloc(MAX_SCRATCH_CHARS * 3 + BLOCK_BYTES + 8);
const outer = Buffer.alloc(BLOCK_BYTES);
const hex = Buffer.alloc(DIGEST_BYTES * 2);

/** One SHA-256 compression of the 64-byte block at `offset` into `h`. */
function compress(h: Int32Array, block: Uint8Array, offset: number): void {
  const w = schedule;
  for (let i = 0; i < 16; i++) {
    const j = offset + i * 4;
    w[i] = (block[j] << 24) | (block[j + 1] << 16) | (block[j + 2] << 8) | block[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15];
    const y = w[i - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
  }
  let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (let i = 0; i < 64; i++) {
    const t1 = (k + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
    const t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    k = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  h[0] = (h[0] + a) | 0;
  h[1] = (h[1] + b) | 0;
  h[2] = (h[2] + c) | 0;
  h[3] = (h[3] + d) | 0;
  h[4] = (h[4] + e) | 0;
  h[5] = (h[5] + f) | 0;
  h[6] = (h[6] + g) | 0;
  h[7] = (h[7] + k) | 0;
}

/** SHA-256 padding after `length` bytes at the start of `buffer`, for a message of `totalBytes`; returns the padded length. */
function pad(buffer: Uint8Array, length: number, totalBytes: number): number {
  let at = length;
  buffer[at++] = 0x80;
  while (at % BLOCK_BYTES !== 56) buffer[at++] = 0;
  const bits = totalBytes * 8;
  const high = Math.floor(bits / 0x1_0000_0000);
  for (const word of [high, bits >>> 0]) {
    buffer[at++] = word >>> 24;
    buffer[at++] = (word >>> 16) & 0xff;
    buffer[at++] = (word >>> 8) & 0xff;
    buffer[at++] = word & 0xff;
  }
  return at;
}

interface KeyStates {
  readonly key: string;
  /** State after the key XOR ipad block, and after the key XOR opad block. */
  readonly inner: Int32Array;
  readonly outer: Int32Array;
}

let lastKey: KeyStates | undefined;

function keyStates(key: string): KeyStates {
  if (lastKey?.key === key) return lastKey;
  let bytes = Buffer.from(key, 'utf8');
  if (bytes.length > BLOCK_BYTES) bytes = createHash('sha256').update(bytes).digest();
  const padded = Buffer.alloc(BLOCK_BYTES);
  bytes.copy(padded);
  const inner = INITIAL_STATE.slice();
  compress(inner, padded.map((x) => x ^ 0x36), 0);
  const outerState = INITIAL_STATE.slice();
  compress(outerState, padded.map((x) => x ^ 0x5c), 0);
  lastKey = { key, inner, outer: outerState };
  return lastKey;
}

function writeState(h: Int32Array, target: Uint8Array): void {
  for (let i = 0; i < 8; i++) {
    const x = h[i];
    target[i * 4] = x >>> 24;
    target[i * 4 + 1] = (x >>> 16) & 0xff;
    target[i * 4 + 2] = (x >>> 8) & 0xff;
    target[i * 4 + 3] = x & 0xff;
  }
}

/** `createHmac('sha256', key).update(value, 'utf8').digest('hex')`. */
export function hmacSha256Hex(key: string, value: string): string {
  if (value.length > MAX_SCRATCH_CHARS) return createHmac('sha256', key).update(value, 'utf8').digest('hex');
  const states = keyStates(key);
  // UTF-8 is at most 3 bytes per UTF-16 unit and padding adds at most 72 bytes: `message` has room.
  const length = message.write(value, 0, 'utf8');
  const padded = pad(message, length, BLOCK_BYTES + length);
  state.set(states.inner);
  for (let offset = 0; offset < padded; offset += BLOCK_BYTES) compress(state, message, offset);
  writeState(state, outer);
  pad(outer, DIGEST_BYTES, BLOCK_BYTES + DIGEST_BYTES);
  state.set(states.outer);
  compress(state, outer, 0);
  for (let i = 0; i < 8; i++) {
    const x = state[i];
    for (let nibble = 0; nibble < 8; nibble++) hex[i * 8 + nibble] = HEX_DIGITS[(x >>> (28 - 4 * nibble)) & 0xf];
  }
  return hex.toString('latin1');
}
