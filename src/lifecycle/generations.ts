/**
 * Compiled configs as generations. Each config version in force gets its own compiled config and
 * request handler. A request stays with the generation it started under until its response closes;
 * a reload only changes which generation new requests get. A replaced generation's keyring stops
 * refreshing at once (keys it shares with the new config were handed over), and its upstream pool is
 * closed when its last request ends, never under a request still streaming.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { OpenResponses } from "../http/open-responses.ts";
import type { CompiledConfig } from "../pipeline/compile.ts";
import { createRequestHandler, type ListenHandlerDeps } from "../pipeline/listen-handler.ts";

interface Generation {
  readonly compiled: CompiledConfig;
  readonly handle: ReturnType<typeof createRequestHandler>;
  inflight: number;
  retired: boolean;
  /** The upstream pool was closed (retired and idle, or at stop). */
  closed: boolean;
}

export interface Generations {
  /** The compiled config new requests get. */
  current(): CompiledConfig;
  /**
   * Puts `next` in force: starts its keyring, stops the previous one's, and closes the previous
   * upstream pool once its last request ends. Returns how many requests the previous one still has.
   */
  replace(next: CompiledConfig): number;
  /** The listen port's request handler: serves with the current generation and tracks the response until it closes. */
  dispatch(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): Promise<void>;
  /** Responses not yet closed, over every generation. */
  readonly open: OpenResponses;
  /** Stops the current generation's keyring and closes its upstream pool (at stop). */
  closeCurrent(): void;
}

export interface GenerationDeps extends ListenHandlerDeps {
  /** While true (draining, shedding), connections are not kept for another request. */
  readonly closeConnections: () => boolean;
  /** Called after every response closes (the drain watches for the last one). */
  readonly onResponseClosed: () => void;
}

export function createGenerations(first: CompiledConfig, deps: GenerationDeps): Generations {
  const open = new OpenResponses();

  const generation = (compiled: CompiledConfig): Generation => ({
    compiled,
    handle: createRequestHandler(compiled, deps),
    inflight: 0,
    retired: false,
    closed: false,
  });

  /** Closes what a generation holds once nothing uses it. The keyring was closed when it was replaced. */
  const closeGeneration = (gen: Generation): void => {
    if (gen.closed) return;
    gen.closed = true;
    gen.compiled.forwarder.close();
  };

  let current = generation(first);

  return {
    current: () => current.compiled,
    replace(next) {
      const previous = current;
      current = generation(next);
      next.keyring.start();
      previous.compiled.keyring.close();
      previous.retired = true;
      if (previous.inflight === 0) closeGeneration(previous);
      return previous.inflight;
    },
    dispatch(req, res, expectsContinue) {
      const gen = current;
      gen.inflight += 1;
      const entry = open.add(res);
      // While draining or shedding, a connection is not kept for another request: closing it
      // sends the client elsewhere and lightens the load (Node adds `Connection: close`).
      if (deps.closeConnections()) res.shouldKeepAlive = false;
      res.once("close", () => {
        gen.inflight -= 1;
        open.remove(entry);
        if (gen.retired && gen.inflight === 0) closeGeneration(gen);
        deps.onResponseClosed();
      });
      return gen.handle(req, res, expectsContinue);
    },
    open,
    closeCurrent() {
      current.compiled.keyring.close();
      closeGeneration(current);
    },
  };
}
