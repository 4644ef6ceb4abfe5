// The key lifecycle through the whole proxy with the key in a fake Vault (approle, KV v2):
// see test/helpers/store-lifecycle.ts for the scenario.
import { startVaultStore } from "../helpers/key-stores.ts";
import { storeLifecycle } from "../helpers/store-lifecycle.ts";

storeLifecycle(startVaultStore);
