/**
 * Reading a YAML file for validation (the config, and `test-policy` case files): at most
 * `MAX_CONFIG_BYTES` (1 MiB) are read, so a FIFO or a device cannot hang or exhaust the process; a
 * missing or unreadable file, or one that is not UTF-8, is a problem at 1:1 (or at the first bad byte).
 */
import { readCapped } from "../fs/read-capped.ts";
import { MAX_CONFIG_BYTES, offsetPosition } from "./bounded-yaml.ts";
import type { Problem } from "./problems.ts";

/** The file's text (a leading BOM kept, so a hash over it covers the exact bytes), or why not. */
export async function readYamlText(
  file: string,
  what = "config file",
): Promise<{ ok: true; text: string } | { ok: false; problem: Problem }> {
  const bytes = await readConfigBytes(file, what);
  if (!bytes.ok) return { ok: false, problem: { file, line: 1, col: 1, message: bytes.message } };
  const bad = firstInvalidUtf8(bytes.value);
  if (bad !== undefined) {
    const before = new TextDecoder("utf-8", { ignoreBOM: false }).decode(bytes.value.subarray(0, bad));
    const pos = offsetPosition(before, before.length);
    const hex = (bytes.value[bad] ?? 0).toString(16).toUpperCase().padStart(2, "0");
    return { ok: false, problem: { file, ...pos, message: `the file is not valid UTF-8 (byte 0x${hex}): is this a text file?` } };
  }
  return { ok: true, text: new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes.value) };
}

async function readConfigBytes(file: string, what: string): Promise<{ ok: true; value: Uint8Array } | { ok: false; message: string }> {
  // Any file, a pipe included (`check --config /dev/stdin`): validation runs in a short-lived process.
  const read = await readCapped(file, MAX_CONFIG_BYTES, { anyFile: true });
  if (read.ok) return { ok: true, value: read.bytes };
  switch (read.why) {
    case "too_large":
      return { ok: false, message: `the file is larger than ${MAX_CONFIG_BYTES} bytes (1 MiB), the most a ${what} may have` };
    case "unreadable":
      return { ok: false, message: `cannot ${read.stage} the ${what} (${read.code})` };
    default:
      return { ok: false, message: `cannot read the ${what} (${read.why})` };
  }
}

/** Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629), or undefined. */
export function firstInvalidUtf8(b: Uint8Array): number | undefined {
  let i = 0;
  while (i < b.length) {
    const c = b[i] ?? 0;
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c < 0x80) n = 1;
    else if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 3;
      if (c === 0xe0) lo = 0xa0; // overlong
      if (c === 0xed) hi = 0x9f; // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 4;
      if (c === 0xf0) lo = 0x90; // overlong
      if (c === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return i;
    for (let k = 1; k < n; k++) {
      const d = b[i + k];
      if (d === undefined) return i;
      if (k === 1 ? d < lo || d > hi : d < 0x80 || d > 0xbf) return i;
    }
    i += n;
  }
  return undefined;
}

