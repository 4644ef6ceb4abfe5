/**
 * MythIQ's Media API as the fake upstream answers it (test/helpers/fake-upstream.ts, reply type
 * `mythiq`): one account's media library, shared by every caller — exactly what makes one user's
 * `GET /v1/media` list everybody's prompts behind a shared key.
 *
 * - `POST /v1/images/generations` `{model, prompt, n?, public?, provider?}` → `{created, data: [{id, url, revised_prompt}]}`
 *   (OpenAI-compatible, plus the media id), one item per image;
 * - `POST /v1/videos/generations` → `{result: {id, url, status}, success: true}`;
 * - `POST /v1/media/upload` → `{result: {id, upload_url}, success: true}` (a signed upload URL);
 * - `GET /v1/media` (`limit`, `page`, `media`, `model`, `provider`, `search`) →
 *   `{result: {total, medias: [{id, url, user, media, model, provider, prompt, public, status}]}, success: true}`,
 *   newest first, `total` counting every match;
 * - `GET /v1/media/{id}` → `{result: item, success: true}`, or 404 in MythIQ's error shape;
 * - `POST /v1/media/{id}` (complete an upload) → `{result: item, success: true}` with `status: "ready"`.
 */
import { randomBytes } from "node:crypto";

export interface MediaItem {
  readonly id: string;
  readonly url: string;
  readonly user: string;
  readonly media: "image" | "video" | "upload";
  readonly model: string | null;
  readonly provider: string | null;
  readonly prompt: string | null;
  readonly public: boolean;
  status: "ready" | "processing" | "pending_upload";
}

/** The account the shared key belongs to: every item is this user's, as MythIQ sees it. */
export const ACCOUNT = "acct-shared-0001";

export interface MediaLibrary {
  /** Newest last. */
  readonly items: MediaItem[];
  /** The reply to a request, or undefined when the path is not a Media API path. */
  answer(method: string, target: string, body: Buffer): { status: number; body: unknown } | undefined;
}

function notFound(): { status: number; body: unknown } {
  return { status: 404, body: { success: false, message: "Media not found", code: "not_found" } };
}

function parseBody(body: Buffer): Record<string, unknown> {
  try {
    const value = JSON.parse(body.toString("utf8")) as unknown;
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export function createMediaLibrary(): MediaLibrary {
  const items: MediaItem[] = [];
  const add = (media: MediaItem["media"], fields: Record<string, unknown>, status: MediaItem["status"]): MediaItem => {
    const id = `med_${randomBytes(6).toString("hex")}`;
    const item: MediaItem = {
      id,
      url: `https://cdn.mythiq.test/${media}s/${id}`,
      user: ACCOUNT,
      media,
      model: typeof fields["model"] === "string" ? fields["model"] : null,
      provider: typeof fields["provider"] === "string" ? fields["provider"] : null,
      prompt: typeof fields["prompt"] === "string" ? fields["prompt"] : null,
      // MythIQ's default: what a user generates is public unless they say otherwise.
      public: fields["public"] !== false,
      status,
    };
    items.push(item);
    return item;
  };

  return {
    items,
    answer(method, target, body) {
      const url = new URL(target, "http://fake.invalid");
      const path = url.pathname;
      if (method === "POST" && path === "/v1/images/generations") {
        const fields = parseBody(body);
        const n = typeof fields["n"] === "number" && fields["n"] >= 1 && fields["n"] <= 10 ? Math.floor(fields["n"]) : 1;
        const made = Array.from({ length: n }, () => add("image", fields, "ready"));
        return { status: 200, body: { created: 1_700_000_000, data: made.map((m) => ({ id: m.id, url: m.url, revised_prompt: m.prompt })) } };
      }
      if (method === "POST" && path === "/v1/videos/generations") {
        const made = add("video", parseBody(body), "processing");
        return { status: 200, body: { result: { id: made.id, url: made.url, status: made.status }, success: true } };
      }
      if (method === "POST" && path === "/v1/media/upload") {
        const made = add("upload", parseBody(body), "pending_upload");
        return { status: 200, body: { result: { id: made.id, upload_url: `https://uploads.mythiq.test/${made.id}?signature=abc` }, success: true } };
      }
      if (method === "GET" && path === "/v1/media") {
        const q = url.searchParams;
        const search = q.get("search");
        const matches = [...items].reverse().filter(
          (m) =>
            (q.get("media") === null || m.media === q.get("media")) &&
            (q.get("model") === null || m.model === q.get("model")) &&
            (q.get("provider") === null || m.provider === q.get("provider")) &&
            (search === null || (m.prompt ?? "").includes(search)),
        );
        const limit = Math.min(Math.max(Number(q.get("limit") ?? 20) || 20, 1), 100);
        const page = Math.max(Number(q.get("page") ?? 1) || 1, 1);
        const medias = matches.slice((page - 1) * limit, page * limit);
        return { status: 200, body: { result: { total: matches.length, medias }, success: true } };
      }
      const one = /^\/v1\/media\/([^/]+)$/.exec(path);
      if (one !== null) {
        const item = items.find((m) => m.id === one[1]);
        if (item === undefined) return notFound();
        if (method === "POST") item.status = "ready";
        if (method === "GET" || method === "POST") return { status: 200, body: { result: item, success: true } };
      }
      return undefined;
    },
  };
}
