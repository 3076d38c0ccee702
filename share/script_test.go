package share

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Share-group transcripts, after etcd raft's interaction tests. Each
// testdata/*.txt file is a list of blocks:
//
//	# optional comments
//	command arg key=value ...
//	----
//	expected output lines
//	(blank line)
//
// The script runs in a synctest bubble, so "tick" advances fake time and
// every timer fires exactly when it should; the coordinator's background
// goroutines (lock expiry, dead letters, compaction) settle before each
// command's output is taken. Run with -update to rewrite the files. The
// commands are documented in (*scriptRunner).run.

var update = flag.Bool("update", false, "rewrite testdata/*.txt with the actual output")

type scriptBlock struct {
	comments []string
	cmd      string
	line     int
	want     []string
	got      []string
}

func parseScript(t *testing.T, path string) []scriptBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []scriptBlock
	var cur *scriptBlock
	inOutput := false
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		l := sc.Text()
		switch {
		case inOutput && l == "":
			inOutput = false
			cur = nil
		case inOutput:
			cur.want = append(cur.want, l)
		case l == "":
			if cur != nil && cur.cmd == "" && len(cur.comments) > 0 {
				cur.comments = append(cur.comments, "")
			}
		case strings.HasPrefix(l, "#"):
			if cur == nil {
				blocks = append(blocks, scriptBlock{})
				cur = &blocks[len(blocks)-1]
			}
			cur.comments = append(cur.comments, l)
		case l == "----":
			if cur == nil || cur.cmd == "" {
				t.Fatalf("%s:%d: ---- without a command", path, line)
			}
			inOutput = true
		default:
			if cur == nil {
				blocks = append(blocks, scriptBlock{})
				cur = &blocks[len(blocks)-1]
			}
			if cur.cmd != "" {
				t.Fatalf("%s:%d: two commands in one block", path, line)
			}
			cur.cmd, cur.line = l, line
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

func writeScript(t *testing.T, path string, blocks []scriptBlock) {
	t.Helper()
	var b strings.Builder
	for i, bl := range blocks {
		if i > 0 {
			b.WriteString("\n")
		}
		for _, c := range bl.comments {
			b.WriteString(c + "\n")
		}
		if bl.cmd == "" {
			continue
		}
		b.WriteString(bl.cmd + "\n----\n")
		for _, l := range bl.got {
			b.WriteString(l + "\n")
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.txt scripts")
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			t.Parallel()
			blocks := parseScript(t, path)
			synctest.Test(t, func(t *testing.T) {
				r := newScriptRunner(t)
				defer r.close()
				for i := range blocks {
					if blocks[i].cmd != "" {
						blocks[i].got = r.run(blocks[i].cmd)
					}
				}
			})
			if *update {
				writeScript(t, path, blocks)
				return
			}
			for _, bl := range blocks {
				if bl.cmd == "" {
					continue
				}
				if !slices.Equal(bl.got, bl.want) {
					t.Errorf("%s:%d: %s\n--- want\n%s\n--- got\n%s", path, bl.line, bl.cmd,
						strings.Join(bl.want, "\n"), strings.Join(bl.got, "\n"))
				}
			}
		})
	}
}

// scriptRunner drives a Coordinator from script commands.
type scriptRunner struct {
	t      *testing.T
	store  *memStore
	reader *fakeReader
	dlq    *fakeDLQ
	cfg    Config
	c      *Coordinator
	start  time.Time

	mu        sync.Mutex
	topics    map[string]TopicInfo
	configs   map[string]map[string]string // group → config overrides
	available []string
	gone      []string
	dlqSeen   int
	epochs    map[string]int32 // group/member → the epoch the client last got
}

