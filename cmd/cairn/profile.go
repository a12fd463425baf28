package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"time"
)

// startProfiles starts the profiles developers ask for through the
// environment (kept out of the flags users see):
//
//	CAIRN_CPUPROFILE=FILE   CPU profile of the whole run
//	CAIRN_HEAPPROFILE=FILE  heap profile taken when the live heap peaks,
//	                        which is what decides peak RSS
//	CAIRN_TRACE=FILE        execution trace (`go tool trace`), which shows
//	                        where wall time goes when CPU does not explain it
//
// The returned function stops them and writes the files.
func startProfiles() (stop func()) {
	var stops []func()
	if path := os.Getenv("CAIRN_CPUPROFILE"); path != "" {
		stops = append(stops, recordTo(path, "cpu profile", pprof.StartCPUProfile, pprof.StopCPUProfile))
	}
	if path := os.Getenv("CAIRN_TRACE"); path != "" {
		stops = append(stops, recordTo(path, "trace", trace.Start, trace.Stop))
	}
	if path := os.Getenv("CAIRN_HEAPPROFILE"); path != "" {
		stops = append(stops, watchHeapPeak(path))
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// recordTo starts a recording into the file at path and returns what
// stops it. A file that cannot be made is a warning, not an error: the
// command runs on unrecorded.
func recordTo(path, what string, start func(io.Writer) error, stop func()) func() {
	f, err := os.Create(path)
	if err == nil {
		if err = start(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "warning: %s: %v\n", what, err)
		return func() {}
	}
	return func() { stop(); f.Close() }
}

// watchHeapPeak samples the live heap and rewrites the heap profile each
// time it grows by a tenth over the last one written.
func watchHeapPeak(path string) func() {
	done, finished := make(chan struct{}), make(chan struct{})
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	write := func() {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "warning: heap profile: %v\n", err)
			return
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			fmt.Fprintf(os.Stderr, "warning: heap profile: %v\n", err)
		}
	}
	go func() {
		defer close(finished)
		var peak uint64
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				if peak == 0 {
					runtime.GC()
					write()
				}
				return
			case <-tick.C:
			}
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak+peak/10 {
				peak = v
				write()
			}
		}
	}()
	return func() { close(done); <-finished }
}
