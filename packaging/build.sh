#!/bin/sh
# Builds the release binary once, then the .deb (cargo-deb) and .rpm (cargo-generate-rpm), and
# the Splunk add-on's .tgz (packaging/splunk/package.sh).
# Installs the two cargo subcommands into CARGO_HOME when they are missing.
# Usage: packaging/build.sh            (respects CARGO_TARGET_DIR; packages land in $TARGET/debian
#                                       and $TARGET/generate-rpm, the add-on in $TARGET/splunk)
set -eu

cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$TARGET_DIR/release/codacy-audit-forwarder"

need() { # subcommand, crate, version requirement
    if ! cargo "$1" --version >/dev/null 2>&1; then
        echo "==> installing $2 $3 into ${CARGO_HOME:-$HOME/.cargo} (a few minutes, once)"
        nice cargo install --locked "$2" --version "$3"
    fi
}
need deb cargo-deb '^3.8'
need generate-rpm cargo-generate-rpm '^0.21'

for f in README.md config/example.toml systemd/codacy-audit-forwarder.service systemd/codacy-audit-forwarder@.service systemd/codacy-audit-forwarder.sysusers; do
    [ -f "$f" ] || { echo "missing $f: the packages ship it; create it first" >&2; exit 1; }
done

echo "==> cargo build --release"
cargo build --release --locked

# The profile decides stripping ([profile.release] strip = "debuginfo"), not the packagers.
echo "==> cargo deb"
DEB=$(cargo deb --no-build --no-strip --no-dbgsym --quiet | tail -n 1)
echo "==> cargo generate-rpm"
mkdir -p "$TARGET_DIR/generate-rpm"
cargo generate-rpm --target-dir "$TARGET_DIR" --output "$TARGET_DIR/generate-rpm/"
RPM=$(ls -t "$TARGET_DIR"/generate-rpm/codacy-audit-forwarder-*.rpm | head -n 1)

echo "==> Splunk add-on"
TA=$(packaging/splunk/package.sh)

size() { stat -c %s "$1" | awk '{ printf "%.1f MiB (%d bytes)", $1 / 1048576, $1 }'; }
echo
echo "binary: $BIN  $(size "$BIN")"
echo "deb:    $DEB  $(size "$DEB")"
echo "rpm:    $RPM  $(size "$RPM")"
echo "splunk: $TA  $(size "$TA")"
