import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/** Served by Warden at /console (services/connector/src/console/console.routes.ts). */
export default defineConfig({
  base: '/console/',
  plugins: [react()],
  build: {
    target: 'es2022',
    outDir: 'dist',
    emptyOutDir: true,
    // The CSP allows no inline script: the module preload helper stays in the bundle.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
});
