/**
 * WebSocket masking (RFC 6455 5.3) four bytes at a time, for the `ws` library: the bundles map
 * its optional native helper `bufferutil` here (scripts/build.mjs). `ws` masks byte by byte in
 * JavaScript without it, which held `warren port-forward` uploads to about 160 MB/s of CPU in
 * the CLI (every byte a client sends is masked, and unmasked by the server).
 */

/** XORs `buffer` in place with the 4-byte `mask`, repeated from the buffer's first byte. */
export function unmask(buffer: Uint8Array, mask: Uint8Array): void {
  xorInPlace(buffer, mask, 0);
}

/** Writes `source` XOR `mask` into `output` at `offset`, for `length` bytes. */
export function mask(source: Uint8Array, maskBytes: Uint8Array, output: Uint8Array, offset: number, length: number): void {
  output.set(length === source.length ? source : source.subarray(0, length), offset);
  xorInPlace(output.subarray(offset, offset + length), maskBytes, 0);
}

/** XORs `data` with the mask, `data[i]` taking mask byte `(start + i) % 4`. */
function xorInPlace(data: Uint8Array, maskBytes: Uint8Array, start: number): void {
  const length = data.length;
  // Bytes up to the first 4-byte boundary of the underlying memory, one at a time.
  let i = 0;
  const head = Math.min(length, (4 - (data.byteOffset % 4)) % 4);
  for (; i < head; i++) data[i]! ^= maskBytes[(start + i) & 3]!;
  const words = (length - i) >>> 2;
  if (words > 0) {
    // The mask as it lines up with the aligned words, read in the machine's byte order.
    const shift = (start + i) & 3;
    const rotated = new Uint8Array([maskBytes[shift]!, maskBytes[(shift + 1) & 3]!, maskBytes[(shift + 2) & 3]!, maskBytes[(shift + 3) & 3]!]);
    const word = new Uint32Array(rotated.buffer)[0]!;
    const view = new Uint32Array(data.buffer, data.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w]! ^= word;
    i += words * 4;
  }
  for (; i < length; i++) data[i]! ^= maskBytes[(start + i) & 3]!;
}
