/**
 * The fast local stand-in for the MythIQ API that both proxies forward to. Answers are prebuilt
 * buffers with a `content-length`, so the upstream costs as little as a Node HTTP server can, and
 * it counts whether each request carried the injected key (a proxy that forgot it would be fast
 * for the wrong reason).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

/** 100 MiB, the size of the upload and download runs. */
export const BULK_BYTES = 100 * 1024 * 1024;

const JSON_TYPE = "application/json";

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

// A models list of a realistic size (about 1 KiB), like MythIQ's OpenAI-compatible /v1/models.
const MODELS = json({
  object: "list",
  data: [
    "stability/sdxl",
    "stability/sd3.5-large",
    "black-forest-labs/flux-schnell",
    "black-forest-labs/flux-dev",
    "black-forest-labs/flux-pro",
    "openai/dall-e-3",
    "ideogram/v2",
    "recraft/v3",
  ].map((id) => ({ id, object: "model", created: 1_700_000_000, owned_by: id.split("/")[0], type: "image" })),
});
const MODEL = json({ id: "stability/sdxl", object: "model", created: 1_700_000_000, owned_by: "stability", type: "image" });
const GENERATION = json({
  created: 1_700_000_000,
  data: [{ url: "https://cdn.example.invalid/generations/0123456789abcdef.png", revised_prompt: null }],
  usage: { images: 1, cost_usd: 0.004 },
});
const SMALL = json({ ok: true });
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

export interface SseEvent {
  readonly seq: number;
  /** `performance.now()` when the upstream wrote it (same clock as the bench client). */
  readonly writtenAt: number;
}

export interface Upstream {
  readonly port: number;
  /** Requests that carried `authorization: Bearer <key>` / that did not. */
  readonly counts: { withKey: number; withoutKey: number };
  /** Bytes received by the last upload. */
  lastUploadBytes: number;
  /** Server-Sent Events run: how many, how far apart, and the write time of each. */
  sse: { count: number; intervalMs: number; written: SseEvent[] };
  /** How long `/v1/slow` holds its answer, in ms. */
  slowMs: number;
  /** Most `/v1/slow` requests held at once since the last reset. */
  maxHeld: number;
  close(): Promise<void>;
}

function send(res: http.ServerResponse, status: number, body: Buffer, type = JSON_TYPE): void {
  res.writeHead(status, { "content-type": type, "content-length": body.length });
  res.end(body);
}

/** Streams `total` bytes of `CHUNK` with backpressure. */
function download(res: http.ServerResponse, total: number): void {
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": total });
  let left = total;
  const pump = (): void => {
    while (left > 0) {
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

export async function startUpstream(key: string): Promise<Upstream> {
  const expected = `Bearer ${key}`;
  const held = new Set<http.ServerResponse>();
  const state: Upstream = {
    port: 0,
    counts: { withKey: 0, withoutKey: 0 },
    lastUploadBytes: 0,
    sse: { count: 0, intervalMs: 0, written: [] },
    slowMs: 10_000,
    maxHeld: 0,
    close: () => Promise.resolve(),
  };

  const server = http.createServer({ keepAliveTimeout: 60_000, maxHeaderSize: 16_384 }, (req, res) => {
    if (req.headers.authorization === expected) state.counts.withKey += 1;
    else state.counts.withoutKey += 1;
    const url = req.url ?? "";
    const path = url.split("?", 1)[0] ?? "";

    if (req.method === "POST") {
      let bytes = 0;
      req.on("data", (chunk: Buffer) => (bytes += chunk.length));
      req.on("end", () => {
        if (path === "/v1/uploads") {
          state.lastUploadBytes = bytes;
          send(res, 200, json({ bytes }));
        } else if (path === "/v1/images/generations") send(res, 200, GENERATION);
        else send(res, 200, SMALL);
      });
      return;
    }

    if (path === "/v1/models") return send(res, 200, MODELS);
    if (path.startsWith("/v1/models/")) return send(res, 200, MODEL);
    if (path.startsWith("/v1/files/") && path.endsWith("/content")) return download(res, BULK_BYTES);
    if (path === "/v1/slow") {
      held.add(res);
      state.maxHeld = Math.max(state.maxHeld, held.size);
      const timer = setTimeout(() => {
        held.delete(res);
        send(res, 200, SMALL);
      }, state.slowMs);
      res.once("close", () => {
        clearTimeout(timer);
        held.delete(res);
      });
      return;
    }
    if (path === "/v1/events") {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.flushHeaders();
      let seq = 0;
      const { count, intervalMs } = state.sse;
      const timer = setInterval(() => {
        if (seq >= count) {
          clearInterval(timer);
          res.end();
          return;
        }
        const event = `id: ${seq}\nevent: progress\ndata: {"seq":${seq},"progress":${Math.round((seq / count) * 100)}}\n\n`;
        res.write(event);
        state.sse.written.push({ seq, writtenAt: performance.now() });
        seq += 1;
      }, intervalMs);
      res.once("close", () => clearInterval(timer));
      return;
    }
    if (path === "/v1/generations") return send(res, 200, json({ object: "list", data: [] }));
    send(res, 404, json({ success: false, message: "not found" }));
  });
  server.maxConnections = 100_000;
  server.headersTimeout = 60_000;
  server.requestTimeout = 0;

  await new Promise<void>((resolve) => server.listen({ port: 0, host: "127.0.0.1", backlog: 4096 }, resolve));
  return Object.assign(state, {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of held) res.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  });
}
