#!/usr/bin/env bash
# Installs the Debian packages Seal needs to build and test, when missing:
# libclang (bindgen for RocksDB), softhsm2 (PKCS#11 tests), wrk (benchmarks),
# mariadb-server and postgresql (the import-notary tests start their own servers),
# openssl and python3-venv (node/tests/deploy.rs: deploy/certs.sh, and a virtualenv
# for PyPI's kubernetes-validate),
# prometheus for its promtool (the deploy/monitoring rules' tests), without its
# recommends and without starting its daemon.
set -euo pipefail
need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
dpkg -s softhsm2 >/dev/null 2>&1 || need+=(softhsm2)
dpkg -s wrk >/dev/null 2>&1 || need+=(wrk)
dpkg -s mariadb-server >/dev/null 2>&1 || need+=(mariadb-server)
dpkg -s postgresql >/dev/null 2>&1 || need+=(postgresql)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if ! command -v python3 >/dev/null 2>&1; then
  need+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}"
fi
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing Debian package: prometheus (for promtool; its service is not started)"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  # policy-rc.d exit 101 tells invoke-rc.d and deb-systemd-invoke not to start the service.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo_cmd[@]}" chmod 755 /usr/sbin/policy-rc.d
    trap '"${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends prometheus
fi
