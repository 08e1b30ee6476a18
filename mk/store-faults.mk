# tests/integration/test_store_faults.py puts the store on a tmpfs or on an ext4 image
# (mkfs.ext4, chattr) mounted in a private mount namespace (unshare, nsenter, mount, losetup).
DEBS_TEST += e2fsprogs util-linux mount
