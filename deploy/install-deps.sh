#!/usr/bin/env bash
# Installs what switchboard needs to build, run and test on Debian 12.
# Idempotent: packages already present are not fetched again.
#   deploy/install-deps.sh            to build, run and test
#   deploy/install-deps.sh --deploy   also what the container test needs (tests/run --deploy)
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config clang clang-format libclang-rt-14-dev
  libh2o-dev libwslay-dev libuv1-dev libcurl4-openssl-dev libpq-dev libsodium-dev libjansson-dev libssl-dev
  postgresql curl ca-certificates openssl python3 python3-aiosmtpd nodejs prometheus
  chromium # the console's test drives it (puppeteer-core)
)
command -v npm >/dev/null 2>&1 || packages+=(npm)
[ "${1:-}" = --deploy ] && packages+=(buildah debootstrap)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
