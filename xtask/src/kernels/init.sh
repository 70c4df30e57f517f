#!/bin/busybox sh
# PID 1 of the kernel-matrix guest (`cargo xtask kernels`), from the
# initramfs xtask builds: loads the virtio/virtiofs/overlay modules of this
# kernel, mounts the host's root filesystem (virtiofs, read-only) as the
# guest's root, with tmpfs on /tmp and /run and a tmpfs overlay on /var and
# /root, so the guest writes where programs expect to without touching the
# host; mounts the results share and runs guest.sh (from it) in that root.
# Then powers off; the host reads the results share.
#
# Not one overlay over all of `/`: an overlay whose layers are on different
# filesystems reports its own device for every file, while /proc/PID/maps
# names the device of the layer's file, and the agent matches mapped
# libraries to files by device and inode.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
log() { echo "tlsdoctor-vm: $*"; }
for m in $(cat /modules/order); do
    insmod "/modules/$m" || log "insmod $m failed"
done
fail() { log "$*"; poweroff -f; }
mount -t virtiofs -o ro hostroot /newroot || fail "mounting the host root (virtiofs) failed"
mount -t tmpfs -o mode=0755 tmpfs /upper || fail "tmpfs failed"
for dir in var root; do
    mkdir -p /upper/$dir/data /upper/$dir/work
    mount -t overlay overlay \
        -o lowerdir=/newroot/$dir,upperdir=/upper/$dir/data,workdir=/upper/$dir/work \
        /newroot/$dir || fail "overlay on /$dir failed"
done
R=/newroot
mount -t tmpfs tmpfs $R/mnt
mkdir -p $R/mnt/tlsdoctor-results
mount -t virtiofs results $R/mnt/tlsdoctor-results || fail "mounting the results share failed"
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs tmpfs $R/run
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
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
