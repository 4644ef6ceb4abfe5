// The process's tracer following the config: nothing while `tracing` is absent; built with its
// header secrets read; unchanged settings are a no-op (trust_incoming is not a tracer setting);
// changed settings swap tracers and retire the old one; a secret that cannot be read keeps the
// tracer in force; shutdown stops it. And `trust_incoming`, compiled per config.
import t from "tap";
import type { TracingConfig } from "../../../src/config/types.ts";
import { createTracing } from "../../../src/observe/tracing/tracing.ts";
import type { RequestTracer, TracerSettings } from "../../../src/observe/tracing/types.ts";
import { compileTraceTrust } from "../../../src/pipeline/trace-trust.ts";
import { makeCaller, makeClient, makeContext } from "../../helpers/context.ts";
import { createRecordingLogger } from "../../helpers/keys-fakes.ts";

const SECRET = "otlp-header-secret-value-77";

function base(over: Partial<TracingConfig> = {}): TracingConfig {
  return { endpoint: "http://collector:4318/v1/traces", headers: { "x-api-key": { env: "OTLP_KEY" } }, service_name: "p", sample_ratio: 1, trust_incoming: false, ...over };
}

function fakeFactory() {
  const built: Array<{ settings: TracerSettings; stopped: boolean }> = [];
  const create = (settings: TracerSettings): Promise<RequestTracer> => {
    const entry = { settings, stopped: false };
    built.push(entry);
    return Promise.resolve({
      begin: () => {
        throw new Error("not used here");
      },
      shutdown: () => {
        entry.stopped = true;
        return Promise.resolve();
      },
    });
  };
  return { built, create };
}

void t.test("tracing follows the config", async (t) => {
  const { built, create } = fakeFactory();
  const logger = createRecordingLogger();
  const tracing = createTracing({ logger, env: { OTLP_KEY: `${SECRET}\n` }, onDropped: () => undefined, create });

  await tracing.apply(undefined);
  t.equal(tracing.current(), undefined, "absent: no tracer");
  t.equal(built.length, 0, "and none built");

  await tracing.apply(base());
  const first = tracing.current();
  t.ok(first);
  t.equal(built.length, 1);
  t.strictSame(built[0]?.settings.headers, { "x-api-key": SECRET }, "header secrets read (trailing newline dropped)");
  t.equal(built[0]?.settings.endpoint, "http://collector:4318/v1/traces");

  await tracing.apply(base({ trust_incoming: ["web"] }));
  t.equal(tracing.current(), first, "only trust_incoming changed: the same tracer");
  t.equal(built.length, 1);

  await tracing.apply(base({ sample_ratio: 0.5 }));
  t.not(tracing.current(), first, "changed settings: a new tracer");
  t.equal(built.length, 2);
  t.ok(built[0]?.stopped, "the old one is retired");
  t.equal(built[1]?.settings.sampleRatio, 0.5);

  const second = tracing.current();
  await t.rejects(tracing.apply(base({ sample_ratio: 0.5, headers: { "x-api-key": { env: "MISSING" } } })), /tracing\.headers\.x-api-key: secret environment variable MISSING is not set/);
  t.equal(built.length, 2, "nothing built for a secret that cannot be read");
  t.equal(tracing.current(), second, "the tracer in force stays");

  await tracing.apply(undefined);
  t.equal(tracing.current(), undefined, "section removed: tracing off");
  t.ok(built[1]?.stopped);

  await tracing.apply(base());
  await tracing.shutdown();
  t.equal(tracing.current(), undefined);
  t.ok(built.every((b) => b.stopped), "every tracer stopped");
  t.notOk(logger.text().includes(SECRET), "the secret is never logged");
});

void t.test("a header secret that would break the request is refused, naming the header only", async (t) => {
  const { create } = fakeFactory();
  const tracing = createTracing({ logger: createRecordingLogger(), env: { OTLP_KEY: `${SECRET}\r\nx-injected: 1` }, onDropped: () => undefined, create });
  const err = await tracing.apply(base()).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof Error);
  t.equal((err as Error).message, "tracing.headers.x-api-key: the secret holds characters a header value cannot carry");
  t.notOk((err as Error).message.includes(SECRET));
});

void t.test("applies run one after another, in order", async (t) => {
  const { built, create } = fakeFactory();
  const tracing = createTracing({ logger: createRecordingLogger(), env: { OTLP_KEY: SECRET }, onDropped: () => undefined, create });
  await Promise.all([tracing.apply(base({ service_name: "a" })), tracing.apply(base({ service_name: "b" })), tracing.apply(undefined), tracing.apply(base({ service_name: "c" }))]);
  t.same(built.map((b) => b.settings.serviceName), ["a", "b", "c"]);
  t.same(built.map((b) => b.stopped), [true, true, false], "the last one applied is in force");
});

void t.test("trust_incoming: nobody, the trusted proxies' peers, or listed clients", (t) => {
  const proxied = makeContext({ socketIp: "10.1.2.3", ip: "203.0.113.9" });
  const direct = makeContext({ socketIp: "203.0.113.9" });
  const nobody = compileTraceTrust({ trusted_proxies: ["10.0.0.0/8"], tracing: base() });
  t.notOk(nobody(proxied));
  t.notOk(compileTraceTrust({ trusted_proxies: ["10.0.0.0/8"] })(proxied), "no tracing section: nobody");

  const viaProxies = compileTraceTrust({ trusted_proxies: ["10.0.0.0/8"], tracing: base({ trust_incoming: "trusted_proxies" }) });
  t.ok(viaProxies(proxied), "the TCP peer is a trusted proxy");
  t.notOk(viaProxies(direct), "a direct caller is not");
  t.notOk(viaProxies(makeContext({ socketIp: "203.0.113.9", headers: { "x-forwarded-for": "10.1.2.3" } })), "a forged X-Forwarded-For proves nothing");

  const byClient = compileTraceTrust({ trusted_proxies: [], tracing: base({ trust_incoming: ["backend"] }) });
  t.ok(byClient(makeCaller({ client: makeClient({ id: "backend" }) })));
  t.notOk(byClient(makeCaller({ client: makeClient({ id: "browser" }) })));
  t.notOk(byClient(makeContext()), "not identified: not trusted");
  t.end();
});
