/**
 * A test OpenTelemetry collector: an OTLP/HTTP traces endpoint on 127.0.0.1:0 that keeps what the
 * proxy's exporter sends.
 *
 * The exporter speaks OTLP/HTTP with the JSON encoding of the OTLP protobuf messages
 * (`ExportTraceServiceRequest`): ids as hex strings, attributes as `{key, value: {stringValue |
 * intValue | boolValue | doubleValue}}`. The body is decoded with `JSON.parse` only; this file
 * then names the fields. test/observe/otlp-receiver.test.ts proves the reading against
 * OpenTelemetry's own encoder (`JsonTraceSerializer` of @opentelemetry/otlp-transformer): spans the
 * SDK made, serialised by it, come out of this receiver with every id, name, kind, attribute and
 * status intact.
 *
 * ```ts
 * const receiver = await startOtlpReceiver();
 * receiver.url                  "http://127.0.0.1:PORT/v1/traces"
 * receiver.spans                ReceivedSpan[] in arrival order
 * receiver.exports              every POST: its headers and content type
 * await receiver.waitForSpans((spans) => spans.length >= 2)
 * receiver.fail = 503           answer exports with this status instead of 200 (undefined: accept)
 * await receiver.close()
 * ```
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";

export type AttributeValue = string | number | boolean;

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** "" for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client. */
  readonly kind: number;
  readonly startTimeUnixNano: bigint;
  readonly endTimeUnixNano: bigint;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
  /** `traceState` of the span ("" when none). */
  readonly traceState: string;
  readonly resource: Readonly<Record<string, AttributeValue>>;
  readonly scope: string;
}

export interface ReceivedExport {
  readonly headers: http.IncomingHttpHeaders;
  readonly spanCount: number;
}

export interface OtlpReceiver {
  readonly url: string;
  readonly port: number;
  readonly spans: ReceivedSpan[];
  readonly exports: ReceivedExport[];
  /** A status to answer exports with (and keep nothing); undefined = accept. */
  fail: number | undefined;
  waitForSpans(done: (spans: readonly ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

// The OTLP/JSON shapes read here (opentelemetry-proto, trace/v1 and common/v1).
interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
}
interface JsonKeyValue {
  key: string;
  value: JsonAnyValue;
}
interface JsonSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  traceState?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes?: JsonKeyValue[];
  status?: { code?: number };
}
interface JsonRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: Array<{ scope?: { name?: string }; spans?: JsonSpan[] }>;
  }>;
}

function valueOf(v: JsonAnyValue): AttributeValue {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  throw new Error(`unexpected attribute value ${JSON.stringify(v)}`);
}

function attributes(list: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const { key, value } of list ?? []) out[key] = valueOf(value);
  return out;
}

/** The spans of one OTLP/JSON `ExportTraceServiceRequest` body. */
export function decodeTraceRequest(body: Buffer | Uint8Array): ReceivedSpan[] {
  const request = JSON.parse(Buffer.from(body).toString("utf8")) as JsonRequest;
  const spans: ReceivedSpan[] = [];
  for (const rs of request.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        spans.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? "",
          name: s.name,
          kind: s.kind,
          startTimeUnixNano: BigInt(s.startTimeUnixNano),
          endTimeUnixNano: BigInt(s.endTimeUnixNano),
          attributes: attributes(s.attributes),
          statusCode: s.status?.code ?? 0,
          traceState: s.traceState ?? "",
          resource,
          scope: ss.scope?.name ?? "",
        });
      }
    }
  }
  return spans;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const exports: ReceivedExport[] = [];
  const waiters = new Set<() => void>();
  const state: { fail: number | undefined } = { fail: undefined };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/v1/traces") {
        res.writeHead(404).end();
        return;
      }
      if (state.fail !== undefined) {
        res.writeHead(state.fail, { "content-type": "application/json" }).end("{}");
        return;
      }
      const received = decodeTraceRequest(Buffer.concat(chunks));
      exports.push({ headers: req.headers, spanCount: received.length });
      spans.push(...received);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
      for (const wake of [...waiters]) wake();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    port,
    spans,
    exports,
    get fail() {
      return state.fail;
    },
    set fail(status) {
      state.fail = status;
    },
    waitForSpans(done, timeoutMs = 10_000) {
      if (done(spans)) return Promise.resolve(spans);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`spans not received within ${timeoutMs} ms (${spans.length} so far: ${spans.map((s) => s.name).join(", ")})`));
        }, timeoutMs);
        const check = (): void => {
          if (!done(spans)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(spans);
        };
        waiters.add(check);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
