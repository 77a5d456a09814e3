package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// loopDisk is a small ext4 file system in an image file, attached to a
// loop device and mounted at dir: a disk of one node's own. The device's
// block statistics count what the file system submits to it — file data,
// inodes and the journal — and nothing of other processes, which is the
// figure a flash card sees. /proc/PID/io write_bytes counts something
// else: page-cache folios when they are dirtied, at their size (a 4 KiB
// write into a clean 16 KiB folio counts 16 KiB on kernels whose ext4 uses
// large folios), and none of the file system's metadata.
type loopDisk struct {
	image string
	dev   string // "loop7"
	dir   string
}

// diskSize is the size of a node's disk image (sparse): room for a Raft
// log segment (4 MiB, preallocated), the state file and the snapshots.
const diskSize = 256 << 20

// newLoopDisk makes the image, an ext4 file system in it with a journal
// and the options mkfs.ext4 gives a device of ordinary size (-T default:
// 4 KiB blocks, 256-byte inodes; a file system this small would otherwise
// get 1 KiB blocks), and mounts it at dir with default options. The inode
// tables and the journal are written by mkfs, not lazily after the
// mount, so that the kernel's lazy init writes nothing to the device
// while it is measured.
func newLoopDisk(image, dir string) (*loopDisk, error) {
	f, err := os.Create(image)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(diskSize)
	f.Close()
	if err != nil {
		return nil, err
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-T", "default", "-E", "lazy_itable_init=0,lazy_journal_init=0", image).CombinedOutput(); err != nil {
		os.Remove(image)
		return nil, fmt.Errorf("mkfs.ext4 %s: %v: %s", image, err, out)
	}
	lf, err := attachLoop(image)
	if err != nil {
		os.Remove(image)
		return nil, err
	}
	// The device detaches itself (autoclear) at its last close: the
	// mount's, once lf is closed.
	defer lf.Close()
	dev := filepath.Base(lf.Name())
	if err := unix.Mount(lf.Name(), dir, "ext4", 0, ""); err != nil {
		os.Remove(image)
		return nil, fmt.Errorf("mount %s on %s: %w", lf.Name(), dir, err)
	}
	return &loopDisk{image: image, dev: dev, dir: dir}, nil
}

// attachLoop attaches image to a free loop device with autoclear set and
// returns the device, open: closing it detaches it unless something else
// (a mount) holds it. Another process may take the free device first;
// then it asks for the next.
func attachLoop(image string) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	backing, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer backing.Close()
	for try := 0; ; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		lf, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd()), Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}}
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		if err == nil {
			return lf, nil
		}
		lf.Close()
		if !errors.Is(err, unix.EBUSY) || try == 10 {
			return nil, fmt.Errorf("attach %s to %s: %w", image, lf.Name(), err)
		}
	}
}

// written syncs the file system and returns the bytes written to the
// device so far (sectors of 512 bytes, the seventh field of its block
// statistics). The sync first writes what is dirty — file data not yet
// fsynced, and the metadata the journal holds — so that a difference of
// two readings counts what was dirtied between them, not what happened to
// be written back then.
func (d *loopDisk) written() (int64, error) {
	dir, err := os.Open(d.dir)
	if err != nil {
		return 0, err
	}
	err = unix.Syncfs(int(dir.Fd()))
	dir.Close()
	if err != nil {
		return 0, fmt.Errorf("syncfs %s: %w", d.dir, err)
	}
	data, err := os.ReadFile("/sys/block/" + d.dev + "/stat")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data))
	if len(f) < 7 {
		return 0, fmt.Errorf("short /sys/block/%s/stat: %q", d.dev, data)
	}
	sectors, err := strconv.ParseInt(f[6], 10, 64)
	return sectors * 512, err
}

// close unmounts the file system (the device then detaches) and removes
// the image. The node's processes must be gone.
func (d *loopDisk) close() error {
	var err error
	if err = unix.Unmount(d.dir, 0); err != nil {
		// Something still holds it: it goes when that ends.
		unix.Unmount(d.dir, unix.MNT_DETACH)
		err = fmt.Errorf("unmount %s (detached instead): %w", d.dir, err)
	}
	return errors.Join(err, os.Remove(d.image))
}
