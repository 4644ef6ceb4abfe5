import t from "tap";
import { errnoCode } from "../src/errno.ts";

void t.test("errnoCode gives the errno code, else the fallback: never a message", (t) => {
  t.equal(errnoCode(Object.assign(new Error("x"), { code: "EACCES" })), "EACCES");
  t.equal(errnoCode(Object.assign(new Error("x"), { code: "HPE_INVALID_METHOD" })), "HPE_INVALID_METHOD");
  t.equal(errnoCode(new Error("plain /etc/secret")), "error", "a message is never taken");
  t.equal(errnoCode(Object.assign(new Error("x"), { code: "Bearer mq-secret value" }), "unknown"), "unknown", "a code that is not an identifier is not trusted");
  t.equal(errnoCode(Object.assign(new Error("x"), { code: "E".repeat(65) })), "error", "nor an overlong one");
  t.equal(errnoCode("text", "unknown error"), "unknown error");
  t.equal(errnoCode(null), "error");
  t.equal(errnoCode(undefined), "error");
  t.end();
});
