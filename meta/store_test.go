package meta

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrymq/ferry/internal/dirlock"
	"github.com/ferrymq/ferry/partition"
)

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("FERRY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// openStore opens a store on dir and closes it when the test ends.
func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Config{DataDir: dir, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func str(s string) *string { return &s }

// TestReplay changes topics, configs and producer ids, reopens the store
// and finds the same image.
func TestReplay(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	a, err := s.CreateTopic(NewTopic{Name: "a", Partitions: 2, ReplicationFactor: 1, Configs: map[string]*string{"retention.ms": str("1000")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTopic(NewTopic{Name: "gone", Partitions: 1, ReplicationFactor: -1}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddPartitions(a, 3, false); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterTopicConfigs(a, Alter{Changes: map[string]*string{"retention.ms": nil, "segment.bytes": str("1048576")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterBrokerConfigs("", Alter{Changes: map[string]*string{"num.partitions": str("4")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTopic(s.Topic("gone")); err != nil {
		t.Fatal(err)
	}
	var pids []int64
	for range 3 {
		id, err := s.NextProducerID()
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, id)
	}
	if _, err := s.CreateTopic(NewTopic{Name: "a", Partitions: 1, ReplicationFactor: 1}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("creating a again: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir)
	a = s.Topic("a")
	if a == nil || a.NumPartitions() != 3 || s.TopicByID(a.ID()) != a {
		t.Fatalf("topic a after reopen: %+v", a)
	}
	if got := a.Configs(); len(got) != 1 || got["segment.bytes"] != "1048576" {
		t.Fatalf("configs of a = %v", got)
	}
	for i := range a.NumPartitions() {
		if p, err := a.Partition(i); err != nil || p == nil {
			t.Fatalf("partition %d: %v", i, err)
		}
	}
	if _, err := a.Partition(3); !errors.Is(err, ErrUnknownTopicOrPartition) {
		t.Fatalf("partition 3: %v", err)
	}
	if s.Topic("gone") != nil {
		t.Fatal("deleted topic is back")
	}
	if n := s.Settings().Int64("num.partitions"); n != 4 {
		t.Fatalf("num.partitions = %d", n)
	}
	id, err := s.NextProducerID()
	if err != nil || id <= pids[len(pids)-1] {
		t.Fatalf("producer id after reopen = %d, %v; before: %v", id, err, pids)
	}
}

// TestValidation: bad requests change nothing and name their error.
func TestValidation(t *testing.T) {
	s := openStore(t, t.TempDir())
	for _, c := range []struct {
		nt   NewTopic
		want error
	}{
		{NewTopic{Name: "bad/name", Partitions: 1, ReplicationFactor: 1}, ErrInvalidTopic},
		{NewTopic{Name: "__cluster_metadata", Partitions: 1, ReplicationFactor: 1}, ErrInvalidTopic},
		{NewTopic{Name: "z", Partitions: 0, ReplicationFactor: 1}, ErrInvalidPartitions},
		{NewTopic{Name: "z", Partitions: maxPartitions + 1, ReplicationFactor: 1}, ErrInvalidPartitions},
		{NewTopic{Name: "z", Partitions: 1, ReplicationFactor: 2}, ErrInvalidReplicationFactor},
		{NewTopic{Name: "z", Partitions: 1, ReplicationFactor: 1, Configs: map[string]*string{"retention.ms": str("x")}}, ErrInvalidConfig},
		{NewTopic{Name: "z", Partitions: 1, ReplicationFactor: 1, Configs: map[string]*string{"no.such": str("1")}}, ErrInvalidConfig},
	} {
		if err := s.ValidateTopic(c.nt); !errors.Is(err, c.want) {
			t.Errorf("ValidateTopic(%+v) = %v, want %v", c.nt, err, c.want)
		}
		if _, err := s.CreateTopic(c.nt); !errors.Is(err, c.want) {
			t.Errorf("CreateTopic(%+v) = %v, want %v", c.nt, err, c.want)
		}
	}
	if len(s.Topics()) != 0 {
		t.Fatalf("topics after refused creations: %d", len(s.Topics()))
	}
	if _, err := s.CreateTopic(NewTopic{Name: "a.b", Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTopic(NewTopic{Name: "a_b", Partitions: 1, ReplicationFactor: 1}); !errors.Is(err, ErrInvalidTopic) {
		t.Fatalf("colliding topic: %v", err)
	}
	if err := s.AlterBrokerConfigs("", Alter{Changes: map[string]*string{"node.id": str("3")}}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("static broker config: %v", err)
	}
	if err := s.AlterBrokerConfigs("7", Alter{Changes: map[string]*string{"num.partitions": str("3")}}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("other broker: %v", err)
	}
}

// TestStartDirectories: at start a partition directory that is gone is
// created again, empty (as Kafka does); an empty one without
// partition.metadata (a creation stopped early) is adopted; one with
// files but no partition.metadata is offline, and kept as it is.
func TestStartDirectories(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, err := s.CreateTopic(NewTopic{Name: "d", Partitions: 3, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.RemoveAll(filepath.Join(dir, "d-0")))
	must(os.RemoveAll(filepath.Join(dir, "d-1")))
	must(os.Mkdir(filepath.Join(dir, "d-1"), 0o755))
	must(os.Remove(filepath.Join(dir, "d-2", "partition.metadata")))
	kept := dirNames(t, filepath.Join(dir, "d-2"))

	s = openStore(t, dir)
	d := s.Topic("d")
	for i := range int32(2) {
		if _, err := d.Partition(i); err != nil {
			t.Errorf("partition %d: %v", i, err)
		}
	}
	if _, err := d.Partition(2); !errors.Is(err, ErrOffline) {
		t.Errorf("partition 2 without partition.metadata: %v", err)
	}
	s.Close()
	if got := dirNames(t, filepath.Join(dir, "d-2")); got != kept {
		t.Errorf("d-2 holds %s, held %s", got, kept)
	}
}

func dirNames(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

// TestCreateFailureRemovesOnlyItsOwn: a creation that fails part way
// removes the partitions it made, and moves aside (never removes) a
// directory that was in its way; nothing is recorded.
func TestCreateFailureRemovesOnlyItsOwn(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	stray := filepath.Join(dir, "f-2")
	if err := os.MkdirAll(stray, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stray, "00000000000000000000.log"), []byte("someone's data"), 0o644); err != nil {
		t.Fatal(err)
	}
	open := s.openPart
	s.openPart = func(d string, cfg partition.Config) (*partition.Partition, error) {
		if filepath.Base(d) == "f-5" {
			return nil, errors.New("injected")
		}
		return open(d, cfg)
	}
	if _, err := s.CreateTopic(NewTopic{Name: "f", Partitions: 8, ReplicationFactor: 1}); !errors.Is(err, ErrStorage) {
		t.Fatalf("CreateTopic with a failing partition: %v", err)
	}
	if s.Topic("f") != nil {
		t.Fatal("the failed topic exists")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "f-") {
			left = append(left, e.Name())
		}
	}
	if len(left) != 1 || !strings.HasPrefix(left[0], "f-2.") || !strings.HasSuffix(left[0], "-stray") {
		t.Fatalf("left in the data directory: %v", left)
	}
	if b, err := os.ReadFile(filepath.Join(dir, left[0], "00000000000000000000.log")); err != nil || string(b) != "someone's data" {
		t.Fatalf("the directory moved aside: %q, %v", b, err)
	}
	s.openPart = open
	if _, err := s.CreateTopic(NewTopic{Name: "f", Partitions: 8, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, dir)
	if f := s.Topic("f"); f == nil || f.NumPartitions() != 8 {
		t.Fatalf("topic f after reopen: %v", f)
	}
}

// TestSyncTree: the fallback of syncCreated where syncfs(2) is missing
// fsyncs the files of a directory and the directory.
func TestSyncTree(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syncTree(dir); err != nil {
		t.Fatal(err)
	}
	if err := syncTree(filepath.Join(dir, "gone")); err == nil {
		t.Fatal("syncTree of a missing directory succeeded")
	}
}

// TestOneStorePerDirectory: a second broker on a data directory in use
// fails to start with a clear error and changes nothing; once the first
// closes, the directory opens again.
func TestOneStorePerDirectory(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, err := s.CreateTopic(NewTopic{Name: "kept", Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{DataDir: dir, Logger: testLogger()}); !errors.Is(err, dirlock.ErrLocked) {
		t.Fatalf("second Open: %v, want dirlock.ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir)
	if s2.Topic("kept") == nil {
		t.Fatal("topic lost")
	}
}

// TestGroupConfigs sets, replaces and removes the configs of a group,
// refuses a value the validator refuses, and finds them after a reopen.
func TestGroupConfigs(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	refuse := errors.New("refused")
	validate := func(name, value string) error {
		if value == "bad" {
			return refuse
		}
		return nil
	}
	if err := s.AlterGroupConfigs("g", Alter{Changes: map[string]*string{"a": str("1"), "b": str("2")}}, validate); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterGroupConfigs("g", Alter{Changes: map[string]*string{"a": nil, "c": str("3")}}, validate); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterGroupConfigs("g", Alter{Changes: map[string]*string{"c": str("bad")}}, validate); !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, refuse) {
		t.Fatalf("bad value: %v", err)
	}
	if err := s.AlterGroupConfigs("h", Alter{Changes: map[string]*string{"x": str("1")}, ValidateOnly: true}, validate); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterGroupConfigs("", Alter{Changes: map[string]*string{"x": str("1")}}, validate); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("empty group: %v", err)
	}
	if err := s.AlterGroupConfigs("gone", Alter{Changes: map[string]*string{"x": str("1")}}, validate); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterGroupConfigs("gone", Alter{Changes: map[string]*string{"y": str("1")}, Replace: true}, validate); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterGroupConfigs("gone", Alter{Changes: map[string]*string{"y": nil}}, validate); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	if got := s.GroupConfigs("g"); len(got) != 2 || got["b"] != "2" || got["c"] != "3" {
		t.Fatalf("configs of g = %v", got)
	}
	if got := s.GroupConfigs("h"); got != nil {
		t.Fatalf("validate-only configs of h = %v", got)
	}
	if got := s.GroupConfigs("gone"); got != nil {
		t.Fatalf("configs of gone = %v", got)
	}
}
