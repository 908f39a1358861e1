#!/bin/sh
# Packs the Splunk add-on as TARGET/splunk/TA-codacy-audit-<version>.tgz (top folder = app name,
# as Splunk expects), with the version from Cargo.toml. Called by packaging/build.sh.
# Usage: packaging/splunk/package.sh   (respects CARGO_TARGET_DIR)
set -eu
cd "$(dirname "$0")/../.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
APP=TA-codacy-audit
grep -q "^version = $VERSION\$" packaging/splunk/$APP/default/app.conf || {
    echo "packaging/splunk/$APP/default/app.conf: [launcher] version must be $VERSION (Cargo.toml)" >&2
    exit 1
}
mkdir -p "$TARGET_DIR/splunk"
OUT="$TARGET_DIR/splunk/$APP-$VERSION.tgz"
# Fixed owner and mode: the archive does not depend on who built it.
tar -C packaging/splunk --owner=0 --group=0 --mode='u+rwX,go+rX,go-w' -czf "$OUT" "$APP"
echo "$OUT"
