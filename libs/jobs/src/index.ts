export * from './redis';
export * from './json-records';
export * from './build-record-store';
export * from './container-record-store';
export * from './producers';
export * from './jobs.module';
export * from './secret-box';
export * from './build-secret-store';
