package seccomp

import (
	"testing"

	"golang.org/x/net/bpf"
)

// TestSearchFar checks the search where its halves are too long for a
// conditional jump: every third number allowed, every fifth refused, an
// argument rule at 1500, up to 3000.
func TestSearchFar(t *testing.T) {
	rule := &Rule{Name: "x", Errno: EPERM, If: &Arg{Index: 1, AnyBit: 0x4, OneOf: []uint32{7, 9}}}
	answers := map[uint32]answer{1500: {rule: rule}}
	want := func(nr uint32) uint32 {
		switch {
		case nr >= 3000:
		case nr%3 == 0:
			return wantAllow
		case nr%5 == 0:
			return wantEPERM
		}
		return wantNOSYS
	}
	for nr := uint32(0); nr < 3000; nr++ {
		if w := want(nr); w != wantNOSYS && nr != 1500 {
			answers[nr] = answer{ret: w}
		}
	}
	prog := append([]bpf.Instruction{bpf.LoadAbsolute{Off: offNR, Size: 4}}, search(ranges(answers))...)
	far := false
	for _, in := range prog {
		_, far = in.(bpf.Jump)
		if far {
			break
		}
	}
	if !far {
		t.Fatalf("%d instructions and no far jump: the test does not test it", len(prog))
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	for nr := uint32(0); nr < 3100; nr++ {
		if nr == 1500 {
			continue
		}
		if got := run(t, vm, 0, nr); got != want(nr) {
			t.Errorf("%d = %#x, want %#x", nr, got, want(nr))
		}
	}
	for _, tc := range []struct {
		arg  uint64
		want uint32
	}{{0, wantAllow}, {4, wantEPERM}, {7, wantEPERM}, {9, wantEPERM}, {8, wantAllow}, {1<<32 | 3, wantAllow}} {
		if got := run(t, vm, 0, 1500, 0, tc.arg); got != tc.want {
			t.Errorf("1500(0, %#x) = %#x, want %#x", tc.arg, got, tc.want)
		}
	}
}
