/**
 * Text that a secret store sent back (Vault's `errors[0]`, an AWS error `Message`) ends up in a log
 * line about a failed refresh. The store is trusted to answer, not to keep our secrets out of its
 * words: a proxy, a misconfigured endpoint or a parser error can quote what was sent or received
 * (V8's `JSON.parse` errors quote the text they choke on, which may be the secret itself). So such
 * text is cut down before it is kept: one line, quoted parts dropped, known secrets replaced, short.
 */

/** Longest piece of store-supplied text kept in an error message, in characters. */
export const STORE_TEXT_MAX = 160;

/**
 * Makes store-supplied text safe for a log line: control characters become spaces, anything in
 * quotes (`"…"`, `'…'` outside words, `` `…` ``) becomes `"…"`, each of `secrets` (4 characters or more) becomes
 * `[redacted]`, and the result is cut at `STORE_TEXT_MAX` characters.
 */
export function safeStoreText(text: unknown, secrets: ReadonlyArray<string | undefined> = []): string {
  if (typeof text !== "string") return "";
  // eslint-disable-next-line no-control-regex -- control bytes would split or forge log lines
  let out = text.replace(/[\x00-\x1f\x7f]+/g, " ");
  for (const secret of secrets) {
    if (secret !== undefined && secret.length >= 4) out = out.split(secret).join("[redacted]");
  }
  // A single quote inside a word is an apostrophe ("can't"), not the start of a quotation.
  out = out.replace(/"[^"]*(?:"|$)|(?<![A-Za-z0-9])'[^']*(?:'(?![A-Za-z0-9])|$)|`[^`]*(?:`|$)/g, '"…"').trim();
  return out.length > STORE_TEXT_MAX ? `${out.slice(0, STORE_TEXT_MAX)}…` : out;
}

/**
 * Reads `field` of a secret document and checks that it is a string. Messages name the field and
 * where it was looked for (`what`), never a value.
 */
export function pickField(document: unknown, field: string, what: string): string {
  if (document === null || typeof document !== "object" || Array.isArray(document)) {
    throw new Error(`${what} is not an object of fields`);
  }
  if (!Object.prototype.hasOwnProperty.call(document, field)) throw new Error(`${what} has no field "${field}"`);
  const value = (document as Record<string, unknown>)[field];
  if (typeof value !== "string") throw new Error(`field "${field}" of ${what} is not a string`);
  return value;
}

/** `JSON.parse` whose error never quotes the input (V8's messages do). */
export function parseJsonQuietly(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error(`${what} is not valid JSON`);
  }
}
