package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Stat summarises the repetitions of one tool on one scenario.
type Stat struct {
	Target    string        `json:"target"`
	Tool      string        `json:"tool"`
	Scenario  string        `json:"scenario"`
	Reps      int           `json:"reps"`
	WallMed   time.Duration `json:"wall_median_ns"`
	WallMin   time.Duration `json:"wall_min_ns"`
	WallMax   time.Duration `json:"wall_max_ns"`
	CPUMed    time.Duration `json:"cpu_median_ns"`
	MaxRSS    int64         `json:"max_rss_bytes"` // the largest of the repetitions
	ReadBytes int64         `json:"read_bytes_median"`
	Stored    int64         `json:"stored_bytes_median"`
	Input     int64         `json:"input_bytes,omitempty"`
	Requests  int64         `json:"store_requests_median"`
	Sent      int64         `json:"bytes_sent_to_store_median"`
	Received  int64         `json:"bytes_received_from_store_median"`
	// Procs: the largest peak RSS of each daemon over the repetitions.
	Procs map[string]int64 `json:"daemon_peak_rss_bytes,omitempty"`
}

// Summarise groups measures by target, tool and scenario.
func Summarise(ms []Measure) []Stat {
	groups := map[[3]string][]Measure{}
	for _, m := range ms {
		k := [3]string{m.Target, m.Tool, m.Scenario}
		groups[k] = append(groups[k], m)
	}
	var out []Stat
	for k, g := range groups {
		st := Stat{Target: k[0], Tool: k[1], Scenario: k[2], Reps: len(g)}
		walls := make([]time.Duration, len(g))
		cpus := make([]time.Duration, len(g))
		var reads, stored, reqs, sent, recv []int64
		for i, m := range g {
			walls[i], cpus[i] = m.Wall, m.CPU
			reads, stored = append(reads, m.ReadBytes), append(stored, m.Stored)
			reqs, sent, recv = append(reqs, m.Requests), append(sent, m.Sent), append(recv, m.Received)
			st.MaxRSS = max(st.MaxRSS, m.MaxRSS)
			st.Input = m.Input
			for name, rss := range m.Procs {
				if st.Procs == nil {
					st.Procs = map[string]int64{}
				}
				st.Procs[name] = max(st.Procs[name], rss)
			}
		}
		sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
		st.WallMed, st.WallMin, st.WallMax = median(walls), walls[0], walls[len(walls)-1]
		st.CPUMed = median(cpus)
		st.ReadBytes, st.Stored = median(reads), median(stored)
		st.Requests, st.Sent, st.Received = median(reqs), median(sent), median(recv)
		out = append(out, st)
	}
	order := map[string]int{}
	for i, s := range Scenarios {
		order[s] = i
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Target != out[j].Target {
			return out[i].Target < out[j].Target
		}
		if out[i].Scenario != out[j].Scenario {
			return order[out[i].Scenario] < order[out[j].Scenario]
		}
		if (out[i].Tool == "cairn") != (out[j].Tool == "cairn") {
			return out[i].Tool == "cairn"
		}
		return out[i].Tool < out[j].Tool
	})
	return out
}

