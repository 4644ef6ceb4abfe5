/**
 * A policy case as bytes on the wire, so the running proxy can be asked the same question as
 * `test-policy`: the request line and the exact header lines of `buildCaseRequest`, then
 * `Connection: close` (unless the case sets `Connection` itself), then the body.
 */
import type { PolicyCase } from "../../src/policy/cases.ts";
import { buildCaseRequest } from "../../src/policy/request.ts";

export function rawRequest(testCase: PolicyCase, cookieName: string | undefined): Buffer {
  const { head, body } = buildCaseRequest(testCase.request, testCase.request.jwt, cookieName);
  let text = `${head.method ?? "GET"} ${head.url ?? "/"} HTTP/1.1\r\n`;
  let connection = false;
  for (let i = 0; i < head.rawHeaders.length; i += 2) {
    const name = head.rawHeaders[i] ?? "";
    if (name.toLowerCase() === "connection") connection = true;
    text += `${name}: ${head.rawHeaders[i + 1]}\r\n`;
  }
  if (!connection) text += "Connection: close\r\n";
  text += "\r\n";
  return Buffer.concat([Buffer.from(text, "latin1"), body]);
}
