#!/usr/bin/env bash
# Makes the image deploy/docker/Dockerfile starts FROM, debian:bookworm-slim, out of the Debian
# archive with debootstrap, for a machine whose Docker daemon cannot pull from a registry. Does
# nothing if the image is there already. Needs root (debootstrap) and a running Docker daemon.
set -euo pipefail
image=debian:bookworm-slim
if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
command -v debootstrap >/dev/null || { echo "make-base-image: debootstrap not found (apt-get install debootstrap)" >&2; exit 2; }
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "make-base-image: debootstrap bookworm from $mirror (about a minute)"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
echo "make-base-image: $image imported"
