package log

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cleanChildEnv names the directory a re-executed test binary appends
// to while its Cleaner compacts it (TestCleanKill).
const cleanChildEnv = "FERRY_LOG_CLEAN_CHILD"

// cleanKillConfig is the log config of TestCleanKill's child and of its
// checks.
func cleanKillConfig() Config {
	return Config{SegmentBytes: 4 << 10, IndexIntervalBytes: 512, Compact: true, NoDelete: true,
		MinCleanableDirtyRatio: 0.05, DeleteRetentionMs: 50}
}

// killBatch is the batch the child writes at offset off: 1 to 5 records
// whose keys and values derive from their offsets, every seventh a
// tombstone, so that the parent can tell what the log must hold.
func killBatch(off int64) []kv {
	n := 1 + int(off%5)
	recs := make([]kv, n)
	for i := range recs {
		o := off + int64(i)
		k := fmt.Sprintf("k%d", o*31%40)
		if o%7 == 0 {
			recs[i] = del(k)
		} else {
			recs[i] = put(k, killValue(o))
		}
	}
	return recs
}

// killValue is the value of the record at offset o.
func killValue(o int64) string { return fmt.Sprintf("%d.%s", o, strings.Repeat("v", int(o%200))) }

// cleanChild appends killBatch batches, syncing every eighth, while a
// Cleaner with a 5 ms backoff compacts the log, and reports on stdout the
// synced log end and the cleaner's passes, until it is killed.
func cleanChild(dir string) {
	c := NewCleaner(CleanerConfig{Backoff: 5 * time.Millisecond, DedupeBufferSize: 1 << 20})
	cfg := cleanKillConfig()
	cfg.Cleaner = c
	l, err := Open(dir, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		off := l.NextOffset()
		b, h := kvBatch(nil, killBatch(off), batchOpts{codec: i % 5, ts: time.Now().UnixMilli(), producer: -1})
		if _, err := l.Append(b, &h); err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(2)
		}
		if i%8 == 0 {
			if err := l.Sync(); err != nil {
				fmt.Fprintln(os.Stderr, "sync:", err)
				os.Exit(2)
			}
			fmt.Fprintln(w, h.NextOffset(), c.Stats().Passes)
			w.Flush()
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // let the cleaner run on a loaded machine
		}
	}
}

// TestCleanKill SIGKILLs a process appending to a compacted log while its
// Cleaner runs, at random moments, and checks after each kill that the
// log opens with nothing of an unfinished pass left and reads back as the
// map of everything written, every record where it was written.
func TestCleanKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kill test skipped in -short mode")
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	dir := t.TempDir()
	var synced, passes int64
	// 15 rounds, and more (up to 40) until the children have cleaned: a
	// loaded machine may slow them down that much; those rounds wait for
	// the child's first pass.
	for round := 0; round < 15 || (passes == 0 && round < 40); round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), cleanChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan [2]int64, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) != 2 {
					continue
				}
				a, err1 := strconv.ParseInt(f[0], 10, 64)
				b, err2 := strconv.ParseInt(f[1], 10, 64)
				if err1 == nil && err2 == nil {
					lines <- [2]int64{a, b}
				}
			}
		}()
		// Killed after 0.3 to 1 s; past round 15 with no pass yet, once
		// the child reports one (a loaded machine).
		waitPass := round >= 15 && passes == 0
		kill := time.After(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		if waitPass {
			kill = time.After(60 * time.Second)
		}
		var roundPasses int64
		for running := true; running; {
			select {
			case v, ok := <-lines:
				if !ok {
					running = false // the child died on its own
					continue
				}
				synced = max(synced, v[0])
				roundPasses = max(roundPasses, v[1])
				if waitPass && v[1] > 0 {
					waitPass = false
					kill = time.After(time.Duration(rng.IntN(100)) * time.Millisecond)
				}
			case <-kill:
				running = false
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for v := range lines {
			synced = max(synced, v[0])
			roundPasses = max(roundPasses, v[1])
		}
		passes += roundPasses
		cmd.Wait()
		if s := stderr.String(); strings.Contains(s, "open:") || strings.Contains(s, "append:") || strings.Contains(s, "sync:") {
			t.Fatalf("round %d: child failed: %s", round, s)
		}
		l, err := Open(dir, cleanKillConfig())
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		checkDir(t, dir)
		if l.NextOffset() < synced {
			t.Fatalf("round %d: log ends at %d, %d were synced", round, l.NextOffset(), synced)
		}
		m := newModel()
		for off := int64(0); off < l.NextOffset(); {
			recs := killBatch(off)
			m.apply(off, recs)
			off += int64(len(recs))
		}
		for _, r := range checkView(t, l, m) {
			if !r.tomb && r.val != killValue(r.off) {
				t.Fatalf("round %d: record at %d holds %q", round, r.off, r.val)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d offsets synced, %d cleaning passes in the children", synced, passes)
	if passes == 0 {
		t.Fatal("the children never cleaned")
	}
}
