// Benchmark (no assertion): the dashboard's first render and search time in headless Chromium
// against `ktwin up` with N neighbourhoods (no simulator). Figures go to docs/benchmarks.md.
// Usage: node e2e/bench.mjs --ktwin target/release/ktwin --neighborhoods 20 --runs 5

import { launchBrowser, options, startPlatform } from "./platform.mjs";

const opts = options({ ktwin: "target/debug/ktwin", project: "examples/smart-city", neighborhoods: "20", runs: "5" });
const platform = await startPlatform(opts.ktwin, opts.project, ["--set", `neighborhoods=${opts.neighborhoods}`]);
const browser = await launchBrowser();
const renders = [];
const searches = [];
try {
  for (let run = 0; run < Number(opts.runs); run++) {
    const page = await browser.newPage({ viewport: { width: 1400, height: 850 } });
    await page.goto(`${platform.base}/`);
    await page.waitForSelector("body[data-graph-ready=true]", { timeout: 60_000 });
    const metrics = await page.evaluate(() => window.ktwinDashboard.metrics);
    renders.push(metrics.firstRenderMs);
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
    console.log(`run ${run + 1}: ${metrics.twins} twins, first render ${metrics.firstRenderMs.toFixed(0)} ms, search ${searchMs.toFixed(1)} ms`);
    await page.close();
  }
} finally {
  await browser.close();
  await platform.stop();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`median first render ${median(renders).toFixed(0)} ms (${(median(renders) / 2000).toFixed(2)} of the 2 s target), ` +
  `median search ${median(searches).toFixed(1)} ms (${(median(searches) / 200).toFixed(3)} of the 200 ms target); ` +
  `range ${Math.min(...renders).toFixed(0)}–${Math.max(...renders).toFixed(0)} ms and ${Math.min(...searches).toFixed(1)}–${Math.max(...searches).toFixed(1)} ms`);
