#!/usr/bin/env bash
# Build the TimescaleDB extension from ../shared/vendor/ and install it into Debian's PostgreSQL 15
# (no package registry we reach carries it). A no-op when it is installed; about 80 s on 2 cores.
set -euo pipefail

ext_dir=/usr/share/postgresql/15/extension
[ -f "$ext_dir/timescaledb.control" ] && exit 0

vendor=${HFT_SHARED_VENDOR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/vendor}
tarball=$vendor/timescaledb-2.28.3.tar.gz
echo "c80abd42995a317d9c046da6499a7a6e63c58e188124a2f20580f7c82fa4b801  $tarball" | sha256sum -c --quiet

need=()
command -v pg_config >/dev/null 2>&1 && [ -d /usr/include/postgresql/15/server ] || need+=(postgresql-server-dev-15)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v make >/dev/null 2>&1 || need+=(make)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar xzf "$tarball" -C "$work"
cd "$work/timescaledb-2.28.3"
./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
  -DGENERATE_DOWNGRADE_SCRIPT=OFF -DUSE_OPENSSL=OFF -DPG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
make -C build -j"$(nproc)" >/dev/null
make -C build install >/dev/null
echo "TimescaleDB 2.28.3 built and installed into PostgreSQL 15"
