package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// The command name may hold spaces and parentheses; utime and stime
	// are the 14th and 15th fields.
	line := "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 125 0 0 20 0 9 0 100 1000 10 18446744073709551615\n"
	got, err := parseProcStat([]byte(line))
	if err != nil || got != 3.75 {
		t.Fatalf("parseProcStat = %v, %v; want 3.75", got, err)
	}
	for _, bad := range []string{"", "4242 (x S 1", "4242 (x) S 1 2", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 u s"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q) succeeded", bad)
		}
	}
}

// TestProcCPUSeconds reads this process's CPU time from /proc and checks
// it against getrusage after some work.
func TestProcCPUSeconds(t *testing.T) {
	before, err := procCPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := procCPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	u, s, _ := processCPU()
	// On a loaded machine the loop may get a fraction of a core.
	if after <= before || after > (u+s).Seconds()+0.05 {
		t.Fatalf("cpu %.2fs then %.2fs; getrusage says %.2fs", before, after, (u + s).Seconds())
	}
	if _, err := procCPUSeconds(1 << 30); err == nil {
		t.Fatal("a missing process has a CPU time")
	}
	if l := loadAverage(); l < 0 {
		t.Fatalf("load average %v", l)
	}
}
