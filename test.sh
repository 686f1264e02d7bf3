#!/usr/bin/env bash
# The one command that runs every Corral test on a fresh machine:
#   1. cargo build --release --workspace      (the binary the Python suites run)
#   2. cargo test  --profile opt --workspace  (release optimisations, no LTO), then
#      the zookeeper-client suites again against 3-member ensembles
#      (CORRAL_TEST_ENSEMBLE=3)
#      and the queue library's tests against Apache ZooKeeper 3.8 (if installed;
#      the script installs Debian's package when it can)
#   3. Python integration tests (kazoo) in tests/python against the release
#      binary, in a virtualenv at <repo>/.venv created on first use: once
#      against standalone servers, once against 3-member ensembles.
#
# Environment:
#   CORRAL_BIN           server binary for the Python tests
#                        (default: <target dir>/release/corral)
#   CORRAL_TEST_TARGET   corral (default) | zookeeper: run the Python suite
#                        against Apache ZooKeeper instead (see tests/python/README.md)
#   PYTHON               interpreter used to create the venv (default: python3)
#   CORRAL_SKIP_ZOOKEEPER=1  do not install Apache ZooKeeper; the differential test
#                        (tests/python/test_differential.py) is then skipped if it is missing
# Extra arguments are passed to pytest, e.g. ./test.sh -k watches -x
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
REPO="$(pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$REPO/.venv"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
export CORRAL_BIN="${CORRAL_BIN:-$TARGET_DIR/release/corral}"

LOGDIR="$(mktemp -d)"
trap 'rm -rf "$LOGDIR"' EXIT

step() { printf '\n==> %s\n' "$*"; }

# test_differential.py and the queue library tests also run against Apache
# ZooKeeper: install Debian's package (it pulls in a JRE) when it is missing and we can.
if [ ! -e /usr/share/java/zookeeper.jar ] && [ "${CORRAL_SKIP_ZOOKEEPER:-}" != 1 ] \
   && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  step "apt-get install zookeeper (for the tests that compare with Apache ZooKeeper)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper \
    || echo "warning: installing zookeeper failed; test_differential.py will fail" >&2
fi

# ---------------------------------------------------------------- Rust
step "cargo build --release --workspace"
cargo build --release --workspace

# The cargo suites build in the `opt` profile: release optimisations without the
# whole-program pass that the release binary has (see Cargo.toml).
step "cargo test --profile opt --workspace --no-fail-fast"
set +e
cargo test --profile opt --workspace --no-fail-fast 2>&1 | tee "$LOGDIR/cargo-test.log"
cargo_rc="${PIPESTATUS[0]}"
set -e

# The suites that use the zookeeper-client crate, against ensembles: their clients
# get every member in the connect string.
ENSEMBLE_SUITES=(--test acl --test errors --test opcodes --test sessions --test watches)
step "cargo test (zookeeper-client suites against 3-member ensembles)"
set +e
CORRAL_TEST_ENSEMBLE=3 cargo test --profile opt -p corral --no-fail-fast "${ENSEMBLE_SUITES[@]}" 2>&1 \
  | tee -a "$LOGDIR/cargo-test.log"
cargo_ens_rc="${PIPESTATUS[0]}"
set -e
[ "$cargo_ens_rc" -eq 0 ] || cargo_rc="$cargo_ens_rc"

# The queue library uses only standard ZooKeeper operations: its tests must pass against
# Apache ZooKeeper 3.8 too.
if [ -e /usr/share/java/zookeeper.jar ] && [ "${CORRAL_SKIP_ZOOKEEPER:-}" != 1 ]; then
  step "cargo test (queue library against Apache ZooKeeper 3.8)"
  set +e
  CORRAL_TEST_TARGET=zookeeper cargo test --profile opt -p corral --no-fail-fast --test queue 2>&1 \
    | tee -a "$LOGDIR/cargo-test.log"
  cargo_zk_rc="${PIPESTATUS[0]}"
  set -e
  [ "$cargo_zk_rc" -eq 0 ] || cargo_rc="$cargo_zk_rc"
fi

