import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Apps and workers share code through libs only (CONVENTIONS §1). A later block's
// no-restricted-imports replaces an earlier one's, so each block lists every pattern.
const libImports = {
  group: ['**/libs/*/src/**', '@stratum/*/*'],
  message: 'Import a lib through @stratum/<lib> only.',
};
const crossing = (from, to) => ({
  group: [`**/${to}/**`, `${to}/**`],
  message: `${from}/ must not import from ${to}/: move what both need into a lib under libs/ and import @stratum/<lib>.`,
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'test-output/**', '**/*.js', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-extraneous-class': 'off',
      eqeqeq: 'error',
      curly: 'error',
      'no-restricted-imports': ['error', { patterns: [libImports] }],
      'no-restricted-syntax': [
        'error',
        {
          selector: "MemberExpression[object.name='process'][property.name='env']",
          message: 'Read settings through @stratum/config, not process.env.',
        },
      ],
    },
  },
  {
    files: ['workers/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [libImports, crossing('workers', 'apps')] }] },
  },
  {
    files: ['apps/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [libImports, crossing('apps', 'workers')] }] },
  },
  {
    files: ['libs/config/src/**/*.ts', 'test/**/*.ts', '**/*.spec.ts', '**/*.test.ts'],
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    files: ['test/**/*.ts', '**/*.spec.ts', '**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
);
