// The dashboard is built into crates/dashboard/assets, which the `ktwin` binary embeds: that
// folder is committed, and CI rebuilds it and fails when it differs (scripts/test.sh).
import { defineConfig } from "vitest/config";

export default defineConfig({
  // Relative asset URLs: the dashboard works wherever it is mounted.
  base: "./",
  build: {
    outDir: "../../crates/dashboard/assets",
    emptyOutDir: true,
    // One script and one stylesheet; no source maps in the embedded bundle.
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
    target: "es2022",
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
