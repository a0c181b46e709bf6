// api-server.ts is not re-exported: it loads the whole API app, which tests that only need
// Redis should not pay for (e2e tests import '../support/api-server' directly).
export * from './redis-server';
export * from './worker-process';
export * from './build-context';
export * from './sse-client';
export * from './shared';
export * from './records';
export * from './polling';
export * from './tools';
export * from './raw-body';
export * from './debian-base';
export * from './dockerd';
export * from './engine-build';
export * from './cli';
export * from './buildah-compare';
export * from './service-process';
export * from './foreign-platform';
export * from './ssh-tools';
export * from './engine-host';
export * from './file-tree';
export * from './sshd';
export * from './netns-lab';
export * from './redis-sentinel';
export * from './git-http';
