package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Daemon is a long-running process of a tool (in fleet mode: the
// coordinator and the agent), measured around every command.
type Daemon struct {
	Name string
	Pid  int
}

// Daemons is implemented by tools that run daemons; their peak RSS and
// CPU time during each measured command are added to the measure.
type Daemons interface {
	Daemons() []Daemon
}

// Closer is implemented by tools that must stop something (daemons)
// when a repetition is over.
type Closer interface {
	Close() error
}

// clkTck: Linux reports process times in 100ths of a second.
const clkTck = 100

// procCPU reads a process's user+system time.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// utime and stime are fields 14 and 15 of the line, 12 and 13 here.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// resetPeakRSS makes the kernel's peak RSS of pid start again from its
// current RSS, so a daemon's peak can be read per command.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// peakRSS reads a process's peak RSS (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmHWM %q", pid, v)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// daemonMeter measures daemons around one command.
type daemonMeter struct {
	ds  []Daemon
	cpu []time.Duration
}

func startDaemonMeter(ds []Daemon) (*daemonMeter, error) {
	m := &daemonMeter{ds: ds, cpu: make([]time.Duration, len(ds))}
	for i, d := range ds {
		if err := resetPeakRSS(d.Pid); err != nil {
			return nil, fmt.Errorf("%s: reset peak RSS: %w", d.Name, err)
		}
		c, err := procCPU(d.Pid)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Name, err)
		}
		m.cpu[i] = c
	}
	return m, nil
}

// stop adds each daemon's CPU time to m and returns the peak RSS of each.
func (dm *daemonMeter) stop(m *Measure) error {
	for i, d := range dm.ds {
		c, err := procCPU(d.Pid)
		if err != nil {
			return fmt.Errorf("%s: %w", d.Name, err)
		}
		rss, err := peakRSS(d.Pid)
		if err != nil {
			return fmt.Errorf("%s: %w", d.Name, err)
		}
		m.CPU += c - dm.cpu[i]
		if m.Procs == nil {
			m.Procs = map[string]int64{}
		}
		m.Procs[d.Name] = rss
	}
	return nil
}
