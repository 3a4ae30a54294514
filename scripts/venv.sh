#!/usr/bin/env bash
# Creates a Python venv and installs a requirements file into it, again only when the file changes
# (its sha256 is stamped in the venv).
#
#   bash scripts/venv.sh VENV_DIR REQUIREMENTS_FILE [LOG_PREFIX]
#
# Exits 2 with a message on stderr when python3, venv creation or pip fails.
set -uo pipefail

[[ $# -ge 2 ]] || { echo "usage: $0 VENV_DIR REQUIREMENTS_FILE [LOG_PREFIX]" >&2; exit 2; }
VENV="$1"
REQS="$2"
PREFIX="${3:-venv}"
die() { echo "$PREFIX: $*" >&2; exit 2; }

command -v python3 >/dev/null || die "python3 not found (Debian: python3 python3-venv)"
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQS" | cut -d' ' -f1)" || die "cannot read $REQS"
if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "$PREFIX: setting up $VENV"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV" || die "python3 -m venv failed"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" || die "pip install failed"
  echo "$want" > "$stamp"
fi