func newScriptRunner(t *testing.T) *scriptRunner {
	r := &scriptRunner{
		t:       t,
		store:   newMemStore(),
		reader:  newFakeReader(),
		dlq:     newFakeDLQ(),
		start:   time.Now(),
		topics:  make(map[string]TopicInfo),
		configs: make(map[string]map[string]string),
		epochs:  make(map[string]int32),
	}
	r.cfg = Config{
		Store:  r.store,
		Reader: r.reader,
		DLQ:    r.dlq,
		Topics: func() map[string]TopicInfo {
			r.mu.Lock()
			defer r.mu.Unlock()
			return maps.Clone(r.topics)
		},
		GroupConfigs: func(group string) map[string]string {
			r.mu.Lock()
			defer r.mu.Unlock()
			return maps.Clone(r.configs[group])
		},
		Available: func(group string, tp TopicPartition) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.available = append(r.available, fmt.Sprintf("%s:%s", group, r.tpNameLocked(tp)))
		},
		MemberGone: func(group, m string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.gone = append(r.gone, group+":"+m)
		},
		OtherGroup:      func(group string) (bool, error) { return strings.HasPrefix(group, "consumer-"), nil },
		StatePartitions: 4,
	}
	return r
}

func (r *scriptRunner) close() {
	if r.c != nil {
		r.c.Close()
	}
	synctest.Wait()
}

func topicID(name string) [16]byte {
	var id [16]byte
	copy(id[:], name)
	return id
}

func (r *scriptRunner) tpNameLocked(tp TopicPartition) string {
	name := strings.TrimRight(string(tp.TopicID[:]), "\x00")
	return fmt.Sprintf("%s/%d", name, tp.Partition)
}

func (r *scriptRunner) fatalf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf(format, args...)
}

type scriptArgs struct {
	pos []string
	kv  map[string]string
	raw []string
}

func parseArgs(fields []string) scriptArgs {
	a := scriptArgs{kv: make(map[string]string)}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			a.kv[k] = v
			a.raw = append(a.raw, f)
		} else {
			a.pos = append(a.pos, f)
		}
	}
	return a
}

func (a scriptArgs) str(k, def string) string {
	if v, ok := a.kv[k]; ok {
		return v
	}
	return def
}

func (a scriptArgs) has(k string) bool { _, ok := a.kv[k]; return ok }

func (a scriptArgs) flag(k string) bool { return slices.Contains(a.pos, k) }

func (a scriptArgs) int(r *scriptRunner, k string, def int64) int64 {
	v, ok := a.kv[k]
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		r.fatalf("bad %s=%s: %v", k, v, err)
	}
	return n
}

func (a scriptArgs) dur(r *scriptRunner, k string, def time.Duration) time.Duration {
	v, ok := a.kv[k]
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.fatalf("bad %s=%s: %v", k, v, err)
	}
	return d
}

// at parses a time: "+10s" (from now), "-5s", or ms since the epoch.
func (r *scriptRunner) at(s string) int64 {
	if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
		d, err := time.ParseDuration(s)
		if err != nil {
			r.fatalf("bad time %q", s)
		}
		return time.Now().Add(d).UnixMilli()
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		r.fatalf("bad time %q", s)
	}
	return n
}

// rel prints a time in ms since the epoch relative to the script start.
func (r *scriptRunner) rel(ms int64) string {
	return "t" + (time.Duration(ms-r.start.UnixMilli()) * time.Millisecond).String()
}

func errName(code int16) string {
	if code == 0 {
		return "ok"
	}
	var ke *kerr.Error
	if errors.As(kerr.ErrorForCode(code), &ke) {
		return ke.Message
	}
	return fmt.Sprintf("error(%d)", code)
}

func kerrName(e *kerr.Error) string {
	if e == nil {
		return "ok"
	}
	return e.Message
}

// tp parses "t1/0".
func (r *scriptRunner) tp(s string) TopicPartition {
	topic, p, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(p)
	if !ok || err != nil {
		r.fatalf("bad topic partition %q", s)
	}
	return TopicPartition{TopicID: topicID(topic), Partition: int32(n)}
}

// wire round-trips a request through its encoding at its version.
func wire[T kmsg.Request](r *scriptRunner, req T) T {
	b := req.AppendTo(nil)
	out := kmsg.RequestForKey(req.Key())
	out.SetVersion(req.GetVersion())
	if err := out.ReadFrom(b); err != nil {
		r.fatalf("decoding %T v%d: %v", req, req.GetVersion(), err)
	}
	return out.(T)
}

// wireResp round-trips a response the same way.
func wireResp[T kmsg.Response](r *scriptRunner, resp T, v int16) T {
	if resp.GetVersion() != v {
		r.t.Errorf("%T has version %d, want %d", resp, resp.GetVersion(), v)
	}
	b := resp.AppendTo(nil)
	out := kmsg.ResponseForKey(resp.Key())
	out.SetVersion(resp.GetVersion())
	if err := out.ReadFrom(b); err != nil {
		r.t.Errorf("decoding %T v%d: %v", resp, resp.GetVersion(), err)
		return resp
	}
	return out.(T)
}

