package meta

import (
	"bytes"
	"log/slog"
	"testing"
)

// FuzzApply decodes metadata records as a replay does and applies them to
// an image: bytes from disk never panic, and the image stays consistent
// (every topic is found by its name and by its id, with no partition
// opened by a replay).
func FuzzApply(f *testing.F) {
	id := `"topic_id":"0102030405060708090a0b0c0d0e0f10"`
	for _, seed := range []string{
		`topic={"v":1,"topic":"a",` + id + `,"partitions":3,"configs":{"retention.ms":"5"}}`,
		`topic={"v":1,"topic":"a",` + id + `,"partitions":3}` + "\n" + `partitions={"v":1,` + id + `,"partitions":5}`,
		`config={"v":1,"resource":"topic",` + id + `,"key":"segment.bytes","value":"100"}`,
		`config={"v":1,"resource":"broker","key":"num.partitions","value":"3"}` + "\n" + `config={"v":1,"resource":"broker","key":"num.partitions"}`,
		`topic={"v":1,"topic":"a",` + id + `,"partitions":1}` + "\n" + `remove_topic={"v":1,` + id + `}`,
		`producer_ids={"v":1,"next_producer_id":1000}`,
		`topic={"v":1,"topic":"b","topic_id":"zz","partitions":-4}`,
		`unknown={"v":9}`,
		`scram={"v":1,"user":"u","mechanism":"SCRAM-SHA-256","scram":{"salt":"AA==","iterations":4096,"stored_key":"AA==","server_key":"AA=="}}` + "\n" + `remove_scram={"v":1,"user":"u","mechanism":"SCRAM-SHA-256"}`,
		`acl={"v":1,"acl":{"resource_type":2,"resource_name":"t","pattern_type":3,"principal":"User:a","host":"*","operation":4,"permission":3}}` + "\n" + `remove_acl={"v":1}`,
		`client_quota={"v":1,"entity":[{"type":"user","name":"a"},{"type":"client-id"}],"key":"producer_byte_rate","value":"1e3"}` + "\n" + `client_quota={"v":1,"key":"x","value":"nan"}`,
		`topic={"v":1,"topic":"a",` + id + `,"partitions":1}` + "\n" + `topic={"v":1,"topic":"b",` + id + `,"partitions":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newStore(Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}, map[string]string{})
		for _, line := range bytes.Split(data, []byte("\n")) {
			key, value, _ := bytes.Cut(line, []byte("="))
			r, err := decodeRecord(key, value)
			if err != nil {
				continue
			}
			if r.Partitions > 1000 || r.Partitions < -1000 {
				continue // each would take a slot; bounded for the fuzzer's memory
			}
			_ = s.apply(Entry{Records: []Record{r}})
		}
		s.image.mu.RLock()
		defer s.image.mu.RUnlock()
		for name, tp := range s.image.byName {
			if tp.name != name || s.image.byID[tp.id] != tp {
				t.Fatalf("topic %q: by name and by id disagree", name)
			}
			for i := range tp.NumPartitions() {
				if p, err := tp.Partition(i); p != nil || err == nil {
					t.Fatalf("topic %q partition %d opened by a replay", name, i)
				}
			}
		}
		if s.reservedPIDs.Load() < 0 {
			t.Fatalf("reserved producer ids %d", s.reservedPIDs.Load())
		}
	})
}
