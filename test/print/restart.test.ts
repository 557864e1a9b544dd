import assert from "node:assert/strict";
import { JobState, PrintJobsClient } from "../../clients/print/index.js";
import { textPdf } from "../../tools/fixtures/pdfs.js";
import { eventually, onCleanup, spawnNode, tempDir } from "../helpers/nodes.js";
import { startPrintCluster } from "./cluster.js";

describe("print-jobs after kill -9", function () {
  this.timeout(120_000);
  it("keeps acknowledged jobs, fails the interrupted one with JOB_SERVICE_RESTARTED and completes its session", async () => {
    const c = await startPrintCluster({ workers: 1 });
    onCleanup(() => c.stop());
    const dir = tempDir();
    const config = { node: { id: "pjobs-k9", role: "print-jobs" }, printJobs: { workers: [c.workers[0]?.address] } };
    const first = await spawnNode(config, dir);
    let jobs = new PrintJobsClient(first.address);
    const job = await jobs.submit({ requestId: "", printerId: "nobody-home", document: { $case: "content", value: Buffer.from(await textPdf(2)) } });
    await eventually(async () => (await jobs.get(job.name)).state === JobState.PRINTING, 30_000);
    assert.equal((await c.printStore.counts()).sessions, 1);
    jobs.close();
    first.child.kill("SIGKILL");
    await first.exited;
    const second = await spawnNode(config, dir);
    jobs = new PrintJobsClient(second.address);
    onCleanup(() => jobs.close());
    const after = await jobs.get(job.name);
    assert.equal(JobState[after.state], "FAILED");
    assert.equal(after.errorReason, "JOB_SERVICE_RESTARTED");
    assert.deepEqual(await c.printStore.counts(), { sessions: 0, tokens: 0, documentChunks: 0, results: 0, pages: 0 });
  });
});
