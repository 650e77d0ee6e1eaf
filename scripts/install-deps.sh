#!/usr/bin/env bash
# Installs the Debian 12 packages raft-nginx needs, only those that are missing. Idempotent.
# Usage: scripts/install-deps.sh [build|demo|bench]...   (build is always included)
set -euo pipefail

packages=(cmake make g++ clang-format libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev
  libboost-dev librocksdb-dev nlohmann-json3-dev libspdlog-dev
  libfmt-dev libssl-dev zlib1g-dev python3 python3-yaml nginx curl clang libclang-rt-14-dev pkgconf
  prometheus dpkg-dev help2man libjs-chart.js chromium chromium-driver)
for extra in "$@"; do
  case "$extra" in
    build) ;;
    demo) ;;  # the tests need nginx and curl as well: they are in the base list
    bench) packages+=(etcd-server etcd-client wrk gnuplot-nox) ;;
    *) echo "install-deps: unknown group '$extra' (build, demo, bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The tests need prometheus's promtool only: on a host that runs systemd, the package would
# also leave a Prometheus server running.
if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
  $sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
