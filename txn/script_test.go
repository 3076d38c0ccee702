package txn

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
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

// Transaction state-machine transcripts, after etcd raft's interaction
// tests. Each testdata/*.txt file is a list of blocks:
//
//	# optional comments
//	command arg key=value ...
//	----
//	expected output lines
//	(blank line)
//
// The script runs in a synctest bubble, so "tick" advances fake time and
// every timer fires exactly when it should. After each command the markers
// written meanwhile are printed, sorted, then the answers of calls run with
// "async", in the order they were made. Run with -update to rewrite the
// files. The commands are documented in (*scriptRunner).run.

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
	t       *testing.T
	store   *memStore
	markers *fakeMarkers
	cfg     Config
	c       *Coordinator
	start   time.Time

	mu        sync.Mutex
	topics    map[string]int32
	nextPID   int64
	pidErr    error
	producers map[string]*scriptProducer
	seq       int
	done      []scriptResult
}

// scriptProducer is a producer instance as the client sees itself.
type scriptProducer struct {
	id    string // transactional id
	pid   int64
	epoch int16
}

type scriptResult struct {
	seq  int
	text string
}

func newScriptRunner(t *testing.T) *scriptRunner {
	r := &scriptRunner{
		t:         t,
		store:     newMemStore(),
		markers:   newFakeMarkers(),
		start:     time.Now(),
		topics:    make(map[string]int32),
		nextPID:   1000,
		producers: make(map[string]*scriptProducer),
	}
	r.cfg = Config{
		Store:   r.store,
		Markers: r.markers,
		ProducerIDs: func() (int64, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.pidErr != nil {
				return 0, r.pidErr
			}
			r.nextPID++
			return r.nextPID - 1, nil
		},
		GroupPartition: func(g string) int32 { return partitionFor(g, 50) },
		PartitionCount: func(topic string) int32 {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.topics[topic]
		},
	}
	return r
}

func (r *scriptRunner) close() {
	if r.c != nil {
		r.c.Close()
	}
	synctest.Wait()
}

type scriptArgs struct {
	pos []string
	kv  map[string]string
}

func parseArgs(fields []string) scriptArgs {
	a := scriptArgs{kv: make(map[string]string)}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			a.kv[k] = v
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

func (r *scriptRunner) fatalf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf(format, args...)
}

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

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Message
	}
	return err.Error()
}

// parseParts parses "t1/0,1,2;t2/0" into partitions, in order.
func (r *scriptRunner) parseParts(s string) []TopicPartition {
	var out []TopicPartition
	for _, part := range strings.Split(s, ";") {
		topic, list, ok := strings.Cut(part, "/")
		if !ok {
			r.fatalf("bad partitions %q", s)
		}
		for _, p := range strings.Split(list, ",") {
			n, err := strconv.Atoi(p)
			if err != nil {
				r.fatalf("bad partition in %q", s)
			}
			out = append(out, TopicPartition{topic, int32(n)})
		}
	}
	return out
}

func formatParts(tps []TopicPartition) string {
	if len(tps) == 0 {
		return "-"
	}
	var b strings.Builder
	for i, tp := range tps {
		switch {
		case i == 0:
			fmt.Fprintf(&b, "%s/%d", tp.Topic, tp.Partition)
		case tp.Topic == tps[i-1].Topic:
			fmt.Fprintf(&b, ",%d", tp.Partition)
		default:
			fmt.Fprintf(&b, ";%s/%d", tp.Topic, tp.Partition)
		}
	}
	return b.String()
}

// wire round-trips a request through its encoding at its version, so the
// coordinator sees only what a client of that version can send.
func wire[T kmsg.Request](r *scriptRunner, req T) T {
	b := req.AppendTo(nil)
	out := kmsg.RequestForKey(req.Key())
	out.SetVersion(req.GetVersion())
	if err := out.ReadFrom(b); err != nil {
		r.fatalf("decoding %T v%d: %v", req, req.GetVersion(), err)
	}
	return out.(T)
}