func (r *scriptRunner) need() {
	if r.c == nil {
		r.fatalf("no coordinator: run start first")
	}
}

func (r *scriptRunner) ctx(name string) context.Context {
	return WithClientInfo(context.Background(), ClientInfo{ClientID: name, Host: "/127.0.0.1"})
}

// run executes one command and returns its output.
//
//	start [partitions=4] [lock=30s] [min-lock=1s] [session=45s] [deliveries=5]
//	      [max-locks=2000] [max-delayed=100000] [backoff=0s] [backoff-max=60s]
//	      [dlq=off] [slack=4194304] [max-size=200]
//	restart                             Close, then New over the same store
//	topics t1=2 t2=1 -t3 [delay=t1:5s]  set (or remove) topics; topics-changed too
//	produce t1/0 [n=1] [batches=1] [ts=+0s] [at=i:+10s,...] [control] [txn pid=1]
//	abort t1/0 pid=1 first=N last=N     an aborted transaction
//	lso t1/0 N|-1                       the last stable offset
//	truncate t1/0 N                     retention moved the log start offset
//	hb m [group=g] [join] [leave] [topics=t1,t2] [epoch=N] [rack=r]
//	fetch m t1/0 [group=g] [max=500] [strict] [batch=N]
//	ack m t1/0 [group=g] 0-9:accept 10-12:a,r,j [renew]   types accept release reject gap renew (a r j g n)
//	close m t1/0,t1/1 [group=g]         ReleaseSession
//	tick 10s                            advance fake time
//	state t1/0 [group=g]                the share-partition's internals
//	describe [g...] | list [states=] [types=] | offsets [group=g] [t1/0,1 ...] [all]
//	alter [group=g] t1/0=5 ...          AlterShareGroupOffsets
//	delete-offsets [group=g] t1 ...     DeleteShareGroupOffsets
//	delete-group g                      DeleteGroup
//	config [group=g] k=v ...            group config overrides (v "-" removes)
//	fail append|snapshot|cut=N|dlq|dlq-reject|dlq-partial=N|reader|times|none
//	dlq                                 dead letters written since the last dlq
//	events                              Available and MemberGone notifications since last
//	store                               the store's partitions
//	compact                             snapshot every state partition now
func (r *scriptRunner) run(cmd string) []string {
	fields := strings.Fields(cmd)
	a := parseArgs(fields[1:])
	group := a.str("group", "g")
	var out []string
	switch fields[0] {
	case "start":
		r.cfg.StatePartitions = int32(a.int(r, "partitions", 4))
		r.cfg.RecordLockDuration = a.dur(r, "lock", 0)
		r.cfg.MinRecordLockDuration = a.dur(r, "min-lock", time.Second)
		r.cfg.SessionTimeout = a.dur(r, "session", 0)
		r.cfg.MinSessionTimeout = a.dur(r, "session", 0)
		r.cfg.HeartbeatInterval = a.dur(r, "heartbeat", 0)
		r.cfg.MinHeartbeatInterval = a.dur(r, "heartbeat", 0)
		r.cfg.DeliveryCountLimit = int(a.int(r, "deliveries", 0))
		r.cfg.PartitionMaxRecordLocks = int(a.int(r, "max-locks", 0))
		r.cfg.PartitionMaxDelayedRecords = int(a.int(r, "max-delayed", 0))
		r.cfg.DeliveryBackoff = a.dur(r, "backoff", 0)
		r.cfg.DeliveryBackoffMax = a.dur(r, "backoff-max", 0)
		r.cfg.SnapshotSlack = a.int(r, "slack", 0)
		r.cfg.MaxGroupSize = int(a.int(r, "max-size", 0))
		r.cfg.retryBackoff = a.dur(r, "retry", 0)
		if a.str("dlq", "on") == "off" {
			r.cfg.DLQ = nil
		}
		c, err := New(r.cfg)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		r.c = c
		out = append(out, "ok")
	case "restart":
		r.need()
		r.c.Close()
		synctest.Wait()
		r.store.heal()
		c, err := New(r.cfg)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		r.c = c
		out = append(out, "ok")
	case "topics":
		r.mu.Lock()
		for _, f := range a.pos {
			if name, ok := strings.CutPrefix(f, "-"); ok {
				delete(r.topics, name)
			}
		}
		for _, kv := range a.raw {
			name, n, _ := strings.Cut(kv, "=")
			if name == "delay" {
				t, d, _ := strings.Cut(n, ":")
				dd, err := time.ParseDuration(d)
				if err != nil {
					r.mu.Unlock()
					r.fatalf("bad delay %q", n)
				}
				info := r.topics[t]
				info.DeliveryDelay = dd
				r.topics[t] = info
				continue
			}
			np, _ := strconv.Atoi(n)
			info := r.topics[name]
			info.ID, info.Partitions = topicID(name), int32(np)
			r.topics[name] = info
			r.reader.mu.Lock()
			for p := range np {
				r.reader.log(TopicPartition{info.ID, int32(p)})
			}
			r.reader.mu.Unlock()
		}
		r.mu.Unlock()
		if r.c != nil {
			r.c.TopicsChanged()
		}
		out = append(out, "ok")
	case "produce":
		tp := r.tp(a.pos[0])
		n := int(a.int(r, "n", 1))
		ts := r.at(a.str("ts", "+0s"))
		deliverAt := map[int]int64{}
		if v := a.str("at", ""); v != "" {
			for _, part := range strings.Split(v, ",") {
				i, t, _ := strings.Cut(part, ":")
				idx, _ := strconv.Atoi(i)
				deliverAt[idx] = r.at(t)
			}
		}
		var bases []string
		for range a.int(r, "batches", 1) {
			base := r.reader.produce(tp, n, ts, a.flag("control"), a.flag("txn"), a.int(r, "pid", -1), deliverAt)
			bases = append(bases, fmt.Sprintf("%d-%d", base, base+int64(n)-1))
		}
		out = append(out, "produced "+strings.Join(bases, " "))
	case "abort":
		tp := r.tp(a.pos[0])
		r.reader.mu.Lock()
		l := r.reader.log(tp)
		l.aborted = append(l.aborted, AbortedRange{ProducerID: a.int(r, "pid", 1), FirstOffset: a.int(r, "first", 0), LastOffset: a.int(r, "last", 0)})
		r.reader.mu.Unlock()
		out = append(out, "ok")
	case "lso":
		tp := r.tp(a.pos[0])
		n, _ := strconv.ParseInt(a.pos[1], 10, 64)
		r.reader.mu.Lock()
		r.reader.log(tp).lso = n
		r.reader.mu.Unlock()
		out = append(out, "ok")
	case "truncate":
		tp := r.tp(a.pos[0])
		n, _ := strconv.ParseInt(a.pos[1], 10, 64)
		r.reader.mu.Lock()
		r.reader.log(tp).logStart = n
		r.reader.mu.Unlock()
		out = append(out, "ok")
	case "hb":
		r.need()
		out = append(out, r.heartbeat(a, group))
	case "fetch":
		r.need()
		out = append(out, r.fetch(a, group))
	case "ack":
		r.need()
		out = append(out, r.ack(a, group))
	case "close":
		r.need()
		var tps []TopicPartition
		for _, s := range strings.Split(a.pos[1], ",") {
			if !strings.Contains(s, "/") {
				prev := tps[len(tps)-1]
				n, _ := strconv.Atoi(s)
				tps = append(tps, TopicPartition{prev.TopicID, int32(n)})
				continue
			}
			tps = append(tps, r.tp(s))
		}
		r.c.ReleaseSession(group, a.pos[0], tps)
		out = append(out, "ok")
	case "tick":
		d, err := time.ParseDuration(fields[1])
		if err != nil {
			r.fatalf("bad tick %q", fields[1])
		}
		time.Sleep(d)
		out = append(out, fmt.Sprintf("t=%v", time.Since(r.start)))
	case "state":
		r.need()
		synctest.Wait()
		out = append(out, r.state(group, r.tp(a.pos[0])))
	case "describe":
		r.need()
		out = append(out, r.describe(a)...)
	case "list":
		r.need()
		req := kmsg.NewPtrListGroupsRequest()
		req.Version = 5
		if v := a.str("states", ""); v != "" {
			req.StatesFilter = strings.Split(v, ",")
		}
		if v := a.str("types", ""); v != "" {
			req.TypesFilter = strings.Split(v, ",")
		}
		out = append(out, "list:")
		for _, g := range r.c.ListGroups(req) {
			out = append(out, fmt.Sprintf("  %s state=%s type=%s protocol-type=%s", g.Group, g.GroupState, g.GroupType, g.ProtocolType))
		}
	case "offsets":
		r.need()
		out = append(out, r.offsets(a, group)...)
	case "alter":
		r.need()
		out = append(out, r.alter(a, group)...)
	case "delete-offsets":
		r.need()
		req := kmsg.NewPtrDeleteShareGroupOffsetsRequest()
		req.GroupID = group
		for _, t := range a.pos {
			req.Topics = append(req.Topics, kmsg.DeleteShareGroupOffsetsRequestTopic{Topic: t})
		}
		req = wire(r, req)
		resp := wireResp(r, r.c.DeleteShareGroupOffsets(context.Background(), req), req.Version)
		s := "delete-offsets: " + errName(resp.ErrorCode)
		for _, t := range resp.Topics {
			s += fmt.Sprintf(" %s=%s", t.Topic, errName(t.ErrorCode))
		}
		out = append(out, s)
	case "delete-group":
		r.need()
		code, ok := r.c.DeleteGroup(a.pos[0])
		out = append(out, fmt.Sprintf("delete-group %s: %s found=%v", a.pos[0], errName(code), ok))
	case "config":
		r.mu.Lock()
		if r.configs[group] == nil {
			r.configs[group] = make(map[string]string)
		}
		var errs []string
		for _, kv := range a.raw {
			k, v, _ := strings.Cut(kv, "=")
			if k == "group" {
				continue
			}
			if v == "-" {
				delete(r.configs[group], k)
				continue
			}
			if r.c != nil {
				if err := r.c.ValidateGroupConfig(k, v); err != nil {
					errs = append(errs, err.Error())
					continue
				}
			}
			r.configs[group][k] = v
		}
		r.mu.Unlock()
		if r.c != nil {
			r.c.GroupConfigChanged(group)
		}
		if len(errs) == 0 {
			errs = []string{"ok"}
		}
		out = append(out, errs...)
	case "fail":
		r.store.mu.Lock()
		r.store.failAppend, r.store.failSnapshot, r.store.cutAfter = nil, nil, -1
		r.store.mu.Unlock()
		r.dlq.mu.Lock()
		r.dlq.fail, r.dlq.partial = nil, -1
		r.dlq.mu.Unlock()
		r.reader.mu.Lock()
		r.reader.fail, r.reader.failTime = nil, nil
		r.reader.mu.Unlock()
		for _, f := range a.pos {
			switch f {
			case "append":
				r.store.mu.Lock()
				r.store.failAppend = errInjected
				r.store.mu.Unlock()
			case "snapshot":
				r.store.mu.Lock()
				r.store.failSnapshot = errInjected
				r.store.mu.Unlock()
			case "dlq":
				r.dlq.mu.Lock()
				r.dlq.fail = errInjected
				r.dlq.mu.Unlock()
			case "dlq-reject":
				r.dlq.mu.Lock()
				r.dlq.fail = fmt.Errorf("%w: no such topic", ErrDeadLetterRejected)
				r.dlq.mu.Unlock()
			case "reader":
				r.reader.mu.Lock()
				r.reader.fail = errInjected
				r.reader.mu.Unlock()
			case "times":
				r.reader.mu.Lock()
				r.reader.failTime = errInjected
				r.reader.mu.Unlock()
			case "none":
			default:
				r.fatalf("unknown failure %q", f)
			}
		}
		if a.has("cut") {
			r.store.mu.Lock()
			r.store.cutAfter = int(a.int(r, "cut", 0))
			r.store.mu.Unlock()
		}
		if a.has("dlq-partial") {
			r.dlq.mu.Lock()
			r.dlq.partial = int(a.int(r, "dlq-partial", 0))
			r.dlq.mu.Unlock()
		}
		out = append(out, "ok")
	case "dlq":
		synctest.Wait()
		r.dlq.mu.Lock()
		for _, src := range r.dlq.order[r.dlqSeen:] {
			dl := r.dlq.written[src]
			out = append(out, fmt.Sprintf("dead letter %s %s@%d topic=%s count=%d reason=%q copy=%v", dl.Group, dl.SourceTopic+"/"+strconv.Itoa(int(dl.Source.Partition)), src.offset, dl.Topic, dl.DeliveryCount, dl.Reason.Message(), dl.CopyRecord))
		}
		r.dlqSeen = len(r.dlq.order)
		r.dlq.mu.Unlock()
		if len(out) == 0 {
			out = append(out, "no dead letters")
		}
		if r.c != nil {
			if n := r.c.pendingDeadLetters(); n > 0 {
				out = append(out, fmt.Sprintf("pending=%d", n))
			}
		}
	case "events":
		synctest.Wait()
		r.mu.Lock()
		// Timers due at one instant fire in no set order.
		for _, s := range slices.Sorted(slices.Values(r.available)) {
			out = append(out, "available "+s)
		}
		for _, s := range slices.Sorted(slices.Values(r.gone)) {
			out = append(out, "gone "+s)
		}
		r.available, r.gone = nil, nil
		r.mu.Unlock()
		if len(out) == 0 {
			out = append(out, "no events")
		}
	case "store":
		synctest.Wait()
		out = append(out, r.store.summary()...)
		if r.c != nil {
			for _, p := range r.c.parts {
				p.liveMu.Lock()
				if p.bytes > 0 {
					out = append(out, fmt.Sprintf("state partition %d: bytes=%d snapshot=%d retry-at=%d", p.id, p.bytes, p.base, p.retryAt))
				}
				p.liveMu.Unlock()
			}
		}
		r.store.mu.Lock()
		out = append(out, fmt.Sprintf("snapshots=%d", r.store.snapshots))
		r.store.mu.Unlock()
	case "compact":
		r.need()
		for _, p := range r.c.parts {
			if err := r.c.snapshotPartition(p, true); err != nil {
				out = append(out, fmt.Sprintf("partition %d: %v", p.id, err))
			}
		}
		out = append(out, "ok")
	default:
		r.fatalf("unknown command %q", fields[0])
	}
	synctest.Wait()
	return out
}

