/**
 * A local stand-in for the MythIQ API, for `npm run demo` only: it speaks the same
 * OpenAI-compatible shapes and error bodies as MythIQ's documentation describes, checks the
 * `Authorization: Bearer <key>` header, and never calls out. It is not used by the tests, which
 * have their own recording fake.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { randomUUID, timingSafeEqual } from "node:crypto";

const MODELS = [
  { id: "stability/sdxl", object: "model", owned_by: "stability", type: "image" },
  { id: "openai/dall-e-3", object: "model", owned_by: "openai", type: "image" },
  { id: "black-forest-labs/flux-schnell", object: "model", owned_by: "black-forest-labs", type: "image" },
];

export interface StandInOptions {
  /** The only key the stand-in accepts. */
  readonly apiKey: string;
  readonly host?: string;
  readonly port?: number;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function authorised(req: IncomingMessage, expected: Buffer): "ok" | "missing" | "invalid" {
  const header = req.headers.authorization;
  if (header === undefined) return "missing";
  const match = /^Bearer (\S+)$/.exec(header);
  const presented = Buffer.from(match?.[1] ?? "");
  return presented.length === expected.length && timingSafeEqual(presented, expected) ? "ok" : "invalid";
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch {
        resolve(undefined);
      }
    });
    req.on("error", () => resolve(undefined));
  });
}

const generations: Array<{ id: string; model: string; prompt: string; created: number }> = [];

async function route(req: IncomingMessage, res: ServerResponse, key: Buffer): Promise<void> {
  const auth = authorised(req, key);
  if (auth === "missing") return sendJson(res, 401, { success: false, message: "API key is missing", code: "authentication_error" });
  if (auth === "invalid") return sendJson(res, 401, { success: false, message: "Invalid API key", code: "authentication_error" });

  const url = new URL(req.url ?? "/", "http://stand-in.invalid");
  if (req.method === "GET" && url.pathname === "/v1/models") {
    return sendJson(res, 200, { object: "list", data: MODELS });
  }
  const modelMatch = /^\/v1\/models\/([^/]+)$/.exec(url.pathname);
  if (req.method === "GET" && modelMatch !== null) {
    const model = MODELS.find((m) => m.id === decodeURIComponent(modelMatch[1] ?? ""));
    return model === undefined
      ? sendJson(res, 404, { success: false, message: "Model not found", code: "not_found" })
      : sendJson(res, 200, model);
  }
  if (req.method === "POST" && url.pathname === "/v1/images/generations") {
    const body = (await readJson(req)) as { model?: unknown; prompt?: unknown; n?: unknown } | undefined;
    if (typeof body?.model !== "string" || typeof body.prompt !== "string") {
      return sendJson(res, 400, { success: false, message: "model and prompt are required", code: "invalid_request_error" });
    }
    const n = typeof body.n === "number" && body.n >= 1 && body.n <= 4 ? Math.floor(body.n) : 1;
    const created = Math.floor(Date.now() / 1000);
    const data = Array.from({ length: n }, () => {
      const id = randomUUID();
      generations.unshift({ id, model: body.model as string, prompt: body.prompt as string, created });
      return { url: `https://cdn.stand-in.invalid/images/${id}.png`, revised_prompt: body.prompt };
    });
    generations.splice(100);
    return sendJson(res, 200, { created, data });
  }
  if (req.method === "GET" && url.pathname === "/v1/generations") {
    const limit = Math.min(Math.max(Number(url.searchParams.get("limit") ?? 20) || 20, 1), 100);
    return sendJson(res, 200, { object: "list", data: generations.slice(0, limit) });
  }
  return sendJson(res, 404, { success: false, message: "Not found", code: "not_found" });
}

/** Starts the stand-in; resolves once it listens. */
export function startStandInMythiq(options: StandInOptions): Promise<Server> {
  const key = Buffer.from(options.apiKey);
  const server = createServer((req, res) => {
    route(req, res, key).catch(() => res.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}
