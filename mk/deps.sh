#!/bin/sh
# Install the Debian packages motcua needs, only those that are missing.
# clang and libclang-rt-dev (libFuzzer and the sanitizer runtimes, only recommended by
# clang) build the fuzz targets.
# Idempotent and quiet when everything is already there.
set -eu
PKGS="build-essential pkg-config clang libclang-rt-dev
libuv1-dev libzmq3-dev libczmq-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
libpq-dev postgresql postgresql-contrib libh2o-dev libssl-dev libjansson-dev
libcurl4-openssl-dev libsodium-dev libcmocka-dev
python3 python3-zmq python3-protobuf python3-psycopg2
nginx-light docker-compose curl procps iproute2 wrk"
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "deps: done"
