/**
 * The object that carries a held key through the proxy.
 *
 * The value lives in a module-private WeakMap and is reached through a getter on a shared prototype,
 * so it is not an own property at all: `JSON.stringify`, object spread, `structuredClone`,
 * `Object.keys` and `util.inspect` — even with `showHidden: true`, `getters: true` and
 * `customInspect: false` — only ever see the name, source, version, fingerprint and fetch time.
 * A debug line that dumps the request context therefore cannot print the key.
 */
import { inspect } from "node:util";
import type { KeySourceKind } from "../config/types.ts";
import type { HeldKey } from "./types.ts";

const values = new WeakMap<object, string>();

interface PublicFields {
  readonly name: string;
  readonly source: KeySourceKind;
  readonly version: string;
  readonly fingerprint: string;
  readonly fetchedAt: number;
}

function publicFields(key: PublicFields): PublicFields {
  return {
    name: key.name,
    source: key.source,
    version: key.version,
    fingerprint: key.fingerprint,
    fetchedAt: key.fetchedAt,
  };
}

const heldKeyPrototype: object = Object.freeze(
  Object.create(Object.prototype, {
    // With `showHidden`, util.inspect lists the accessors of a prototype unless the nearest
    // `constructor` is a built-in one; naming Object keeps the `value` getter out of that listing.
    constructor: { value: Object, enumerable: false },
    value: {
      get(this: object): string {
        const value = values.get(this);
        if (value === undefined) throw new TypeError("not a HeldKey");
        return value;
      },
      enumerable: false,
    },
    toJSON: {
      value(this: PublicFields): PublicFields {
        return publicFields(this);
      },
      enumerable: false,
    },
    [inspect.custom]: {
      value(this: PublicFields, _depth: number, options: object): string {
        return `HeldKey ${inspect(publicFields(this), options)}`;
      },
      enumerable: false,
    },
  }) as object,
);

/** Builds a frozen HeldKey. The caller has validated `value` already. */
export function createHeldKey(fields: PublicFields & { readonly value: string }): HeldKey {
  const key = Object.create(heldKeyPrototype) as PublicFields;
  Object.assign(key, publicFields(fields));
  values.set(key, fields.value);
  return Object.freeze(key) as HeldKey;
}
