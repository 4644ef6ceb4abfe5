/**
 * The HTTP layer under node-vault. node-vault builds every Vault request (paths, bodies, the
 * `X-Vault-Token` and `X-Vault-Namespace` headers, login responses setting the token) and hands it
 * to a `request-promise`-style function, which its `request-promise` option lets us supply. Its
 * default one (axios) is not fit for a sidecar holding production credentials:
 *
 * - it honours `HTTP_PROXY`/`HTTPS_PROXY` from the environment, sending the Vault token to whatever
 *   proxy the pod happens to inherit, and node-vault cannot pass `proxy: false` through;
 * - it follows redirects, and on a cross-host redirect it strips `Authorization` but not
 *   `X-Vault-Token`, so the token goes to the redirect target;
 * - `DEBUG=follow-redirects` (or `DEBUG=*`) prints each request's options, headers included, so the
 *   Vault token lands on stderr;
 * - there is no timeout by default and no way to cancel a call from an AbortSignal;
 * - response bodies are unbounded.
 *
 * This transport uses `node:http(s)` with its own agent (never a proxy), never follows redirects
 * (node-vault turns a 3xx into an error), bounds every call by a timeout and the caller's signal,
 * reads at most 1 MiB, trusts the configured CA when one is given, and logs nothing.
 */
import http from "node:http";
import { errnoCode } from "../errno.ts";
import https from "node:https";

/** Default largest response body accepted from Vault, in bytes (1 MiB). */
export const VAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

/** A request as node-vault's `client.request` passes it on. */
export interface VaultRequest {
  readonly method: string;
  readonly uri: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** A JSON body (node-vault sets it for writes and logins). */
  readonly json?: unknown;
  /** Cancels the call (passed by our code through node-vault's `requestOptions`). */
  readonly signal?: AbortSignal;
}

/** What node-vault expects back from its `request-promise`. */
export interface VaultResponse {
  readonly statusCode: number;
  /** The parsed JSON body, or undefined when the body was empty or not JSON. */
  readonly body: unknown;
  readonly request: { readonly path: string };
}

export interface VaultTransportOptions {
  /** Bound on each call, in ms (the key's `refresh.timeout`). */
  readonly timeout: number;
  /** Largest response body in bytes; default 1 MiB. */
  readonly maxResponseBytes?: number;
}

export interface VaultTransport {
  /** For node-vault's `request-promise` option: `defaults()` returns the request function. */
  readonly requestPromise: { defaults(defaults?: unknown): (request: VaultRequest) => Promise<VaultResponse> };
  /** Trusts exactly these CA certificates (PEM) for https from now on; undefined = Node's default CAs. */
  setCa(ca: Buffer | undefined): void;
  /** Aborts calls in flight and refuses new ones. */
  close(): void;
}

function durationText(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function errnoText(err: unknown): string {
  return errnoCode(err, err instanceof Error ? err.name : "error");
}

/** Creates the transport. Nothing is opened until a request is made. */
export function createVaultTransport(options: VaultTransportOptions): VaultTransport {
  const { timeout } = options;
  const maxBytes = options.maxResponseBytes ?? VAULT_MAX_RESPONSE_BYTES;
  // No keep-alive: a key refresh is a couple of calls every few minutes, and sockets left in a pool
  // would outlive close() and pin a rotated CA.
  let httpsAgent = new https.Agent({ keepAlive: false });
  const httpAgent = new http.Agent({ keepAlive: false });
  const closing = new AbortController();

  function request(req: VaultRequest): Promise<VaultResponse> {
    return new Promise<VaultResponse>((resolve, reject) => {
      if (closing.signal.aborted) {
        reject(new Error("vault client closed"));
        return;
      }
      let url: URL;
      try {
        url = new URL(req.uri);
      } catch {
        reject(new Error("vault request URL is invalid"));
        return;
      }
      const timer = AbortSignal.timeout(timeout);
      const signals = [timer, closing.signal, ...(req.signal === undefined ? [] : [req.signal])];
      const signal = AbortSignal.any(signals);
      const body = req.json !== undefined && typeof req.json === "object" ? Buffer.from(JSON.stringify(req.json)) : undefined;
      const headers: Record<string, string> = {
        accept: "application/json",
        // Vault Agent/Proxy require it (`require_request_header`) against browser-borne SSRF.
        "x-vault-request": "true",
        ...req.headers,
      };
      if (body !== undefined) {
        headers["content-type"] = "application/json";
        headers["content-length"] = String(body.length);
      }
      const secure = url.protocol === "https:";
      const why = (): Error => {
        if (timer.aborted) return new Error(`vault request timed out after ${durationText(timeout)}`);
        if (closing.signal.aborted) return new Error("vault client closed");
        return new Error("vault request aborted");
      };
      const outgoing = (secure ? https : http).request(url, {
        method: req.method,
        headers,
        agent: secure ? httpsAgent : httpAgent,
        signal,
      });
      outgoing.on("error", (err) => reject(signal.aborted ? why() : new Error(`vault request failed: ${errnoText(err)}`)));
      outgoing.on("response", (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            res.destroy();
            outgoing.destroy();
            reject(new Error(`vault response is larger than ${maxBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on("error", (err) => reject(signal.aborted ? why() : new Error(`vault response failed: ${errnoText(err)}`)));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown;
          if (text.trim() !== "") {
            try {
              parsed = JSON.parse(text) as unknown;
            } catch {
              // Never quoted: the error text of JSON.parse would carry part of the body.
              parsed = undefined;
            }
          }
          resolve({ statusCode: res.statusCode ?? 0, body: parsed, request: { path: url.pathname } });
        });
      });
      outgoing.end(body);
    });
  }

  return {
    requestPromise: { defaults: () => request },
    setCa(ca) {
      httpsAgent.destroy();
      httpsAgent = new https.Agent({ keepAlive: false, ...(ca === undefined ? {} : { ca }) });
    },
    close() {
      closing.abort();
      httpsAgent.destroy();
      httpAgent.destroy();
    },
  };
}
