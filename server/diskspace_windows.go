package server

import "golang.org/x/sys/windows"

// diskSpace returns the total and usable bytes of the volume holding dir,
// or -1, -1.
func diskSpace(dir string) (total, usable int64) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return -1, -1
	}
	var free, all, allFree uint64
	if windows.GetDiskFreeSpaceEx(p, &free, &all, &allFree) != nil {
		return -1, -1
	}
	return int64(all), int64(free)
}