func (r *scriptRunner) heartbeat(a scriptArgs, group string) string {
	name := a.pos[0]
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.Version = 1
	req.GroupID = group
	req.MemberID = a.str("member", name)
	req.MemberEpoch = int32(a.int(r, "epoch", 0))
	if a.flag("leave") {
		req.MemberEpoch = -1
	}
	if !a.has("epoch") && !a.flag("join") && !a.flag("leave") {
		// A plain heartbeat: the epoch the client last got.
		req.MemberEpoch = r.epochs[group+"/"+req.MemberID]
	}
	if v, ok := a.kv["topics"]; ok {
		req.SubscribedTopicNames = []string{}
		if v != "" {
			req.SubscribedTopicNames = strings.Split(v, ",")
		}
	}
	if v, ok := a.kv["rack"]; ok {
		req.RackID = &v
	}
	req = wire(r, req)
	resp := wireResp(r, r.c.ShareGroupHeartbeat(r.ctx(name), req), req.Version)
	switch resp.ErrorCode {
	case 0:
		r.epochs[group+"/"+req.MemberID] = max(resp.MemberEpoch, 0)
	case kerr.UnknownMemberID.Code, kerr.FencedMemberEpoch.Code:
		r.epochs[group+"/"+req.MemberID] = 0
	}
	if resp.ErrorCode != 0 {
		msg := ""
		if resp.ErrorMessage != nil {
			msg = " " + strconv.Quote(*resp.ErrorMessage)
		}
		return fmt.Sprintf("hb %s: %s%s", name, errName(resp.ErrorCode), msg)
	}
	s := fmt.Sprintf("hb %s: epoch=%d interval=%dms", name, resp.MemberEpoch, resp.HeartbeatIntervalMillis)
	if resp.Assignment != nil {
		s += " assigned=" + r.formatAssignment(resp.Assignment.TopicPartitions)
	}
	return s
}

