/**
 * Module hooks for the removal experiments (removals.ts): edits the compiled modules named by
 * `BENCH_REMOVE` as they load. An anchor that is not found is an error, never a silent no-op.
 */
import { readFileSync } from "node:fs";
import type { LoadHook } from "node:module";
import { removalsFromEnv } from "./removals.ts";

const edits = removalsFromEnv(process.env["BENCH_REMOVE"]).flatMap((r) => r.edits);

export const load: LoadHook = async (url, context, nextLoad) => {
  const result = await nextLoad(url, context);
  const mine = edits.filter((e) => url.endsWith(e.file));
  if (mine.length === 0 || result.source === undefined || result.source === null) return result;
  let source = typeof result.source === "string" ? result.source : Buffer.from(result.source as Uint8Array).toString("utf8");
  for (const edit of mine) {
    if ("module" in edit) {
      source = readFileSync(new URL(edit.module, import.meta.url), "utf8");
      continue;
    }
    if (!source.includes(edit.find)) throw new Error(`removal experiment: anchor not found in ${edit.file}: ${edit.find}`);
    source = source.replace(edit.find, edit.replace);
  }
  return { ...result, source };
};
