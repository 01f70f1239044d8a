#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, builds the consumer against it and runs it;
# then checks that asking for a component that was not built fails with a clear message.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
cmake -S "$src/tests/package" -B "$tmp/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" > "$tmp/cfg.log"
cmake --build "$tmp/consumer" > "$tmp/build.log"
"$tmp/consumer/consumer"
if cmake -S "$src/tests/package" -B "$tmp/consumer2" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
     -DSPARSELOOM_COMPONENTS="reference;warp_drive" > "$tmp/cfg2.log" 2>&1; then
  echo "FAIL: a missing component was accepted"; exit 1
fi
grep -q "component 'warp_drive' was not built" "$tmp/cfg2.log" || { cat "$tmp/cfg2.log"; exit 1; }
# pkg-config: the installed .pc points into this prefix, wherever the prefix is.
if command -v pkg-config > /dev/null; then
  inc=$(PKG_CONFIG_PATH="$tmp/prefix/share/pkgconfig" pkg-config --variable=includedir sparseloom)
  [ -f "$inc/sparseloom/core/tensor.hpp" ] || { echo "FAIL: pkg-config includedir '$inc' has no headers"; exit 1; }
fi
echo "package consumer OK; missing component rejected clearly; pkg-config resolves"
