package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// userHZ is the unit of the CPU times in /proc/PID/stat: Linux fixes it at
// 100 per second for user space, whatever the kernel's tick.
const userHZ = 100

// procCPUSeconds reads the user plus system CPU time of process pid from
// /proc/PID/stat (fields 14 and 15, after the command name in
// parentheses, which may itself hold spaces and parentheses).
func procCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: broker CPU: %w", err)
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: broker CPU: /proc stat without a command name: %q", b)
	}
	// After ") ": state is field 3, utime field 14, stime field 15.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: broker CPU: short /proc stat: %q", b)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: broker CPU: bad /proc stat times %q %q", f[11], f[12])
	}
	return float64(utime+stime) / userHZ, nil
}

// loadAverage returns the 1-minute load average from /proc/loadavg, or
// -1 when it cannot be read.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
