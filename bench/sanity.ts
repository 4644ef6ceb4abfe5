/**
 * Before anything is measured: each system answers correctly, so none is fast for the wrong reason.
 * Every accepted request must reach the upstream with the injected key (and no request without
 * it), every refusal must stop at the proxy, and no answer may carry the key.
 */
import type { RequestSpec } from "./load.ts";
import { newToken } from "./config.ts";
import { getModels, postImage, UNLISTED_MODEL } from "./requests.ts";
import { once, type ProxyUnderTest } from "./scenarios.ts";
import type { Upstream } from "./upstream.ts";

export interface Checks {
  /** The client token the system admits, and a model on its list. */
  readonly token: string;
  readonly model: string;
  /** Whether it must refuse a wrong token with 401. */
  readonly checksToken: boolean;
  /** Whether it must refuse a request without a token with 401 (mythiq-proxy's config has an anonymous client for that GET). */
  readonly needsToken: boolean;
  /** Whether it must refuse a JSON body naming an unlisted model with 403. */
  readonly checksModel: boolean;
}

/** What is wrong with `proxy`'s answers; empty when nothing is. */
export async function answerProblems(proxy: ProxyUnderTest, upstream: Upstream, key: string, checks: Checks): Promise<string[]> {
  const problems: string[] = [];
  const expect = async (what: string, request: RequestSpec, status: number, reachesUpstream: boolean): Promise<void> => {
    const before = { ...upstream.counts };
    const answer = await once(proxy.port, request);
    const withKey = upstream.counts.withKey - before.withKey;
    const withoutKey = upstream.counts.withoutKey - before.withoutKey;
    if (answer.status !== status) problems.push(`${what}: answered ${answer.status}, expected ${status} (${answer.body.slice(0, 200)})`);
    if (withoutKey !== 0) problems.push(`${what}: the upstream got ${withoutKey} request(s) without the injected key`);
    if (withKey !== (reachesUpstream ? 1 : 0)) problems.push(`${what}: the upstream got ${withKey} request(s), expected ${reachesUpstream ? 1 : 0}`);
    if (answer.body.includes(key)) problems.push(`${what}: the answer contains the key`);
  };
  await expect("GET /v1/models", getModels(checks.token), 200, true);
  await expect(`POST /v1/images/generations (${checks.model})`, postImage(checks.token, checks.model), 200, true);
  if (checks.checksToken) {
    await expect("GET /v1/models with a wrong token", getModels(newToken().token), 401, false);
  }
  if (checks.needsToken) {
    const { authorization: _, ...anonymous } = getModels(checks.token).headers ?? {};
    await expect("GET /v1/models without a token", { method: "GET", path: "/v1/models", headers: anonymous }, 401, false);
  }
  if (checks.checksModel) await expect(`POST /v1/images/generations (${UNLISTED_MODEL})`, postImage(checks.token, UNLISTED_MODEL), 403, false);
  return problems;
}