func median[T int64 | time.Duration](v []T) T {
	s := append([]T(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func dur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// Report is what a run produced.
type Report struct {
	Title    string    `json:"title"`
	Data     string    `json:"data"`
	Measures []Measure `json:"measures"`
	Stats    []Stat    `json:"stats"`
}

// Markdown writes the report as tables, one set per target: one row per
// scenario and tool, and for every peer the figures as cairn/peer (below
// 1: cairn is better).
func (r *Report) Markdown(w io.Writer) {
	fmt.Fprintf(w, "# %s\n\n%s\n", r.Title, r.Data)
	for _, target := range r.targets() {
		fmt.Fprintf(w, "\n## Repository: %s\n\n", target)
		fmt.Fprintln(w, "| scenario | tool | wall median (min–max) | CPU | peak RSS | read from disk | store requests | sent to store | received | stored |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
		for _, s := range r.Stats {
			if s.Target != target {
				continue
			}
			stored := mib(s.Stored)
			if s.Input > 0 {
				stored = fmt.Sprintf("%s of %s input (%.1fx)", mib(s.Stored), mib(s.Input), float64(s.Input)/float64(max(s.Stored, 1)))
			}
			reqs, sent, recv := "–", "–", "–"
			if s.Requests > 0 {
				reqs, sent, recv = fmt.Sprint(s.Requests), mib(s.Sent), mib(s.Received)
			}
			fmt.Fprintf(w, "| %s | %s | %s (%s–%s) | %s | %s | %s | %s | %s | %s | %s |\n", s.Scenario, s.Tool, dur(s.WallMed), dur(s.WallMin), dur(s.WallMax),
				dur(s.CPUMed), rssCell(s), mib(s.ReadBytes), reqs, sent, recv, stored)
		}
		byKey := map[[2]string]Stat{}
		var peers []string
		seen := map[string]bool{}
		for _, s := range r.Stats {
			if s.Target != target {
				continue
			}
			byKey[[2]string{s.Tool, s.Scenario}] = s
			if !strings.HasPrefix(s.Tool, "cairn") && !seen[s.Tool] {
				seen[s.Tool] = true
				peers = append(peers, s.Tool)
			}
		}
		for _, p := range peers {
			fmt.Fprintf(w, "\n**cairn / %s on %s** (below 1.00: cairn is faster, leaner or smaller)\n\n", p, target)
			fmt.Fprintln(w, "| scenario | wall | CPU | peak RSS | store requests | sent to store | stored |")
			fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
			for _, sc := range Scenarios {
				c, ok1 := byKey[[2]string{"cairn", sc}]
				q, ok2 := byKey[[2]string{p, sc}]
				if !ok1 || !ok2 {
					continue
				}
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", sc, ratio(float64(c.WallMed), float64(q.WallMed)),
					ratio(float64(c.CPUMed), float64(q.CPUMed)), ratio(float64(peakRSSOf(c)), float64(peakRSSOf(q))),
					ratio(float64(c.Requests), float64(q.Requests)), ratio(float64(c.Sent), float64(q.Sent)), ratio(float64(c.Stored), float64(q.Stored)))
			}
		}
	}
}

// rssCell is the command's peak RSS, and each daemon's when the tool has
// daemons (their CPU time is already in the CPU column).
func rssCell(s Stat) string {
	if len(s.Procs) == 0 {
		return mib(s.MaxRSS)
	}
	names := make([]string, 0, len(s.Procs))
	for n := range s.Procs {
		names = append(names, n)
	}
	sort.Strings(names)
	out := "cli " + mib(s.MaxRSS)
	for _, n := range names {
		out += ", " + n + " " + mib(s.Procs[n])
	}
	return out
}

// peakRSSOf is the largest peak RSS of any process of the stat.
func peakRSSOf(s Stat) int64 {
	m := s.MaxRSS
	for _, v := range s.Procs {
		m = max(m, v)
	}
	return m
}

// targets lists the report's targets in order.
func (r *Report) targets() []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range r.Stats {
		if !seen[s.Target] {
			seen[s.Target] = true
			out = append(out, s.Target)
		}
	}
	return out
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// SVG writes a grouped bar chart of median wall time per scenario and tool.
func (r *Report) SVG(w io.Writer) {
	var tools []string
	seen := map[string]bool{}
	var maxWall time.Duration
	series := func(s Stat) string { return s.Tool + " (" + s.Target + ")" }
	for _, s := range r.Stats {
		if !seen[series(s)] {
			seen[series(s)] = true
			tools = append(tools, series(s))
		}
		if s.Scenario != ScDedup {
			maxWall = max(maxWall, s.WallMed)
		}
	}
	colors := []string{"#2b6cb0", "#dd6b20", "#38a169", "#805ad5"}
	const left, barH, gap, width = 190, 14, 10, 460 // label column, bar, group gap, longest bar
	var scen []string
	for _, sc := range Scenarios {
		if sc != ScDedup {
			scen = append(scen, sc)
		}
	}
	height := 40 + len(scen)*(len(tools)*barH+gap) + 30
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", left+width+190, height)
	fmt.Fprintf(w, `<text x="10" y="18" font-size="13" font-weight="bold">%s: median wall time</text>`+"\n", escape(r.Title))
	y := 34
	for _, sc := range scen {
		fmt.Fprintf(w, `<text x="10" y="%d">%s</text>`+"\n", y+barH, escape(sc))
		for i, tool := range tools {
			var st *Stat
			for k := range r.Stats {
				if series(r.Stats[k]) == tool && r.Stats[k].Scenario == sc {
					st = &r.Stats[k]
				}
			}
			if st != nil && maxWall > 0 {
				bw := max(1, int(float64(width)*float64(st.WallMed)/float64(maxWall)))
				fmt.Fprintf(w, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, y, bw, barH-2, colors[i%len(colors)])
				fmt.Fprintf(w, `<text x="%d" y="%d">%s %s</text>`+"\n", left+bw+4, y+barH-4, escape(tool), dur(st.WallMed))
			}
			y += barH
		}
		y += gap
	}
	fmt.Fprintln(w, "</svg>")
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// WriteFiles writes report.md, report.json and chart.svg into dir.
func (r *Report) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var md, svg strings.Builder
	r.Markdown(&md)
	r.SVG(&svg)
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"report.md": []byte(md.String()), "report.json": js, "chart.svg": []byte(svg.String())} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
