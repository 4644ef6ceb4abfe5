// The AWS source driven through the real @aws-sdk/client-secrets-manager against a fake speaking
// Secrets Manager's JSON protocol, which checks every SigV4 signature: names and ARNs, version
// stages, bare and JSON SecretStrings, the endpoint override, a per-attempt timeout that really
// closes the connection, and no key or AWS secret in any error or log.
import t, { type Test } from "tap";
import type { AwsKeyConfig } from "../../src/config/types.ts";
import { createAwsSource, type LoadSdk } from "../../src/keys/aws-source.ts";
import type { KeySource } from "../../src/keys/types.ts";
import { isolateAwsEnv } from "../helpers/aws-env.ts";
import { startFakeAws, type FakeAws } from "../helpers/fake-aws.ts";
import { createRecordingLogger, refresh } from "../helpers/keys-fakes.ts";

const KEY = "mq-aws-6a5b4c3d2e1f00112233445566";
const KEY2 = "mq-aws-rotated-99887766554433221100";
const ACCESS_KEY_ID = "AKIATESTENVIRONMENT1";
const SECRET_ACCESS_KEY = "env-secret-access-key-0123456789abcdefghijkl";

t.teardown(isolateAwsEnv({ AWS_ACCESS_KEY_ID: ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: SECRET_ACCESS_KEY }));

const never = (): AbortSignal => new AbortController().signal;
const logger = createRecordingLogger();

let aws: FakeAws;
t.before(async () => {
  aws = await startFakeAws();
  aws.allow(ACCESS_KEY_ID, SECRET_ACCESS_KEY);
  aws.put("mythiq/analytics", KEY);
  aws.put("mythiq/json", JSON.stringify({ api_key: KEY, note: "rotated quarterly" }));
});
t.teardown(() => aws.close());

function keyConfig(overrides: Partial<AwsKeyConfig["aws"]> = {}, timeout = 2_000): AwsKeyConfig {
  return {
    source: "aws",
    refresh: refresh({ timeout }),
    aws: { region: "eu-west-1", secret_id: "mythiq/analytics", version_stage: "AWSCURRENT", endpoint: aws.url, ...overrides },
  };
}

