/**
 * Where a process's resident memory is, from /proc/PID/smaps: V8's heap pages (anonymous mappings
 * of exactly 256 KiB, V8's page size), glibc's main malloc arena (`[heap]`, grown with brk), other
 * anonymous memory (thread arenas, thread stacks, mmapped allocations, V8's code space) and
 * file-backed pages (the node binary and libraries, shared).
 */
import { readFileSync } from "node:fs";

export interface MemoryParts {
  readonly v8Pages: number;
  readonly mallocMainArena: number;
  readonly otherAnonymous: number;
  readonly fileBacked: number;
}

const V8_PAGE_KB = 256;

/** Resident bytes by part; throws when the process is gone. */
export function memoryParts(pid: number): MemoryParts {
  const parts = { v8Pages: 0, mallocMainArena: 0, otherAnonymous: 0, fileBacked: 0 };
  let part: keyof MemoryParts = "otherAnonymous";
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const mapping = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping !== null) {
      const sizeKb = (Number.parseInt(mapping[2]!, 16) - Number.parseInt(mapping[1]!, 16)) / 1024;
      const name = mapping[3]!.trim();
      part = name === "[heap]" ? "mallocMainArena" : name.startsWith("/") ? "fileBacked" : name === "" && sizeKb === V8_PAGE_KB ? "v8Pages" : "otherAnonymous";
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB$/.exec(line);
    if (rss !== null) parts[part] += Number(rss[1]) * 1024;
  }
  return parts;
}
