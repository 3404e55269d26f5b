#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for the test suite and for trying `research run --on slurm`:
#   scripts/setup/slurm.sh start DIR [CTLD_PORT]   installs munge + Slurm from Debian when missing, starts munged,
#                                                 slurmctld and slurmd with their state, logs and config in DIR;
#                                                 prints the SLURM_CONF to export
#   scripts/setup/slurm.sh stop DIR               stops the daemons started in DIR
# Runs as root (slurmd must); no systemd needed. Idempotent: start on a running DIR does nothing.
set -euo pipefail
cmd=${1:?usage: slurm.sh start|stop DIR [PORT]}
dir=${2:?usage: slurm.sh start|stop DIR [PORT]}
port=${3:-16817}

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

stop() {
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile" 2>/dev/null || true)
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
      fi
      rm -f "$pidfile"
    fi
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "slurm.sh: unknown command $cmd" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm.sh: installing munge and Slurm from Debian" >&2
  exec 9>/tmp/research-apt.lock; flock -w 1800 9   # one apt-get at a time: test lists run side by side
  export DEBIAN_FRONTEND=noninteractive
  sudo_ apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  sudo_ apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >&2
  exec 9>&-   # release the lock: the daemons started below must not inherit it
fi
PATH=$PATH:/usr/sbin

mkdir -p "$dir"/munge "$dir"/state "$dir"/spool "$dir"/log
dir=$(cd "$dir" && pwd)
export SLURM_CONF="$dir/slurm.conf"
if [ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then echo "$SLURM_CONF"; exit 0; fi

chmod 700 "$dir/munge"
[ -f "$dir/munge/munge.key" ] || { head -c 1024 /dev/urandom > "$dir/munge/munge.key"; chmod 600 "$dir/munge/munge.key"; }
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"

host=$(hostname -s)
cat > "$SLURM_CONF" <<CONF
ClusterName=research
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$port
SlurmdPort=$((port + 1))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
SchedulerType=sched/backfill
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 100); do
  if sinfo -h -o %T 2>/dev/null | grep -qx idle; then echo "$SLURM_CONF"; exit 0; fi
  sleep 0.2
done
echo "slurm.sh: the node did not become idle; logs in $dir/log" >&2
sinfo >&2 || true
stop
exit 1