function open(t: Test, config: AwsKeyConfig, loadSdk?: LoadSdk): KeySource {
  const source = createAwsSource(config, { logger, ...(loadSdk === undefined ? {} : { loadSdk }) });
  t.teardown(() => source.close?.());
  return source;
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

const messages: string[] = [];

t.test("by name: GetSecretValue with the stage, signed with the environment's credentials", async (t) => {
  const before = aws.sm.length;
  const source = open(t, keyConfig());
  const got = await source.fetch(never());
  t.equal(got.value, KEY);
  t.match(got.version, /^v1-/);
  const request = aws.sm[before]!;
  t.equal(request.target, "secretsmanager.GetSecretValue");
  t.same(request.body, { SecretId: "mythiq/analytics", VersionStage: "AWSCURRENT" });
  t.equal(request.headers["content-type"], "application/x-amz-json-1.1");
  t.equal(request.accessKeyId, ACCESS_KEY_ID);
  t.ok(request.signatureValid, "the SigV4 signature checks out against the environment's secret key");
  t.equal(request.headers["amz-sdk-request"], "attempt=1; max=1", "one attempt per fetch: retries are the keyring's");
});

t.test("by ARN, and another version stage", async (t) => {
  const source = open(t, keyConfig({ secret_id: aws.arnOf("mythiq/analytics") }));
  t.equal((await source.fetch(never())).value, KEY);
  t.equal(aws.sm.at(-1)?.body["SecretId"], aws.arnOf("mythiq/analytics"));

  aws.put("mythiq/staged", KEY);
  aws.put("mythiq/staged", KEY2);
  const previous = open(t, keyConfig({ secret_id: "mythiq/staged", version_stage: "AWSPREVIOUS" }));
  t.equal((await previous.fetch(never())).value, KEY, "AWSPREVIOUS is the older version");
  const current = open(t, keyConfig({ secret_id: "mythiq/staged" }));
  t.equal((await current.fetch(never())).value, KEY2);
  const pending = open(t, keyConfig({ secret_id: "mythiq/staged", version_stage: "AWSPENDING" }));
  const err = await failure(pending.fetch(never()));
  t.equal(
    err.message,
    "aws secret mythiq/staged (AWSPENDING) GetSecretValue failed: ResourceNotFoundException (HTTP 400): Secrets Manager can't find the specified secret value for staging label: AWSPENDING",
  );
});

t.test("a rotated secret is picked up by the next fetch, with its new VersionId", async (t) => {
  aws.put("mythiq/rotating", KEY);
  const source = open(t, keyConfig({ secret_id: "mythiq/rotating" }));
  const first = await source.fetch(never());
  const id = aws.put("mythiq/rotating", KEY2);
  const second = await source.fetch(never());
  t.equal(first.value, KEY);
  t.same(second, { value: KEY2, version: id });
});

t.test("SecretString as JSON with `field`, and the mistakes around it", async (t) => {
  const json = open(t, keyConfig({ secret_id: "mythiq/json", field: "api_key" }));
  t.equal((await json.fetch(never())).value, KEY);

  const cases: Array<[string, Partial<AwsKeyConfig["aws"]>, string]> = [
    ["JSON without field", { secret_id: "mythiq/json" }, "aws secret mythiq/json (AWSCURRENT) SecretString is a JSON object: set `field` to the name of the key's field"],
    ["a missing field", { secret_id: "mythiq/json", field: "key" }, 'aws secret mythiq/json (AWSCURRENT) has no field "key"'],
    ["a bare key with field", { field: "api_key" }, "aws secret mythiq/analytics (AWSCURRENT) SecretString is not valid JSON"],
  ];
  aws.put("mythiq/binary", Buffer.from(KEY));
  cases.push(["SecretBinary", { secret_id: "mythiq/binary" }, "aws secret mythiq/binary (AWSCURRENT) holds SecretBinary; store the key as SecretString"]);
  for (const [name, overrides, expected] of cases) {
    const err = await failure(open(t, keyConfig(overrides)).fetch(never()));
    t.equal(err.message, expected, name);
    messages.push(err.message, err.stack ?? "");
  }
});

t.test("AWS errors keep their name, status and message; unparsable bodies are never quoted", async (t) => {
  const source = open(t, keyConfig());
  const missing = await failure(open(t, keyConfig({ secret_id: "mythiq/none" })).fetch(never()));
  t.equal(missing.message, "aws secret mythiq/none (AWSCURRENT) GetSecretValue failed: ResourceNotFoundException (HTTP 400): Secrets Manager can't find the specified secret.");
  aws.once(200, `{"SecretString":"${KEY}" trailing-garbage}`, { "content-type": "application/x-amz-json-1.1" });
  const garbled = await failure(source.fetch(never()));
  t.equal(garbled.message, "aws secret mythiq/analytics (AWSCURRENT) GetSecretValue failed: the response could not be parsed (HTTP 200)");
  aws.once(400, JSON.stringify({ __type: "AccessDeniedException", Message: `User is not authorized; echo "${KEY}"` }));
  const denied = await failure(source.fetch(never()));
  t.equal(denied.message, 'aws secret mythiq/analytics (AWSCURRENT) GetSecretValue failed: AccessDeniedException (HTTP 400): User is not authorized; echo "…"');
  messages.push(missing.message, garbled.message, denied.message, garbled.stack ?? "", denied.stack ?? "");
});

t.test("wrong credentials are refused by the signature check", async (t) => {
  const restore = isolateAwsEnv({ AWS_ACCESS_KEY_ID: ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: "not-the-right-secret-000000000000" });
  t.teardown(restore);
  const err = await failure(open(t, keyConfig()).fetch(never()));
  t.equal(err.message, "aws secret mythiq/analytics (AWSCURRENT) GetSecretValue failed: InvalidSignatureException (HTTP 400): The request signature we calculated does not match the signature you provided.");
  t.notOk(aws.sm.at(-1)?.signatureValid);
});

t.test("the per-attempt timeout aborts a stalled request and closes its socket, once", async (t) => {
  aws.mode = "stall";
  t.teardown(() => {
    aws.mode = "up";
  });
  const before = aws.sm.length;
  const source = open(t, keyConfig({}, 300));
  const started = performance.now();
  const err = await failure(source.fetch(never()));
  const elapsed = performance.now() - started;
  t.match(err.message, /^aws secret mythiq\/analytics \(AWSCURRENT\) GetSecretValue failed: TimeoutError: /);
  t.ok(elapsed >= 280 && elapsed < 1_500, `gave up after ${Math.round(elapsed)} ms`);
  t.equal(aws.sm.length - before, 1, "one attempt, no SDK retry");
  await aws.idle();
  t.equal(aws.openConnections, 0, "the stalled connection was closed by the client");
});

t.test("an aborted fetch (the keyring's timeout or close) closes the request at once", async (t) => {
  aws.mode = "stall";
  t.teardown(() => {
    aws.mode = "up";
  });
  const before = aws.sm.length;
  const source = open(t, keyConfig({}, 10_000));
  const controller = new AbortController();
  const pending = failure(source.fetch(controller.signal));
  while (aws.sm.length === before) await new Promise((resolve) => setImmediate(resolve));
  controller.abort(new Error("keyring timeout"));
  t.equal((await pending).message, "aws secret mythiq/analytics (AWSCURRENT) GetSecretValue aborted");
  await aws.idle();
  t.equal(aws.openConnections, 0);
});

t.test("the SDK is loaded at the first fetch, not when the source is built", async (t) => {
  let loads = 0;
  const loadSdk: LoadSdk = async () => {
    loads += 1;
    return import("@aws-sdk/client-secrets-manager");
  };
  const source = open(t, keyConfig(), loadSdk);
  t.equal(loads, 0);
  await source.fetch(never());
  t.equal(loads, 1);
  const failing = open(t, keyConfig(), () => Promise.reject(new Error("the AWS SDK could not be loaded: Cannot find package")));
  t.equal((await failure(failing.fetch(never()))).message, "the AWS SDK could not be loaded: Cannot find package");
});

t.test("the endpoint override is where every request went; down is a clear failure", async (t) => {
  aws.mode = "down";
  t.teardown(() => {
    aws.mode = "up";
  });
  const err = await failure(open(t, keyConfig()).fetch(never()));
  t.match(err.message, /^aws secret mythiq\/analytics \(AWSCURRENT\) GetSecretValue failed: /);
  messages.push(err.message);
});

t.test("nothing secret in any error or log line", async (t) => {
  const text = [...messages, logger.text()].join("\n");
  for (const secret of [KEY, KEY2, SECRET_ACCESS_KEY]) t.notOk(text.includes(secret), "no secret in errors or logs");
  t.ok(messages.length > 8);
});
