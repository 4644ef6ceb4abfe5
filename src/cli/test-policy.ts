/** `mythiq-proxy test-policy` (SPEC §9). Not implemented yet: see the open issue "Policy tests". */
export function runTestPolicy(_config: string, _cases: string, out: { stderr: (s: string) => void }): Promise<number> {
  out.stderr("mythiq-proxy: test-policy is not implemented in this version yet\n");
  return Promise.resolve(2);
}
