//go:build !linux

package limits

// Other systems bound mappings by address space only; use Linux's default
// count as a conservative budget.
func mapCount() (int, error) { return defaultMapCount, nil }
