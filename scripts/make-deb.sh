#!/usr/bin/env bash
# Builds the Debian package of raft-nginx from a built binary: the binary, a systemd unit
# (Type=notify), a default config, and a man page generated from --help (help2man).
# Usage: scripts/make-deb.sh BINARY OUT_DIR      (make deb runs it on the Release build)
# Prints the path of the .deb it wrote.
set -euo pipefail
umask 022  # the files' modes in the package must not depend on the builder's umask

binary=${1:?usage: make-deb.sh BINARY OUT_DIR}
out=${2:?usage: make-deb.sh BINARY OUT_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
src="$here/deploy/debian"
for tool in dpkg-deb dpkg-shlibdeps help2man; do
  command -v "$tool" >/dev/null || { echo "make-deb: $tool not found (scripts/install-deps.sh installs it)" >&2; exit 2; }
done
version=$("$binary" --version | awk 'NR == 1 { print $2 }')
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "make-deb: no version from $binary --version" >&2; exit 2; }
arch=$(dpkg --print-architecture)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
install -D -m 0755 -s "$binary" "$root/usr/bin/raft-nginx"
install -D -m 0644 "$src/raft-nginx.service" "$root/lib/systemd/system/raft-nginx.service"
install -D -m 0644 "$src/config.json" "$root/etc/raft-nginx/config.json"
install -D -m 0644 "$src/default" "$root/etc/default/raft-nginx"
install -d "$root/usr/share/man/man1" "$root/usr/share/doc/raft-nginx"
help2man --no-info --name "replicated state for a fleet of nginx gateways" \
  --version-string "$version" "$root/usr/bin/raft-nginx" > "$root/usr/share/man/man1/raft-nginx.1"
gzip -9n "$root/usr/share/man/man1/raft-nginx.1"
install -m 0644 "$here/README.md" "$root/usr/share/doc/raft-nginx/README.md"
gzip -9n "$root/usr/share/doc/raft-nginx/README.md"
install -m 0644 "$src/copyright" "$root/usr/share/doc/raft-nginx/copyright"

# The shared libraries the binary links, as Debian names their packages.
mkdir -p "$work/shlibs/debian"
printf 'Source: raft-nginx\n\nPackage: raft-nginx\nArchitecture: any\n' > "$work/shlibs/debian/control"
depends=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$root/usr/bin/raft-nginx" |
  sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "make-deb: dpkg-shlibdeps found no dependencies" >&2; exit 2; }

install -d "$root/DEBIAN"
install -m 0755 "$src/postinst" "$src/prerm" "$src/postrm" "$root/DEBIAN/"
printf '/etc/raft-nginx/config.json\n/etc/default/raft-nginx\n' > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/control" <<CONTROL
Package: raft-nginx
Version: $version
Architecture: $arch
Maintainer: raft-nginx developers <raft-nginx@localhost>
Depends: $depends, adduser, procps
Recommends: nginx
Section: net
Priority: optional
Installed-Size: $(du -sk "$root" | cut -f1)
Description: replicated state for a fleet of nginx gateways
 raft-nginx runs beside each nginx of a group of gateways and replicates their state with
 Raft: a key-value store with revisions, listing, compare-and-set, TTL and watches, and the
 gateways' own nginx configuration. Reads are served by every member; writes reach the
 leader through any of them.
CONTROL

mkdir -p "$out"
deb="$out/raft-nginx_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
