// The AWS SDK's default credential chain, as the proxy runs it in Kubernetes, against fakes:
// IRSA (a web-identity token file exchanged at STS with AssumeRoleWithWebIdentity) and EKS Pod
// Identity (the container credential endpoint with an authorization token file). The fake Secrets
// Manager verifies each request's signature against the credentials the fake STS/endpoint issued.
import t from "tap";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AwsKeyConfig } from "../../src/config/types.ts";
import { createAwsSource } from "../../src/keys/aws-source.ts";
import { isolateAwsEnv } from "../helpers/aws-env.ts";
import { startFakeAws, type FakeAws } from "../helpers/fake-aws.ts";
import { createRecordingLogger, refresh } from "../helpers/keys-fakes.ts";

const KEY = "mq-aws-creds-7766554433221100aabbcc";
const SA_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJzdHMuYW1hem9uYXdzLmNvbSJ9.irsa-signature";
const POD_TOKEN = "eyJhbGciOiJFUzM4NCJ9.pod-identity-token.signature";
const ROLE_ARN = "arn:aws:iam::123456789012:role/mythiq-proxy";

const dir = mkdtempSync(join(tmpdir(), "mythiq-aws-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, "irsa-token"), SA_JWT);
writeFileSync(join(dir, "pod-token"), POD_TOKEN);

const never = (): AbortSignal => new AbortController().signal;
const logger = createRecordingLogger();

let aws: FakeAws;
t.before(async () => {
  aws = await startFakeAws();
  aws.put("mythiq/analytics", KEY);
});
t.teardown(() => aws.close());

function keyConfig(): AwsKeyConfig {
  return {
    source: "aws",
    refresh: refresh({ timeout: 2_000 }),
    aws: { region: "eu-west-1", secret_id: "mythiq/analytics", version_stage: "AWSCURRENT", endpoint: aws.url },
  };
}

t.test("IRSA: the web identity token is exchanged at STS and the secret read with the role's credentials", async (t) => {
  t.teardown(
    isolateAwsEnv({
      AWS_WEB_IDENTITY_TOKEN_FILE: join(dir, "irsa-token"),
      AWS_ROLE_ARN: ROLE_ARN,
      AWS_ROLE_SESSION_NAME: "mythiq-proxy",
      AWS_ENDPOINT_URL_STS: `${aws.url}/sts`,
    }),
  );
  aws.webIdentity = { roleArn: ROLE_ARN, token: SA_JWT };
  const stsBefore = aws.sts.length;
  const smBefore = aws.sm.length;
  const source = createAwsSource(keyConfig(), { logger });
  t.teardown(() => source.close?.());
  t.equal((await source.fetch(never())).value, KEY);
  t.equal((await source.fetch(never())).value, KEY);
  const exchanges = aws.sts.slice(stsBefore);
  t.equal(exchanges.length, 1, "credentials are cached between fetches");
  t.match(exchanges[0]?.params, { Action: "AssumeRoleWithWebIdentity", RoleArn: ROLE_ARN, RoleSessionName: "mythiq-proxy", WebIdentityToken: SA_JWT });
  const issued = aws.issued.at(-1)!;
  for (const request of aws.sm.slice(smBefore)) {
    t.equal(request.accessKeyId, issued.accessKeyId);
    t.equal(request.sessionToken, issued.sessionToken);
    t.ok(request.signatureValid, "signed with the secret key STS issued");
  }
});

t.test("IRSA refused by STS: a clear failure, nothing secret in it", async (t) => {
  t.teardown(
    isolateAwsEnv({
      AWS_WEB_IDENTITY_TOKEN_FILE: join(dir, "irsa-token"),
      AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/someone-else",
      AWS_ENDPOINT_URL_STS: `${aws.url}/sts`,
    }),
  );
  const smBefore = aws.sm.length;
  const source = createAwsSource(keyConfig(), { logger });
  t.teardown(() => source.close?.());
  const err = await source.fetch(never()).then(
    () => new Error("expected a rejection"),
    (e: unknown) => e as Error,
  );
  t.match(err.message, /^aws secret mythiq\/analytics \(AWSCURRENT\) GetSecretValue failed: InvalidIdentityToken/);
  t.equal(aws.sm.length, smBefore, "no unsigned or anonymous request reached Secrets Manager");
  t.notOk(`${err.message}${err.stack ?? ""}`.includes(SA_JWT));
});

t.test("EKS Pod Identity: the credential endpoint with the token file's authorization", async (t) => {
  t.teardown(
    isolateAwsEnv({
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `${aws.url}/v1/credentials`,
      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: join(dir, "pod-token"),
    }),
  );
  aws.podIdentityToken = POD_TOKEN;
  const podBefore = aws.pod.length;
  const smBefore = aws.sm.length;
  const source = createAwsSource(keyConfig(), { logger });
  t.teardown(() => source.close?.());
  t.equal((await source.fetch(never())).value, KEY);
  t.equal((await source.fetch(never())).value, KEY);
  t.same(aws.pod.slice(podBefore), [{ authorization: POD_TOKEN }], "one credential call for two fetches");
  const issued = aws.issued.at(-1)!;
  for (const request of aws.sm.slice(smBefore)) {
    t.equal(request.accessKeyId, issued.accessKeyId);
    t.equal(request.sessionToken, issued.sessionToken);
    t.ok(request.signatureValid);
  }
});

t.test("no AWS secret, token or key in any log line", async (t) => {
  const text = logger.text();
  const secrets = [KEY, SA_JWT, POD_TOKEN, ...aws.issued.flatMap((c) => [c.secretAccessKey, c.sessionToken])];
  t.same(secrets.filter((s) => text.includes(s)), []);
  t.ok(aws.issued.length >= 2);
});
