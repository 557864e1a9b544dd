import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { status as Status } from "@grpc/grpc-js";
import { unary } from "../../clients/grpc/call.js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { order, type ContentServerClient } from "../../clients/reception/index.js";
import { eventually } from "../helpers/nodes.js";
import { startCluster, type TestCluster } from "./fixtures.js";

async function fetchAll(c: TestCluster, itemId: string, clientId: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  await order({ reception: c.reception.address, itemId, clientId, sink: (chunk) => void parts.push(Buffer.from(chunk)) });
  return Buffer.concat(parts);
}

async function refusedPublish(cs: ContentServerClient, header: Parameters<ContentServerClient["publish"]>[0], data: Buffer): Promise<ReturnType<typeof parseRichError>> {
  const err = await cs.publish(header, data).then(
    () => assert.fail("publish succeeded"),
    (e: unknown) => e,
  );
  return parseRichError(err);
}

describe("ContentServerService catalog", () => {
  describe("PublishItem", () => {
    it("stores the bytes, lists the item, tells the reception, and serves it to an order", async () => {
      const c = await startCluster({ servers: 1, capacity: 4 });
      const data = randomBytes(200_000);
      const sha256 = createHash("sha256").update(data).digest();
      const res = await c.content(0).publish({ itemId: "fresh.bin", sizeBytes: data.length, contentType: "application/octet-stream", sha256 }, data, { chunkBytes: 30_000 });
      assert.equal(res.item?.itemId, "fresh.bin");
      assert.equal(res.item?.sizeBytes, BigInt(data.length));
      assert.deepEqual(Buffer.from(res.item?.sha256 ?? []), sha256);
      const listed = await c.content(0).listItems();
      assert.deepEqual(listed.map((i) => i.itemId).sort(), ["fresh.bin", "hello.txt"]);
      await eventually(() => c.rcore.table.carrierIds("fresh.bin").has("content-1"), 5000);
      assert.deepEqual(await fetchAll(c, "fresh.bin", "bob"), data);
    });

    it("replaces an item atomically: an order after the publish gets the new bytes", async () => {
      const c = await startCluster({ servers: 1, capacity: 4 });
      const first = randomBytes(5000);
      const second = randomBytes(7000);
      await c.content(0).publish({ itemId: "doc.txt", sizeBytes: first.length }, first);
      await c.content(0).publish({ itemId: "doc.txt", sizeBytes: second.length }, second);
      const items = await c.content(0).listItems();
      assert.equal(items.find((i) => i.itemId === "doc.txt")?.sizeBytes, BigInt(second.length));
      await eventually(() => c.rcore.table.carrierIds("doc.txt").has("content-1"), 5000);
      assert.deepEqual(await fetchAll(c, "doc.txt", "carol"), second);
    });

    it("refuses a bad checksum, a size mismatch and a bad item id with INVALID_ARGUMENT, and keeps nothing of them", async () => {
      const c = await startCluster({ servers: 1, capacity: 4 });
      const cs = c.content(0);
      const data = randomBytes(10_000);
      const badSum = await refusedPublish(cs, { itemId: "x.bin", sizeBytes: data.length, sha256: randomBytes(32) }, data);
      assert.equal(badSum.code, Status.INVALID_ARGUMENT);
      assert.equal(badSum.errorInfo?.reason, "CHECKSUM_MISMATCH");
      const short = await refusedPublish(cs, { itemId: "y.bin", sizeBytes: data.length + 1 }, data);
      assert.equal(short.errorInfo?.reason, "SIZE_MISMATCH");
      const long = await refusedPublish(cs, { itemId: "y.bin", sizeBytes: data.length - 1 }, data);
      assert.equal(long.errorInfo?.reason, "SIZE_MISMATCH");
      const badId = await refusedPublish(cs, { itemId: "../etc", sizeBytes: data.length }, data);
      assert.equal(badId.errorInfo?.reason, "INVALID_ITEM_ID");
      assert.deepEqual((await cs.listItems()).map((i) => i.itemId), ["hello.txt"]);
    });
  });

  describe("ListItems", () => {
    it("pages in item id order and refuses a page token it did not issue", async () => {
      const c = await startCluster({ servers: 1, capacity: 4 });
      const cs = c.content(0);
      for (const id of ["a.txt", "b.txt", "c.txt", "d.txt"]) await cs.publish({ itemId: id, sizeBytes: 3 }, Buffer.from("abc"));
      const seen: string[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const res = await unary(cs.raw, cs.raw.listItems, { pageSize: 2, pageToken });
        assert.ok(res.items.length <= 2);
        seen.push(...res.items.map((i) => i.itemId));
        pageToken = res.nextPageToken;
        pages++;
      } while (pageToken);
      assert.deepEqual(seen, ["a.txt", "b.txt", "c.txt", "d.txt", "hello.txt"]);
      assert.equal(pages, 3);
      const err = await unary(cs.raw, cs.raw.listItems, { pageSize: 2, pageToken: "!!!" }).then(
        () => assert.fail("accepted a bad token"),
        (e: unknown) => parseRichError(e),
      );
      assert.equal(err.code, Status.INVALID_ARGUMENT);
      assert.equal(err.errorInfo?.reason, "INVALID_PAGE_TOKEN");
    });
  });
});
