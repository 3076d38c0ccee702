package meta

import (
	"math"
	"testing"
)

// TestCompactionConfigs: cleanup.policy and the compaction configs reach
// the partitions' log settings with Kafka's meanings; bad values are
// refused.
func TestCompactionConfigs(t *testing.T) {
	b := &Settings{static: map[string]string{"log.cleaner.delete.retention.ms": "5000"}, dynamic: map[string]string{}}
	for _, c := range []struct {
		policy            string
		compact, noDelete bool
	}{{"delete", false, false}, {"compact", true, true}, {"compact,delete", true, false}, {"delete, compact", true, false}} {
		cfg := b.partitionConfig(map[string]string{"cleanup.policy": c.policy})
		if cfg.Log.Compact != c.compact || cfg.Log.NoDelete != c.noDelete {
			t.Errorf("cleanup.policy=%s: compact %v, no delete %v", c.policy, cfg.Log.Compact, cfg.Log.NoDelete)
		}
	}
	cfg := b.partitionConfig(map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.2",
		"min.compaction.lag.ms": "7", "max.compaction.lag.ms": "9000"})
	if l := cfg.Log; l.MinCleanableDirtyRatio != 0.2 || l.MinCompactionLagMs != 7 || l.MaxCompactionLagMs != 9000 || l.DeleteRetentionMs != 5000 {
		t.Fatalf("log settings %+v", l)
	}
	// Kafka's zeros keep their meaning: clean whatever is dirty, remove
	// tombstones at the next pass.
	cfg = b.partitionConfig(map[string]string{"min.cleanable.dirty.ratio": "0", "delete.retention.ms": "0"})
	if l := cfg.Log; l.MinCleanableDirtyRatio <= 0 || l.MinCleanableDirtyRatio > 1e-6 || l.DeleteRetentionMs != 1 {
		t.Fatalf("zeros: %+v", l)
	}
	cfg = b.partitionConfig(nil)
	if l := cfg.Log; l.MinCleanableDirtyRatio != 0.5 || l.MaxCompactionLagMs != math.MaxInt64 || l.MinCompactionLagMs != 0 {
		t.Fatalf("defaults: %+v", l)
	}
	for name, v := range map[string]string{"min.cleanable.dirty.ratio": "1.5", "delete.retention.ms": "-1", "max.compaction.lag.ms": "0", "cleanup.policy": "shred"} {
		if err := validateTopicConfig(name, &v); err == nil {
			t.Errorf("%s=%s accepted", name, v)
		}
	}
	for name, v := range map[string]string{"log.cleaner.threads": "-1", "log.cleaner.io.buffer.load.factor": "2", "log.cleaner.enable": "yes"} {
		if err := validateBrokerConfig(name, v); err == nil {
			t.Errorf("%s=%s accepted", name, v)
		}
	}
}

// TestCleanerWiring: the store runs a cleaner for the partitions of
// compacted topics, but not for internal topics, whose coordinators keep
// them bounded; log.cleaner.enable=false runs none; Close stops it.
func TestCleanerWiring(t *testing.T) {
	s := openStore(t, t.TempDir())
	if s.cleaner == nil {
		t.Fatal("no cleaner by default")
	}
	user, err := s.CreateTopic(NewTopic{Name: "table", Partitions: 1, ReplicationFactor: 1, Configs: map[string]*string{"cleanup.policy": str("compact")}})
	if err != nil {
		t.Fatal(err)
	}
	internal, err := s.CreateTopic(NewTopic{Name: "__consumer_offsets", Partitions: 1, ReplicationFactor: 1, Internal: true, Configs: map[string]*string{"cleanup.policy": str("compact")}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.partitionConfig(user); cfg.Log.Cleaner != s.cleaner || !cfg.Log.Compact {
		t.Fatal("a compacted topic without the cleaner")
	}
	if cfg := s.partitionConfig(internal); cfg.Log.Cleaner != nil {
		t.Fatal("an internal topic given to the cleaner")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	off, err := Open(Config{DataDir: t.TempDir(), Logger: testLogger(), Props: map[string]string{"log.cleaner.enable": "false"}})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if off.cleaner != nil {
		t.Fatal("a cleaner with log.cleaner.enable=false")
	}
	if _, err := Open(Config{DataDir: t.TempDir(), Props: map[string]string{"log.cleaner.threads": "x"}}); err == nil {
		t.Fatal("a broker started with log.cleaner.threads=x")
	}
}
