package console

import (
	"testing"
	"time"
)

func TestPartsOf(t *testing.T) {
	for _, c := range []struct {
		in   []int32
		want string
	}{
		{nil, ""},
		{[]int32{3}, "3"},
		{[]int32{8, 0, 2, 1, 5, 7}, "0-2,5,7-8"},
		{[]int32{4, 5}, "4-5"},
	} {
		got := partsOf("t", c.in)
		if got.Partitions != c.want || got.Count != len(c.in) || got.Topic != "t" {
			t.Errorf("partsOf(%v) = %+v, want %q", c.in, got, c.want)
		}
	}
}

func TestPageWindow(t *testing.T) {
	for _, c := range []struct {
		offset, limit, n, lo, hi int
	}{
		{0, 50, 0, 0, 0},
		{0, 50, 10, 0, 10},
		{40, 50, 100, 40, 90},
		{90, 50, 100, 90, 100},
		{500, 50, 100, 100, 100},
	} {
		p := page{Offset: c.offset, Limit: c.limit}
		lo, hi := p.window(c.n)
		if lo != c.lo || hi != c.hi || p.Total != c.n {
			t.Errorf("window(%d) of %+v = [%d,%d) total %d, want [%d,%d)", c.n, c, lo, hi, p.Total, c.lo, c.hi)
		}
	}
}

func TestParseTime(t *testing.T) {
	want := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC).UnixMilli()
	for _, s := range []string{"1795687200000", "2026-11-26T10:00:00Z", "2026-11-26T11:00:00+01:00"} {
		if got, err := parseTime(s); err != nil || got != want {
			t.Errorf("parseTime(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	if _, err := parseTime("noon"); err == nil {
		t.Error("parseTime(noon) succeeded")
	}
}

func TestViewBytes(t *testing.T) {
	if viewBytes(nil) != nil {
		t.Error("nil bytes are not null")
	}
	v := viewBytes([]byte(`{"a":1}`))
	if !v.JSON || !v.UTF8 || v.Truncated || v.Size != 7 {
		t.Errorf("JSON: %+v", v)
	}
	v = viewBytes([]byte{0xff, 0xfe})
	if v.JSON || v.UTF8 {
		t.Errorf("binary: %+v", v)
	}
	big := make([]byte, maxShownBytes+1)
	v = viewBytes(big)
	if !v.Truncated || len(v.Data) != maxShownBytes || v.Size != maxShownBytes+1 || v.JSON {
		t.Errorf("large: size %d shown %d truncated %v", v.Size, len(v.Data), v.Truncated)
	}
}
