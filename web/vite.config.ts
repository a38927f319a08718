import preact from "@preact/preset-vite";
import { defineConfig } from "vite";

// The build goes into the Python package, which the hub serves: index.html at "/",
// hashed assets under /assets/ (cached for a year; the hub sets the headers and the CSP).
export default defineConfig({
  plugins: [preact()],
  base: "/",
  build: {
    outDir: "../src/rsparkhub/web/dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
  },
});
