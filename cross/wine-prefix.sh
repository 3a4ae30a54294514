#!/usr/bin/env bash
# Prepares the project-local wine prefix (target/wine-prefix unless WINEPREFIX is set): the
# first call initializes it, and the bcryptprimitives.dll stub is (re)built from
# cross/winstub/bcryptprimitives.c whenever the source is newer than the installed DLL.
# Prints nothing when there is nothing to do. Source it or run it; exports WINEPREFIX/WINEDEBUG.
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export WINEPREFIX="${WINEPREFIX:-$_root/target/wine-prefix}"
export WINEDEBUG="${WINEDEBUG:--all}"
_src="$_root/cross/winstub/bcryptprimitives.c"
_dll="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  echo "wine-prefix: initializing $WINEPREFIX (once, ~10-20 s)" >&2
  mkdir -p "$WINEPREFIX"
  # wineboot creates the prefix; stderr carries harmless "wine32 is missing" chatter.
  wineboot --init >/dev/null 2>&1 || wine wineboot --init >/dev/null 2>&1 || true
  wineserver -w 2>/dev/null || true
fi
if [ ! -f "$_dll" ] || [ "$_src" -nt "$_dll" ]; then
  echo "wine-prefix: building the bcryptprimitives.dll stub" >&2
  mkdir -p "$(dirname "$_dll")"
  x86_64-w64-mingw32-gcc -O2 -shared -o "$_dll.tmp" "$_src" -ladvapi32
  mv "$_dll.tmp" "$_dll"
fi
