// Tracing off costs nothing (SPEC §11): a proxy without `tracing` never loads an OpenTelemetry
// module, however it is used (allowed requests, refusals, a reload, the scrape). Every module this
// process resolves is recorded by a module hook registered before the proxy's code is imported;
// the same hook then sees the packages load once a proxy with `tracing` starts, so the check can
// fail. Audit lines carry no trace_id while tracing is off.
import { registerHooks } from "node:module";
import t from "tap";

/** Every resolution: the module's URL, and the URL of the module that asked for it. */
const resolved: Array<{ url: string; by: string }> = [];
registerHooks({
  resolve(specifier, context, nextResolve) {
    const result = nextResolve(specifier, context);
    resolved.push({ url: result.url, by: context.parentURL ?? "" });
    return result;
  },
});

const OTEL = "/node_modules/@opentelemetry/";
/**
 * OpenTelemetry modules loaded, less one that predates tracing: prom-client (SPEC §1's metrics
 * library) requires `@opentelemetry/api` for its exemplars whenever process metrics are on, so the
 * API's CommonJS build is in every proxy process. Everything else is the tracing's.
 */
const openTelemetry = (): string[] =>
  resolved
    .filter(({ url }) => url.includes(OTEL))
    .filter(({ url, by }) => !(url.includes(`${OTEL}api/dist/`) && url.endsWith(".cjs") && (by.includes("/node_modules/prom-client/") || by.includes(`${OTEL}api/dist/`))))
    .map(({ url, by }) => `${url} (from ${by})`);

// Imported only now, so that every module they load goes through the hook.
const { startFakeUpstream } = await import("../helpers/fake-upstream.ts");
const { send } = await import("../helpers/forward-harness.ts");
const { startOtlpReceiver } = await import("../helpers/otlp-receiver.ts");
const { configYaml, startTestProxy, TEST_KEY, TOKEN, waitReady } = await import("../helpers/proxy-harness.ts");

void t.test("without tracing, no OpenTelemetry module is loaded and no trace header is made", async (t) => {
  const upstream = await startFakeUpstream();
  const proxy = await startTestProxy({ yaml: configYaml(upstream.url), env: { MYTHIQ_API_KEY: TEST_KEY }, watch: false });
  t.teardown(async () => {
    await proxy.close();
    await upstream.close();
  });
  await waitReady(proxy);
  t.ok(resolved.some(({ url }) => url.includes("/src/pipeline/listen-handler.ts")), "the hook sees the proxy's own modules");

  const callerParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const statuses = [
    (await send(proxy.port, { path: "/v1/models", headers: { authorization: `Bearer ${TOKEN}`, traceparent: callerParent } })).status,
    (await send(proxy.port, { path: "/v1/models" })).status,
    (await send(proxy.port, { path: "/v1/nope", headers: { authorization: `Bearer ${TOKEN}` } })).status,
    (await send(proxy.port, { path: "/v1/../x" })).status,
  ];
  t.same(statuses, [200, 200, 403, 400]);
  t.equal((await proxy.admin("/metrics")).status, 200);
  proxy.writeConfig(configYaml(upstream.url, "audit: { enabled: true, include_subject: false }\n"));
  t.equal(await proxy.proxy.reload("test"), "applied");
  t.equal((await send(proxy.port, { path: "/v1/models", headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);

  t.strictSame(openTelemetry(), [], "no OpenTelemetry module was loaded for tracing");
  t.equal(upstream.requests[0]?.headers["traceparent"], callerParent, "the caller's trace headers pass untouched, like any other header");
  t.notOk("traceparent" in (upstream.requests[1]?.headers ?? {}), "the proxy adds none of its own");
  const audits = proxy.logs.filter((l) => "status" in l && !("msg" in l));
  t.equal(audits.length, 5);
  for (const a of audits) t.notOk("trace_id" in a, "no trace_id field while tracing is off");
});

void t.test("control: with tracing, the hook sees OpenTelemetry load", async (t) => {
  const upstream = await startFakeUpstream();
  const receiver = await startOtlpReceiver();
  const proxy = await startTestProxy({
    yaml: configYaml(upstream.url, `tracing: { endpoint: ${receiver.url} }\n`),
    env: { MYTHIQ_API_KEY: TEST_KEY },
    watch: false,
  });
  t.teardown(async () => {
    await proxy.close();
    await upstream.close();
    await receiver.close();
  });
  const loaded = openTelemetry();
  for (const pkg of ["api", "core", "sdk-trace", "exporter-trace-otlp-http", "resources"]) {
    t.ok(loaded.some((line) => line.startsWith(`file://`) && line.includes(`${OTEL}${pkg}/`)), `@opentelemetry/${pkg} loaded`);
  }
});
