#!/usr/bin/env bash
# The web dashboard's checks (web/dashboard, served by crates/dashboard):
#   bundle   rebuild the front end from its lockfile (npm ci && npm run build), run its unit
#            tests, and fail when the rebuilt bundle differs from the committed one that the
#            ktwin binary embeds;
#   browser  drive Debian's Chromium (playwright-core, no downloaded browser) against
#            `ktwin up --sim` on the example, saving screenshots under target/dashboard-e2e;
#   bench    (not part of `all`) first render and search with 20 neighbourhoods against a
#            release `ktwin`, figures for docs/benchmarks.md.
# Without Node the checks are skipped with a loud message (and fail when CI is set).
set -euo pipefail
cd "$(dirname "$0")/.."

step="${1:-all}"
web=web/dashboard
assets=crates/dashboard/assets

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "!!! Node.js/npm are absent: the dashboard's bundle and browser checks are SKIPPED" >&2
  [ -z "${CI:-}" ] || exit 1
  exit 0
fi

bundle() {
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error && npm run build && npm test)
  # Untracked or modified files under the embedded folder: the committed bundle is stale.
  local changed
  changed=$(git status --porcelain -- "$assets")
  if [ -n "$changed" ]; then
    echo "!!! the committed dashboard bundle differs from a rebuild of $web:" >&2
    echo "$changed" >&2
    echo "    run (cd $web && npm ci && npm run build) and commit $assets" >&2
    return 1
  fi
  echo "dashboard bundle: rebuilt, identical to the committed one"
}

browser() {
  [ -d "$web/node_modules/playwright-core" ] || (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
  # `--tests` resolves features as `cargo test --workspace` does, so its dependency builds are reused.
  cargo build --workspace --bins --tests
  node "$web/e2e/dashboard.e2e.mjs" \
    --ktwin target/debug/ktwin \
    --project examples/smart-city \
    --out target/dashboard-e2e
}

bench() {
  [ -d "$web/node_modules/playwright-core" ] || (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
  cargo build --release -p ktwin --bin ktwin
  node "$web/e2e/bench.mjs" \
    --ktwin target/release/ktwin \
    --project examples/smart-city \
    --neighborhoods 20 \
    --runs 5
}

case "$step" in
  bundle) bundle ;;
  browser) browser ;;
  all) bundle && browser ;;
  bench) bench ;;
  *) echo "usage: $0 [bundle|browser|all|bench]" >&2; exit 2 ;;
esac
