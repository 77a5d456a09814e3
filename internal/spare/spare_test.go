package spare

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/internal/testutil"
)

// counter makes numbered spares and records the discarded ones.
type counter struct {
	mu        sync.Mutex
	made      int
	discarded []int
	fail      bool
}

func (c *counter) one(idle time.Duration) *One[int] {
	return &One[int]{
		Make: func() (int, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.fail {
				return 0, errors.New("no")
			}
			c.made++
			return c.made, nil
		},
		Discard: func(v int) {
			c.mu.Lock()
			c.discarded = append(c.discarded, v)
			c.mu.Unlock()
		},
		Idle: idle,
	}
}

func (c *counter) state() (int, []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.made, append([]int(nil), c.discarded...)
}

// waitRetired polls until one spare was discarded.
func waitRetired(t *testing.T, c *counter) {
	t.Helper()
	err := testutil.Poll(5*time.Second, func() error {
		if _, discarded := c.state(); len(discarded) != 1 {
			return errors.New("not retired yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// take polls until a spare is ready.
func take(t *testing.T, o *One[int]) int {
	t.Helper()
	var got int
	err := testutil.Poll(5*time.Second, func() error {
		v, ok := o.Take()
		if !ok {
			return errors.New("no spare yet")
		}
		got = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestTakeReplenishClose(t *testing.T) {
	c := &counter{}
	o := c.one(0)
	if _, ok := o.Take(); ok {
		t.Fatal("a spare before any Replenish")
	}
	o.Replenish()
	o.Replenish() // one on its way: no second
	if v := take(t, o); v != 1 {
		t.Fatalf("took %d, want 1", v)
	}
	if _, ok := o.Take(); ok {
		t.Fatal("a second spare without Replenish")
	}
	o.Replenish()
	take(t, o)
	o.Replenish()
	o.Close() // waits for the one on its way and discards it
	if made, discarded := c.state(); made != 3 || len(discarded) != 1 || discarded[0] != 3 {
		t.Fatalf("made %d, discarded %v: want 3 made, [3] discarded", made, discarded)
	}
	o.Replenish()
	if _, ok := o.Take(); ok {
		t.Fatal("a spare after Close")
	}
}

func TestIdleRetires(t *testing.T) {
	c := &counter{}
	o := c.one(50 * time.Millisecond)
	o.Replenish()
	waitRetired(t, c)
	if _, ok := o.Take(); ok {
		t.Fatal("a retired spare was handed out")
	}
	o.Close()
}

func TestMakeErrors(t *testing.T) {
	c := &counter{fail: true}
	o := c.one(0)
	errs := make(chan error, 1)
	o.OnError = func(err error) { errs <- err }
	o.Replenish()
	if err := <-errs; err == nil {
		t.Fatal("no error")
	}
	c.mu.Lock()
	c.fail = false
	c.mu.Unlock()
	o.Replenish() // a failed making does not block the next
	if v := take(t, o); v != 1 {
		t.Fatalf("took %d, want 1", v)
	}
	o.Close()
}

// A retirement under way when Close is called has ended when Close returns.
func TestCloseWaitsForRetirement(t *testing.T) {
	c := &counter{}
	o := c.one(10 * time.Millisecond)
	discarding, release := make(chan struct{}), make(chan struct{})
	o.Discard = func(int) { close(discarding); <-release }
	o.Replenish()
	<-discarding // retiring now
	closed := make(chan struct{})
	go func() { o.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a discard ran")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed
}

// A spare made more slowly than Idle is still retired.
func TestSlowMakeIsRetired(t *testing.T) {
	c := &counter{}
	o := c.one(10 * time.Millisecond)
	make := o.Make
	o.Make = func() (int, error) { time.Sleep(50 * time.Millisecond); return make() }
	o.Replenish()
	waitRetired(t, c)
	o.Close()
}
