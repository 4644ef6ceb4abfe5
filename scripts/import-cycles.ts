/**
 * Finds import cycles among the project's TypeScript files, type-only imports included (`import
 * type`, `export type … from`, `import("…").T` in a type, dynamic `import()`): a cycle through
 * types alone still ties two modules' designs together. STYLE.md's rule is that dependencies point
 * down; `test/architecture/import-cycles.test.ts` runs this in `npm test`.
 *
 * Usage: `node scripts/import-cycles.ts [DIR …]` (default `src bench scripts test`): prints each
 * cycle as `a.ts -> b.ts -> a.ts` and exits 1 when there is one.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/** Folders never walked into: dependencies, build output, and test fixtures (some are cycles on purpose). */
const SKIPPED = new Set(["node_modules", "dist", "fixtures"]);

/** Every `.ts` file under `dir`. */
function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory() && SKIPPED.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...tsFiles(path));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

/** The files `file` imports by a relative specifier (packages are not part of the graph). */
function importsOf(file: string): string[] {
  const { importedFiles } = ts.preProcessFile(readFileSync(file, "utf8"), true, true);
  return importedFiles
    .map((ref) => ref.fileName)
    .filter((name) => name.startsWith("./") || name.startsWith("../"))
    .map((name) => resolve(dirname(file), name));
}

/**
 * The cycles among the `.ts` files under `dirs`: one list of files per strongly connected
 * component with more than one file (or a file importing itself), each closed by its first file.
 */
export function findImportCycles(dirs: readonly string[]): string[][] {
  const files = dirs.flatMap((dir) => tsFiles(resolve(dir)));
  const known = new Set(files);
  const edges = new Map(files.map((file) => [file, importsOf(file).filter((to) => known.has(to))]));

  // Tarjan's algorithm, iterative so a deep import chain cannot overflow the stack.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  let next = 0;
  for (const root of files) {
    if (index.has(root)) continue;
    const work: Array<{ node: string; i: number }> = [{ node: root, i: 0 }];
    index.set(root, next);
    low.set(root, next++);
    stack.push(root);
    onStack.add(root);
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const targets = edges.get(frame.node) ?? [];
      if (frame.i < targets.length) {
        const to = targets[frame.i++]!;
        if (!index.has(to)) {
          index.set(to, next);
          low.set(to, next++);
          stack.push(to);
          onStack.add(to);
          work.push({ node: to, i: 0 });
        } else if (onStack.has(to)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(to)!));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent !== undefined) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(frame.node)!));
      if (low.get(frame.node) !== index.get(frame.node)) continue;
      const component: string[] = [];
      for (;;) {
        const member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
        if (member === frame.node) break;
      }
      const selfLoop = component.length === 1 && (edges.get(frame.node) ?? []).includes(frame.node);
      if (component.length > 1 || selfLoop) cycles.push(orderCycle(component, edges));
    }
  }
  return cycles;
}

/**
 * One real cycle of the component, for the report: the shortest walk along imports from its first
 * file (by name) back to itself. A component can hold more cycles; fixing this one shows the next.
 */
function orderCycle(component: string[], edges: ReadonlyMap<string, readonly string[]>): string[] {
  const members = new Set(component);
  const start = [...component].sort()[0]!;
  const cameFrom = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const at = queue.shift()!;
    for (const to of edges.get(at) ?? []) {
      if (!members.has(to)) continue;
      if (to === start) {
        const path = [start];
        for (let step: string | undefined = at; step !== undefined && step !== start; step = cameFrom.get(step)) path.splice(1, 0, step);
        return [...path, start];
      }
      if (!cameFrom.has(to)) {
        cameFrom.set(to, at);
        queue.push(to);
      }
    }
  }
  return [start, start];
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dirs = process.argv.length > 2 ? process.argv.slice(2) : ["src", "bench", "scripts", "test"].filter((d) => statSync(d, { throwIfNoEntry: false })?.isDirectory());
  const cycles = findImportCycles(dirs);
  for (const cycle of cycles) process.stdout.write(`${cycle.map((f) => relative(process.cwd(), f)).join(" -> ")}\n`);
  process.stdout.write(cycles.length === 0 ? "no import cycles\n" : `${cycles.length} import cycle(s)\n`);
  process.exitCode = cycles.length === 0 ? 0 : 1;
}
