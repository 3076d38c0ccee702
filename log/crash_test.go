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

	"github.com/ferrymq/ferry/record"
)

// crashChildEnv names the directory a re-executed test binary appends to.
const crashChildEnv = "FERRY_LOG_CRASH_CHILD"

// TestMain lets the test binary act as the crash test's child process.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	if dir := os.Getenv(cleanChildEnv); dir != "" {
		cleanChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashChild appends batches derived from their offsets, syncing each, and
// reports every synced offset on stdout until it is killed.
func crashChild(dir string) {
	l, err := Open(dir, Config{SegmentBytes: 64 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		off := l.NextOffset()
		b, h := gen(off, 1+i%5, 50+i%700, int64(i))
		if _, err := l.Append(b, &h); err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(2)
		}
		if i%3 == 0 { // not every batch is synced; unsynced ones may vanish
			if err := l.Sync(); err != nil {
				fmt.Fprintln(os.Stderr, "sync:", err)
				os.Exit(2)
			}
			fmt.Fprintln(w, h.NextOffset())
			w.Flush()
		}
	}
}

// TestCrash SIGKILLs a child appending with Sync at random moments and
// checks after each kill that every synced batch is present, byte for
// byte, and that nothing corrupt is served.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	dir := t.TempDir()
	rounds := 25
	var synced int64
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan int64, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if n, err := strconv.ParseInt(strings.TrimSpace(sc.Text()), 10, 64); err == nil {
					lines <- n
				}
			}
		}()
		time.Sleep(time.Duration(20+rng.IntN(120)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		for n := range lines {
			synced = max(synced, n)
		}
		cmd.Wait()
		if strings.Contains(stderr.String(), "append:") || strings.Contains(stderr.String(), "sync:") || strings.Contains(stderr.String(), "open:") {
			t.Fatalf("child failed: %s", stderr.String())
		}
		verifyCrashLog(t, dir, synced)
	}
	t.Logf("%d rounds, %d offsets synced", rounds, synced)
	if synced == 0 {
		t.Fatal("child never synced anything")
	}
}

func verifyCrashLog(t *testing.T, dir string, synced int64) {
	t.Helper()
	l, err := Open(dir, Config{SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer l.Close()
	if l.NextOffset() < synced {
		t.Fatalf("lost synced data: log ends at %d, %d were synced", l.NextOffset(), synced)
	}
	off := int64(0)
	for off < l.NextOffset() {
		v, err := l.Read(off, l.NextOffset(), 1<<20, true)
		if err != nil || len(v.Data) == 0 {
			t.Fatalf("read %d: %v", off, err)
		}
		data := v.Data
		for len(data) > 0 {
			h, err := record.Validate(data)
			if err != nil {
				t.Fatalf("corrupt batch served at %d: %v", off, err)
			}
			if h.BaseOffset != off {
				t.Fatalf("batch at %d has base %d", off, h.BaseOffset)
			}
			// The batch must be exactly the one the child wrote there.
			if err := checkGen(data[:h.Size()], off); err != nil {
				t.Fatalf("batch at %d: %v", off, err)
			}
			off = h.NextOffset()
			data = data[h.Size():]
		}
		v.Release()
	}
}

// checkGen verifies that every record of a batch holds what gen wrote.
func checkGen(batch []byte, off int64) error {
	i := int64(0)
	return record.ForEach(batch, func(r *record.Record) error {
		want := fmt.Sprint(off + i)
		if string(r.Key) != want || (len(r.Value) > 0 && !bytes.HasPrefix([]byte(want+"."), r.Value[:min(len(r.Value), len(want)+1)])) {
			return fmt.Errorf("record %d holds key %q", off+i, r.Key)
		}
		i++
		return nil
	})
}
