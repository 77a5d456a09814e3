package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// A non-voter's refusal crosses the wire with the voters' addresses, so
// that a client with the admin credential can go there, and still reads
// as ErrForbidden on the other side.
func TestNotVoterOnTheWire(t *testing.T) {
	err := fmt.Errorf("apply: %w", &NotVoterError{Node: "b", Voters: []string{"10.0.0.1:7947", "10.0.0.2:7947"}})
	data, _ := json.Marshal(Wire(err))
	var we WireError
	if err := json.Unmarshal(data, &we); err != nil {
		t.Fatal(err)
	}
	if we.Kind != KindForbidden || !slices.Equal(we.Voters, []string{"10.0.0.1:7947", "10.0.0.2:7947"}) || !errors.Is(&we, ErrForbidden) {
		t.Errorf("on the wire: %s", data)
	}
	if errors.Is(&we, ErrInvalid) || errors.Is(&we, ErrNoLeader) {
		t.Errorf("%s reads as another kind", data)
	}
	if w := Wire(ErrConflict); len(w.Voters) != 0 || w.Kind != KindConflict {
		t.Errorf("another error on the wire: %+v", w)
	}
}
