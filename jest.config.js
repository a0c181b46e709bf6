// Three tiers (CONVENTIONS.md §11): unit specs beside the code, integration tests
// against real Redis / overlayfs / runc / S3 protocol, e2e through HTTP.
const swc = [
  '@swc/jest',
  {
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      target: 'es2022',
    },
    module: { type: 'commonjs' },
  },
];
const common = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': swc },
  moduleNameMapper: {
    '^@stratum/testing$': '<rootDir>/test/support',
    '^@stratum/(.*)$': '<rootDir>/libs/$1/src',
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  // benchmark workloads carry their own package.json files (not modules of ours)
  modulePathIgnorePatterns: ['<rootDir>/test/bench/workloads/'],
};
module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/{apps,libs,workers}/**/*.spec.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: [
        '<rootDir>/{apps,libs,workers}/**/*.int.test.ts',
        '<rootDir>/test/integration/**/*.test.ts',
      ],
    },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.e2e.test.ts'] },
    { ...common, displayName: 'chaos', testMatch: ['<rootDir>/test/chaos/**/*.chaos.test.ts'] },
  ],
};
