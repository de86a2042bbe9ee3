// Browser tests of the dashboard: `ktwin up --sim` on the example and Debian's headless
// Chromium. Prints one line per check and "N passed, N failed"; exits non-zero on a failure.
// Screenshots go to --out.

import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { launchBrowser, options, startPlatform } from "./platform.mjs";

const opts = options({ ktwin: "target/debug/ktwin", project: "examples/smart-city", out: "target/dashboard-e2e" });
mkdirSync(opts.out, { recursive: true });
const AIR_QUALITY = "ngsi-ld-city-airqualityobserved";
const SENSOR = `${AIR_QUALITY}-nb001-p00003`;
const NEIGHBORHOOD = "s4city-city-neighborhood";
const PARKING = "ngsi-ld-city-offstreetparking";

const results = [];
async function check(name, body) {
  try {
    await body();
    results.push([name, null]);
    console.log(`ok   ${name}`);
  } catch (err) {
    results.push([name, err]);
    console.log(`FAIL ${name}: ${err.message}`);
  }
}
function assert(condition, message) {
  if (!condition) throw new Error(message);
}

const platform = await startPlatform(opts.ktwin, opts.project, ["--sim"]);
const browser = await launchBrowser();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 850 } });
  const errors = [];
  page.on("pageerror", (err) => errors.push(err.message));
  const shot = (name) => page.screenshot({ path: join(opts.out, `${name}.png`) });

  await check("the graph renders", async () => {
    await page.goto(`${platform.base}/`);
    await page.waitForSelector("body[data-graph-ready=true]", { timeout: 30_000 });
    const nodes = await page.evaluate(() => document.querySelectorAll("[role=treeitem]").length);
    assert(nodes > 10, `only ${nodes} tree items`);
    assert(await page.locator("#graph-canvas canvas").count() > 0, "no graph canvas");
    await shot("graph");
  });

  await check("searching city-pole suggests poles and opens one", async () => {
    await page.fill("#search", "city-pole");
    await page.waitForSelector("#search-suggestions [role=option]");
    const first = await page.getAttribute("#search-suggestions [role=option]", "data-name");
    assert(first.startsWith("city-pole-"), `first suggestion ${first}`);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#twin-panel:not([hidden])");
    const title = await page.textContent("#panel-title");
    assert(title.includes(first), `panel title ${title}`);
  });

  await check("a sensor's latest state appears", async () => {
    // Poles keep no state of their own in the example; their air-quality sensor does. The
    // panel reads the state once when opened, so wait for the sensor's first stored reading:
    // the simulator's schedule can bring it later than the checks above take.
    const latest = `/api/v1/twin-events/${AIR_QUALITY}/${SENSOR}/latest`;
    const until = Date.now() + 60_000;
    while ((await platform.api(latest)).status !== 200) {
      assert(Date.now() < until, `no state stored for ${SENSOR} within 60 s`);
      await page.waitForTimeout(500);
    }
    await page.fill("#search", SENSOR);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#twin-state[data-state=loaded]", { timeout: 30_000 });
    const rows = await page.locator("#twin-state table.state tbody tr").count();
    assert(rows > 3, `${rows} state fields`);
    await shot("panel-state");
  });

  await check("the open panel follows the sensor's new readings", async () => {
    // Nothing is clicked: the State tab re-reads the latest state when the live stream brings
    // an event of its twin (and every few seconds), so a newer reading replaces the shown one.
    const shown = await page.getAttribute("#twin-state", "data-event-id");
    await page.waitForFunction((id) => {
      const state = document.querySelector("#twin-state[data-state=loaded]");
      return state && state.dataset.eventId !== id;
    }, shown, { timeout: 60_000 });
  });

  await check("the live counter rises while the simulator runs", async () => {
    const before = Number(await page.textContent("#live-counter"));
    await page.waitForTimeout(3000);
    const after = Number(await page.textContent("#live-counter"));
    assert(after > before, `counter ${before} → ${after}`);
  });

  await check("moving the time slider back shows an earlier state", async () => {
    // Let the sensor build some history (it reads every 10 s), then go back in slider steps
    // (6 s in a 1 h window) until the moment is before the shown state: counted from its age
    // when the keys are pressed, since on a busy machine the shown state can already be older
    // than a fixed number of steps, and the state at that moment is then the same one.
    await page.waitForTimeout(20_000);
    await page.click("#tab-History");
    await page.waitForSelector("#twin-history");
    await shot("panel-history");
    await page.click("#tab-State");
    await page.waitForSelector("#twin-state[data-state=loaded]");
    const live = await page.getAttribute("#twin-state", "data-time");
    await page.focus("#time-slider");
    const steps = Math.ceil((Date.now() - Date.parse(live)) / 6_000) + 1;
    assert(Number.isFinite(steps), `shown state's time ${live} is not a time`);
    for (let i = 0; i < steps; i++) await page.keyboard.press("ArrowLeft");
    await page.waitForFunction((t) => {
      const state = document.querySelector("#twin-state");
      return state && state.dataset.time && state.dataset.time < t;
    }, live, { timeout: 10_000 });
    const past = await page.getAttribute("#twin-state", "data-time");
    assert(past < live, `state at ${past} is not earlier than ${live}`);
    await page.click("#time-live");
  });

  const twinOf = async (iface) => {
    const graph = await (await platform.api(`/api/v1/twin-graph`)).json();
    return graph.twinInstances.find((t) => t.interface === iface).name;
  };
  const openCommands = async (twin) => {
    await page.fill("#search", twin);
    await page.keyboard.press("Enter");
    await page.waitForFunction((n) => document.querySelector("#panel-title")?.textContent.includes(n), twin);
    await page.click("#tab-Commands");
    await page.waitForSelector("#twin-commands form.command");
  };

  await check("a command sent from the form is stored", async () => {
    // The simulator's readings never rate HAZARDOUS (docs/dashboard.md), so a HAZARDOUS level in
    // the neighbourhood's stored state, seen after the command was sent, comes from the command.
    const neighborhood = await twinOf(NEIGHBORHOOD);
    await openCommands(neighborhood);
    const form = page.locator("form.command[data-command=updateairqualityindex]");
    await form.locator("input").first().fill("HAZARDOUS");
    await form.locator("button[type=submit]").click();
    const status = form.locator(".status[data-stored]");
    await status.waitFor({ timeout: 30_000 });
    assert(await status.getAttribute("data-stored") === "true", `not stored: ${await status.textContent()}`);
    const sentAt = new Date(await status.getAttribute("data-sent-at"));
    await shot("panel-command");
    const latest = await platform.api(`/api/v1/twin-events/${NEIGHBORHOOD}/${neighborhood}/latest`);
    assert(latest.ok, `latest state: ${latest.status}`);
    const state = await latest.json();
    assert(state.aqiLevel === "HAZARDOUS", `stored aqiLevel ${state.aqiLevel}`);
    const seen = new Date(state.aqiLevelLastSeen?.HAZARDOUS);
    assert(seen >= sentAt, `HAZARDOUS last seen at ${state.aqiLevelLastSeen?.HAZARDOUS}, the command was sent at ${sentAt.toISOString()}`);
  });

  await check("a payload not matching the command's schema gets a clear error", async () => {
    const parking = await twinOf(PARKING);
    await openCommands(parking);
    const form = page.locator("form.command[data-command=updatevehiclecount]");
    await form.locator("input").first().fill("1.5");
    await form.locator("button[type=submit]").click();
    const status = form.locator(".status.error");
    await status.waitFor();
    const message = await status.textContent();
    assert(/vehicleEntranceCount/.test(message) && /whole number/.test(message), `form error: ${message}`);
    // The server checks too, for scripts: the problem names the field, the value and the expectation.
    const response = await platform.api(`/api/v1/commands/${PARKING}/${parking}/updatevehiclecount`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ vehicleExitCount: "two" }),
    });
    const problem = await response.json();
    assert(response.status === 400, `status ${response.status}`);
    assert(/vehicleExitCount: "two" is not a whole number/.test(problem.detail), `detail: ${problem.detail}`);
  });

  await check("pausing the live view keeps its position", async () => {
    await page.click("nav.views button[data-view=live]");
    await page.click("#live-toggle");
    const paused = Number(await page.textContent("#live-counter"));
    await page.waitForTimeout(2000);
    assert(Number(await page.textContent("#live-counter")) === paused, "counted while paused");
    await page.click("#live-toggle");
    await page.waitForFunction((n) => Number(document.querySelector("#live-counter").textContent) > n + 5, paused, { timeout: 15_000 });
    const missed = await page.textContent("#live-missed");
    assert(missed === "", `missed events: ${missed}`);
    await shot("live");
  });

  await check("no script error", async () => assert(errors.length === 0, errors.join("; ")));
} finally {
  await browser.close();
  await platform.stop();
}

const failed = results.filter(([, err]) => err).length;
console.log(`dashboard browser tests: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
