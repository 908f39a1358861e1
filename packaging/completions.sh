#!/bin/sh
# Regenerates the shell completions and the manual page the packages install, from the CLI's own
# definition (`completions <shell>`, `man`). tests/packaging.rs fails when they are stale.
# Usage: packaging/completions.sh [BINARY]     (default: cargo run --quiet --)
set -eu

cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
    BIN=$1
    run() { "$BIN" "$@"; }
else
    run() { cargo run --quiet -- "$@"; }
fi
NAME=codacy-audit-forwarder
run completions bash > packaging/completions/$NAME.bash
run completions zsh > packaging/completions/_$NAME
run completions fish > packaging/completions/$NAME.fish
rm -f packaging/man/*.1
run man --dir packaging/man
echo "regenerated packaging/completions/ and packaging/man/"
