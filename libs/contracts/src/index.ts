export * from './queues';
export * from './jobs';
export * from './builds';
export * from './errors';
export * from './pushes';
export * from './containers';
export * from './projects';
export * from './maintenance';
