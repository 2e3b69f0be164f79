#!/usr/bin/env bash
# Starts a one-machine Slurm cluster (munge, slurmctld, slurmd) for the tests: a partition "keel" on this host
# declaring 4 CPUs, so allocations of 4 tasks fit on a 2-core machine (oversubscribed), with PMIx for srun.
# Needs root and Debian's slurm-wlm and munge (scripts/setup.sh installs them). It writes /etc/slurm/slurm.conf
# only when there is none, or when an earlier run of this script wrote it: never run it on a real cluster.
# Usage: scripts/slurm_local.sh        (idempotent; exits non-zero, saying why, if Slurm does not come up)
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "slurm_local: needs root to start the Slurm daemons" >&2; exit 1; }
command -v slurmctld >/dev/null || { echo "slurm_local: slurm-wlm is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
host=$(hostname -s)
conf=/etc/slurm/slurm.conf
marker="# written by Keel's scripts/slurm_local.sh"
if [ -f "$conf" ] && ! grep -qF "$marker" "$conf"; then
    echo "slurm_local: $conf exists and was not written by this script; not touching a real Slurm" >&2
    exit 1
fi
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >"$conf" <<CONF
$marker
ClusterName=keel
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=keel Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
[ -s /etc/munge/munge.key ] || mungekey --create
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || slurmctld -c
pgrep -x slurmd >/dev/null || slurmd -c
for _ in $(seq 60); do
    [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && exit 0
    sleep 1
done
echo "slurm_local: the node did not become idle: $(sinfo -N -l 2>&1 | tail -1); see /var/log/slurm/" >&2
exit 1
