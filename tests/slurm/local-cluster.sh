#!/usr/bin/env bash
# A one-node Slurm cluster on localhost from Debian's packages (slurmctld, slurmd, munge), for
# the tests in this folder. Usage (as root):
#   local-cluster.sh start DIR   # fresh state in DIR; prints "ready" once the node is idle
#   local-cluster.sh stop DIR    # stops the daemons started by `start DIR`
# Nothing outside DIR is changed except /run/munge and munge's key (created only if missing).
# Slurm reads its config from SLURM_CONF=DIR/slurm.conf; callers export it for sbatch etc.
set -euo pipefail

cmd=${1:?usage: local-cluster.sh start|stop DIR}
dir=${2:?usage: local-cluster.sh start|stop DIR}
host=$(hostname -s)

stop_pid() {  # waits until the process is gone or a zombie, at most ~5 s
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    local stat
    stat=$(ps -o stat= -p "$pid" 2>/dev/null || true)
    [[ -z $stat || $stat == Z* ]] && return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

if [[ $cmd == stop ]]; then
  for d in slurmd slurmctld munged; do
    [[ -f $dir/$d.pid ]] && stop_pid "$(cat "$dir/$d.pid")"
    rm -f "$dir/$d.pid"
  done
  exit 0
fi
[[ $cmd == start ]] || { echo "unknown command $cmd" >&2; exit 2; }
# The same rule as tests/common/require.hpp's `slurm` probe: exit 77 (skip) when something is
# missing, 1 when PEPITA_REQUIRE names slurm.
source "${BASH_SOURCE[0]%/*}/../common/require.sh"
provide="root and scripts/install-deps (slurmctld slurmd slurm-client munge)"
[[ $EUID -eq 0 ]] || pepita_missing slurm "not running as root (daemons, munge)" "$provide"
for b in slurmctld slurmd munged sinfo; do
  command -v "$b" >/dev/null || pepita_missing slurm "$b is not installed" "$provide"
done

rm -rf "$dir"
mkdir -p "$dir"/{ctld,d,log}
chown slurm: "$dir/ctld"
chmod 755 "$dir"

# munge refuses to run as root; it runs as the munge user with its own key.
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  mungekey --create --keyfile /etc/munge/munge.key
  chown munge: /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid --force
  for _ in $(seq 50); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$dir/munged.pid"  # ours to stop; a munged found running is not
fi
munge -n | unmunge >/dev/null

# The node line comes from this machine (a node reporting less than configured is drained).
node=$(slurmd -C | head -1)
cat >"$dir/slurm.conf" <<EOF
ClusterName=pepita-test
SlurmctldHost=$host
SlurmUser=slurm
SlurmctldPort=$((6817 + RANDOM % 100 * 2))
SlurmdPort=$((7817 + RANDOM % 100 * 2))
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/d
SlurmctldPidFile=$dir/slurmctld.pid.daemon
SlurmdPidFile=$dir/slurmd.pid.daemon
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
EnforcePartLimits=ALL
KillWait=5
MinJobAge=300
$node
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$dir/slurm.conf

slurmctld -D >"$dir/log/slurmctld.out" 2>&1 &
echo $! >"$dir/slurmctld.pid"
slurmd -D >"$dir/log/slurmd.out" 2>&1 &
echo $! >"$dir/slurmd.pid"

for _ in $(seq 300); do
  state=$(sinfo -h -N -n "$host" -o %T 2>/dev/null || true)
  if [[ $state == idle ]]; then
    echo ready
    exit 0
  fi
  sleep 0.1
done
echo "local-cluster.sh: node $host not idle after 30 s (state '${state:-none}'); logs in $dir/log" >&2
tail -5 "$dir/log/"*.log >&2 || true
exit 1