func (r *scriptRunner) formatAssignment(tps []kmsg.ShareGroupHeartbeatResponseAssignmentTopicPartition) string {
	var parts []string
	for _, t := range tps {
		name := strings.TrimRight(string(t.TopicID[:]), "\x00")
		ps := slices.Sorted(slices.Values(t.Partitions))
		ss := make([]string, len(ps))
		for i, p := range ps {
			ss[i] = strconv.Itoa(int(p))
		}
		parts = append(parts, name+"/"+strings.Join(ss, ","))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ";")
}

func formatRanges(rs []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord) string {
	if len(rs) == 0 {
		return "none"
	}
	var ss []string
	for _, a := range rs {
		ss = append(ss, fmt.Sprintf("%d-%dx%d", a.FirstOffset, a.LastOffset, a.DeliveryCount))
	}
	return strings.Join(ss, " ")
}

func (r *scriptRunner) fetch(a scriptArgs, group string) string {
	name := a.pos[0]
	opts := AcquireOptions{
		Group:      group,
		Member:     name,
		Partition:  r.tp(a.pos[1]),
		MaxRecords: int(a.int(r, "max", 500)),
		Strict:     a.flag("strict"),
		BatchSize:  int(a.int(r, "batch", 0)),
	}
	got, e := r.c.Acquire(opts, nil)
	if e != nil {
		return fmt.Sprintf("fetch %s %s: %s", name, a.pos[1], e.Message)
	}
	return fmt.Sprintf("fetch %s %s: %s", name, a.pos[1], formatRanges(got))
}

