/**
 * SPEC §4 step 7, the body. Decides before reading whether a body is held in memory (it must be
 * checked, or it is small enough to replay after a key rotation) or streamed, and checks held
 * bodies against the client's model allowlist.
 */
import type { BodyPlan } from "../runtime.ts";
import type { RequestContext } from "./context.ts";
import { CONTINUE, deny, type Verdict } from "./verdict.ts";

/** Bodies up to this size are held even when unchecked, so a 401 retry can replay them. */
export const REPLAYABLE_BODY_LIMIT = 64 * 1024;

export interface BodyPolicy {
  readonly plan: (ctx: RequestContext, hasBody: boolean, declaredLength: number | undefined) => BodyPlan;
  readonly check: (ctx: RequestContext, body: Buffer) => Verdict;
}

export function createBodyPolicy(): BodyPolicy {
  return {
    plan: (ctx, hasBody, declaredLength) => {
      if (!hasBody) return { ok: true, hold: false };
      if (ctx.client?.models !== undefined) {
        // Fail closed until the model check lands: a client limited to some models cannot send
        // bodies the proxy cannot check.
        return deny("unsupported_media_type", "model-checked bodies are not supported yet");
      }
      return { ok: true, hold: declaredLength !== undefined && declaredLength <= REPLAYABLE_BODY_LIMIT };
    },
    check: () => CONTINUE,
  };
}
