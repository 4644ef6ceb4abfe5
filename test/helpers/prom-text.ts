/**
 * A small parser of the Prometheus text exposition format (0.0.4), for tests that read a scrape the
 * way Prometheus would rather than through prom-client's own objects.
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Scrape {
  /** Metric family name → type from `# TYPE`. */
  readonly types: ReadonlyMap<string, string>;
  readonly samples: readonly Sample[];
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf("=", i);
    if (eq === -1 || text[eq + 1] !== '"') throw new Error(`bad labels in: ${line}`);
    const name = text.slice(i, eq);
    let value = "";
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\\") {
        j++;
        value += text[j] === "n" ? "\n" : text[j];
      } else {
        value += text[j];
      }
    }
    if (j >= text.length) throw new Error(`unterminated label value in: ${line}`);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
  }
  return labels;
}

export function parseScrape(text: string): Scrape {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# TYPE ")) {
      const [name, type] = line.slice(7).split(" ");
      types.set(name!, type!);
      continue;
    }
    if (line.startsWith("#")) continue;
    const brace = line.indexOf("{");
    const space = line.lastIndexOf(" ");
    if (brace !== -1 && brace < space) {
      const close = line.lastIndexOf("}");
      samples.push({ name: line.slice(0, brace), labels: parseLabels(line.slice(brace + 1, close), line), value: Number(line.slice(close + 2)) });
    } else {
      samples.push({ name: line.slice(0, space), labels: {}, value: Number(line.slice(space + 1)) });
    }
  }
  return { types, samples };
}

/** Samples of one name whose labels include every pair of `match`. */
export function find(scrape: Scrape, name: string, match: Readonly<Record<string, string>> = {}): Sample[] {
  return scrape.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

/** The value of the one sample that matches, or undefined when none does (throws when several do). */
export function valueOf(scrape: Scrape, name: string, match: Readonly<Record<string, string>> = {}): number | undefined {
  const found = find(scrape, name, match);
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(match)}`);
  return found[0]?.value;
}
