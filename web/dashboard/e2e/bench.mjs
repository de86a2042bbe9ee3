// Benchmark (no assertion): the dashboard's first render and search time in headless Chromium
// against `ktwin up` with N neighbourhoods (no simulator). Figures go to docs/benchmarks.md.
// Usage: node e2e/bench.mjs --ktwin target/release/ktwin --neighborhoods 20 --runs 5

import { launchBrowser, options, startPlatform } from "./platform.mjs";

const opts = options({ ktwin: "target/debug/ktwin", project: "examples/smart-city", neighborhoods: "20", runs: "5" });
const platform = await startPlatform(opts.ktwin, opts.project, ["--set", `neighborhoods=${opts.neighborhoods}`]);
const browser = await launchBrowser();
const renders = [];
const searches = [];
const fetches = [];
let graphBytes = 0;
try {
  for (let run = 0; run < Number(opts.runs); run++) {
    const page = await browser.newPage({ viewport: { width: 1400, height: 850 } });
    await page.goto(`${platform.base}/`);
    await page.waitForSelector("body[data-graph-ready=true]", { timeout: 60_000 });
    const metrics = await page.evaluate(() => window.ktwinDashboard.metrics);
    renders.push(metrics.firstRenderMs);
    // Where the first render's time goes: the page's script, and the graph's fetch (from the
    // request to its last byte) and size; the rest is the dashboard's own work (indexing the
    // graph, inferring containment, the first layout and paint).
    const phases = await page.evaluate(() => {
      const resources = performance.getEntriesByType("resource");
      const graph = resources.find((r) => r.name.endsWith("/api/v1/twin-graph"));
      const script = resources.find((r) => /\/assets\/index-.*\.js$/.test(r.name));
      return {
        scriptEnd: script ? script.responseEnd : null,
        graphStart: graph ? graph.startTime : null,
        graphEnd: graph ? graph.responseEnd : null,
        graphBytes: graph ? graph.encodedBodySize : null,
      };
    });
    fetches.push(phases.graphEnd - phases.graphStart);
    // From the keystroke to the suggestions on screen (a frame after they are listed).
    const searchMs = await page.evaluate(async () => {
      const input = document.querySelector("#search");
      const started = performance.now();
      input.value = "city-pole";
      input.dispatchEvent(new Event("input"));
      await new Promise((resolve) => requestAnimationFrame(() => resolve()));
      if (!document.querySelector("#search-suggestions [role=option]")) throw new Error("no suggestion");
      return performance.now() - started;
    });
    searches.push(searchMs);
    graphBytes = phases.graphBytes;
    console.log(`run ${run + 1}: ${metrics.twins} twins, first render ${metrics.firstRenderMs.toFixed(0)} ms ` +
      `(script loaded at ${phases.scriptEnd?.toFixed(0)} ms; graph fetched ${phases.graphStart?.toFixed(0)}–${phases.graphEnd?.toFixed(0)} ms, ` +
      `${(phases.graphBytes / 1e6).toFixed(2)} MB; drawn ${(metrics.firstRenderMs - phases.graphEnd).toFixed(0)} ms after), search ${searchMs.toFixed(1)} ms`);
    await page.close();
  }
} finally {
  await browser.close();
  await platform.stop();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`median first render ${median(renders).toFixed(0)} ms (${(median(renders) / 2000).toFixed(2)} of the 2 s target), ` +
  `median search ${median(searches).toFixed(1)} ms (${(median(searches) / 200).toFixed(3)} of the 200 ms target); ` +
  `range ${Math.min(...renders).toFixed(0)}–${Math.max(...renders).toFixed(0)} ms and ${Math.min(...searches).toFixed(1)}–${Math.max(...searches).toFixed(1)} ms; ` +
  `graph fetch median ${median(fetches).toFixed(0)} ms, ${(graphBytes / 1e6).toFixed(2)} MB`);
// The machine and its load, reported with the figures.
const { cpus, loadavg } = await import("node:os");
console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}; load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
