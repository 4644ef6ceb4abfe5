/**
 * A fake AWS for tests, on 127.0.0.1:0, with three faces on one port:
 *
 * - **Secrets Manager** (JSON 1.1 protocol): `POST /` with `x-amz-target:
 *   secretsmanager.GetSecretValue` and `{SecretId, VersionId?, VersionStage?}`. Every request's
 *   SigV4 signature is verified against the credentials the fake knows (static ones added with
 *   `allow`, and the ones it issued through STS or the Pod Identity endpoint), so a test proves
 *   which credentials the SDK really used. Errors are AWS's `{"__type": "...#Name", "Message": ...}`.
 * - **STS** `AssumeRoleWithWebIdentity` (query protocol, XML answer) under `/sts/` — point
 *   `AWS_ENDPOINT_URL_STS` at `${url}/sts` — for IRSA's web-identity chain.
 * - **EKS Pod Identity** credential endpoint `GET /v1/credentials` checking the `Authorization`
 *   token — point `AWS_CONTAINER_CREDENTIALS_FULL_URI` at `${url}/v1/credentials`.
 *
 * ```ts
 * const aws = await startFakeAws();
 * aws.allow("AKIDSTATIC", "static-secret");                  // env credentials the SM face accepts
 * aws.put("mythiq/analytics", "mq-…");                        // new version, AWSCURRENT (previous → AWSPREVIOUS)
 * aws.webIdentity = { roleArn, token };                       // what STS accepts
 * aws.podIdentityToken = "…";                                 // what /v1/credentials accepts
 * aws.mode = "up" | "down" | "stall";                        // SM face only
 * aws.sm / aws.sts / aws.pod                                  // recorded requests of each face
 * aws.issued                                                  // credentials handed out (secrets to scan for)
 * await aws.close();
 * ```
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";

export const ACCOUNT = "123456789012";

export interface SmRecorded {
  readonly target: string;
  readonly body: Record<string, unknown>;
  readonly accessKeyId: string | undefined;
  readonly sessionToken: string | undefined;
  /** The SigV4 signature matched the credentials the fake knows for `accessKeyId`. */
  readonly signatureValid: boolean;
  readonly headers: http.IncomingHttpHeaders;
}

export interface StsRecorded {
  readonly params: Record<string, string>;
}

export interface PodRecorded {
  readonly authorization: string | undefined;
}

export interface IssuedCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
}

interface Version {
  readonly id: string;
  readonly string?: string;
  readonly binary?: Buffer;
  stages: string[];
}

export interface FakeAws {
  readonly url: string;
  readonly port: number;
  readonly sm: SmRecorded[];
  readonly sts: StsRecorded[];
  readonly pod: PodRecorded[];
  readonly issued: IssuedCredentials[];
  mode: "up" | "down" | "stall";
  webIdentity: { roleArn: string; token: string } | undefined;
  podIdentityToken: string | undefined;
  /** Static credentials (e.g. from the environment) the SM face accepts. */
  allow(accessKeyId: string, secretAccessKey: string, sessionToken?: string): void;
  /** A new version of a secret (created on first put) that takes `stage` (default AWSCURRENT). */
  put(name: string, value: string | Buffer, stage?: string): string;
  arnOf(name: string): string;
  /** Answers the next SM request with this status and body, once. */
  once(status: number, body: string, headers?: Record<string, string>): void;
  /** Resolves once no client connection is open. */
  idle(): Promise<void>;
  readonly openConnections: number;
  close(): Promise<void>;
}

const sha256 = (data: string | Buffer): string => createHash("sha256").update(data).digest("hex");
const hmac = (key: string | Buffer, data: string): Buffer => createHmac("sha256", key).update(data, "utf8").digest();

const AUTH_RE =
  /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

/** SigV4 check of a request with an empty query and path "/", as the SM client sends them. */
function verifySignature(req: http.IncomingMessage, body: Buffer, secretOf: (akid: string) => string | undefined): { akid?: string; valid: boolean } {
  const match = AUTH_RE.exec(String(req.headers["authorization"] ?? ""));
  if (match === null) return { valid: false };
  const [, akid, date, region, service, signed, signature] = match as unknown as [string, string, string, string, string, string, string];
  const secret = secretOf(akid);
  if (secret === undefined) return { akid, valid: false };
  const canonicalHeaders = signed
    .split(";")
    .map((name) => `${name}:${String(req.headers[name] ?? "").trim().replace(/\s+/g, " ")}\n`)
    .join("");
  const canonicalRequest = [req.method, (req.url ?? "/").split("?")[0], "", canonicalHeaders, signed, sha256(body)].join("\n");
  const amzDate = String(req.headers["x-amz-date"] ?? "");
  const stringToSign = ["AWS4-HMAC-SHA256", amzDate, `${date}/${region}/${service}/aws4_request`, sha256(canonicalRequest)].join("\n");
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), "aws4_request");
  const expected = createHmac("sha256", key).update(stringToSign, "utf8").digest();
  return { akid, valid: timingSafeEqual(expected, Buffer.from(signature, "hex")) };
}

