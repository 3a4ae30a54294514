#!/usr/bin/env bash
# cargo runner for x86_64-pc-windows-gnu (see .cargo/config.toml): runs a Windows test binary
# under wine in the project-local prefix, with the bcryptprimitives stub in place.
set -euo pipefail
_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=cross/wine-prefix.sh
source "$_here/wine-prefix.sh"
exec wine "$@"
