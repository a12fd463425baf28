package agent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/repo"
)

// ErrAmbiguous: a snapshot ID prefix matches more than one snapshot.
var ErrAmbiguous = errors.New("ambiguous snapshot ID prefix")

// Selector picks one snapshot from a catalog. Its text forms:
//
//	latest[:SUBPATH]              newest snapshot of all
//	ID-PREFIX[:SUBPATH]           by ID (at least 4 hex digits)
//	NODE:PATH@latest[:/SUBPATH]   newest of that node and path
//	NODE:PATH@N[:/SUBPATH]        N-th newest (1 is the newest)
//	NODE:PATH@TIME[:/SUBPATH]     newest taken at or before TIME
//
// TIME is RFC 3339 or local "2006-01-02[T15:04[:05]]". PATH may be given
// without NODE (":PATH@..." or "PATH@...") to match any node.
type Selector struct {
	IDPrefix string
	Node     string
	Path     string
	N        int       // 1-based; 0 when selecting by time or ID
	Before   time.Time // zero unless selecting by time
	Sub      string
}

// ParseSelector parses the text forms above.
func ParseSelector(s string) (Selector, error) {
	if s == "" {
		return Selector{}, errors.New("empty snapshot selector")
	}
	at := strings.Index(s, "@")
	if at < 0 {
		id, sub, _ := strings.Cut(s, ":")
		if id == "latest" {
			return Selector{N: 1, Sub: sub}, nil
		}
		if len(id) < 4 || !isHex(id) {
			return Selector{}, fmt.Errorf("snapshot %q: want latest, an ID prefix of 4+ hex digits, or NODE:PATH@VERSION", s)
		}
		return Selector{IDPrefix: strings.ToLower(id), Sub: sub}, nil
	}
	sel := Selector{}
	left, rest := s[:at], s[at+1:]
	if node, p, ok := strings.Cut(left, ":"); ok {
		sel.Node, sel.Path = node, p
	} else {
		sel.Path = left
	}
	if sel.Path == "" {
		return Selector{}, fmt.Errorf("snapshot %q: no path before @", s)
	}
	version := rest
	if j := strings.Index(rest, ":/"); j >= 0 {
		version, sel.Sub = rest[:j], rest[j+1:]
	}
	switch {
	case version == "latest":
		sel.N = 1
	case isDigits(version):
		n, err := strconv.Atoi(version)
		if err != nil || n < 1 {
			return Selector{}, fmt.Errorf("snapshot %q: version must be 1 (newest) or more", s)
		}
		sel.N = n
	default:
		t, err := ParseTime(version)
		if err != nil {
			return Selector{}, fmt.Errorf("snapshot %q: %w", s, err)
		}
		sel.Before = t
	}
	return sel, nil
}

// ParseTime accepts RFC 3339 and local dates with optional minutes and
// seconds.
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			if layout == "2006-01-02" {
				t = t.Add(24*time.Hour - time.Nanosecond) // the whole day
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want latest, a number, RFC 3339 or 2006-01-02[T15:04[:05]]", s)
}

func isHex(s string) bool {
	for _, c := range strings.ToLower(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Matches reports whether sn belongs to the node and path the selector names.
func (sel Selector) Matches(sn *repo.Snapshot) bool {
	return (sel.Node == "" || sn.Node == sel.Node) && (sel.Path == "" || sn.Path == sel.Path)
}

// Find picks the selected snapshot from sns, which must be newest first.
func (sel Selector) Find(sns []*repo.Snapshot) (*repo.Snapshot, error) {
	if sel.IDPrefix != "" {
		var found *repo.Snapshot
		for _, sn := range sns {
			if strings.HasPrefix(string(sn.ID), sel.IDPrefix) {
				if found != nil {
					return nil, fmt.Errorf("%s: %w", sel.IDPrefix, ErrAmbiguous)
				}
				found = sn
			}
		}
		if found == nil {
			return nil, fmt.Errorf("snapshot %s: %w", sel.IDPrefix, repo.ErrNotFound)
		}
		return found, nil
	}
	n := 0
	for _, sn := range sns {
		if !sel.Matches(sn) {
			continue
		}
		if !sel.Before.IsZero() {
			if !sn.Time.After(sel.Before) {
				return sn, nil
			}
			continue
		}
		n++
		if n == sel.N {
			return sn, nil
		}
	}
	what := "any node and path"
	if sel.Path != "" {
		what = sel.Node + ":" + sel.Path
	}
	switch {
	case !sel.Before.IsZero():
		return nil, fmt.Errorf("no snapshot of %s at or before %s: %w", what, sel.Before.Format(time.RFC3339), repo.ErrNotFound)
	case n == 0:
		return nil, fmt.Errorf("no snapshot of %s: %w", what, repo.ErrNotFound)
	default:
		return nil, fmt.Errorf("version %d of %s: only %d snapshots: %w", sel.N, what, n, repo.ErrNotFound)
	}
}
