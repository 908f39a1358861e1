#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian/Ubuntu machine, installing the real peers the tests
# talk to when they are missing:
#   - rsyslog (+ rsyslog-gnutls for TLS)  : the syslog sink's receiver
#   - kcat                                : librdkafka's CLI, for the Kafka benchmark baseline
#   - tansu (cargo install, cached in CARGO_HOME): a real Kafka-protocol broker
#   - prometheus (for promtool) and a venv with detections/requirements.txt (pySigma, DuckDB):
#     the SIEM content tests (tests/siem_*.rs)
#   - stunnel4                            : TLS in front of tansu for the Kafka TLS/SASL tests
#   - systemd-analyze, dpkg-deb           : the unit and package checks
# Every peer is started by the tests themselves on 127.0.0.1 and stopped afterwards.
# Set SKIP_INSTALL=1 to only run the tests.
# REQUIRE_PEERS=1 (set by .ci/run): a failed install fails this script, and a test whose peer is
# missing fails instead of skipping (tests/common/peers.rs). Without it both only warn.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }
# A failed install: fatal under REQUIRE_PEERS=1, else the tests that need the peer skip.
install_failed() {
  if [ "${REQUIRE_PEERS:-0}" = 1 ]; then
    log "FAILED: could not install $1 (REQUIRE_PEERS=1)"
    exit 1
  fi
  log "could not install $1; the tests that need it will say so and skip"
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  missing=()
  command -v rsyslogd >/dev/null || missing+=(rsyslog)
  [ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || missing+=(rsyslog-gnutls)
  command -v kcat >/dev/null || missing+=(kcat)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v stunnel4 >/dev/null || missing+=(stunnel4)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  command -v dpkg-deb >/dev/null || missing+=(dpkg)
  # Build dependencies of the bundled librdkafka (OpenSSL for TLS/SASL-SCRAM, zlib, a C toolchain).
  dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
  dpkg -s pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  dpkg -s zlib1g-dev >/dev/null 2>&1 || missing+=(zlib1g-dev)
  command -v cc >/dev/null || missing+=(build-essential)
  # SIEM content tests: promtool (alert rule unit tests) and a Python venv for pySigma.
  command -v promtool >/dev/null || missing+=(prometheus)
  python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || install_failed "${missing[*]}"
  fi
  CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
  if ! command -v tansu >/dev/null && [ ! -x "$CARGO_BIN/tansu" ]; then
    log "installing the tansu Kafka broker (cold build takes ~18 minutes; cached in CARGO_HOME afterwards)"
    cargo install tansu --locked --features dynostore --version 0.6.0 \
      || install_failed tansu
  fi
  export PATH="$CARGO_BIN:$PATH"
  # pySigma and its backends, pinned, in a venv cached until detections/requirements.txt changes
  # (tests/common/siem.rs looks here; SIGMA_VENV overrides both).
  SIGMA_VENV="${SIGMA_VENV:-$HOME/.cache/codacy-audit-forwarder/sigma-venv}"
  if ! cmp -s detections/requirements.txt "$SIGMA_VENV/requirements.txt"; then
    log "installing pySigma into $SIGMA_VENV"
    if [ -e "$SIGMA_VENV/pyvenv.cfg" ]; then rm -rf "$SIGMA_VENV"; fi   # only ever delete a venv
    { python3 -m venv "$SIGMA_VENV" && "$SIGMA_VENV/bin/pip" install -q -r detections/requirements.txt \
        && cp detections/requirements.txt "$SIGMA_VENV/requirements.txt"; } \
      || install_failed "pySigma (detections/requirements.txt)"
  fi
  export SIGMA_VENV
fi

log "cargo test"
cargo test --all-targets "$@"
