#!/usr/bin/env bash
# The whole test suite on a fresh machine: makes sure the servers the tests need are installed
# and running (scripts/services.sh), then runs every test of the workspace against them.
# Extra arguments go to `cargo test` (e.g. `./scripts/test.sh -p ktwin-store`).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/services.sh

export KTWIN_TEST_POSTGRES_URL="${KTWIN_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export KTWIN_TEST_AMQP_URL="${KTWIN_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export KTWIN_TEST_MQTT_ADDR="${KTWIN_TEST_MQTT_ADDR:-127.0.0.1:1883}"
export KTWIN_TEST_RABBITMQ_MQTT_ADDR="${KTWIN_TEST_RABBITMQ_MQTT_ADDR:-127.0.0.1:1884}"
# How long the DTDL parser is fuzzed with mutated models (crates/dtdl/tests/robustness.rs).
export KTWIN_DTDL_FUZZ_SECS="${KTWIN_DTDL_FUZZ_SECS:-120}"

if [ ! -d ../shared ]; then
  echo "!!! ../shared is absent: tests that need the DTDL corpora and upstream schemas will SKIP" >&2
fi

if [ "$#" -gt 0 ]; then
  exec cargo test --no-fail-fast "$@"
fi

# The Python SDK (sdk/python) and the Python smart-city services: type-checked, then their
# pytest suites, run against the `ktwin` binary (`ktwin up`, `ktwin events`, `ktwin sim`), in a
# virtualenv under target/ that later runs reuse.
python_tests() {
  cargo build --workspace --bins || return 1
  local venv=target/python
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || return 1
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    -e './sdk/python[test]' -e './examples/smart-city/services-python[test]' || return 1
  local result=0
  "$venv/bin/mypy" --cache-dir target/mypy-cache --config-file sdk/python/pyproject.toml \
    sdk/python/src sdk/python/tests || result=1
  (cd examples/smart-city/services-python &&
    ../../../"$venv"/bin/mypy --cache-dir ../../../target/mypy-cache smart_city tests conftest.py) || result=1
  export KTWIN_BIN="$PWD/target/debug/ktwin"
  (cd sdk/python && ../../"$venv"/bin/python -m pytest) || result=1
  (cd examples/smart-city/services-python && ../../../"$venv"/bin/python -m pytest) || result=1
  return "$result"
}

status=0
# The dashboard's bundle is rebuilt and compared before the binary embedding it is built.
./scripts/dashboard.sh bundle || status=$?
cargo test --workspace --no-fail-fast || status=$?
python_tests || status=$?
# Restarts RabbitMQ in the middle of a run, so it runs alone, after everything else. Selected
# with --workspace (only ktwin-dispatcher has it) so that it reuses the build above: `-p` would
# unify features differently and rebuild the dependencies.
cargo test --workspace --test restart -- --ignored || status=$?
# The dashboard in Debian's headless Chromium against `ktwin up --sim` on the example.
./scripts/dashboard.sh browser || status=$?
exit "$status"