// wireResp round-trips a response the same way, failing if it is not
// built for its version.
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

// async runs fn in its own goroutine; its answer is printed after the
// command during which it arrives.
func (r *scriptRunner) async(fn func() string) {
	r.mu.Lock()
	r.seq++
	seq := r.seq
	r.mu.Unlock()
	go func() {
		text := fn()
		r.mu.Lock()
		r.done = append(r.done, scriptResult{seq, text})
		r.mu.Unlock()
	}()
}

// flush waits for the bubble to settle and returns the markers written and
// the async answers that arrived.
func (r *scriptRunner) flush() []string {
	synctest.Wait()
	var out []string
	for _, w := range r.markers.take() {
		out = append(out, w.String())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.SortFunc(r.done, func(a, b scriptResult) int { return a.seq - b.seq })
	for _, d := range r.done {
		out = append(out, d.text)
	}
	r.done = nil
	return out
}

func (r *scriptRunner) need() {
	if r.c == nil {
		r.fatalf("no coordinator: run start first")
	}
}

// producer returns the script producer name, creating it with transactional
// id id= (default: its name).
func (r *scriptRunner) producer(name string, a scriptArgs) *scriptProducer {
	p := r.producers[name]
	if p == nil {
		p = &scriptProducer{id: a.str("id", name), pid: -1, epoch: -1}
		r.producers[name] = p
	}
	return p
}

// ids returns the transactional id, producer id and epoch a command uses:
// the producer's, overridden by id=, pid= and epoch=.
func (r *scriptRunner) ids(p *scriptProducer, a scriptArgs) (string, int64, int16) {
	return a.str("id", p.id), a.int(r, "pid", p.pid), int16(a.int(r, "epoch", int64(p.epoch)))
}

// run executes one command and returns its output.
//
//	start [partitions=4] [tv=2] [max-timeout=15m] [expiration=168h]
//	      [abort-interval=10s] [expire-interval=1h] [slack=bytes]
//	                                 New over the store (closing the running one)
//	restart                          Close, then New over the same store
//	topics t1=4 t2=2                 set topic partition counts
//	tick 10s                         advance fake time
//	fail append|snapshot|pids|none   make the store (or producer-id allocation) fail
//	markers fail|fail-once|gone|hold|release|ok t1/0,1
//	                                 make markers of those partitions fail (forever
//	                                 or once), find them deleted, wait, go on, work
//	seed id [pid=1000] [epoch=0] [state=Ongoing] [parts=t1/0,1] [timeout=1m] [tv=0]
//	     [prev=-1] [next=-1] [corrupt] [tombstone] [partition=N]
//	                                 append a record to the store as a broker would
//	                                 have (then start or restart to load it)
//	store [max=N]                    show the store's partitions (with max: whether
//	                                 each holds at most N records, and whether any
//	                                 snapshot was taken)
//	expire | abort-timed-out         run the expiry (the timeout abort) now
//	init p [id=x] [v=5] [timeout=60s] [pid=N epoch=N] [kip360] [async]
//	                                 InitProducerID; kip360 sends p's current id and epoch
//	add p t1/0,1;t2/0 [v=3] [pid= epoch= id=]
//	broker-add p t1/0 [v=5] [verify] [pid= epoch= id=]
//	                                 AddPartitionsToTxn v4+ (one transaction)
//	offsets p group=g [v=4]          AddOffsetsToTxn
//	implicit p t1/0                  AddPartitionsImplicitly
//	verify p t1/0,1                  VerifyPartitions
//	end p commit|abort [v=5] [pid= epoch= id=] [async] [keep]
//	                                 EndTxn; v5+ adopts the answered id and epoch unless keep
//	cycle p n t1/0                   n transactions of p (add, commit), each
//	                                 waiting for its markers; prints the last answer
//	describe id...
//	list [v=2] [states=Ongoing,Empty] [pids=1,2] [duration=10s] [pattern=re]
func (r *scriptRunner) run(cmd string) []string {
	fields := strings.Fields(cmd)
	a := parseArgs(fields[1:])
	var out []string
	switch fields[0] {
	case "start":
		if r.c != nil {
			r.c.Close()
			r.c = nil
		}
		r.cfg.TransactionTopicPartitions = int32(a.int(r, "partitions", 4))
		r.cfg.TransactionVersion = int16(a.int(r, "tv", 0))
		r.cfg.TransactionMaxTimeout = a.dur(r, "max-timeout", 0)
		r.cfg.TransactionalIDExpiration = a.dur(r, "expiration", 0)
		r.cfg.AbortTimedOutTransactionsInterval = a.dur(r, "abort-interval", 0)
		r.cfg.RemoveExpiredTransactionalIDsInterval = a.dur(r, "expire-interval", 0)
		r.cfg.compactSlack = a.int(r, "slack", 0)
		c, err := New(r.cfg)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		r.c = c
		out = append(out, "ok")
	case "restart":
		r.need()
		r.c.Close()
		out = append(out, r.flush()...)
		c, err := New(r.cfg)
		if err != nil {
			return append(out, "error: "+err.Error())
		}
		r.c = c
		out = append(out, "ok")
	case "topics":
		r.mu.Lock()
		for _, f := range fields[1:] {
			name, n, _ := strings.Cut(f, "=")
			np, _ := strconv.Atoi(n)
			r.topics[name] = int32(np)
		}
		r.mu.Unlock()
		out = append(out, "ok")
	case "tick":
		d, err := time.ParseDuration(fields[1])
		if err != nil {
			r.fatalf("bad tick %q", fields[1])
		}
		time.Sleep(d)
		out = append(out, fmt.Sprintf("t=%v", time.Since(r.start)))
	case "fail":
		r.store.mu.Lock()
		r.store.failAppend, r.store.failSnapshot = nil, nil
		switch fields[1] {
		case "append":
			r.store.failAppend = errInjected
		case "snapshot":
			r.store.failSnapshot = errInjected
		}
		r.store.mu.Unlock()
		r.mu.Lock()
		r.pidErr = nil
		if fields[1] == "pids" {
			r.pidErr = errInjected
		}
		r.mu.Unlock()
		out = append(out, "ok")
	case "markers":
		f := r.markers
		f.mu.Lock()
		for _, tp := range r.parseParts(fields[2]) {
			switch fields[1] {
			case "fail":
				f.fail[tp] = -1
			case "fail-once":
				f.fail[tp] = 1
			case "gone":
				f.gone[tp] = true
			case "hold":
				f.gates[tp] = make(chan struct{})
			case "release":
				if g := f.gates[tp]; g != nil {
					close(g)
				}
				delete(f.gates, tp)
			case "ok":
				delete(f.fail, tp)
				delete(f.gone, tp)
			default:
				r.fatalf("bad markers command %q", fields[1])
			}
		}
		f.mu.Unlock()
		out = append(out, "ok")
	case "seed":
		out = append(out, r.seed(a))
	case "store":
		synctest.Wait()
		if a.has("max") {
			// Whether a snapshot lands before or after a transaction's
			// Complete record is up to the scheduler; check a bound.
			out = append(out, r.store.bounded(int(a.int(r, "max", 0)))...)
			break
		}
		out = append(out, r.store.summary()...)
		r.store.mu.Lock()
		out = append(out, fmt.Sprintf("snapshots=%d", r.store.snapshots))
		r.store.mu.Unlock()
	case "expire":
		r.need()
		r.c.removeExpired()
		out = append(out, "ok")
	case "abort-timed-out":
		r.need()
		r.c.abortTimedOut()
		out = append(out, "ok")
	case "init":
		r.need()
		if line := r.init(a); line != "" {
			out = append(out, line)
		}
	case "add":
		r.need()
		out = append(out, r.add(a))
	case "broker-add":
		r.need()
		out = append(out, r.brokerAdd(a))
	case "offsets":
		r.need()
		out = append(out, r.offsets(a))
	case "implicit":
		r.need()
		p := r.producer(a.pos[0], a)
		id, pid, epoch := r.ids(p, a)
		err := r.c.AddPartitionsImplicitly(context.Background(), id, pid, epoch, r.parseParts(a.pos[1]))
		out = append(out, fmt.Sprintf("implicit %s: %s", a.pos[0], errString(err)))
	case "verify":
		r.need()
		p := r.producer(a.pos[0], a)
		id, pid, epoch := r.ids(p, a)
		tps := r.parseParts(a.pos[1])
		errs := r.c.VerifyPartitions(context.Background(), id, pid, epoch, tps)
		var ss []string
		for i, tp := range tps {
			ss = append(ss, fmt.Sprintf("%s/%d=%s", tp.Topic, tp.Partition, errString(errs[i])))
		}
		out = append(out, fmt.Sprintf("verify %s: %s", a.pos[0], strings.Join(ss, " ")))
	case "cycle":
		r.need()
		out = append(out, r.cycle(a))
	case "end":
		r.need()
		if line := r.end(a); line != "" {
			out = append(out, line)
		}
	case "describe":
		r.need()
		out = append(out, r.describe(a)...)
	case "list":
		r.need()
		out = append(out, r.list(a)...)
	default:
		r.fatalf("unknown command %q", fields[0])
	}
	return append(out, r.flush()...)
}

func (r *scriptRunner) init(a scriptArgs) string {
	name := a.pos[0]
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version = int16(a.int(r, "v", 5))
	p := r.producer(name, a)
	if a.str("id", p.id) != "-" {
		id := a.str("id", p.id)
		req.TransactionalID = &id
	}
	req.TransactionTimeoutMillis = int32(a.dur(r, "timeout", time.Minute).Milliseconds())
	if slices.Contains(a.pos, "kip360") {
		req.ProducerID, req.ProducerEpoch = p.pid, p.epoch
	}
	req.ProducerID = a.int(r, "pid", req.ProducerID)
	req.ProducerEpoch = int16(a.int(r, "epoch", int64(req.ProducerEpoch)))
	req = wire(r, req)
	call := func() string {
		resp := wireResp(r, r.c.InitProducerID(context.Background(), req), req.Version)
		if resp.ErrorCode != 0 {
			return fmt.Sprintf("init %s: %s pid=%d epoch=%d", name, errName(resp.ErrorCode), resp.ProducerID, resp.ProducerEpoch)
		}
		r.mu.Lock()
		p.pid, p.epoch = resp.ProducerID, resp.ProducerEpoch
		r.mu.Unlock()
		return fmt.Sprintf("init %s: ok pid=%d epoch=%d", name, resp.ProducerID, resp.ProducerEpoch)
	}
	if slices.Contains(a.pos, "async") {
		r.async(call)
		return ""
	}
	return call()
}

func (r *scriptRunner) add(a scriptArgs) string {
	name := a.pos[0]
	p := r.producer(name, a)
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = int16(a.int(r, "v", 3))
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = r.ids(p, a)
	tps := r.parseParts(a.pos[1])
	for _, tp := range tps {
		if n := len(req.Topics); n == 0 || req.Topics[n-1].Topic != tp.Topic {
			t := kmsg.NewAddPartitionsToTxnRequestTopic()
			t.Topic = tp.Topic
			req.Topics = append(req.Topics, t)
		}
		t := &req.Topics[len(req.Topics)-1]
		t.Partitions = append(t.Partitions, tp.Partition)
	}
	req = wire(r, req)
	resp := wireResp(r, r.c.AddPartitionsToTxn(context.Background(), req), req.Version)
	var ss []string
	for _, t := range resp.Topics {
		for _, rp := range t.Partitions {
			ss = append(ss, fmt.Sprintf("%s/%d=%s", t.Topic, rp.Partition, errName(rp.ErrorCode)))
		}
	}
	return fmt.Sprintf("add %s: %s", name, strings.Join(ss, " "))
}

func (r *scriptRunner) brokerAdd(a scriptArgs) string {
	name := a.pos[0]
	p := r.producer(name, a)
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = int16(a.int(r, "v", 5))
	txn := kmsg.NewAddPartitionsToTxnRequestTransaction()
	txn.TransactionalID, txn.ProducerID, txn.ProducerEpoch = r.ids(p, a)
	txn.VerifyOnly = slices.Contains(a.pos, "verify")
	for _, tp := range r.parseParts(a.pos[1]) {
		if n := len(txn.Topics); n == 0 || txn.Topics[n-1].Topic != tp.Topic {
			t := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
			t.Topic = tp.Topic
			txn.Topics = append(txn.Topics, t)
		}
		t := &txn.Topics[len(txn.Topics)-1]
		t.Partitions = append(t.Partitions, tp.Partition)
	}
	req.Transactions = append(req.Transactions, txn)
	req = wire(r, req)
	resp := wireResp(r, r.c.AddPartitionsToTxn(context.Background(), req), req.Version)
	var ss []string
	for _, rt := range resp.Transactions {
		for _, t := range rt.Topics {
			for _, rp := range t.Partitions {
				ss = append(ss, fmt.Sprintf("%s/%d=%s", t.Topic, rp.Partition, errName(rp.ErrorCode)))
			}
		}
	}
	return fmt.Sprintf("broker-add %s: %s %s", name, errName(resp.ErrorCode), strings.Join(ss, " "))
}

func (r *scriptRunner) offsets(a scriptArgs) string {
	name := a.pos[0]
	p := r.producer(name, a)
	req := kmsg.NewPtrAddOffsetsToTxnRequest()
	req.Version = int16(a.int(r, "v", 4))
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = r.ids(p, a)
	req.Group = a.str("group", "g")
	req = wire(r, req)
	resp := wireResp(r, r.c.AddOffsetsToTxn(context.Background(), req), req.Version)
	return fmt.Sprintf("offsets %s: %s", name, errName(resp.ErrorCode))
}

func (r *scriptRunner) end(a scriptArgs) string {
	name := a.pos[0]
	p := r.producer(name, a)
	req := kmsg.NewPtrEndTxnRequest()
	req.Version = int16(a.int(r, "v", 5))
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = r.ids(p, a)
	req.Commit = slices.Contains(a.pos, "commit")
	req = wire(r, req)
	call := func() string {
		resp := wireResp(r, r.c.EndTxn(context.Background(), req), req.Version)
		s := fmt.Sprintf("end %s: %s", name, errName(resp.ErrorCode))
		if req.Version >= 5 {
			s += fmt.Sprintf(" pid=%d epoch=%d", resp.ProducerID, resp.ProducerEpoch)
			if resp.ErrorCode == 0 && !slices.Contains(a.pos, "keep") {
				r.mu.Lock()
				p.pid, p.epoch = resp.ProducerID, resp.ProducerEpoch
				r.mu.Unlock()
			}
		}
		return s
	}
	if slices.Contains(a.pos, "async") {
		r.async(call)
		return ""
	}
	return call()
}

func (r *scriptRunner) describe(a scriptArgs) []string {
	req := kmsg.NewPtrDescribeTransactionsRequest()
	req.TransactionalIDs = a.pos
	req = wire(r, req)
	resp := wireResp(r, r.c.DescribeTransactions(context.Background(), req), req.Version)
	var out []string
	for _, st := range resp.TransactionStates {
		if st.ErrorCode != 0 {
			out = append(out, fmt.Sprintf("%s: %s", st.TransactionalID, errName(st.ErrorCode)))
			continue
		}
		var tps []TopicPartition
		for _, t := range st.Topics {
			for _, p := range t.Partitions {
				tps = append(tps, TopicPartition{t.Topic, p})
			}
		}
		start := "-"
		if st.StartTimestamp >= 0 {
			start = time.UnixMilli(st.StartTimestamp).Sub(r.start).String()
		}
		out = append(out, fmt.Sprintf("%s: state=%s pid=%d epoch=%d timeout=%v start=%s partitions=%s", st.TransactionalID, st.State,
			st.ProducerID, st.ProducerEpoch, time.Duration(st.TimeoutMillis)*time.Millisecond, start, formatParts(tps)))
	}
	return out
}

func (r *scriptRunner) list(a scriptArgs) []string {
	req := kmsg.NewPtrListTransactionsRequest()
	req.Version = int16(a.int(r, "v", 2))
	if v := a.str("states", ""); v != "" {
		req.StateFilters = strings.Split(v, ",")
	}
	if v := a.str("pids", ""); v != "" {
		for _, s := range strings.Split(v, ",") {
			n, _ := strconv.ParseInt(s, 10, 64)
			req.ProducerIDFilters = append(req.ProducerIDFilters, n)
		}
	}
	if a.has("duration") {
		req.DurationFilterMillis = a.dur(r, "duration", 0).Milliseconds()
	}
	if a.has("pattern") {
		req.TransactionalIDPattern = new(a.str("pattern", ""))
	}
	req = wire(r, req)
	resp := wireResp(r, r.c.ListTransactions(context.Background(), req), req.Version)
	out := []string{"list: " + errName(resp.ErrorCode)}
	if len(resp.UnknownStateFilters) > 0 {
		out[0] += " unknown-states=" + strings.Join(resp.UnknownStateFilters, ",")
	}
	for _, ts := range resp.TransactionStates {
		out = append(out, fmt.Sprintf("  %s pid=%d state=%s", ts.TransactionalID, ts.ProducerID, ts.TransactionState))
	}
	return out
}

func (r *scriptRunner) seed(a scriptArgs) string {
	id := a.pos[0]
	n := r.cfg.TransactionTopicPartitions
	if n == 0 {
		n = 4
	}
	s, ok := parseState(a.str("state", "Ongoing"))
	if !ok {
		r.fatalf("bad state %q", a.str("state", ""))
	}
	m := meta{
		producerID:     a.int(r, "pid", 1000),
		prevProducerID: a.int(r, "prev", -1),
		nextProducerID: a.int(r, "next", -1),
		epoch:          int16(a.int(r, "epoch", 0)),
		timeoutMs:      int32(a.dur(r, "timeout", time.Minute).Milliseconds()),
		state:          s,
		startMs:        -1,
		updateMs:       time.Now().UnixMilli(),
		clientTV:       int16(a.int(r, "tv", 0)),
	}
	if s != stateEmpty {
		m.startMs = m.updateMs
	}
	if v := a.str("parts", ""); v != "" {
		m.partitions = sortedUnique(r.parseParts(v))
	}
	rec := Record{Key: recordKey(id), Value: encodeValue(&m)}
	switch {
	case slices.Contains(a.pos, "corrupt"):
		rec.Value = []byte{0, 1, 0xff}
	case slices.Contains(a.pos, "tombstone"):
		rec.Value = nil
	}
	if _, err := r.store.Append(int32(a.int(r, "partition", int64(partitionFor(id, n)))), []Record{rec}); err != nil {
		return "seed: " + err.Error()
	}
	return "ok"
}

func (r *scriptRunner) cycle(a scriptArgs) string {
	name := a.pos[0]
	n, err := strconv.Atoi(a.pos[1])
	if err != nil {
		r.fatalf("bad count %q", a.pos[1])
	}
	parts := a.pos[2]
	var last string
	for range n {
		if last = r.add(parseArgs([]string{name, parts})); !strings.HasSuffix(last, "=ok") {
			return last
		}
		last = r.end(parseArgs([]string{name, "commit"}))
		synctest.Wait() // let a kicked snapshot finish, for a deterministic log
		r.markers.take()
	}
	return last
}
