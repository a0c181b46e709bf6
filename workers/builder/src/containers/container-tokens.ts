/** Directory holding one dir (upper, work, merged) per container on this host. */
export const CONTAINERS_ROOT = Symbol('CONTAINERS_ROOT');
