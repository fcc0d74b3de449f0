// The linter, run by `npm test` (and alone by `npm run lint`): typescript-eslint's recommended
// rules with type information, plus the project's own boundaries. Formatting is Prettier's.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules', '.tools', '.data', 'dist', 'test/histories'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: {
        projectService: { allowDefaultProject: ['*.js', '*.mjs', 'bin/*.mjs', 'dev/*.mjs', 'docker/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // `void promise` marks a deliberate fire-and-forget; anything else must be awaited or handled.
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: true }],
      // An async function without await is how an implementation of a Promise-returning
      // interface (a Fastify route, a fake activity) says so; forcing an await would be noise.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // What ships (src/) never reaches into the dev stack or the tests.
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/dev/*', '**/test/*', '**/bench/*'],
              message: 'src/ ships alone: it must not import the dev stack, tests or benchmarks.',
            },
          ],
        },
      ],
    },
  },
  {
    // Workflow code is replayed: no I/O, no clocks, no randomness but the workflow's own.
    files: ['src/workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*'], message: 'workflows are deterministic: no Node modules.' },
            {
              group: ['../db/*', '../gateway/*', '../runner/*', '../activities/*'],
              allowTypeImports: true,
              message: 'workflows reach the world only through activities (type imports are fine).',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
