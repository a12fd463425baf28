package agent

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/repo"
)

// ErrWouldForgetAll: a policy would forget every snapshot of a node and path.
var ErrWouldForgetAll = errors.New("policy keeps no snapshot")

// Policy says which snapshots of one node and path to keep. A snapshot is
// kept when any rule keeps it.
type Policy struct {
	Last    int           `json:"keep_last,omitempty"`
	Hourly  int           `json:"keep_hourly,omitempty"`
	Daily   int           `json:"keep_daily,omitempty"`
	Weekly  int           `json:"keep_weekly,omitempty"`
	Monthly int           `json:"keep_monthly,omitempty"`
	Yearly  int           `json:"keep_yearly,omitempty"`
	Within  time.Duration `json:"keep_within,omitempty"`
}

// Empty reports whether the policy has no rule.
func (p Policy) Empty() bool { return p == Policy{} }

func (p Policy) String() string {
	var parts []string
	add := func(name string, n int) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", name, n))
		}
	}
	add("last", p.Last)
	add("hourly", p.Hourly)
	add("daily", p.Daily)
	add("weekly", p.Weekly)
	add("monthly", p.Monthly)
	add("yearly", p.Yearly)
	if p.Within > 0 {
		parts = append(parts, "within "+p.Within.String())
	}
	return strings.Join(parts, ", ")
}

// Decision is what a policy decided for one snapshot, and why.
type Decision struct {
	Snapshot *repo.Snapshot
	Keep     bool
	Reasons  []string // for kept snapshots: the rules that keep it
}

// Apply decides for snapshots of one node and path. It is a pure function:
// the result depends only on its arguments. Buckets (hour, day, ...) are in
// loc. Keep-within counts back from the newest snapshot, not from now, so a
// node that stopped backing up does not lose its history.
func Apply(snapshots []*repo.Snapshot, p Policy, loc *time.Location) ([]Decision, error) {
	if len(snapshots) == 0 {
		return nil, nil
	}
	if p.Empty() {
		return nil, fmt.Errorf("empty policy: %w", ErrWouldForgetAll)
	}
	sns := append([]*repo.Snapshot(nil), snapshots...)
	sort.SliceStable(sns, func(i, j int) bool {
		if !sns[i].Time.Equal(sns[j].Time) {
			return sns[i].Time.After(sns[j].Time)
		}
		return sns[i].ID > sns[j].ID
	})
	out := make([]Decision, len(sns))
	for i, sn := range sns {
		out[i].Snapshot = sn
	}
	keep := func(i int, reason string) {
		out[i].Keep = true
		out[i].Reasons = append(out[i].Reasons, reason)
	}
	for i := 0; i < p.Last && i < len(sns); i++ {
		keep(i, fmt.Sprintf("last %d", i+1))
	}
	buckets := []struct {
		name string
		n    int
		key  func(time.Time) string
	}{
		{"hourly", p.Hourly, func(t time.Time) string { return t.Format("2006-01-02 15h") }},
		{"daily", p.Daily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{"monthly", p.Monthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"yearly", p.Yearly, func(t time.Time) string { return t.Format("2006") }},
	}
	for _, b := range buckets {
		if b.n <= 0 {
			continue
		}
		last, used := "", 0
		for i, sn := range sns {
			k := b.key(sn.Time.In(loc))
			if k == last {
				continue // only the newest of each bucket
			}
			last = k
			keep(i, b.name+" "+k)
			if used++; used == b.n {
				break
			}
		}
	}
	if p.Within > 0 {
		limit := sns[0].Time.Add(-p.Within)
		for i, sn := range sns {
			if !sn.Time.Before(limit) {
				keep(i, "within "+p.Within.String())
			}
		}
	}
	for _, d := range out {
		if d.Keep {
			return out, nil
		}
	}
	return out, fmt.Errorf("policy %s would forget all %d snapshots of %s:%s: %w", p, len(sns), sns[0].Node, sns[0].Path, ErrWouldForgetAll)
}

// Series groups snapshots by node and path; each group is newest first.
func Series(sns []*repo.Snapshot) map[[2]string][]*repo.Snapshot {
	out := map[[2]string][]*repo.Snapshot{}
	for _, sn := range sns {
		k := [2]string{sn.Node, sn.Path}
		out[k] = append(out[k], sn)
	}
	return out
}
