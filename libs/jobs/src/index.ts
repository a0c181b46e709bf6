export * from './redis';
export * from './build-record-store';
export * from './producers';
export * from './jobs.module';
