import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { cliEntryPoint } from "../../tools/cluster/launcher.js";
import { tempDir } from "../helpers/nodes.js";
import { GrantSigner, GrantVerifier, publicKeyOf } from "../../servers/content/grant.js";
import { ADMIN_TOKEN, startContentCluster, testBytes } from "./cluster.js";

const run = promisify(execFile);

describe("switchyard content (CLI)", () => {
  it("uploads, lists, downloads byte-exactly, shows nodes and deletes", async function () {
    this.timeout(60_000);
    const c = await startContentCluster(2);
    const dir = tempDir();
    const file = join(dir, "in.bin");
    const data = testBytes(3 * 1024 * 1024 + 5);
    writeFileSync(file, data);
    const cli = (...args: string[]) =>
      run(process.execPath, [cliEntryPoint(), "content", "--manager", c.manager.address, ...args], { env: { ...process.env, SWITCHYARD_CONTENT_TOKEN: ADMIN_TOKEN } });
    const up = await cli("upload", file, "--fixed", "--piece-size", String(1024 * 1024));
    const id = up.stdout.trim().split(/\s+/)[0] as string;
    assert.match(id, /^[a-z2-7]{26}$/);
    assert.match(up.stdout, /4 pieces {2}x2/);
    assert.match((await cli("ls")).stdout, new RegExp(`${id}.*in\\.bin`));
    const out = join(dir, "out.bin");
    await cli("download", id, "--out", out);
    assert.ok(readFileSync(out).equals(data));
    // Again through a fetch worker thread of the CLI process.
    await cli("download", id, "--out", out, "--threads", "1");
    assert.ok(readFileSync(out).equals(data));
    const nodes = (await cli("nodes")).stdout;
    assert.match(nodes, /dn-1.*active/);
    assert.match(nodes, /dn-2.*active/);
    assert.match((await cli("rm", id)).stdout, /4 pieces removed/);
    await assert.rejects(cli("download", id, "--out", out), (err: { stderr: string }) => /NOT_FOUND/.test(err.stderr));
  });

  it("keygen prints an Ed25519 key pair whose halves configure a manager and a node", async () => {
    const { stdout } = await run(process.execPath, [cliEntryPoint(), "content", "keygen", "k9"]);
    const priv = /privateKey: "([^"]+)"/.exec(stdout)?.[1] as string;
    const pub = /publicKey: "([^"]+)"/.exec(stdout)?.[1] as string;
    assert.equal(publicKeyOf(priv), pub);
    const signer = new GrantSigner([{ id: "k9", privateKey: priv }]);
    const verifier = new GrantVerifier([{ id: "k9", publicKey: pub }]);
    assert.equal(verifier.verify(signer.manage("t"), ["manage"]).kid, "k9");
  });
});
