#!/usr/bin/env bash
# `cpack` in the build directory makes a Debian package holding the headers, the CMake package,
# the pkg-config file and the sparseloom CLI: deb_test.sh BUILD_DIR
set -euo pipefail
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Stage with `cmake --install` (builds nothing; a plain `cpack` would first build every target
# through "preinstall"), then package the staged tree with the project's CPack settings.
DESTDIR="$tmp/stage" cmake --install "$build" --prefix /usr > "$tmp/install.log"
cpack --config "$build/CPackConfig.cmake" -G DEB -B "$tmp" -D CPACK_INSTALL_CMAKE_PROJECTS= \
  -D "CPACK_INSTALLED_DIRECTORIES=$tmp/stage;." > "$tmp/cpack.log" 2>&1 || { cat "$tmp/cpack.log"; exit 1; }
deb=$(ls "$tmp"/sparseloom_*.deb)
dpkg-deb -f "$deb" Package Version Depends > "$tmp/fields"
grep -q "^Package: sparseloom" "$tmp/fields" || { cat "$tmp/fields"; exit 1; }
dpkg-deb -c "$deb" > "$tmp/files"
for f in ./usr/include/sparseloom/core/json.hpp cmake/sparseloom/sparseloomConfig.cmake pkgconfig/sparseloom.pc ./usr/bin/sparseloom \
         share/sparseloom/report/report.py; do
  grep -q "$f" "$tmp/files" || { echo "FAIL: $f not in $(basename "$deb")"; exit 1; }
done
echo "ok: $(basename "$deb") ($(stat -c %s "$deb") bytes)"
