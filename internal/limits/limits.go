// Package limits reads and raises the process limits that bound how many
// segments a broker can hold open: open files (RLIMIT_NOFILE) and memory
// mappings (vm.max_map_count on Linux). The calls differ by system and
// live in one small file per OS.
package limits

// Fallbacks where a system has no such limit or it cannot be read.
const (
	defaultOpenFiles = 1024
	defaultMapCount  = 65530 // Linux's default vm.max_map_count
)

// OpenFiles returns the current (soft) limit on open files.
func OpenFiles() int {
	n, err := openFiles()
	if err != nil || n <= 0 {
		return defaultOpenFiles
	}
	return n
}

// RaiseOpenFiles raises the soft limit on open files to the hard limit and
// returns the new soft limit.
func RaiseOpenFiles() (int, error) { return raiseOpenFiles() }

// MapCount returns how many memory mappings the process may hold.
func MapCount() int {
	n, err := mapCount()
	if err != nil || n <= 0 {
		return defaultMapCount
	}
	return n
}
