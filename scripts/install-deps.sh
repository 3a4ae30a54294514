#!/usr/bin/env bash
# Installs what `make test` and `make demo` need, idempotently: Debian packages (only the
# missing ones, so a warm machine does no network work), and the Rust components.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in mosquitto mosquitto-clients openssl iproute2 util-linux ca-certificates \
         cmake valgrind pkg-config gcc binutils make; do
  have_pkg "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The distribution starts mosquitto as a service on install; our tests start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl stop mosquitto >/dev/null 2>&1 || true; fi

if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
echo "install-deps: ok"

# ---------------------------------------------------------------------------------------------
# Cross-compilation packages (issue 6), called by cross/run.sh as
# `bash scripts/install-deps.sh cross`; the lines above run first either way.
# The cross gcc packages only *recommend* their libc, which --no-install-recommends would drop:
# without libc6-dev-*-cross every link fails with "cannot find crti.o", so they are listed.
# `wine` provides /usr/bin/wine; `wine64` the 64-bit loader it needs.
install_cross_deps() {
  local cneed=() p
  for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf \
           libc6-dev-armhf-cross gcc-mingw-w64-x86-64 qemu-user wine wine64 file; do
    have_pkg "$p" || cneed+=("$p")
  done
  if [ ${#cneed[@]} -gt 0 ]; then
    echo "install-deps: apt-get install ${cneed[*]}"
    local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      "${cneed[@]}" >/dev/null
  fi
  if command -v rustup >/dev/null 2>&1; then
    local t installed
    installed="$(rustup target list --installed 2>/dev/null)"
    for t in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf x86_64-pc-windows-gnu; do
      grep -qx "$t" <<<"$installed" || rustup target add "$t"
    done
  fi
  echo "install-deps: cross ok"
}
if [ "${1:-}" = "cross" ]; then install_cross_deps; fi
