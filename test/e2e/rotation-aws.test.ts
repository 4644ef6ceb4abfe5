// The key lifecycle through the whole proxy with the key in a fake AWS Secrets Manager (JSON
// SecretString with `field`, environment credentials): see test/helpers/store-lifecycle.ts.
import { startAwsStore } from "../helpers/key-stores.ts";
import { storeLifecycle } from "../helpers/store-lifecycle.ts";

storeLifecycle(startAwsStore);
