package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-edge/shoal/api"
)

func TestDiff(t *testing.T) {
	al := func(app string, idx int, v uint64, node string) api.Allocation {
		return api.Allocation{App: app, Index: idx, Version: v, Node: node}
	}
	for _, tc := range []struct {
		name    string
		desired []api.Allocation
		running map[string]api.Allocation
		want    []change
	}{
		{"nothing", nil, nil, nil},
		{"start mine only", []api.Allocation{al("web", 0, 1, "me"), al("web", 1, 1, "other")}, nil,
			[]change{{"start", al("web", 0, 1, "me")}}},
		{"steady", []api.Allocation{al("web", 0, 1, "me")}, map[string]api.Allocation{"web/0": al("web", 0, 1, "me")}, nil},
		{"new version replaces", []api.Allocation{al("web", 0, 2, "me")}, map[string]api.Allocation{"web/0": al("web", 0, 1, "me")},
			[]change{{"replace", al("web", 0, 2, "me")}}},
		{"moved away stops", []api.Allocation{al("web", 0, 1, "other")}, map[string]api.Allocation{"web/0": al("web", 0, 1, "me")},
			[]change{{"stop", al("web", 0, 1, "me")}}},
		{"removed stops before starts", []api.Allocation{al("b", 0, 1, "me")}, map[string]api.Allocation{"a/0": al("a", 0, 1, "me")},
			[]change{{"stop", al("a", 0, 1, "me")}, {"start", al("b", 0, 1, "me")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := diff("me", tc.desired, tc.running)
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(change{})); d != "" {
				t.Fatalf("diff (-want +got):\n%s", d)
			}
		})
	}
}