var ackTypes = map[string]int8{"gap": 0, "g": 0, "accept": 1, "a": 1, "release": 2, "r": 2, "reject": 3, "j": 3, "renew": 4, "n": 4}

func (r *scriptRunner) ack(a scriptArgs, group string) string {
	name := a.pos[0]
	tp := r.tp(a.pos[1])
	var batches []AckBatch
	for _, spec := range a.pos[2:] {
		if spec == "renew" {
			continue
		}
		rng, types, ok := strings.Cut(spec, ":")
		lo, hi, _ := strings.Cut(rng, "-")
		if hi == "" {
			hi = lo
		}
		first, err1 := strconv.ParseInt(lo, 10, 64)
		last, err2 := strconv.ParseInt(hi, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			r.fatalf("bad ack %q", spec)
		}
		b := AckBatch{FirstOffset: first, LastOffset: last}
		for _, t := range strings.Split(types, ",") {
			v, ok := ackTypes[t]
			if !ok {
				n, err := strconv.Atoi(t)
				if err != nil {
					r.fatalf("bad ack type %q", t)
				}
				v = int8(n)
			}
			b.Types = append(b.Types, v)
		}
		batches = append(batches, b)
	}
	e := r.c.Acknowledge(group, name, tp, batches, a.flag("renew"))
	return fmt.Sprintf("ack %s %s: %s", name, a.pos[1], kerrName(e))
}