# Sum the "test result: ok. N passed; M failed; K ignored" lines of all test binaries.
read -r cargo_passed cargo_failed cargo_ignored < <(
  awk '/^test result:/ {
         for (i = 1; i <= NF; i++) {
           if ($(i+1) ~ /^passed/)  p += $i
           if ($(i+1) ~ /^failed/)  f += $i
           if ($(i+1) ~ /^ignored/) s += $i
         }
       }
       END { printf "%d %d %d\n", p, f, s }' "$LOGDIR/cargo-test.log")

# ---------------------------------------------------------------- Python
step "python virtualenv ($VENV)"
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$VENV"
  if ! "$PYTHON" -m venv "$VENV"; then
    # Debian's system python3 ships venv separately; install it only if needed.
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
      echo "python3 -m venv failed; installing python3-venv"
      rm -rf "$VENV"
      apt-get update -qq && apt-get install -y -qq python3-venv
      "$PYTHON" -m venv "$VENV"
    else
      echo "error: '$PYTHON -m venv' failed and python3-venv cannot be installed" >&2
      exit 1
    fi
  fi
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
"$VENV/bin/python" -c 'from importlib.metadata import version as v; print("kazoo", v("kazoo"), "| pytest", v("pytest"), "| pytest-timeout", v("pytest-timeout"))'

step "pytest tests/python (target=${CORRAL_TEST_TARGET:-corral}, CORRAL_BIN=$CORRAL_BIN)"
set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python "$@" 2>&1 | tee "$LOGDIR/pytest.log"
py_rc="${PIPESTATUS[0]}"
set -e

if [ "${CORRAL_TEST_TARGET:-corral}" = corral ]; then
  step "pytest tests/python against 3-member ensembles (CORRAL_TEST_ENSEMBLE=3)"
  set +e
  CORRAL_TEST_ENSEMBLE=3 "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python "$@" 2>&1 \
    | tee "$LOGDIR/pytest-ensemble.log"
  py_ens_rc="${PIPESTATUS[0]}"
  set -e
  [ "$py_ens_rc" -eq 0 ] || py_rc="$py_ens_rc"
fi

# Sum the final "N passed, M failed, ..." lines of the pytest runs.
py_passed=0; py_failed=0; py_errors=0; py_skipped=0; py_xfailed=0
for log in "$LOGDIR"/pytest*.log; do
  py_last="$(grep -E '^(=+ )?[0-9]+ (passed|failed|error|skipped|deselected)|no tests ran' "$log" | tail -n 1 || true)"
  count() { n="$(grep -oE "[0-9]+ $1" <<<"$py_last" | grep -oE '^[0-9]+' | head -n 1 || true)"; echo "${n:-0}"; }
  py_passed=$((py_passed + $(count passed)))
  py_failed=$((py_failed + $(count failed)))
  py_errors=$((py_errors + $(count error)))
  py_skipped=$((py_skipped + $(count skipped)))
  py_xfailed=$((py_xfailed + $(count xfailed)))
done

# ---------------------------------------------------------------- summary
status=0
[ "$cargo_rc" -eq 0 ] || status=1
[ "$py_rc" -eq 0 ] || status=1          # includes exit 5: no tests collected
[ "$py_passed" -gt 0 ] || status=1

total_passed=$((cargo_passed + py_passed))
total_failed=$((cargo_failed + py_failed + py_errors))
if [ "$status" -ne 0 ] && [ "$total_failed" -eq 0 ]; then
  total_failed=1   # a failure with no counted test (crash, exit 5, ...) still counts as one
fi

step "summary"
echo "cargo test: ${cargo_passed} passed, ${cargo_failed} failed, ${cargo_ignored} ignored (exit ${cargo_rc})"
echo "pytest:     ${py_passed} passed, $((py_failed + py_errors)) failed, ${py_skipped} skipped, ${py_xfailed} xfailed (exit ${py_rc})"
if [ "$status" -eq 0 ]; then echo "RESULT: OK"; else echo "RESULT: FAILED"; fi
echo "total: ${total_passed} passed, ${total_failed} failed"
exit "$status"
