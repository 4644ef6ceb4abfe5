/**
 * The stand-in for MythIQ under soak. It accepts the keys it has issued and not revoked (401 with
 * MythIQ's body otherwise), and injects the upstream faults the schedule turns on: connection
 * resets and stalls before the response, cuts and stalls in the middle of a streamed one.
 *
 * It writes down, per soak request id (the `x-soak-id` header the traffic sends and the proxy
 * passes on), every 401 it answered and every fault it injected, so the classifier can tell a
 * failure the soak caused from one the proxy caused. Anything that must never reach MythIQ (a
 * request the proxy should have refused, a request without a key or with a key never issued) is
 * recorded as a violation.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export type UpstreamFault = "reset" | "stall" | "cut" | "idle";

/**
 * What the upstream did to one soak request (over all its attempts, a 401 retry included). Kept
 * only for requests that met a 401 or a fault, so the soak's own memory stays small.
 */
export interface UpstreamFacts {
  /** Attempts answered 401 because their key was revoked. */
  refused: number;
  faults: UpstreamFault[];
}

/** Probabilities per attempt, set by the fault schedule (0 = off). */
export interface FaultRates {
  /** Destroy the connection before answering. */
  reset: number;
  /** Never answer (the proxy's `response_timeout` ends it). */
  stall: number;
  /** Destroy the connection in the middle of a streamed answer (SSE, download). */
  cut: number;
  /** Stop writing in the middle of a streamed answer (the proxy's `idle_timeout` ends it). */
  idle: number;
}

export const SSE_EVENTS = 20;
export const SSE_INTERVAL_MS = 100;
export const DOWNLOAD_BYTES = 4 * 1024 * 1024;
export const SLOW_MS = 2_000;
/** Kinds of soak request that the proxy must refuse: seeing one here is a violation. */
export const REFUSED_KINDS = new Set(["bad-model", "bad-token", "no-credentials", "unlisted-route", "slowloris"]);

export interface SoakUpstream {
  readonly port: number;
  readonly rates: FaultRates;
  /** Starts accepting `key`. */
  issue(key: string): void;
  /** From now on `key` gets 401. */
  revoke(key: string): void;
  facts(id: number): UpstreamFacts | undefined;
  /** Things that must never happen (each a short sentence). */
  readonly violations: string[];
  readonly totals: { requests: number; refused: number; faults: Record<UpstreamFault, number> };
  close(): Promise<void>;
}

const UNAUTHORIZED = Buffer.from(JSON.stringify({ success: false, message: "Invalid API key", code: "authentication_error" }));
const MODELS = Buffer.from(
  JSON.stringify({
    object: "list",
    data: ["stability/sdxl", "black-forest-labs/flux-schnell", "openai/dall-e-3"].map((id) => ({ id, object: "model", owned_by: id.split("/")[0] })),
  }),
);
const MODEL = Buffer.from(JSON.stringify({ id: "stability/sdxl", object: "model", owned_by: "stability" }));
const GENERATION = Buffer.from(JSON.stringify({ created: 1_700_000_000, data: [{ url: "https://cdn.soak.invalid/g/0.png" }] }));
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

function send(res: http.ServerResponse, status: number, body: Buffer, type = "application/json"): void {
  res.writeHead(status, { "content-type": type, "content-length": body.length });
  res.end(body);
}

