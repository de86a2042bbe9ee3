// Starting `ktwin up` on a copy of a project and a headless Debian Chromium, for the browser
// tests and the benchmark. Nothing here downloads a browser: Playwright drives /usr/bin/chromium.

import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

export const CHROMIUM = process.env.KTWIN_CHROMIUM ?? "/usr/bin/chromium";
const CHROMIUM_FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

/** `--name value` pairs of the command line. */
export function options(defaults) {
  const out = { ...defaults };
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i += 2) out[args[i].replace(/^--/, "")] = args[i + 1];
  return out;
}

/**
 * Runs `ktwin up` on a scratch copy of `project` (its store starts empty) with `args`; resolves
 * once its HTTP API is ready, with its base URL, `api` (fetch with the admin token) and a stop
 * function.
 */
export async function startPlatform(ktwin, project, args = []) {
  const dir = mkdtempSync(join(tmpdir(), "ktwin-dashboard-"));
  cpSync(project, dir, { recursive: true, filter: (src) => !/\/(\.ktwin|target)(\/|$)/.test(src) });
  const child = spawn(ktwin, ["up", dir, "--port", "0", "--mqtt-port", "0", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
  });
  let output = "";
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ktwin up did not start in 120 s:\n${output}`)), 120_000);
    const read = (chunk) => {
      output += chunk;
      const match = output.match(/twin graph\s+(http:\/\/[0-9.:]+)\/api\/v1\/twin-graph/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("exit", (code) => reject(new Error(`ktwin up exited (${code}):\n${output}`)));
  });
  for (let i = 0; i < 200; i++) {
    const ready = await fetch(`${base}/ready`).then((r) => r.ok, () => false);
    if (ready) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const stop = async () => {
    child.kill("SIGINT");
    await new Promise((resolve) => {
      const timer = setTimeout(() => { child.kill("SIGKILL"); resolve(); }, 30_000);
      child.on("exit", () => { clearTimeout(timer); resolve(); });
      if (child.exitCode !== null) { clearTimeout(timer); resolve(); }
    });
    rmSync(dir, { recursive: true, force: true });
  };
  // Auth is on: API calls outside the page carry the admin token `ktwin up` created on first start.
  const token = readFileSync(join(dir, ".ktwin", "auth", "admin.token"), "utf8").trim();
  const api = (path, init = {}) =>
    fetch(`${base}${path}`, { ...init, headers: { ...init.headers, Authorization: `Bearer ${token}` } });
  return { base, api, stop, output: () => output };
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS, headless: true });
}