func (r *scriptRunner) state(group string, tp TopicPartition) string {
	g := r.c.findGroup(group)
	name := r.tpNameLocked(tp)
	if g == nil {
		return name + ": no group"
	}
	g.mu.Lock()
	sp := g.sps[tp]
	g.mu.Unlock()
	if sp == nil {
		return name + ": no state"
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: start=%d end=%d epoch=%d", name, sp.start, sp.end, sp.stateEpoch)
	if sp.delayed > 0 {
		fmt.Fprintf(&b, " delayed=%d", sp.delayed)
	}
	for i := range sp.rs {
		x := &sp.rs[i]
		fmt.Fprintf(&b, " [%d-%d %s", x.first, x.last, x.state)
		if x.count > 0 {
			fmt.Fprintf(&b, " x%d", x.count)
		}
		if x.member != "" {
			fmt.Fprintf(&b, " %s until %v", x.member, time.Duration(x.expires)+r.c.base.Sub(r.start))
		}
		if x.notBefore != 0 {
			fmt.Fprintf(&b, " at %s", r.rel(x.notBefore))
		}
		if x.reason != 0 {
			fmt.Fprintf(&b, " %q", x.reason.Message())
		}
		if x.pending {
			b.WriteString(" pending")
		}
		b.WriteString("]")
	}
	return b.String()
}

func (r *scriptRunner) describe(a scriptArgs) []string {
	req := kmsg.NewPtrShareGroupDescribeRequest()
	req.Version = 1
	req.GroupIDs = a.pos
	if len(req.GroupIDs) == 0 {
		req.GroupIDs = []string{"g"}
	}
	req = wire(r, req)
	resp := wireResp(r, r.c.ShareGroupDescribe(context.Background(), req), req.Version)
	var out []string
	for _, g := range resp.Groups {
		if g.ErrorCode != 0 {
			out = append(out, fmt.Sprintf("%s: %s", g.GroupID, errName(g.ErrorCode)))
			continue
		}
		out = append(out, fmt.Sprintf("%s: state=%s epoch=%d assignment-epoch=%d assignor=%s", g.GroupID, g.GroupState, g.GroupEpoch, g.AssignmentEpoch, g.Assignor))
		for _, m := range g.Members {
			var parts []string
			for _, t := range m.Assignment.TopicPartitions {
				ss := make([]string, len(t.Partitions))
				for i, p := range t.Partitions {
					ss[i] = strconv.Itoa(int(p))
				}
				parts = append(parts, t.Topic+"/"+strings.Join(ss, ","))
			}
			as := strings.Join(parts, ";")
			if as == "" {
				as = "-"
			}
			s := fmt.Sprintf("  %s epoch=%d client=%s host=%s topics=%s assigned=%s", m.MemberID, m.MemberEpoch, m.ClientID, m.ClientHost, strings.Join(m.SubscribedTopicNames, ","), as)
			if m.RackID != nil {
				s += " rack=" + *m.RackID
			}
			out = append(out, s)
		}
	}
	return out
}

func (r *scriptRunner) offsets(a scriptArgs, group string) []string {
	req := kmsg.NewPtrDescribeShareGroupOffsetsRequest()
	req.Version = 1
	rg := kmsg.NewDescribeShareGroupOffsetsRequestGroup()
	rg.GroupID = group
	for _, s := range a.pos {
		topic, ps, _ := strings.Cut(s, "/")
		t := kmsg.NewDescribeShareGroupOffsetsRequestGroupTopic()
		t.Topic = topic
		for _, p := range strings.Split(ps, ",") {
			n, _ := strconv.Atoi(p)
			t.Partitions = append(t.Partitions, int32(n))
		}
		rg.Topics = append(rg.Topics, t)
	}
	req.Groups = append(req.Groups, rg)
	req = wire(r, req)
	resp := wireResp(r, r.c.DescribeShareGroupOffsets(context.Background(), req), req.Version)
	var out []string
	for _, g := range resp.Groups {
		out = append(out, fmt.Sprintf("offsets %s: %s", g.GroupID, errName(g.ErrorCode)))
		for _, t := range g.Topics {
			for _, p := range t.Partitions {
				out = append(out, fmt.Sprintf("  %s/%d start=%d lag=%d %s", t.Topic, p.Partition, p.StartOffset, p.Lag, errName(p.ErrorCode)))
			}
		}
	}
	return out
}

func (r *scriptRunner) alter(a scriptArgs, group string) []string {
	req := kmsg.NewPtrAlterShareGroupOffsetsRequest()
	req.GroupID = group
	byTopic := map[string]*kmsg.AlterShareGroupOffsetsRequestTopic{}
	var order []string
	for _, kv := range a.raw {
		k, v, _ := strings.Cut(kv, "=")
		if k == "group" {
			continue
		}
		topic, p, _ := strings.Cut(k, "/")
		n, _ := strconv.Atoi(p)
		off, _ := strconv.ParseInt(v, 10, 64)
		t := byTopic[topic]
		if t == nil {
			nt := kmsg.NewAlterShareGroupOffsetsRequestTopic()
			nt.Topic = topic
			t = &nt
			byTopic[topic] = t
			order = append(order, topic)
		}
		t.Partitions = append(t.Partitions, kmsg.AlterShareGroupOffsetsRequestTopicPartition{Partition: int32(n), StartOffset: off})
	}
	for _, t := range order {
		req.Topics = append(req.Topics, *byTopic[t])
	}
	req = wire(r, req)
	resp := wireResp(r, r.c.AlterShareGroupOffsets(context.Background(), req), req.Version)
	s := "alter: " + errName(resp.ErrorCode)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			s += fmt.Sprintf(" %s/%d=%s", t.Topic, p.Partition, errName(p.ErrorCode))
		}
	}
	return []string{s}
}
