#!/usr/bin/env node
/** The `switchyard` command line. Each subsystem registers its commands in commands/. */
import { Command } from "commander";
import { packageVersion } from "../../servers/runtime/paths.js";
import { registerCall } from "./commands/call.js";
import { registerContent } from "./commands/content.js";
import { registerNode } from "./commands/node.js";
import { registerPasson } from "./commands/passon.js";
import { registerRelay } from "./commands/relay.js";
import { registerReception } from "./commands/reception.js";
import { registerPrint } from "./commands/print.js";
import { registerStatus } from "./commands/status.js";
import { registerUp } from "./commands/up.js";

// `switchyard list ... | head` closes our stdout early: that is not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const program = new Command("switchyard")
  .description("Switchyard: reception, content, relay, pass-on and print conversion over gRPC")
  .version(packageVersion());
registerUp(program);
registerNode(program);
registerStatus(program);
registerCall(program);
registerPasson(program);
registerRelay(program);
registerReception(program);
registerContent(program);
registerPrint(program);

await program.parseAsync(process.argv);
