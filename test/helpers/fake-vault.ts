/**
 * A fake HashiCorp Vault for tests, speaking the parts of Vault's HTTP API the proxy uses, on
 * 127.0.0.1:0 (plain, or TLS with a given certificate):
 *
 * - `POST /v1/auth/<mount>/login` for the kubernetes (`{role, jwt}`) and approle
 *   (`{role_id, secret_id}`) methods, answering `{auth: {client_token, lease_duration, renewable, …}}`;
 * - `GET /v1/auth/token/lookup-self`, `POST /v1/auth/token/renew-self` (which, like Vault, answer
 *   with the token itself in the body);
 * - KV v1 `GET /v1/<mount>/<path>` and KV v2 `GET /v1/<mount>/data/<path>`, with versions;
 * - Vault Enterprise namespaces (`X-Vault-Namespace`): when set, mounts exist only in it;
 * - 403 `{"errors":["permission denied"]}` for a missing, unknown, expired or revoked token.
 *
 * ```ts
 * const vault = await startFakeVault({ tls?, namespace? });
 * vault.kubernetes("kubernetes", { role: "mythiq-proxy", jwt: "eyJ…" });
 * vault.approle("approle", { role_id: "r", secret_id: "s" });
 * vault.addToken("hvs.static", { ttl: 0 });
 * vault.kv("secret", 2); vault.put("secret", "mythiq/production", { api_key: "mq-…" });
 * vault.lease = { seconds: 3600, renewable: true };     // for tokens issued by logins
 * vault.renew = "ok" | "fail";                          // renew-self answers 200 or 500
 * vault.mode = "up" | "down" | "sealed" | "stall";      // down: connections reset; stall: never answers
 * vault.requests                                         // every request: method, path, headers, body
 * await vault.waitFor((r) => r.path.endsWith("/login"));
 * await vault.idle()                                     // resolves once no client connection is open
 * vault.issued                                           // every token handed out
 * await vault.close();
 * ```
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";

export interface VaultRecorded {
  readonly method: string;
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: unknown;
  /** `Date.now()` when the request arrived. */
  readonly at: number;
}

interface TokenInfo {
  expiresAt: number | undefined;
  readonly renewable: boolean;
  revoked: boolean;
  readonly policies: string[];
}

interface KvMount {
  readonly version: 1 | 2;
  readonly secrets: Map<string, Array<Record<string, unknown> | null>>;
}

export type VaultMode = "up" | "down" | "sealed" | "stall";

export interface FakeVault {
  readonly url: string;
  readonly port: number;
  readonly requests: VaultRecorded[];
  /** Every token handed out by logins, in order. */
  readonly issued: string[];
  mode: VaultMode;
  /** Lease of tokens issued by logins and renewals. */
  lease: { seconds: number; renewable: boolean };
  renew: "ok" | "fail";
  /** Delay before answering KV reads, in ms. */
  readDelayMs: number;
  kubernetes(mount: string, accepted: { role: string; jwt: string }): void;
  approle(mount: string, accepted: { role_id: string; secret_id: string }): void;
  addToken(token: string, options?: { ttl?: number; renewable?: boolean }): void;
  revoke(token: string): void;
  kv(mount: string, version: 1 | 2): void;
  /** Writes a new version of a secret (KV v2) or replaces it (KV v1). */
  put(mount: string, path: string, data: Record<string, unknown>): void;
  /** KV v2: deletes the current version (reads answer `data: null`, like Vault). */
  softDelete(mount: string, path: string): void;
  /** Answers the next request whose path matches with this status, body and headers, once. */
  once(match: (r: VaultRecorded) => boolean, status: number, body: unknown, headers?: Record<string, string>): void;
  waitFor(match: (r: VaultRecorded) => boolean, after?: number): Promise<VaultRecorded>;
  count(match: (r: VaultRecorded) => boolean): number;
  /** Client connections open now. */
  readonly openConnections: number;
  /** Resolves once no client connection is open. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

export interface FakeVaultOptions {
  readonly tls?: { readonly key: string | Buffer; readonly cert: string | Buffer };
  /** Mounts exist only in this namespace. */
  readonly namespace?: string;
}

const PERMISSION_DENIED = { errors: ["permission denied"] };

