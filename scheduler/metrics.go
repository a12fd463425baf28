package scheduler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-backup/cairn/agent"
	"github.com/cairn-backup/cairn/repo"
)

type metrics struct {
	reg         *prometheus.Registry
	backups     *prometheus.CounterVec
	bytesRead   prometheus.Counter
	bytesAdded  prometheus.Counter
	dedup       prometheus.Gauge
	nodes       *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	sessions    prometheus.Gauge
	gcRuns      prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		backups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_backups_total", Help: "Backups run, by result.",
		}, []string{"result"}),
		bytesRead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_backup_read_bytes_total", Help: "File bytes read by backups.",
		}),
		bytesAdded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_backup_added_bytes_total", Help: "Bytes of new packs stored by backups.",
		}),
		dedup: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_dedup_ratio", Help: "Logical bytes of live snapshots over stored bytes.",
		}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_nodes", Help: "Registered nodes by state.",
		}, []string{"state"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_last_success_timestamp_seconds", Help: "Time of the last successful backup per node and path.",
		}, []string{"node", "path"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_sessions_open", Help: "Backup sessions open.",
		}),
		gcRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_gc_runs_total", Help: "Garbage collections completed.",
		}),
	}
	m.reg.MustRegister(m.backups, m.bytesRead, m.bytesAdded, m.dedup, m.nodes, m.lastSuccess, m.sessions, m.gcRuns)
	m.backups.WithLabelValues("ok")
	m.backups.WithLabelValues("failed")
	return m
}

func (m *metrics) backupDone(node, path string, s repo.Summary, at time.Time) {
	m.backups.WithLabelValues("ok").Inc()
	m.bytesRead.Add(float64(s.BytesRead))
	m.bytesAdded.Add(float64(s.StoredAdded))
	m.lastSuccess.WithLabelValues(node, path).Set(float64(at.Unix()))
}

func (m *metrics) backupFailed() { m.backups.WithLabelValues("failed").Inc() }

func (m *metrics) updateDedup(l *agent.Local) {
	sns, err := l.Index.Snapshots()
	if err != nil {
		return
	}
	packs, err := l.Index.Packs()
	if err != nil {
		return
	}
	var logical, stored float64
	for _, sn := range sns {
		logical += float64(sn.Summary.TotalSize)
	}
	for _, p := range packs {
		stored += float64(p.Size)
	}
	if stored > 0 {
		m.dedup.Set(logical / stored)
	}
}

func (c *Coordinator) refreshNodeMetrics() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refreshNodeMetricsLocked()
}

func (c *Coordinator) refreshNodeMetricsLocked() {
	up, down := 0, 0
	for _, n := range c.nodes {
		if n.Down {
			down++
		} else {
			up++
		}
	}
	c.metrics.nodes.WithLabelValues("up").Set(float64(up))
	c.metrics.nodes.WithLabelValues("down").Set(float64(down))
}
