// The console is built into dist/ and served by the aimm API at / (api/console.py).
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // each page is its own chunk (React.lazy in src/App.jsx): the registry page does not
    // load the chart or editor libraries, the training page does not load the graph one
    chunkSizeWarningLimit: 700,
  },
  server: {
    // `npm run dev` against a running `make run` (port 8000)
    proxy: { "/api": "http://127.0.0.1:8000", "/health": "http://127.0.0.1:8000" },
  },
});