export async function startSoakUpstream(random: () => number): Promise<SoakUpstream> {
  const valid = new Set<string>();
  const revoked = new Set<string>();
  const facts = new Map<number, UpstreamFacts>();
  const violations: string[] = [];
  const rates: FaultRates = { reset: 0, stall: 0, cut: 0, idle: 0 };
  const totals = { requests: 0, refused: 0, faults: { reset: 0, stall: 0, cut: 0, idle: 0 } };
  const open = new Set<http.ServerResponse>();

  const violation = (text: string): void => {
    if (violations.length < 100) violations.push(text);
  };
  const factsOf = (id: number): UpstreamFacts => {
    let entry = facts.get(id);
    if (entry === undefined) {
      entry = { refused: 0, faults: [] };
      facts.set(id, entry);
    }
    return entry;
  };
  const inject = (id: number, fault: UpstreamFault): void => {
    factsOf(id).faults.push(fault);
    totals.faults[fault] += 1;
  };

  /** Streams `total` bytes with backpressure; may cut or go idle halfway when a fault says so. */
  function download(res: http.ServerResponse, id: number, total: number, midFault: UpstreamFault | undefined): void {
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": total });
    let left = total;
    const faultAt = Math.floor(total / 2);
    const pump = (): void => {
      while (left > 0) {
        if (midFault !== undefined && left <= faultAt) {
          inject(id, midFault);
          if (midFault === "cut") res.destroy();
          // "idle": write nothing more; the proxy's idle_timeout cuts both sides.
          return;
        }
        const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
        left -= piece.length;
        if (!res.write(piece)) {
          res.once("drain", pump);
          return;
        }
      }
      res.end();
    };
    pump();
  }

  function events(res: http.ServerResponse, id: number, midFault: UpstreamFault | undefined): void {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    let seq = 0;
    const timer = setInterval(() => {
      if (midFault !== undefined && seq === SSE_EVENTS / 2) {
        clearInterval(timer);
        inject(id, midFault);
        if (midFault === "cut") res.destroy();
        return;
      }
      if (seq >= SSE_EVENTS) {
        clearInterval(timer);
        res.end();
        return;
      }
      res.write(`id: ${seq}\nevent: progress\ndata: {"seq":${seq}}\n\n`);
      seq += 1;
    }, SSE_INTERVAL_MS);
    res.once("close", () => clearInterval(timer));
  }

  function answer(req: http.IncomingMessage, res: http.ServerResponse, id: number, body: Buffer | number): void {
    const path = (req.url ?? "").split("?", 1)[0] ?? "";
    const before = random();
    if (before < rates.reset) {
      inject(id, "reset");
      req.socket.destroy();
      return;
    }
    if (before < rates.reset + rates.stall) {
      // Never answered: the proxy gives up at response_timeout and closes the connection.
      inject(id, "stall");
      return;
    }
    const mid = random();
    const midFault: UpstreamFault | undefined = mid < rates.cut ? "cut" : mid < rates.cut + rates.idle ? "idle" : undefined;
    if (req.method === "POST" && path === "/v1/uploads") return send(res, 200, Buffer.from(JSON.stringify({ bytes: body })));
    if (req.method === "POST" && path === "/v1/images/generations") {
      let model: unknown;
      try {
        model = (JSON.parse((body as Buffer).toString("utf8")) as { model?: unknown }).model;
      } catch {
        model = undefined;
      }
      if (model !== "stability/sdxl") violation(`soak request ${id}: MythIQ received a generation body with model ${JSON.stringify(model)}`);
      return send(res, 200, GENERATION);
    }
    if (path === "/v1/models") return send(res, 200, MODELS);
    if (path.startsWith("/v1/models/")) return send(res, 200, MODEL);
    if (path.startsWith("/v1/files/") && path.endsWith("/content")) return download(res, id, DOWNLOAD_BYTES, midFault);
    if (path === "/v1/events") return events(res, id, midFault);
    if (path === "/v1/slow") {
      const timer = setTimeout(() => send(res, 200, Buffer.from('{"ok":true}')), SLOW_MS);
      res.once("close", () => clearTimeout(timer));
      return;
    }
    violation(`soak request ${id}: MythIQ received ${req.method ?? "?"} ${path}, which no client may call`);
    send(res, 404, Buffer.from('{"success":false,"message":"not found"}'));
  }

  const server = http.createServer({ keepAliveTimeout: 120_000, headersTimeout: 60_000, requestTimeout: 0 }, (req, res) => {
    totals.requests += 1;
    open.add(res);
    res.once("close", () => open.delete(res));
    const id = Number(req.headers["x-soak-id"]);
    const kind = String(req.headers["x-soak-kind"] ?? "");
    if (!Number.isInteger(id)) violation(`MythIQ received a request without a soak id: ${req.method ?? "?"} ${req.url ?? ""}`);
    if (REFUSED_KINDS.has(kind)) violation(`soak request ${id} (${kind}) reached MythIQ: the proxy should have refused it`);
    const auth = req.headers.authorization ?? "";
    const key = auth.startsWith("Bearer ") ? auth.slice(7) : "";
    // POST bodies are read whole first, as an API server would before answering.
    const chunks: Buffer[] = [];
    let bytes = 0;
    const upload = req.url === "/v1/uploads";
    req.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (!upload) chunks.push(chunk);
    });
    req.on("error", () => undefined);
    req.on("end", () => {
      if (!valid.has(key)) {
        if (!revoked.has(key)) violation(`soak request ${id}: MythIQ received ${key === "" ? "no key" : "a key it never issued"}`);
        factsOf(id).refused += 1;
        totals.refused += 1;
        return send(res, 401, UNAUTHORIZED);
      }
      answer(req, res, id, upload ? bytes : Buffer.concat(chunks));
    });
  });
  server.maxConnections = 100_000;
  await new Promise<void>((resolve) => server.listen({ port: 0, host: "127.0.0.1", backlog: 4096 }, resolve));

  return {
    port: (server.address() as AddressInfo).port,
    rates,
    issue(key) {
      valid.add(key);
    },
    revoke(key) {
      valid.delete(key);
      revoked.add(key);
    },
    facts: (id) => facts.get(id),
    violations,
    totals,
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of open) res.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
