/**
 * The AWS SDK reads its credential chain from `process.env` (and ~/.aws), so tests that drive the
 * real chain set the process environment. `isolateAwsEnv` removes every AWS_* variable, points the
 * shared config files at nothing and turns IMDS off (no test may wait on 169.254.169.254), then
 * applies `vars`; the returned function restores the environment as it was.
 */
export function isolateAwsEnv(vars: Record<string, string>): () => void {
  const saved = { ...process.env };
  for (const name of Object.keys(process.env)) if (name.startsWith("AWS_")) delete process.env[name];
  Object.assign(process.env, {
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_CONFIG_FILE: "/nonexistent/aws-config",
    AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/aws-credentials",
    ...vars,
  });
  return () => {
    for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
  };
}
