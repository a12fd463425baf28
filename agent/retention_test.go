package agent_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/repo"
)

// series returns snapshots at the given offsets from a base time, newest
// first as the catalog gives them; IDs encode the offset for readable
// failures.
func series(offsets ...time.Duration) []*repo.Snapshot {
	base := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	var out []*repo.Snapshot
	for _, o := range offsets {
		out = append(out, &repo.Snapshot{ID: repo.SnapshotID(fmt.Sprintf("%v", o)), Time: base.Add(o), Node: "n", Path: "/p"})
	}
	return out
}

func kept(ds []agent.Decision) []string {
	var out []string
	for _, d := range ds {
		if d.Keep {
			out = append(out, string(d.Snapshot.ID))
		}
	}
	return out
}

func TestApplyRetention(t *testing.T) {
	h := time.Hour
	d := 24 * h
	cases := []struct {
		name    string
		sns     []*repo.Snapshot
		policy  agent.Policy
		want    string
		wantErr error
	}{
		{"keep last 2 of 4", series(0, -h, -2*h, -3*h), agent.Policy{Last: 2}, "[0s -1h0m0s]", nil},
		{"keep last more than there are", series(0, -h), agent.Policy{Last: 10}, "[0s -1h0m0s]", nil},
		{"order of input does not matter", series(-3*h, 0, -2*h, -h), agent.Policy{Last: 1}, "[0s]", nil},
		{"hourly keeps newest per hour", series(0, -10*time.Minute, -h, -h-10*time.Minute, -2*h), agent.Policy{Hourly: 2}, "[0s -10m0s]", nil},
		{"daily", series(0, -h, -d, -d-h, -2*d, -3*d), agent.Policy{Daily: 3}, "[0s -24h0m0s -48h0m0s]", nil},
		{"weekly", series(0, -d, -8*d, -15*d, -16*d), agent.Policy{Weekly: 2}, "[0s -192h0m0s]", nil},
		{"monthly", series(0, -5*d, -25*d, -40*d, -70*d), agent.Policy{Monthly: 2}, "[0s -600h0m0s]", nil},
		{"within counts from the newest", series(-100*d, -100*d-h, -100*d-3*h), agent.Policy{Within: 2 * h}, "[-2400h0m0s -2401h0m0s]", nil},
		{"rules combine", series(0, -h, -2*h, -d, -2*d), agent.Policy{Last: 1, Daily: 3}, "[0s -24h0m0s -48h0m0s]", nil},
		{"empty policy refused", series(0, -h), agent.Policy{}, "[]", agent.ErrWouldForgetAll},
		{"nothing to decide", nil, agent.Policy{Last: 1}, "[]", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds, err := agent.Apply(c.sns, c.policy, time.UTC)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err %v, want %v", err, c.wantErr)
			}
			if got := fmt.Sprint(kept(ds)); got != c.want && c.wantErr == nil {
				t.Errorf("kept %s, want %s", got, c.want)
			}
			for _, dd := range ds {
				if dd.Keep && len(dd.Reasons) == 0 {
					t.Errorf("%s kept without a reason", dd.Snapshot.ID)
				}
			}
		})
	}
}
