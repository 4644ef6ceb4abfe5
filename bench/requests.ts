/** The requests every system is measured with, as the load generator sends them. */
import type { RequestSpec } from "./load.ts";

/** A model that no client's allowlist names (bench/config.ts): a model check must refuse it. */
export const UNLISTED_MODEL = "vendor-x/not-on-any-list";

/** A 200-byte JSON image request naming `model`. */
export function imageBody(model: string): Buffer {
  const base = { model, prompt: "", n: 1, size: "1024x1024", response_format: "url" };
  const empty = Buffer.byteLength(JSON.stringify(base));
  return Buffer.from(JSON.stringify({ ...base, prompt: "a lighthouse on a cliff at dusk, oil painting ".repeat(10).slice(0, 200 - empty) }));
}

export function getModels(token: string): RequestSpec {
  return { method: "GET", path: "/v1/models", headers: { authorization: `Bearer ${token}`, accept: "application/json", "user-agent": "mythiq-bench/1" } };
}

export function postImage(token: string, model: string): RequestSpec {
  return {
    method: "POST",
    path: "/v1/images/generations",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", accept: "application/json", "user-agent": "mythiq-bench/1" },
    body: imageBody(model),
  };
}
