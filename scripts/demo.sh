#!/usr/bin/env bash
# First run: create a local repository, back up this project's src/ and docs/,
# list snapshots, restore, and compare. Uses ./demo unless COFFER_REPOSITORY is set.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${DEMO_DIR:-$PWD/demo}
export COFFER_REPOSITORY=${COFFER_REPOSITORY:-$DEMO/repo}
if [ -z "${COFFER_PASSWORD:-}${COFFER_PASSWORD_FILE:-}${COFFER_PASSWORD_COMMAND:-}" ]; then
  mkdir -p "$DEMO"
  [ -s "$DEMO/password" ] || { head -c 24 /dev/urandom | base64 > "$DEMO/password"; chmod 600 "$DEMO/password"; }
  export COFFER_PASSWORD_FILE=$DEMO/password
  echo "demo: password stored in $COFFER_PASSWORD_FILE (a real repository deserves a password you keep elsewhere)"
fi
coffer() { node bin/coffer.js "$@"; }
[ -e "$COFFER_REPOSITORY/config" ] || coffer init
coffer backup src docs README.md --tag demo
coffer snapshots
rm -rf "$DEMO/restore"
coffer restore latest --target "$DEMO/restore"
diff -r src "$DEMO/restore$PWD/src" && diff -r docs "$DEMO/restore$PWD/docs" && cmp README.md "$DEMO/restore$PWD/README.md"
echo "demo: restored files are identical to the originals"
