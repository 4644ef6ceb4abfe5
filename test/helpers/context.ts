// Builders for rule tests: a RequestContext literal and a ClientConfig with safe defaults.
import type { ClientConfig } from "../../src/config/types.ts";
import type { CallerContext, RequestContext } from "../../src/pipeline/types.ts";

export type ContextInit = Partial<Omit<RequestContext, "cleanups">>;

/**
 * A context as the listener would build it after step 1. Defaults: `GET /v1/models`, no query, no
 * headers, socket and caller 203.0.113.7, no Origin (unless `headers.origin` is given), nothing
 * identified yet.
 */
export function makeContext(init: ContextInit = {}): RequestContext {
  const headers = init.headers ?? {};
  const socketIp = init.socketIp ?? "203.0.113.7";
  const origin = "origin" in init ? init.origin : headers.origin;
  return {
    id: init.id ?? "req-test",
    method: init.method ?? "GET",
    path: init.path ?? "/v1/models",
    query: init.query ?? "",
    queryNames: init.queryNames ?? [],
    headers,
    socketIp,
    ip: init.ip ?? socketIp,
    origin,
    client: init.client,
    credential: init.credential,
    subject: init.subject,
    route: init.route,
    model: init.model,
    imageCount: init.imageCount ?? 1,
    costUsd: init.costUsd ?? 0,
    cleanups: [],
  };
}

/** A context after identity (SPEC §4 step 3): `client` given, `credential` default `token`. */
export function makeCaller(init: ContextInit & { client: ClientConfig }): CallerContext {
  return { ...makeContext(init), client: init.client, credential: init.credential ?? "token" };
}

export type ClientInit = Partial<Omit<ClientConfig, "auth">> & { auth?: Partial<ClientConfig["auth"]> };

/** A client with one route (`GET /v1/models`), no tokens, not anonymous, 1 MiB bodies. */
export function makeClient(init: ClientInit = {}): ClientConfig {
  const { auth, ...rest } = init;
  return {
    id: "client",
    key: "default",
    routes: ["GET /v1/models"],
    max_body: 1024 * 1024,
    ...rest,
    auth: { tokens: [], jwt: false, anonymous: false, ...auth },
  };
}
