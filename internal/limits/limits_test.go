package limits

import "testing"

func TestLimits(t *testing.T) {
	before := OpenFiles()
	after, err := RaiseOpenFiles()
	if err != nil {
		t.Fatal(err)
	}
	if after < before || OpenFiles() != after {
		t.Fatalf("open files %d, raised to %d, now %d", before, after, OpenFiles())
	}
	if MapCount() <= 0 {
		t.Fatal("no map count")
	}
}
