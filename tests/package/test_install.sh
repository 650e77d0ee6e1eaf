#!/usr/bin/env bash
# raft-nginx used as a user would use it, from outside this tree: install it into a temporary
# prefix, build examples/audit_log against the installed package (CMake's find_package, then
# pkg-config's flags), and run the audit-log cluster test (tests/daemon/test_audit_log.py) with
# the program built there.
# Usage: test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

echo "== cmake --install into $prefix"
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
for f in include/raftnginx/daemon.h include/raftnginx/version.h lib/cmake/raftnginx/raftnginxConfig.cmake \
    lib/pkgconfig/raftnginx.pc bin/raft-nginx; do
  [ -e "$prefix/$f" ] || { echo "not installed: $f"; exit 1; }
done
# Only the public API is installed: no header of the tree's own (src/).
if find "$prefix/include" -name '*.h' | grep -v '/include/raftnginx/'; then
  echo "installed headers outside include/raftnginx"; exit 1
fi

echo "== the example, out of tree, with find_package(raftnginx)"
# A copy, so that nothing of the tree is in reach of the build.
cp -r "$source_dir/examples/audit_log" "$work/src"
cmake -S "$work/src" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  >/dev/null
cmake --build "$work/build" -j 2 >/dev/null

echo "== the example again, with pkg-config's flags"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
g++ -o "$work/audit-log-daemon-pc" -DAUDIT_LOG_VERSION='"1.0.0"' -I"$work/src" \
  "$work/src/main.cc" "$work/src/audit_log.cc" $(pkg-config --cflags --libs raftnginx)
"$work/audit-log-daemon-pc" --version

echo "== a 3-node cluster of the out-of-tree audit-log-daemon behind nginx"
cd "$source_dir/tests/daemon"
AUDIT_LOG_BIN="$work/build/audit-log-daemon" RAFTNGINX_BIN="$prefix/bin/raft-nginx" \
  PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -v test_audit_log
