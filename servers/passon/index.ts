/** Public surface of the pass-on subsystem for the node program and tools. */
export { localRole } from "./role-local.js";
export { centerRole } from "./role-center.js";
export { upperCenterRole } from "./role-upper-center.js";
export { readModule } from "./node.js";
export { signBundle, canonicalBundle } from "./apps.js";
