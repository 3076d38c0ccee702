//go:build !linux

package bench

import "fmt"

// procCPUSeconds needs /proc (Linux); elsewhere name the broker by its
// admin listener instead.
func procCPUSeconds(pid int) (float64, error) {
	return 0, fmt.Errorf("%w: reading process %d's CPU time needs Linux's /proc; use the broker's admin listener", ErrUnsupported, pid)
}

// loadAverage is not read on this system: -1.
func loadAverage() float64 { return -1 }
