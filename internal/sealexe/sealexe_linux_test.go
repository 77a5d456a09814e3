package sealexe

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shoal-edge/shoal/internal/testutil"
	"golang.org/x/sys/unix"
)

// A program to seal: a copy of a static binary of the host's, so that the
// tests may replace it.
func program(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(p, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// runsAndRefusesWrites checks what a container would try with the handle:
// exec it, open it for writing through /proc, write to it.
func runsAndRefusesWrites(t *testing.T, f *os.File, want []byte) {
	t.Helper()
	// As the exec helper does: a child given many descriptors, which
	// os/exec moves to fds 3, 4, ... before the path is resolved.
	cmd := exec.Command(ExecPath(f), "-test.run=^$")
	for range 40 {
		null, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer null.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, null)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("exec the sealed handle: %v\n%s", err, out)
	}
	got, err := os.ReadFile(ExecPath(f))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the sealed handle reads %d bytes that differ from the program's %d", len(got), len(want))
	}
	w, err := os.OpenFile(ExecPath(f), os.O_WRONLY, 0)
	if err == nil {
		_, err = w.WriteAt([]byte("HACK"), 0)
		w.Close()
	}
	if err == nil {
		t.Fatal("wrote to the sealed handle")
	}
	if !errors.Is(err, unix.EROFS) && !errors.Is(err, unix.EPERM) {
		t.Fatalf("write to the sealed handle: %v, want EROFS or EPERM", err)
	}
}

func TestOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	p := program(t)
	want, _ := os.ReadFile(p)
	f, err := Overlay(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runsAndRefusesWrites(t, f, want)
	// Nothing of the overlay shows in this mount namespace.
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if bytes.Contains(mi, []byte(filepath.Dir(p))) {
		t.Errorf("the overlay is attached somewhere:\n%s", mi)
	}
	// The program's own file is as writable as before: the seal is of
	// the handle, not of the host's file.
	if err := os.WriteFile(p, want, 0o755); err != nil {
		t.Errorf("the program file itself: %v", err)
	}
}

func TestMemfd(t *testing.T) {
	p := program(t)
	want, _ := os.ReadFile(p)
	src, _ := os.Open(p)
	defer src.Close()
	f, err := Memfd("prog", src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	all := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if seals&all != all {
		t.Fatalf("seals %#x, want %#x", seals, all)
	}
	runsAndRefusesWrites(t, f, want)
	if err := f.Truncate(0); err == nil {
		t.Error("shrank the sealed memfd")
	}
}

// An upgrade replaced the file at the running binary's path: the overlay
// would show the new one, so the running one is copied instead.
func TestSealFallsBackToACopyOfTheRunningFile(t *testing.T) {
	testutil.RequireRoot(t)
	p := program(t)
	want, _ := os.ReadFile(p)
	running, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()

	f, how, err := seal(running, p)
	if err != nil {
		t.Fatal(err)
	}
	if how != "overlay" {
		t.Errorf("an unchanged binary is sealed by %s, want overlay (no copy)", how)
	}
	f.Close()

	next := p + ".new"
	if err := os.WriteFile(next, append([]byte("#!/bin/false\n"), want...), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, p); err != nil {
		t.Fatal(err)
	}
	f, how, err = seal(running, p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if how != "memfd" {
		t.Fatalf("a replaced binary is sealed by %s, want a memfd copy of the running one", how)
	}
	runsAndRefusesWrites(t, f, want)
}

func TestSelf(t *testing.T) {
	testutil.RequireRoot(t)
	f, how, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, _ := os.ReadFile("/proc/self/exe")
	t.Logf("sealed by %s", how)
	runsAndRefusesWrites(t, f, want)
}
