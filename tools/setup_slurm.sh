#!/usr/bin/env bash
# Installs Slurm (slurmctld, slurmd, the client commands) and munge from Debian, for
# tools/slurm/lpe-sbatch and its tests (tests/python/test_slurm.py starts a private single-node
# cluster). Idempotent: nothing to do when installed; about 10 s on a fresh machine. Called by
# tools/setup.sh. Starts no daemon (the packages' services are not started in a container).
set -eu
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in slurm-wlm munge; do have_pkg "$p" || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "setup: installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
