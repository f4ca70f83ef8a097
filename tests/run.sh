#!/usr/bin/env bash
# Run every test on a fresh Debian machine, as root: installs what the tests need,
# builds, runs unit, namespace, interop tests and the fuzz smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
for p in keepalived:keepalived tcpdump:tcpdump nft:nftables ping:iputils-ping arping:arping ip:iproute2 \
         faketime:faketime stress-ng:stress-ng openssl:openssl nginx:nginx curl:curl prometheus:prometheus \
         rsyslogd:rsyslog prlimit:util-linux systemd-analyze:systemd dpkg-deb:dpkg strip:binutils \
         objdump:binutils man:man-db; do
  cmd=${p%%:*}; pkg=${p#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}"
fi
# keepalived and nginx must not run as system services next to the tests.
systemctl disable --now keepalived nginx prometheus >/dev/null 2>&1 || true

cargo build --workspace --bins --tests
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast -- --test-threads=1
fi
if [ "${SKIP_FUZZ:-0}" != 1 ] && [ -x fuzz/run.sh ]; then
  FUZZ_SECONDS="${FUZZ_SECONDS:-20}" fuzz/run.sh
fi
