package sealexe

import (
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// binEnv names the binary the benchmarks seal, as in ./bench (the figures
// that matter are the shipped binary's); without it they seal this test
// binary.
const binEnv = "SHOAL_BENCH_BIN"

// benchProgram returns the program to seal and the arguments that make it
// exit at once when executed.
func benchProgram(b *testing.B) (string, []string) {
	b.Helper()
	if p := os.Getenv(binEnv); p != "" {
		return p, []string{"shoal", "version"}
	}
	p, err := os.Readlink("/proc/self/exe")
	if err != nil {
		b.Fatal(err)
	}
	return p, []string{"sealexe.test", "-test.run=^$"}
}

// BenchmarkSelf is what a daemon pays once, at its first container start,
// when the overlay works: a new overlayfs mount and an O_PATH open. It
// seals this test binary; nothing of it depends on the binary's size.
func BenchmarkSelf(b *testing.B) {
	testutil.RequireRoot(b)
	for b.Loop() {
		f, how, err := Self()
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		if how != "overlay" {
			b.Fatalf("sealed by %s, want overlay", how)
		}
	}
}

// BenchmarkMemfd is the fallback's cost: a copy of the whole binary into
// sealed shared memory (from the page cache: the file is read once before).
func BenchmarkMemfd(b *testing.B) {
	path, _ := benchProgram(b)
	src, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	for b.Loop() {
		if _, err := src.Seek(0, io.SeekStart); err != nil {
			b.Fatal(err)
		}
		f, err := Memfd("bench", src)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	// After the loop: b.Loop's start drops metrics reported before it.
	b.ReportMetric(float64(st.Size())/1e6, "binary-MB")
}

// BenchmarkExec runs the program to its exit from its path, through the
// overlay and from a memfd: what each handle adds to every init's and
// helper's start.
func BenchmarkExec(b *testing.B) {
	path, args := benchProgram(b)
	handles := map[string]func() (*os.File, error){
		"path":    func() (*os.File, error) { return os.Open(path) },
		"overlay": func() (*os.File, error) { return Overlay(path) },
		"memfd": func() (*os.File, error) {
			src, err := os.Open(path)
			if err != nil {
				return nil, err
			}
			defer src.Close()
			return Memfd("bench", src)
		},
	}
	for _, kind := range []string{"path", "overlay", "memfd"} {
		b.Run(kind, func(b *testing.B) {
			if kind == "overlay" {
				testutil.RequireRoot(b)
			}
			f, err := handles[kind]()
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			exe := ExecPath(f)
			if kind == "path" {
				exe = path
			}
			for b.Loop() {
				cmd := &exec.Cmd{Path: exe, Args: args}
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%s: %v\n%s", exe, err, out)
				}
			}
		})
	}
}
