import assert from "node:assert/strict";
import { maskToAlpha } from "../../servers/print/render/smask.js";

describe("render soft masks (servers/print/render/smask.ts)", () => {
  describe("maskToAlpha", () => {
    it("turns a luminosity mask's grey into alpha, over black where the mask is transparent", () => {
      // white, black, 50 % grey, mid green, white at half opacity, fully transparent
      const px = Uint8Array.from([255, 255, 255, 255, 0, 0, 0, 255, 128, 128, 128, 255, 0, 200, 0, 255, 255, 255, 255, 128, 255, 255, 255, 0]);
      maskToAlpha(px, { luminosity: true, map: null });
      assert.deepEqual([px[3], px[7], px[11], px[15], px[19], px[23]], [255, 0, 128, 118, 128, 0]);
      assert.deepEqual([px[0], px[1], px[2]], [0, 0, 0]);
    });
    it("applies the transfer map to an alpha mask", () => {
      const map = Uint8Array.from({ length: 256 }, (_, i) => 255 - i);
      const px = Uint8Array.from([10, 20, 30, 255, 10, 20, 30, 0, 10, 20, 30, 100]);
      maskToAlpha(px, { luminosity: false, map });
      assert.deepEqual([px[3], px[7], px[11]], [0, 255, 155]);
    });
  });
});