export async function startFakeAws(): Promise<FakeAws> {
  const sm: SmRecorded[] = [];
  const sts: StsRecorded[] = [];
  const pod: PodRecorded[] = [];
  const issued: IssuedCredentials[] = [];
  const known = new Map<string, { secret: string; sessionToken?: string }>();
  const secrets = new Map<string, { arn: string; versions: Version[] }>();
  const scripted: Array<{ status: number; body: string; headers?: Record<string, string> }> = [];
  const sockets = new Set<Socket>();
  const idlers: Array<() => void> = [];

  function issue(prefix: string): IssuedCredentials {
    const creds = {
      accessKeyId: `${prefix}${randomBytes(6).toString("hex").toUpperCase()}`,
      secretAccessKey: `fake-secret-${randomBytes(16).toString("base64url")}`,
      sessionToken: `fake-session-${randomBytes(24).toString("base64url")}`,
    };
    issued.push(creds);
    known.set(creds.accessKeyId, { secret: creds.secretAccessKey, sessionToken: creds.sessionToken });
    return creds;
  }

  function smError(res: http.ServerResponse, status: number, type: string, message: string): void {
    const body = JSON.stringify({ __type: `com.amazonaws.secretsmanager#${type}`, Message: message });
    res.writeHead(status, { "content-type": "application/x-amz-json-1.1", "x-amzn-requestid": randomBytes(8).toString("hex") });
    res.end(body);
  }

  function secretsManager(req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer): void {
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
    } catch {
      // recorded as {}
    }
    const check = verifySignature(req, raw, (akid) => known.get(akid)?.secret);
    const sessionToken = typeof req.headers["x-amz-security-token"] === "string" ? req.headers["x-amz-security-token"] : undefined;
    const target = String(req.headers["x-amz-target"] ?? "");
    sm.push({ target, body, accessKeyId: check.akid, sessionToken, signatureValid: check.valid, headers: req.headers });
    if (fake.mode === "stall") return;
    const script = scripted.shift();
    if (script !== undefined) {
      res.writeHead(script.status, { "content-type": "application/x-amz-json-1.1", ...script.headers });
      res.end(script.body);
      return;
    }
    if (check.akid === undefined || !known.has(check.akid)) {
      return smError(res, 400, "UnrecognizedClientException", "The security token included in the request is invalid.");
    }
    if (!check.valid) {
      return smError(res, 400, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided.");
    }
    const expectedToken = known.get(check.akid)?.sessionToken;
    if (expectedToken !== undefined && sessionToken !== expectedToken) {
      return smError(res, 400, "UnrecognizedClientException", "The security token included in the request is invalid.");
    }
    if (target !== "secretsmanager.GetSecretValue") return smError(res, 400, "UnknownOperationException", "Unknown operation");
    const id = typeof body["SecretId"] === "string" ? body["SecretId"] : "";
    const entry = [...secrets.entries()].find(([name, s]) => name === id || s.arn === id);
    if (entry === undefined) return smError(res, 400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.");
    const [name, secret] = entry;
    const stage = typeof body["VersionStage"] === "string" ? body["VersionStage"] : undefined;
    const versionId = typeof body["VersionId"] === "string" ? body["VersionId"] : undefined;
    const version = secret.versions.find((v) => (versionId !== undefined ? v.id === versionId : v.stages.includes(stage ?? "AWSCURRENT")));
    if (version === undefined) {
      return smError(res, 400, "ResourceNotFoundException", `Secrets Manager can't find the specified secret value for staging label: ${stage ?? "AWSCURRENT"}`);
    }
    const out = JSON.stringify({
      ARN: secret.arn,
      Name: name,
      VersionId: version.id,
      ...(version.string === undefined ? {} : { SecretString: version.string }),
      ...(version.binary === undefined ? {} : { SecretBinary: version.binary.toString("base64") }),
      VersionStages: version.stages,
      CreatedDate: Math.floor(Date.now() / 1000),
    });
    res.writeHead(200, { "content-type": "application/x-amz-json-1.1", "x-amzn-requestid": randomBytes(8).toString("hex") });
    res.end(out);
  }

  function stsAnswer(res: http.ServerResponse, raw: Buffer): void {
    const params = Object.fromEntries(new URLSearchParams(raw.toString("utf8")));
    sts.push({ params });
    const accepted = fake.webIdentity;
    if (
      params["Action"] !== "AssumeRoleWithWebIdentity" ||
      accepted === undefined ||
      params["RoleArn"] !== accepted.roleArn ||
      params["WebIdentityToken"] !== accepted.token
    ) {
      res.writeHead(400, { "content-type": "text/xml" });
      res.end(
        `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Couldn't validate the identity token</Message></Error><RequestId>r</RequestId></ErrorResponse>`,
      );
      return;
    }
    const creds = issue("ASIAIRSA");
    const expiration = new Date(Date.now() + 3600_000).toISOString();
    res.writeHead(200, { "content-type": "text/xml" });
    res.end(
      `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult>` +
        `<Credentials><AccessKeyId>${creds.accessKeyId}</AccessKeyId><SecretAccessKey>${creds.secretAccessKey}</SecretAccessKey>` +
        `<SessionToken>${creds.sessionToken}</SessionToken><Expiration>${expiration}</Expiration></Credentials>` +
        `<SubjectFromWebIdentityToken>system:serviceaccount:default:mythiq-proxy</SubjectFromWebIdentityToken>` +
        `<AssumedRoleUser><Arn>arn:aws:sts::${ACCOUNT}:assumed-role/mythiq-proxy/${params["RoleSessionName"] ?? "s"}</Arn><AssumedRoleId>AROAFAKE:s</AssumedRoleId></AssumedRoleUser>` +
        `<Audience>sts.amazonaws.com</Audience></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
    );
  }

  function podAnswer(req: http.IncomingMessage, res: http.ServerResponse): void {
    const authorization = typeof req.headers["authorization"] === "string" ? req.headers["authorization"] : undefined;
    pod.push({ authorization });
    if (fake.podIdentityToken === undefined || authorization !== fake.podIdentityToken) {
      res.writeHead(403, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: "AccessDeniedException", message: "Invalid authorization token" }));
      return;
    }
    const creds = issue("ASIAPODID");
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        AccessKeyId: creds.accessKeyId,
        SecretAccessKey: creds.secretAccessKey,
        Token: creds.sessionToken,
        AccountId: ACCOUNT,
        Expiration: new Date(Date.now() + 3600_000).toISOString(),
      }),
    );
  }

  const server = http.createServer((req, res) => {
    // "down" also cuts connections the SDK keeps alive from before.
    if (fake.mode === "down") {
      req.socket.resetAndDestroy();
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      const path = (req.url ?? "/").split("?")[0] ?? "/";
      if (path.startsWith("/sts")) return stsAnswer(res, raw);
      if (path === "/v1/credentials" && req.method === "GET") return podAnswer(req, res);
      if (path === "/" && req.method === "POST") return secretsManager(req, res, raw);
      res.writeHead(404).end();
    });
  });
  server.on("connection", (socket: Socket) => {
    if (fake.mode === "down") {
      socket.resetAndDestroy();
      return;
    }
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      if (sockets.size === 0) for (const resolve of idlers.splice(0)) resolve();
    });
  });

  const fake: FakeAws = {
    url: "",
    port: 0,
    sm,
    sts,
    pod,
    issued,
    mode: "up",
    webIdentity: undefined,
    podIdentityToken: undefined,
    allow(accessKeyId, secretAccessKey, sessionToken) {
      known.set(accessKeyId, { secret: secretAccessKey, ...(sessionToken === undefined ? {} : { sessionToken }) });
    },
    put(name, value, stage = "AWSCURRENT") {
      let secret = secrets.get(name);
      if (secret === undefined) {
        secret = { arn: `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:${name}-${randomBytes(3).toString("hex")}`, versions: [] };
        secrets.set(name, secret);
      }
      const id = `v${secret.versions.length + 1}-${randomBytes(4).toString("hex")}`;
      for (const version of secret.versions) {
        if (stage === "AWSCURRENT" && version.stages.includes("AWSCURRENT")) version.stages = ["AWSPREVIOUS"];
        else if (stage === "AWSCURRENT") version.stages = version.stages.filter((s) => s !== "AWSPREVIOUS");
        else version.stages = version.stages.filter((s) => s !== stage);
      }
      secret.versions.push({ id, ...(typeof value === "string" ? { string: value } : { binary: value }), stages: [stage] });
      return id;
    },
    arnOf(name) {
      const secret = secrets.get(name);
      if (secret === undefined) throw new Error(`no secret ${name}`);
      return secret.arn;
    },
    once(status, body, headers) {
      scripted.push({ status, body, ...(headers === undefined ? {} : { headers }) });
    },
    get openConnections() {
      return sockets.size;
    },
    idle() {
      return sockets.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => idlers.push(resolve));
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as AddressInfo).port;
  Object.assign(fake, { port, url: `http://127.0.0.1:${port}` });
  return fake;
}
