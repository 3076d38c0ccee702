package record

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestControlBatch checks a marker against franz-go's decoders of the
// control record key and the EndTxnMarker value, and ControlType.
func TestControlBatch(t *testing.T) {
	for _, commit := range []bool{false, true} {
		b := AppendControlBatch(nil, 42, 7, commit, 3, 1234)
		h, err := Validate(b)
		if err != nil {
			t.Fatal(err)
		}
		if !h.IsControl() || !h.IsTransactional() || h.ProducerID != 42 || h.ProducerEpoch != 7 || h.BaseSequence != -1 || h.RecordCount != 1 || h.BaseTimestamp != 1234 {
			t.Fatalf("header %+v", h)
		}
		if err := CheckRecords(&h, b); err != nil {
			t.Fatal(err)
		}
		var kb kmsg.RecordBatch
		if err := kb.ReadFrom(b); err != nil {
			t.Fatal(err)
		}
		var rec kmsg.Record
		if err := rec.ReadFrom(kb.Records); err != nil {
			t.Fatal(err)
		}
		var key kmsg.ControlRecordKey
		if err := key.ReadFrom(rec.Key); err != nil {
			t.Fatal(err)
		}
		var val kmsg.EndTxnMarker
		if err := val.ReadFrom(rec.Value); err != nil {
			t.Fatal(err)
		}
		want := kmsg.ControlRecordKeyTypeAbort
		if commit {
			want = kmsg.ControlRecordKeyTypeCommit
		}
		if key.Version != 0 || key.Type != want || val.Version != 0 || val.CoordinatorEpoch != 3 {
			t.Fatalf("commit=%v: key %+v value %+v", commit, key, val)
		}
		typ, err := ControlType(b)
		if err != nil || typ != int16(want) {
			t.Fatalf("ControlType = %d, %v", typ, err)
		}
		if ce, err := MarkerCoordinatorEpoch(b); err != nil || ce != 3 {
			t.Fatalf("MarkerCoordinatorEpoch = %d, %v", ce, err)
		}
	}
}

func TestControlTypeErrors(t *testing.T) {
	noRecords := AppendBatch(nil, Batch{Attributes: Transactional | Control})
	if _, err := ControlType(noRecords); !errors.Is(err, ErrCorrupt) {
		t.Errorf("no record: %v", err)
	}
	short := AppendBatch(nil, Batch{Attributes: Transactional | Control, Records: []Record{{Key: []byte{0, 0}}}})
	if _, err := ControlType(short); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short key: %v", err)
	}
	if _, err := ControlType([]byte{1, 2, 3}); err == nil {
		t.Error("garbage accepted")
	}
	if _, err := MarkerCoordinatorEpoch(noRecords); !errors.Is(err, ErrCorrupt) {
		t.Errorf("MarkerCoordinatorEpoch, no record: %v", err)
	}
	shortValue := AppendBatch(nil, Batch{Attributes: Transactional | Control, Records: []Record{{Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 1}}}})
	if _, err := MarkerCoordinatorEpoch(shortValue); !errors.Is(err, ErrCorrupt) {
		t.Errorf("MarkerCoordinatorEpoch, value of 5 bytes: %v", err)
	}
}

func FuzzControlType(f *testing.F) {
	f.Add(AppendControlBatch(nil, 1, 0, true, 0, 0))
	f.Add(AppendControlBatch(nil, 1, 0, false, 0, 0))
	f.Add(kmsgBatch(1, Control|Transactional))
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, err := ControlType(b)
		if err == nil && typ < 0 {
			t.Fatalf("type %d accepted", typ)
		}
		if _, err := MarkerCoordinatorEpoch(b); err == nil && len(b) < HeaderSize {
			t.Fatalf("a coordinator epoch from %d bytes", len(b))
		}
	})
}
