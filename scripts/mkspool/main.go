// Command mkspool fills a spool directory with N queued messages, written
// directly and without fsync, to measure how tlsrelay starts, lists and
// drains a large queue (docs/benchmarks.md). It is a measuring tool, not a
// way to queue mail: use `tlsrelay send` for that.
//
//	go run ./scripts/mkspool -dir /tmp/big-spool -n 100000 -size 4096 -provider sink
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tlsrelay/tlsrelay/queue"
)

func main() {
	dir := flag.String("dir", "", "spool directory to fill (created; must not hold a queue)")
	n := flag.Int("n", 100000, "messages")
	size := flag.Int("size", 4096, "bytes per message")
	provider := flag.String("provider", "sink", "provider name in each route")
	flag.Parse()
	if *dir == "" {
		log.Fatal("mkspool: -dir is required")
	}
	q := filepath.Join(*dir, "q")
	if err := os.MkdirAll(q, 0o700); err != nil {
		log.Fatal(err)
	}
	body := []byte("Subject: mkspool\r\n\r\n" + strings.Repeat("x", max(*size-22, 0)) + "\r\n")
	start := time.Now()
	for i := 0; i < *n; i++ {
		id := fmt.Sprintf("%016x-%012x", start.UnixNano()+int64(i), i)
		it := queue.Item{V: 1, ID: id, From: "app@example.com", Arrived: start.UTC(), Size: int64(len(body)),
			Client: "127.0.0.1", Rcpts: []queue.Rcpt{{Addr: "a@example.org", Route: []string{*provider},
				Status: queue.Pending, NextAttempt: start.UTC()}}}
		env, err := json.Marshal(it)
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(q, id+".eml"), body, 0o600); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(q, id+".json"), env, 0o600); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("mkspool: %d messages of %d bytes in %s (%s)\n", *n, len(body), q, time.Since(start).Round(time.Millisecond))
}
