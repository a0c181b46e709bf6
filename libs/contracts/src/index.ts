export * from './queues';
export * from './jobs';
export * from './builds';
export * from './errors';
