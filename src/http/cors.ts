/**
 * CORS (SPEC §4 step 2 and step 9). Preflights are answered here and never forwarded: a preflight
 * carries no credentials, so the only question is whether *some* client allows the origin. Actual
 * responses get CORS headers only for an Origin the relevant client lists; a client without
 * `origins` accepts any Origin but gets none, so browsers cannot read its answers cross-origin.
 */
import type { ClientConfig, ProxyConfig } from "../config/types.ts";
import { type RequestContext, deny, type Preflight } from "../pipeline/types.ts";
import { compileAnyClientOrigin, compileClientOrigins } from "../rules/origins.ts";

/** Request headers a browser may send: what MythIQ's OpenAI-compatible SDKs use. */
const ALLOWED_REQUEST_HEADER = /^(?:authorization|content-type|accept|accept-language|x-request-id|openai-[a-z0-9-]+|x-stainless-[a-z0-9-]+)$/;

/** Response headers a browser script may read besides the CORS-safelisted ones. */
const EXPOSED_HEADERS = "x-request-id, retry-after";

const PREFLIGHT_MAX_AGE_SECONDS = "600";

export interface Cors {
  /** Undefined when `ctx` is not a preflight. */
  readonly preflight: (ctx: RequestContext) => Preflight | undefined;
  /** CORS headers for a response to `ctx` (empty when the Origin is not allowed). */
  readonly responseHeaders: (ctx: RequestContext) => Readonly<Record<string, string>>;
}

export function createCors(config: ProxyConfig): Cors {
  const anyClient = compileAnyClientOrigin(config.clients);
  const perClient = compileClientOrigins(config.clients);
  // Cookies only travel cross-origin with Allow-Credentials; only offer it when cookie sessions exist.
  const credentials = config.sessions?.jwt.cookie !== undefined;
  const methodsByClient = new Map<ClientConfig, ReadonlySet<string>>(
    config.clients.map((client) => [client, new Set(client.routes.map((route) => route.split(" ", 1)[0] ?? ""))]),
  );

  // Only when some client lists origins: otherwise no response ever carries CORS headers.
  const varyOnly: Readonly<Record<string, string>> = perClient.size > 0 ? Object.freeze({ vary: "Origin" }) : Object.freeze({});

  function allowedMethods(origin: string): string[] {
    const methods = new Set<string>();
    for (const [client, matcher] of perClient) {
      if (matcher.matches(origin)) for (const method of methodsByClient.get(client) ?? []) methods.add(method);
    }
    return [...methods].sort();
  }

  function baseHeaders(origin: string): Record<string, string> {
    const headers: Record<string, string> = {
      "access-control-allow-origin": origin,
      vary: "Origin",
      "access-control-expose-headers": EXPOSED_HEADERS,
    };
    if (credentials) headers["access-control-allow-credentials"] = "true";
    return headers;
  }

  return {
    preflight: (ctx) => {
      const requested = ctx.headers["access-control-request-method"];
      if (ctx.method !== "OPTIONS" || requested === undefined) return undefined;
      const origin = ctx.origin;
      if (origin === undefined || !anyClient.matches(origin)) {
        return { ok: false, deny: deny("origin_not_allowed", "preflight from an origin no client lists") };
      }
      const methods = allowedMethods(origin);
      if (!methods.includes(requested)) {
        return { ok: false, deny: deny("route_not_allowed", "preflight for a method no client of this origin may use") };
      }
      const asked = (ctx.headers["access-control-request-headers"] ?? "")
        .split(",")
        .map((name) => name.trim().toLowerCase())
        .filter((name) => name !== "");
      if (asked.some((name) => !ALLOWED_REQUEST_HEADER.test(name))) {
        return { ok: false, deny: deny("invalid_header", "preflight asks for a request header the proxy does not accept") };
      }
      const headers = baseHeaders(origin);
      headers["vary"] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
      headers["access-control-allow-methods"] = methods.join(", ");
      if (asked.length > 0) headers["access-control-allow-headers"] = asked.join(", ");
      headers["access-control-max-age"] = PREFLIGHT_MAX_AGE_SECONDS;
      return { ok: true, headers };
    },

    responseHeaders: (ctx) => {
      // Whether CORS headers are present depends on Origin, so every response says so, even one
      // without them: a shared cache must not hand an answer made for one origin (or none) to another.
      const origin = ctx.origin;
      if (origin === undefined) return varyOnly;
      // Before the caller is known (a refusal at identity), any listed origin may read the JSON
      // error; once known, only the client's own origins.
      const allowed = ctx.client === undefined ? anyClient.matches(origin) : perClient.get(ctx.client)?.matches(origin) === true;
      return allowed ? baseHeaders(origin) : varyOnly;
    },
  };
}
