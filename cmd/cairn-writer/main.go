// Command cairn-writer keeps a folder changing, for the docker-compose demo
// and its test: it appends one line a second to one of a few log files and
// keeps a static file, so every backup finds a little new data.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	dir := flag.String("dir", "/data", "folder to write into")
	files := flag.Int("files", 3, "number of log files to rotate through")
	every := flag.Duration("every", time.Second, "time between lines")
	flag.Parse()
	if err := run(*dir, *files, *every); err != nil {
		fmt.Fprintln(os.Stderr, "cairn-writer:", err)
		os.Exit(1)
	}
}

func run(dir string, files int, every time.Duration) error {
	if files < 1 {
		return fmt.Errorf("--files %d: want at least 1", files)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	host, _ := os.Hostname()
	static := filepath.Join(dir, "README.txt")
	if _, err := os.Stat(static); os.IsNotExist(err) {
		if err := os.WriteFile(static, []byte("data written by cairn-writer on "+host+"\n"), 0o644); err != nil {
			return err
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 0; ; n++ {
		name := filepath.Join(dir, fmt.Sprintf("log-%d.txt", n%files))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(f, "%s line %d from %s\n", time.Now().UTC().Format(time.RFC3339Nano), n, host)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		select {
		case <-sig:
			return nil
		case <-t.C:
		}
	}
}
