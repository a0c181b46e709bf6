/** This module's own RuncRuntime (same runc root as the build engine's; ids are `ctr-<id>`). */
export const CONTAINER_RUNTIME = Symbol('CONTAINER_RUNTIME');
/** Directory holding one dir (upper, work, merged) per container on this host. */
export const CONTAINERS_ROOT = Symbol('CONTAINERS_ROOT');
