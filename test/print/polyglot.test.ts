import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { textPdf } from "../../tools/fixtures/pdfs.js";
import { onCleanup, tempDir } from "../helpers/nodes.js";
import { runPythonCheck } from "../helpers/python.js";
import { startPrintCluster } from "./cluster.js";

describe("print polyglot Python client", function () {
  this.timeout(120_000);
  it("issues a token, is refused a duplicate, converts, completes and gets FAILED_PRECONDITION after", async () => {
    const c = await startPrintCluster({ workers: 1 });
    onCleanup(() => c.stop());
    const pdf = join(tempDir(), "doc.pdf");
    const bytes = await textPdf(2);
    writeFileSync(pdf, bytes);
    const out = (await runPythonCheck("print", [c.workers[0]?.address as string, pdf], 120_000)) as Record<string, unknown>;
    assert.deepEqual(out["duplicate"], { code: "ALREADY_EXISTS", message: "session py-job-1/py-printer exists already; a live session cannot be issued a second token", reason: "SESSION_EXISTS" });
    assert.equal(out["downloaded"], bytes.length);
    assert.deepEqual(out["events"], ["started", "page", "page", "finished"]);
    assert.equal((out["unknown"] as Record<string, string>)["code"], "FAILED_PRECONDITION");
    assert.equal((out["unknown"] as Record<string, string>)["reason"], "SESSION_NOT_FOUND");
    assert.ok((out["recordsDeleted"] as number) >= 4);
  });
});