export async function startFakeVault(options: FakeVaultOptions = {}): Promise<FakeVault> {
  const requests: VaultRecorded[] = [];
  const issued: string[] = [];
  const tokens = new Map<string, TokenInfo>();
  const kubernetesMounts = new Map<string, { role: string; jwt: string }>();
  const approleMounts = new Map<string, { role_id: string; secret_id: string }>();
  const kvMounts = new Map<string, KvMount>();
  const sockets = new Set<Socket>();
  const waiters: Array<() => void> = [];
  const scripted: Array<{ match: (r: VaultRecorded) => boolean; status: number; body: unknown; headers?: Record<string, string> }> = [];
  const timers = new Set<NodeJS.Timeout>();
  const idlers: Array<() => void> = [];

  function issue(): string {
    const token = `hvs.${randomBytes(18).toString("base64url")}`;
    issued.push(token);
    tokens.set(token, {
      expiresAt: fake.lease.seconds > 0 ? Date.now() + fake.lease.seconds * 1000 : undefined,
      renewable: fake.lease.renewable,
      revoked: false,
      policies: ["default", "mythiq-proxy"],
    });
    return token;
  }

  function tokenOf(req: http.IncomingMessage): [string, TokenInfo] | undefined {
    const token = req.headers["x-vault-token"];
    if (typeof token !== "string") return undefined;
    const info = tokens.get(token);
    if (info === undefined || info.revoked) return undefined;
    if (info.expiresAt !== undefined && Date.now() >= info.expiresAt) return undefined;
    return [token, info];
  }

  function authBody(token: string, info: TokenInfo): unknown {
    const ttl = info.expiresAt === undefined ? 0 : Math.max(0, Math.round((info.expiresAt - Date.now()) / 1000));
    return {
      request_id: randomBytes(8).toString("hex"),
      lease_id: "",
      renewable: false,
      lease_duration: 0,
      data: null,
      wrap_info: null,
      warnings: null,
      auth: {
        client_token: token,
        accessor: randomBytes(8).toString("hex"),
        policies: info.policies,
        token_policies: info.policies,
        metadata: { role: "mythiq-proxy" },
        lease_duration: ttl,
        renewable: info.renewable,
        entity_id: "",
        token_type: "service",
        orphan: true,
      },
    };
  }

  function route(req: http.IncomingMessage, recorded: VaultRecorded): [number, unknown] {
    const path = recorded.path.split("?")[0] ?? "";
    const body = (recorded.body ?? {}) as Record<string, unknown>;
    if (fake.mode === "sealed") return [503, { errors: ["Vault is sealed"] }];
    if (options.namespace !== undefined && req.headers["x-vault-namespace"] !== options.namespace) {
      return [404, { errors: [`no handler for route "${path}". route entry not found.`] }];
    }
    const login = /^\/v1\/auth\/(.+)\/login$/.exec(path);
    if (login !== null && req.method === "POST") {
      const mount = login[1]!;
      const k8s = kubernetesMounts.get(mount);
      if (k8s !== undefined) {
        if (body["role"] !== k8s.role) return [400, { errors: ["invalid role name \"" + String(body["role"]) + "\""] }];
        if (body["jwt"] !== k8s.jwt) return [403, PERMISSION_DENIED];
        const token = issue();
        return [200, authBody(token, tokens.get(token)!)];
      }
      const approle = approleMounts.get(mount);
      if (approle !== undefined) {
        if (body["role_id"] !== approle.role_id) return [400, { errors: ["invalid role ID"] }];
        if (body["secret_id"] !== approle.secret_id) return [400, { errors: ["invalid secret id"] }];
        const token = issue();
        return [200, authBody(token, tokens.get(token)!)];
      }
      return [400, { errors: [`no handler for route "${path}"`] }];
    }
    if (path === "/v1/auth/token/lookup-self" && req.method === "GET") {
      const held = tokenOf(req);
      if (held === undefined) return [403, PERMISSION_DENIED];
      const [token, info] = held;
      const ttl = info.expiresAt === undefined ? 0 : Math.max(0, Math.round((info.expiresAt - Date.now()) / 1000));
      return [200, { data: { id: token, accessor: "acc", ttl, renewable: info.renewable, policies: info.policies, display_name: "token" } }];
    }
    if (path === "/v1/auth/token/renew-self" && req.method === "POST") {
      const held = tokenOf(req);
      if (held === undefined) return [403, PERMISSION_DENIED];
      if (fake.renew === "fail") return [500, { errors: ["internal error"] }];
      const [token, info] = held;
      if (!info.renewable) return [400, { errors: ["lease is not renewable"] }];
      info.expiresAt = fake.lease.seconds > 0 ? Date.now() + fake.lease.seconds * 1000 : undefined;
      return [200, authBody(token, info)];
    }
    for (const [name, mount] of kvMounts) {
      const prefix = mount.version === 2 ? `/v1/${name}/data/` : `/v1/${name}/`;
      if (!path.startsWith(prefix) || req.method !== "GET") continue;
      if (tokenOf(req) === undefined) return [403, PERMISSION_DENIED];
      const versions = mount.secrets.get(decodeURIComponent(path.slice(prefix.length)));
      if (versions === undefined || versions.length === 0) return [404, { errors: [] }];
      const current = versions[versions.length - 1] ?? null;
      if (mount.version === 1) {
        return [200, { request_id: "r", lease_id: "", renewable: false, lease_duration: 2764800, data: current, wrap_info: null, warnings: null, auth: null }];
      }
      return [
        200,
        {
          request_id: "r",
          lease_id: "",
          renewable: false,
          lease_duration: 0,
          data: {
            data: current,
            metadata: {
              created_time: new Date().toISOString(),
              custom_metadata: null,
              deletion_time: current === null ? new Date().toISOString() : "",
              destroyed: false,
              version: versions.length,
            },
          },
          wrap_info: null,
          warnings: null,
          auth: null,
        },
      ];
    }
    return [404, { errors: [] }];
  }

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (fake.mode === "down") {
      req.socket.resetAndDestroy();
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      let body: unknown;
      try {
        body = text === "" ? undefined : JSON.parse(text);
      } catch {
        body = text;
      }
      const recorded: VaultRecorded = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, body, at: Date.now() };
      requests.push(recorded);
      for (const waiter of waiters.splice(0)) waiter();
      if (fake.mode === "stall") return;
      const send = (status: number, payload: unknown, headers: Record<string, string> = {}): void => {
        if (res.destroyed) return;
        const out = payload === undefined ? "" : JSON.stringify(payload);
        res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(out), ...headers });
        res.end(out);
      };
      const at = scripted.findIndex((s) => s.match(recorded));
      if (at >= 0) {
        const [script] = scripted.splice(at, 1);
        send(script!.status, script!.body, script!.headers);
        return;
      }
      const [status, payload] = route(req, recorded);
      const isRead = !recorded.path.startsWith("/v1/auth/");
      if (isRead && fake.readDelayMs > 0) {
        const timer = setTimeout(() => {
          timers.delete(timer);
          send(status, payload);
        }, fake.readDelayMs);
        timers.add(timer);
      } else {
        send(status, payload);
      }
    });
  };

  const server = options.tls ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, handler) : http.createServer(handler);
  server.on("connection", (socket: Socket) => {
    if (fake.mode === "down") {
      socket.resetAndDestroy();
      return;
    }
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      if (sockets.size === 0) for (const resolve of idlers.splice(0)) resolve();
    });
  });
  server.on("tlsClientError", () => {});

  const fake: FakeVault = {
    url: "",
    port: 0,
    requests,
    issued,
    mode: "up",
    lease: { seconds: 3600, renewable: true },
    renew: "ok",
    readDelayMs: 0,
    kubernetes: (mount, accepted) => void kubernetesMounts.set(mount, accepted),
    approle: (mount, accepted) => void approleMounts.set(mount, accepted),
    addToken(token, opts = {}) {
      const ttl = opts.ttl ?? 0;
      tokens.set(token, { expiresAt: ttl > 0 ? Date.now() + ttl * 1000 : undefined, renewable: opts.renewable ?? false, revoked: false, policies: ["default"] });
    },
    revoke(token) {
      const info = tokens.get(token);
      if (info !== undefined) info.revoked = true;
    },
    kv: (mount, version) => void kvMounts.set(mount, { version, secrets: new Map() }),
    put(mount, path, data) {
      const kv = kvMounts.get(mount);
      if (kv === undefined) throw new Error(`no kv mount ${mount}`);
      const versions = kv.secrets.get(path) ?? [];
      if (kv.version === 1) versions.splice(0);
      versions.push({ ...data });
      kv.secrets.set(path, versions);
    },
    softDelete(mount, path) {
      kvMounts.get(mount)?.secrets.get(path)?.push(null);
    },
    once(match, status, body, headers) {
      scripted.push({ match, status, body, ...(headers === undefined ? {} : { headers }) });
    },
    waitFor(match, after = 0) {
      return new Promise((resolve) => {
        const check = (): boolean => {
          const found = requests.slice(after).find(match);
          if (found === undefined) return false;
          resolve(found);
          return true;
        };
        const again = (): void => {
          if (!check()) waiters.push(again);
        };
        again();
      });
    },
    count: (match) => requests.filter(match).length,
    get openConnections() {
      return sockets.size;
    },
    idle() {
      return sockets.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => idlers.push(resolve));
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as AddressInfo).port;
  Object.assign(fake, { port, url: `${options.tls ? "https" : "http"}://127.0.0.1:${port}` });
  return fake;
}
