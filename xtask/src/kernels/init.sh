#!/bin/busybox sh
# PID 1 of the kernel-matrix guest (`cargo xtask kernels`), from the
# initramfs xtask builds: loads the virtio/virtiofs/overlay modules of this
# kernel, mounts the host's root filesystem (virtiofs, read-only) under a
# tmpfs overlay so the guest can write anywhere without touching the host,
# mounts the results share, and runs guest.sh (from the results share) in
# that root. Then powers off; the host reads the results share.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
log() { echo "tlsdoctor-vm: $*"; }
for m in $(cat /modules/order); do
    insmod "/modules/$m" || log "insmod $m failed"
done
fail() { log "$*"; poweroff -f; }
mount -t virtiofs -o ro hostroot /lower || fail "mounting the host root (virtiofs) failed"
mount -t tmpfs -o mode=0755 tmpfs /upper || fail "tmpfs failed"
mkdir -p /upper/data /upper/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work /newroot \
    || fail "overlay over the host root failed"
R=/newroot
mkdir -p $R/mnt/tlsdoctor-results
mount -t virtiofs results $R/mnt/tlsdoctor-results || fail "mounting the results share failed"
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs tmpfs $R/run
mount -t tmpfs tmpfs $R/tmp
mount -t tracefs tracefs $R/sys/kernel/tracing || log "tracefs not mounted"
mount -t debugfs debugfs $R/sys/kernel/debug || log "debugfs not mounted"
mount -t bpf bpf $R/sys/fs/bpf || log "bpffs not mounted"
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || log "cgroup2 not mounted"
ip link set lo up
hostname tlsdoctor-vm
log "running guest.sh on $(uname -r)"
chroot $R /bin/bash /mnt/tlsdoctor-results/guest.sh
echo $? > $R/mnt/tlsdoctor-results/guest.rc
sync
umount $R/mnt/tlsdoctor-results
log "done"
poweroff -f
