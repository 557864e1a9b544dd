import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { status as Status } from "@grpc/grpc-js";
import { cliEntryPoint } from "../../tools/cluster/launcher.js";
import { eventually, onCleanup } from "../helpers/nodes.js";
import { sourceClient, startRelay, startSource, streamListed, subscribed } from "./helpers.js";

const run = promisify(execFile);

describe("switchyard relay (CLI)", () => {
  it("subscribe --via prints frames through a relay; sessions --json shows the session", async () => {
    const source = await startSource({ generators: [{ kind: "ticker", name: "clock", interval: "20ms" }] });
    const relay = await startRelay(source.address, { linger: "5s" });
    const { stdout, stderr } = await run(process.execPath, [cliEntryPoint(), "relay", "subscribe", "clock", "--via", relay.address, "--count", "3", "--as", "cli-test"], { timeout: 20_000 });
    const lines = stdout.trim().split("\n");
    assert.equal(lines.length, 3);
    for (const l of lines) assert.match(l, /^tick \d+ \d{4}-/);
    assert.match(stderr, /subscribed to clock at .* from sequence \d+/);
    const sessions = await run(process.execPath, [cliEntryPoint(), "relay", "sessions", "--relay", relay.address, "--json"], { timeout: 20_000 });
    const parsed = JSON.parse(sessions.stdout) as { relayId: string; sessions: { stream: string }[] };
    assert.equal(parsed.relayId, "relay-1");
    assert.deepEqual(parsed.sessions.map((s) => s.stream), ["clock"]);
  });

  it("publish sends stdin lines as frames and ends the stream at EOF", async () => {
    const source = await startSource();
    const relay = await startRelay(source.address);
    const child = spawn(process.execPath, [cliEntryPoint(), "relay", "publish", "lines", "--to", relay.address], { stdio: ["pipe", "pipe", "pipe"] });
    onCleanup(() => void child.kill("SIGKILL"));
    let err = "";
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.stdin.write("first\n");
    const src = sourceClient(source.address);
    await streamListed(src, "lines");
    const sub = await subscribed(sourceClient(relay.address), "lines", "reader");
    child.stdin.write("second\nthird\n");
    await eventually(() => sub.frames.length === 2);
    child.stdin.end();
    assert.equal(await exited, 0, err);
    assert.match(err, /published 3 frames \(sequence 1\.\.3\) into lines/);
    assert.equal((await sub.ended).code, Status.OK);
    assert.deepEqual(sub.frames.map((f) => f.payload.toString()), ["second", "third"]);
  });
});
