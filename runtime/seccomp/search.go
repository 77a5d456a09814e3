package seccomp

import (
	"errors"
	"fmt"
	"slices"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
)

// answer is the filter's reply to one syscall number of one ABI: a return
// value, or a rule whose argument test decides.
type answer struct {
	ret  uint32
	rule *Rule
}

// answersFor maps every number of info that Allowed or Rules names to its
// answer; the numbers left out get ENOSYS.
func answersFor(info *arch.Info, allowed []string, rules []Rule) (map[uint32]answer, error) {
	out := map[uint32]answer{}
	add := func(name string, a answer) error {
		nr, ok := info.SyscallNames[name]
		if !ok {
			return nil // this ABI has no such call
		}
		if _, dup := out[uint32(nr)]; dup {
			return fmt.Errorf("syscall %s listed twice", name)
		}
		out[uint32(nr)] = a
		return nil
	}
	for _, name := range allowed {
		if err := add(name, answer{ret: retAllow}); err != nil {
			return nil, err
		}
	}
	for i := range rules {
		r := &rules[i]
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("rule %s: %w", r.Name, err)
		}
		a := answer{ret: r.Errno.ret()}
		if r.If != nil || r.Unless != nil {
			a = answer{rule: r}
		}
		if err := add(r.Name, a); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// check refuses a rule the assembler could not express.
func (r *Rule) check() error {
	if r.Errno != EPERM && r.Errno != ENOSYS {
		return fmt.Errorf("errno %d: want EPERM or ENOSYS", r.Errno)
	}
	if r.If != nil && r.Unless != nil {
		return errors.New("both If and Unless")
	}
	for _, a := range []*Arg{r.If, r.Unless} {
		switch {
		case a == nil:
		case a.Index < 0 || a.Index > 5:
			return fmt.Errorf("argument %d: a call has six", a.Index)
		case a.AnyBit == 0 && len(a.OneOf) == 0:
			return errors.New("an argument test that matches nothing")
		case len(a.OneOf) > 32:
			return fmt.Errorf("%d values: at most 32", len(a.OneOf))
		}
	}
	return nil
}

// span is the numbers [lo, hi) that share one answer.
type span struct {
	lo, hi uint64
	answer
}

// ranges cuts the 32-bit number space into spans: one per run of numbers
// with the same return, ENOSYS between them, and one number alone for each
// rule that tests arguments.
func ranges(answers map[uint32]answer) []span {
	nrs := make([]uint32, 0, len(answers))
	for nr := range answers {
		nrs = append(nrs, nr)
	}
	slices.Sort(nrs)
	var out []span
	put := func(s span) {
		if n := len(out); n > 0 && out[n-1].rule == nil && s.rule == nil && out[n-1].ret == s.ret {
			out[n-1].hi = s.hi
			return
		}
		out = append(out, s)
	}
	next := uint64(0)
	for _, nr := range nrs {
		if uint64(nr) > next {
			put(span{lo: next, hi: uint64(nr), answer: answer{ret: ENOSYS.ret()}})
		}
		put(span{lo: uint64(nr), hi: uint64(nr) + 1, answer: answers[nr]})
		next = uint64(nr) + 1
	}
	if next <= 0xffffffff {
		put(span{lo: next, hi: 1 << 32, answer: answer{ret: ENOSYS.ret()}})
	}
	return out
}

// search is a binary search for the number, in A, over spans that cover
// the number space in order.
func search(spans []span) []bpf.Instruction {
	if len(spans) == 1 {
		return reply(spans[0].answer)
	}
	mid := len(spans) / 2
	left, right := search(spans[:mid]), search(spans[mid:])
	split := uint32(spans[mid].lo)
	var prog []bpf.Instruction
	if len(left) <= 0xff {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: split, SkipTrue: uint8(len(left))})
	} else {
		// Too far for a conditional jump: it falls through to a ja.
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: split, SkipFalse: 1},
			bpf.Jump{Skip: uint32(len(left))})
	}
	prog = append(prog, left...)
	return append(prog, right...)
}

// reply returns an answer: its value, or its rule's argument test.
func reply(a answer) []bpf.Instruction {
	if a.rule == nil {
		return []bpf.Instruction{bpf.RetConstant{Val: a.ret}}
	}
	arg, match, miss := a.rule.If, a.rule.Errno.ret(), uint32(retAllow)
	if a.rule.Unless != nil {
		arg, match, miss = a.rule.Unless, retAllow, a.rule.Errno.ret()
	}
	var tests []bpf.JumpIf
	if arg.AnyBit != 0 {
		tests = append(tests, bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: arg.AnyBit})
	}
	for _, v := range arg.OneOf {
		tests = append(tests, bpf.JumpIf{Cond: bpf.JumpEqual, Val: v})
	}
	prog := []bpf.Instruction{bpf.LoadAbsolute{Off: uint32(offArgs + 8*arg.Index), Size: 4}}
	for i, t := range tests {
		// A match skips the tests after it and the miss.
		t.SkipTrue = uint8(len(tests) - i)
		prog = append(prog, t)
	}
	return append(prog, bpf.RetConstant{Val: miss}, bpf.RetConstant{Val: match})
}
