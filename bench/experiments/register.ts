/**
 * `node --import ./bench/experiments/register.ts dist/main.js …`: loads the module hooks of
 * hooks.ts, which take components out of the built proxy for a removal experiment
 * (`npm run bench -- --remove=NAME`, bench/components.ts). Never used outside the benchmark.
 */
import { register } from "node:module";

register("./hooks.ts", import.meta.url);
