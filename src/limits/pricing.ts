/**
 * The estimated cost of a request (SPEC §3 `pricing`: "estimated USD per image (x n) or per
 * request, by model").
 *
 * - A request without a body (listing models, reading a generation) costs nothing: MythIQ charges
 *   for work a body asks for.
 * - A request with a body costs `pricing[model]`, or `pricing.default` when its model is not listed
 *   or not known (a body the proxy did not parse still costs the default: fail closed), times the
 *   number of images it asks for (`n`; 1 when not given). "Per request" is the same thing with n = 1.
 * - Amounts are whole micro-dollars (1e-6 USD) so that sums are exact in memory and in Redis; a
 *   price above 0 costs at least one micro-dollar.
 */
import type { IncomingHttpHeaders } from "node:http";

export const MICROS_PER_USD = 1_000_000;

/** USD → whole micro-dollars; anything above 0 is at least 1. */
export function toMicros(usd: number): number {
  if (!Number.isFinite(usd) || usd <= 0) return 0;
  return Math.max(1, Math.round(usd * MICROS_PER_USD));
}

/** Whether the request carries a body, judged from the headers the framing check accepted. */
export function hasBody(headers: IncomingHttpHeaders): boolean {
  if (headers["transfer-encoding"] !== undefined) return true;
  const length = Number(headers["content-length"] ?? "0");
  return Number.isFinite(length) && length > 0;
}

/** Estimated cost in micro-dollars. `pricing` is the config's (no prototype). */
export function estimateMicros(
  pricing: Readonly<Record<string, number>>,
  request: { readonly model: string | undefined; readonly imageCount: number; readonly hasBody: boolean },
): number {
  if (!request.hasBody) return 0;
  const listed = request.model === undefined ? undefined : pricing[request.model];
  const price = listed ?? pricing["default"] ?? 0;
  const images = Number.isSafeInteger(request.imageCount) && request.imageCount >= 1 ? request.imageCount : 1;
  return toMicros(price) * images;
}
