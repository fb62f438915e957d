import { defineConfig } from 'vitest/config';

// Tests run against the compiled output in dist/ (what ships, and what the
// worker threads load), so `npm test` builds first.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    env: { COFFER_TEST_LOW_KDF: '1' },
  },
});
