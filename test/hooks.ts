/** Root hooks: every test's registered cleanups run after it, pass or fail. */
import { runCleanups } from "./helpers/nodes.js";

export const mochaHooks = {
  async afterEach(): Promise<void> {
    await runCleanups();
  },
};
