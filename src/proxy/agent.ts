/**
 * The connection pool to MythIQ and the parts of the upstream url the forwarder needs.
 *
 * Without an agent http-proxy-3 forces `Connection: close` on every upstream request; with a
 * keep-alive agent (and the caller's `Connection` header stripped, see outgoing-headers.ts) one TCP
 * and TLS connection serves many requests.
 */
import * as http from "node:http";
import * as https from "node:https";
import type { LookupFunction } from "node:net";
import type { UpstreamConfig } from "../config/types.ts";

export interface UpstreamEndpoint {
  readonly protocol: "http:" | "https:";
  /** For `net.connect`: no IPv6 brackets. */
  readonly hostname: string;
  readonly port: number;
  /** The `Host` header value: `host[:port]`, the port only when it is not the scheme's default. */
  readonly host: string;
  /** The url's path without a trailing `/` ("" for none); prefixed to every forwarded path. */
  readonly basePath: string;
}

/** Splits the validated `upstream.url` into what the forwarder needs. Throws on a non-http(s) url. */
export function parseUpstream(url: string): UpstreamEndpoint {
  const parsed = new URL(url);
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new Error("upstream url must be http or https");
  }
  const defaultPort = parsed.protocol === "https:" ? 443 : 80;
  const hostname = parsed.hostname.startsWith("[") ? parsed.hostname.slice(1, -1) : parsed.hostname;
  return {
    protocol: parsed.protocol,
    hostname,
    port: parsed.port === "" ? defaultPort : Number(parsed.port),
    host: parsed.host,
    basePath: parsed.pathname.replace(/\/+$/, ""),
  };
}

export interface AgentOptions {
  /** DNS lookup for upstream connections; default the system resolver (tests inject failures and stalls). */
  readonly lookup?: LookupFunction;
  /**
   * Trust anchors replacing the system store for a TLS upstream. Not a config key: production
   * verifies MythIQ against the system store; tests pass the fake upstream's certificate.
   */
  readonly ca?: string | Buffer;
}

/**
 * A keep-alive agent with `maxSockets: upstream.max_sockets`. TLS verification cannot be turned
 * off here: `rejectUnauthorized` is always true.
 */
export function createUpstreamAgent(endpoint: UpstreamEndpoint, upstream: UpstreamConfig, options: AgentOptions = {}): http.Agent {
  const common: http.AgentOptions = {
    keepAlive: true,
    maxSockets: upstream.max_sockets,
    scheduling: "lifo",
    ...(options.lookup === undefined ? {} : { lookup: options.lookup }),
  };
  if (endpoint.protocol === "http:") return new http.Agent(common);
  return new https.Agent({
    ...common,
    rejectUnauthorized: true,
    ...(options.ca === undefined ? {} : { ca: options.ca }),
  });
}
