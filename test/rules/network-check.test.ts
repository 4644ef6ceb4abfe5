import t from "tap";
import { InvariantError } from "../../src/pipeline/types.ts";
import { UNKNOWN_IP } from "../../src/rules/ip.ts";
import { createNetworkCheck } from "../../src/rules/network-check.ts";
import { makeCaller, makeClient } from "../helpers/context.ts";

void t.test("network check", async (t) => {
  const office = makeClient({ id: "office", networks: ["10.0.0.0/8", "2001:db8::/32"] });
  const any = makeClient({ id: "any" });
  const nobody = makeClient({ id: "nobody", networks: [] });
  const foreign = makeClient({ id: "office", networks: ["0.0.0.0/0"] });
  const rule = createNetworkCheck([office, any, nobody]);
  t.equal(rule.name, "network");
  const cases: Array<{ name: string; client: typeof office; ip: string; want: string | undefined }> = [
    { name: "inside v4", client: office, ip: "10.1.2.3", want: undefined },
    { name: "inside v6", client: office, ip: "2001:db8::9", want: undefined },
    { name: "outside", client: office, ip: "203.0.113.7", want: "network_not_allowed" },
    { name: "unknown caller", client: office, ip: UNKNOWN_IP, want: "network_not_allowed" },
    { name: "networks omitted: any caller", client: any, ip: "203.0.113.7", want: undefined },
    { name: "networks omitted: even unknown", client: any, ip: UNKNOWN_IP, want: undefined },
    { name: "networks: [] allows none", client: nobody, ip: "10.1.2.3", want: "network_not_allowed" },
  ];
  for (const c of cases) {
    // The socket is a trusted proxy inside the network: only ctx.ip may count.
    const verdict = await rule.check(makeCaller({ client: c.client, socketIp: "10.0.0.1", ip: c.ip }));
    t.equal(verdict.ok ? undefined : verdict.reason, c.want, c.name);
  }
  // A client the rule was not compiled for is a bug in the proxy, never the caller's fault.
  t.throws(() => rule.check(makeCaller({ client: foreign, ip: "10.1.2.3" })), InvariantError, "client from another config");
});
