#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the `slurm` tests (tests/test_slurm_cluster.py) and for trying
# `gain-bench run SUITE --launcher slurm` without a cluster: munge, slurmctld and slurmd from Debian's packages,
# run as root, with nothing that needs systemd or cgroups (proctrack/linuxproc, task/none) and no accounting
# database (sacct answers "accounting storage is disabled", as on many small clusters: gain-bench then reads job
# states from squeue and its own result files).
#
#   sudo bash scripts/slurm_cluster.sh install   # Debian's slurm-wlm and munge (apt-get)
#   sudo bash scripts/slurm_cluster.sh start     # writes /etc/slurm/slurm.conf, starts the daemons, waits for the node
#   bash scripts/slurm_cluster.sh status         # sinfo and squeue
#   sudo bash scripts/slurm_cluster.sh stop
#
# Two partitions over one node holding this machine's CPUs and its memory less 1 GB: `debug` (the default) and
# `small` (at most one CPU per node, a limit that only the scheduler enforces).
# Logs go to $STATE/log (STATE: $GAIN_BENCH_SLURM_STATE, default /var/tmp/gain-bench-slurm).
set -euo pipefail

STATE="${GAIN_BENCH_SLURM_STATE:-/var/tmp/gain-bench-slurm}"
CONF=/etc/slurm/slurm.conf
NODE="$(hostname -s)"

need_root() {
    if [ "$(id -u)" != 0 ]; then echo "slurm_cluster.sh $1: run as root (the daemons run as root here)" >&2; exit 1; fi
}

install() {
    need_root install
    if command -v slurmctld > /dev/null && command -v slurmd > /dev/null && command -v munged > /dev/null; then
        return
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge > /dev/null
}

write_conf() {
    local cpus mem_mb
    cpus="$(nproc)"
    mem_mb="$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)"
    mkdir -p /etc/slurm "$STATE/log" "$STATE/ctld" "$STATE/d"
    cat > "$CONF" <<CONF
# Written by gain-bench's scripts/slurm_cluster.sh: a one-node cluster for tests.
ClusterName=gainbench
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=300
# scancel: SIGTERM, then SIGKILL after this many seconds (submitit's jobs let SIGTERM pass; clusters use 30)
KillWait=5
MaxArraySize=10001
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
# For the tests of a limit only the scheduler knows: sinfo shows the node's CPUs, SLURM holds a job asking for more
# than one CPU here with reason PartitionConfig.
PartitionName=small Nodes=$NODE MaxCPUsPerNode=1 MaxTime=INFINITE State=UP
CONF
}

start_munge() {
    if munge -n 2> /dev/null | unmunge > /dev/null 2>&1; then return; fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2> /dev/null; }
    chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2> /dev/null || true
    chmod 0400 /etc/munge/munge.key
    if id munge > /dev/null 2>&1; then
        su -s /bin/sh munge -c "munged" || munged --force
    else
        munged --force
    fi
}

start() {
    need_root start
    install
    stop_daemons
    write_conf
    start_munge
    slurmctld -i
    slurmd
    for _ in $(seq 60); do
        if sinfo -h -N -o '%T' 2> /dev/null | grep -q -E '^(idle|mixed|allocated)'; then
            sinfo
            return
        fi
        sleep 1
    done
    echo "slurm_cluster.sh: the node did not come up within 60 s; logs in $STATE/log" >&2
    sinfo -N -l >&2 || true
    tail -20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
    exit 1
}

stop_daemons() {
    local name
    for name in slurmd slurmctld; do
        if [ -s "$STATE/$name.pid" ]; then kill "$(cat "$STATE/$name.pid")" 2> /dev/null || true; fi
        pkill -x "$name" 2> /dev/null || true
    done
    for _ in $(seq 20); do
        pgrep -x slurmd > /dev/null || pgrep -x slurmctld > /dev/null || return 0
        sleep 0.5
    done
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) need_root stop; stop_daemons ;;
    status) sinfo && squeue ;;
    *) echo "usage: $0 install|start|status|stop" >&2; exit 2 ;;
esac
