#!/usr/bin/env node
/** The `switchyard` command line. Each subsystem registers its commands in commands/. */
import { Command } from "commander";
import { packageVersion } from "../../servers/runtime/paths.js";
import { registerNode } from "./commands/node.js";
import { registerPrint } from "./commands/print.js";
import { registerStatus } from "./commands/status.js";
import { registerUp } from "./commands/up.js";

const program = new Command("switchyard")
  .description("Switchyard: reception, content, relay, pass-on and print conversion over gRPC")
  .version(packageVersion());
registerUp(program);
registerNode(program);
registerStatus(program);
registerPrint(program);

await program.parseAsync(process.argv);
