import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/**',
      '**/.nx/**',
      '**/.warden/**',
      '.cache/**',
      '**/dist/**',
      'libs/sdk/src/generated/**',
      'coverage/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-syntax': [
        'error',
        {
          selector: 'ExportAllDeclaration',
          message: 'Use explicit named exports, not `export *`.',
        },
      ],
    },
  },
  {
    // Libraries take typed options; only the service's config.ts reads the environment.
    files: ['libs/**/*.ts'],
    ignores: ['libs/**/*.test.ts', 'libs/**/*.main.ts', 'libs/testing/**'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportAllDeclaration', message: 'Use explicit named exports, not `export *`.' },
        {
          selector: "MemberExpression[object.name='process'][property.name='env']",
          message: 'Libraries never read process.env; take a typed option from the service config instead.',
        },
      ],
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['fastify', 'fastify/*', '@fastify/*'], message: 'Libraries never import fastify.' },
            {
              group: ['@warden/connector', '**/services/**'],
              message: 'Libraries never import the service.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['services/connector/src/**/*.ts'],
    ignores: [
      'services/connector/src/config.ts',
      'services/connector/src/**/*.test.ts',
      'services/connector/src/test-support/**',
    ],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportAllDeclaration', message: 'Use explicit named exports, not `export *`.' },
        {
          selector: "MemberExpression[object.name='process'][property.name='env']",
          message: 'Only src/config.ts reads process.env.',
        },
      ],
    },
  },
  prettier,
);
