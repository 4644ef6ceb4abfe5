// The test collector (test/helpers/otlp-receiver.ts) reads OTLP/JSON the way OpenTelemetry writes
// it: spans made by the SDK, serialised by @opentelemetry/otlp-transformer's JsonTraceSerializer
// (the encoder the proxy's exporter uses) and posted to the receiver, come out with every id,
// name, kind, time, attribute, status and resource attribute intact.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { JsonTraceSerializer } from "@opentelemetry/otlp-transformer";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import type { HrTime } from "@opentelemetry/api";
import http from "node:http";
import t from "tap";
import { decodeTraceRequest, startOtlpReceiver } from "../helpers/otlp-receiver.ts";

/** Exact nanoseconds (the core helper returns a float, which loses the last digits). */
const nanos = (hr: HrTime): bigint => BigInt(hr[0]) * 1_000_000_000n + BigInt(hr[1]);

function post(url: string, body: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: { "content-type": "application/json" } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end(body);
  });
}

void t.test("what JsonTraceSerializer writes, the receiver reads back exactly", async (t) => {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": "round-trip", "service.version": "9.9.9" }),
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  t.teardown(() => provider.shutdown());
  const tracer = provider.getTracer("scope-name");
  const server = tracer.startSpan("GET /v1/models", { kind: SpanKind.SERVER, attributes: { "http.request.method": "GET", "http.response.status_code": 200 } });
  const client = tracer.startSpan("GET", { kind: SpanKind.CLIENT, attributes: { "server.port": 443, ratio: 0.25, flag: true } }, trace.setSpan(ROOT_CONTEXT, server));
  client.setStatus({ code: SpanStatusCode.ERROR });
  client.end();
  server.end();
  const spans = exporter.getFinishedSpans();
  t.equal(spans.length, 2);

  const body = JsonTraceSerializer.serializeRequest(spans);
  if (body === undefined) throw new Error("nothing serialised");
  const decoded = decodeTraceRequest(body);
  t.equal(decoded.length, 2);
  for (const original of spans) {
    const got = decoded.find((d) => d.spanId === original.spanContext().spanId);
    if (got === undefined) {
      t.fail(`span ${original.name} not decoded`);
      continue;
    }
    t.equal(got.traceId, original.spanContext().traceId, `${original.name}: trace id`);
    t.equal(got.parentSpanId, original.parentSpanContext?.spanId ?? "", `${original.name}: parent`);
    t.equal(got.name, original.name);
    t.equal(got.kind, original.kind + 1, `${original.name}: OTLP kind = API kind + 1`);
    t.equal(got.startTimeUnixNano, nanos(original.startTime), `${original.name}: start`);
    t.equal(got.endTimeUnixNano, nanos(original.endTime), `${original.name}: end`);
    t.strictSame(got.attributes, original.attributes, `${original.name}: attributes`);
    t.equal(got.statusCode, original.status.code, `${original.name}: status`);
    t.equal(got.resource["service.name"], "round-trip");
    t.equal(got.resource["service.version"], "9.9.9");
    t.equal(got.scope, "scope-name");
  }

  // And over HTTP, as the exporter posts it.
  const receiver = await startOtlpReceiver();
  t.teardown(() => receiver.close());
  t.equal(await post(receiver.url, body), 200);
  t.equal(receiver.spans.length, 2);
  t.strictSame(receiver.spans.map((s) => s.spanId).sort(), spans.map((s) => s.spanContext().spanId).sort());
  receiver.fail = 503;
  t.equal(await post(receiver.url, body), 503, "a failing collector can be simulated");
  t.equal(receiver.spans.length, 2, "and keeps nothing then");
});
