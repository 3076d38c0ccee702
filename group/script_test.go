package group

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

// Group state-machine transcripts, after etcd raft's interaction tests.
// Each testdata/*.txt file is a list of blocks:
//
//	# optional comments
//	command arg key=value ...
//	----
//	expected output lines
//	(blank line)
//
// The script runs in a synctest bubble, so "tick" advances fake time and
// every timer fires exactly when it should. JoinGroup and SyncGroup calls
// run in their own goroutines; their responses are printed under the
// command after which they arrived. Run with -update to rewrite the files.
// The commands are documented in (*scriptRunner).run.

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
						if r.c != nil {
							checkStored(t, r.c)
						}
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
	t     *testing.T
	store *memStore
	cfg   Config
	c     *Coordinator
	start time.Time

	mu       sync.Mutex
	topics   map[string]TopicInfo
	ids      int
	names    map[string]string // script member → classic member ID
	gens     map[string]int32  // script member → generation of its last join
	clients  map[string]*scriptClient
	seq      int
	done     []scriptResult
	inflight int
}

type scriptResult struct {
	seq  int
	text string
}

// scriptClient is a KIP-848 member as a client sees itself.
type scriptClient struct {
	id       string
	epoch    int32
	owned    assignment
	topics   []string
	regex    *string
	assignor *string
}

func newScriptRunner(t *testing.T) *scriptRunner {
	r := &scriptRunner{
		t:       t,
		store:   newMemStore(),
		start:   time.Now(),
		topics:  make(map[string]TopicInfo),
		names:   make(map[string]string),
		gens:    make(map[string]int32),
		clients: make(map[string]*scriptClient),
	}
	r.cfg = Config{
		Store: r.store,
		Topics: func() map[string]TopicInfo {
			r.mu.Lock()
			defer r.mu.Unlock()
			return maps.Clone(r.topics)
		},
		OffsetsTopicPartitions: 4,
		newID: func(prefix string) string {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.ids++
			return fmt.Sprintf("%s-%d", prefix, r.ids)
		},
		newUUID: func() string {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.ids++
			return fmt.Sprintf("u%d", r.ids)
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

func topicID(name string) [16]byte {
	var id [16]byte
	copy(id[:], name)
	return id
}

func (r *scriptRunner) topicName(id [16]byte) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, t := range r.topics {
		if t.ID == id {
			return name
		}
	}
	return strings.TrimRight(string(id[:]), "\x00") + "(unknown)"
}

type scriptArgs struct {
	pos []string
	kv  map[string]string
	raw []string // key=value pairs in order
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

func (a scriptArgs) strPtr(k string) *string {
	if v, ok := a.kv[k]; ok {
		return &v
	}
	return nil
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

// parseParts parses "t1/0,1,2" into a topic and partitions.
func (r *scriptRunner) parseParts(s string) (string, []int32) {
	topic, list, ok := strings.Cut(s, "/")
	if !ok {
		r.fatalf("bad topic partitions %q", s)
	}
	var ps []int32
	for _, p := range strings.Split(list, ",") {
		if p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			r.fatalf("bad partition in %q", s)
		}
		ps = append(ps, int32(n))
	}
	return topic, ps
}

// parseTopicList parses "t1/0,1;t2/3" ("-" for none) into partitions by
// topic name.
func (r *scriptRunner) parseTopicList(s string) map[string][]int32 {
	out := make(map[string][]int32)
	if s == "-" || s == "" {
		return out
	}
	for _, part := range strings.Split(s, ";") {
		t, ps := r.parseParts(part)
		out[t] = append(out[t], ps...)
	}
	return out
}

func formatParts(byTopic map[string][]int32) string {
	if len(byTopic) == 0 {
		return "-"
	}
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(byTopic)) {
		ps := slices.Sorted(slices.Values(byTopic[t]))
		ss := make([]string, len(ps))
		for i, p := range ps {
			ss[i] = strconv.Itoa(int(p))
		}
		parts = append(parts, t+"/"+strings.Join(ss, ","))
	}
	return strings.Join(parts, ";")
}

func formatConsumerAssignment(b []byte) string {
	if len(b) == 0 {
		return "(empty)"
	}
	var a kmsg.ConsumerMemberAssignment
	if err := a.ReadFrom(b); err != nil {
		return fmt.Sprintf("(undecodable %x)", b)
	}
	byTopic := make(map[string][]int32)
	for _, t := range a.Topics {
		byTopic[t.Topic] = append(byTopic[t.Topic], t.Partitions...)
	}
	return formatParts(byTopic)
}

func (r *scriptRunner) formatAssignment(a assignment) string {
	byTopic := make(map[string][]int32)
	for id, ps := range a {
		byTopic[r.topicName(id)] = ps
	}
	return formatParts(byTopic)
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

func (r *scriptRunner) ctx(name string) context.Context {
	return WithClientInfo(context.Background(), ClientInfo{ClientID: name, Host: "/127.0.0.1"})
}

func (r *scriptRunner) async(fn func() string) {
	r.mu.Lock()
	r.seq++
	seq := r.seq
	r.inflight++
	r.mu.Unlock()
	go func() {
		text := fn()
		r.mu.Lock()
		r.done = append(r.done, scriptResult{seq, text})
		r.inflight--
		r.mu.Unlock()
	}()
}

func (r *scriptRunner) flush() []string {
	synctest.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.SortFunc(r.done, func(a, b scriptResult) int { return a.seq - b.seq })
	var out []string
	for _, d := range r.done {
		out = append(out, d.text)
	}
	r.done = nil
	return out
}

func (r *scriptRunner) memberID(a scriptArgs, name string) string {
	if v, ok := a.kv["member"]; ok {
		if v == "new" {
			return ""
		}
		return v
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.names[name]
}

// generation is the gen= argument, or the generation name last joined.
func (r *scriptRunner) generation(a scriptArgs, name string) int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int32(a.int(r, "gen", int64(r.gens[name])))
}

func (r *scriptRunner) need() {
	if r.c == nil {
		r.fatalf("no coordinator: run start first")
	}
}

// run executes one command and returns its output.
//
//	start [partitions=4] [min-session=6s] [max-session=30m] [initial-delay=3s]
//	      [retention=168h] [retention-check=10m] [consumer-session=45s]
//	      [compact-slack=1000] [assignors=uniform,range]
//	restart                           Close, then New over the same store
//	topics t1=4 t2=2 -t3              set (or remove) topic metadata
//	topics-changed                    call TopicsChanged
//	tick 10s                          advance fake time
//	fail append|snapshot|none         make the store fail
//	store                             show the store's partitions
//	expire                            run the offset expiry now
//	join m [v=9] [group=g] [session=10s] [rebalance=30s] [instance=i]
//	       [protocols=range,sticky] [topics=t1] [type=consumer] [member=id|new]
//	sync m [v=5] [gen=N] [instance=i] [ptype=x] [proto=x] [<m2>=t1/0,1;t2/0 ...]
//	heartbeat m [v=4] [gen=N] [instance=i]
//	leave m... [v=5] [instance=i]     "-" as member with instance=i removes by instance ID
//	commit m|- [v=8] [gen=N] [meta=x] [retention=1h] [t1/0=10 ...]
//	commit-many m|- t1/0 n=1100       n commits of one partition
//	fetch [v=8] [group=g] [t1/0,1 ...]  no partitions: all
//	describe [g...] [v=5]
//	list [v=5] [states=Empty,Stable] [types=classic]
//	delete g...
//	offset-delete [group=g] t1/0,1 ...
//	cgh m [v=1] [join|leave|static-leave] [epoch=N] [topics=t1,t2] [regex=re]
//	      [assignor=uniform] [owned=t1/0;t2/1|none] [instance=i] [rebalance=30s]
//	      [lose]                      the client acts on the response (its epoch and
//	                                  assignment) unless lose is given; it reports
//	                                  what it owns unless owned= says otherwise
//	cgdescribe [g...]
func (r *scriptRunner) run(cmd string) []string {
	fields := strings.Fields(cmd)
	a := parseArgs(fields[1:])
	group := a.str("group", "g")
	var out []string
	switch fields[0] {
	case "start":
		r.cfg.OffsetsTopicPartitions = int32(a.int(r, "partitions", 4))
		r.cfg.MinSessionTimeout = a.dur(r, "min-session", 0)
		r.cfg.MaxSessionTimeout = a.dur(r, "max-session", 0)
		r.cfg.InitialRebalanceDelay = a.dur(r, "initial-delay", 0)
		if r.cfg.InitialRebalanceDelay == 0 && a.has("initial-delay") {
			r.cfg.InitialRebalanceDelay = -1
		}
		r.cfg.OffsetsRetention = a.dur(r, "retention", 0)
		r.cfg.OffsetsRetentionCheckInterval = a.dur(r, "retention-check", 0)
		r.cfg.ConsumerSessionTimeout = a.dur(r, "consumer-session", 0)
		r.cfg.compactSlack = a.int(r, "compact-slack", 0)
		if v, ok := a.kv["assignors"]; ok {
			r.cfg.ConsumerAssignors = strings.Split(v, ",")
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
			if name, ok := strings.CutPrefix(f, "-"); ok {
				delete(r.topics, name)
				continue
			}
			name, n, _ := strings.Cut(f, "=")
			np, _ := strconv.Atoi(n)
			r.topics[name] = TopicInfo{ID: topicID(name), Partitions: int32(np)}
		}
		r.mu.Unlock()
		out = append(out, "ok")
	case "topics-changed":
		r.need()
		r.c.TopicsChanged()
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
		out = append(out, "ok")
	case "store":
		synctest.Wait()
		out = append(out, r.store.summary()...)
		r.store.mu.Lock()
		out = append(out, fmt.Sprintf("snapshots=%d", r.store.snapshots))
		r.store.mu.Unlock()
	case "expire":
		r.need()
		r.c.expireOffsets()
		out = append(out, "ok")
	case "join":
		r.need()
		r.join(a, group)
	case "sync":
		r.need()
		r.sync(a, group)
	case "heartbeat":
		r.need()
		out = append(out, r.heartbeat(a, group))
	case "leave":
		r.need()
		out = append(out, r.leave(a, group))
	case "commit":
		r.need()
		out = append(out, r.commit(a, group))
	case "commit-many":
		r.need()
		n := a.int(r, "n", 1)
		tp := a.pos[1]
		a.pos = a.pos[:1]
		a.raw = append(a.raw, tp+"=")
		last := ""
		for i := range n {
			a.raw[len(a.raw)-1] = tp + "=" + strconv.FormatInt(i, 10)
			last = r.commit(a, group)
			synctest.Wait() // let a kicked snapshot finish, for a deterministic log
		}
		out = append(out, last)
	case "fetch":
		r.need()
		out = append(out, r.fetch(a, group))
	case "describe":
		r.need()
		out = append(out, r.describe(a)...)
	case "list":
		r.need()
		out = append(out, r.list(a)...)
	case "delete":
		r.need()
		req := kmsg.NewPtrDeleteGroupsRequest()
		req.Version = int16(a.int(r, "v", 2))
		req.Groups = a.pos
		req = wire(r, req)
		resp := wireResp(r, r.c.DeleteGroups(context.Background(), req), req.Version)
		for _, g := range resp.Groups {
			out = append(out, fmt.Sprintf("%s: %s", g.Group, errName(g.ErrorCode)))
		}
	case "offset-delete":
		r.need()
		out = append(out, r.offsetDelete(a, group))
	case "cgh":
		r.need()
		out = append(out, r.cgh(a, group))
	case "cgdescribe":
		r.need()
		out = append(out, r.cgdescribe(a)...)
	default:
		r.fatalf("unknown command %q", fields[0])
	}
	return append(out, r.flush()...)
}

func (r *scriptRunner) join(a scriptArgs, group string) {
	name := a.pos[0]
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = int16(a.int(r, "v", 9))
	req.Group = group
	req.SessionTimeoutMillis = millis(a.dur(r, "session", 10*time.Second))
	req.RebalanceTimeoutMillis = millis(a.dur(r, "rebalance", 30*time.Second))
	req.MemberID = r.memberID(a, name)
	req.InstanceID = a.strPtr("instance")
	req.ProtocolType = a.str("type", "consumer")
	var topics []string
	if t := a.str("topics", "t1"); t != "" {
		topics = strings.Split(t, ",")
	}
	for _, p := range strings.Split(a.str("protocols", "range"), ",") {
		if p == "" {
			continue
		}
		md := kmsg.ConsumerMemberMetadata{Topics: topics}
		req.Protocols = append(req.Protocols, kmsg.JoinGroupRequestProtocol{Name: p, Metadata: md.AppendTo(nil)})
	}
	req = wire(r, req)
	r.async(func() string {
		resp := wireResp(r, r.c.JoinGroup(r.ctx(name), req), req.Version)
		r.mu.Lock()
		switch resp.ErrorCode {
		case 0, kerr.MemberIDRequired.Code:
			r.names[name] = resp.MemberID
			if resp.ErrorCode == 0 {
				r.gens[name] = resp.Generation
			}
		case kerr.UnknownMemberID.Code:
			r.names[name] = ""
		}
		r.mu.Unlock()
		var b strings.Builder
		fmt.Fprintf(&b, "join %s: ", name)
		if resp.ErrorCode != 0 {
			fmt.Fprintf(&b, "%s member=%q", errName(resp.ErrorCode), resp.MemberID)
			return b.String()
		}
		fmt.Fprintf(&b, "gen=%d member=%s leader=%s", resp.Generation, resp.MemberID, resp.LeaderID)
		if resp.ProtocolType != nil {
			fmt.Fprintf(&b, " type=%s", *resp.ProtocolType)
		}
		fmt.Fprintf(&b, " protocol=%s", derefStr(resp.Protocol))
		if resp.SkipAssignment {
			b.WriteString(" skip-assignment")
		}
		if len(resp.Members) > 0 {
			var ms []string
			for _, m := range resp.Members {
				s := m.MemberID
				if m.InstanceID != nil {
					s += "(" + *m.InstanceID + ")"
				}
				var md kmsg.ConsumerMemberMetadata
				if md.ReadFrom(m.ProtocolMetadata) == nil {
					s += ":" + strings.Join(md.Topics, ",")
				}
				ms = append(ms, s)
			}
			fmt.Fprintf(&b, " members=[%s]", strings.Join(ms, " "))
		}
		return b.String()
	})
}

func (r *scriptRunner) sync(a scriptArgs, group string) {
	name := a.pos[0]
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version = int16(a.int(r, "v", 5))
	req.Group = group
	req.MemberID = r.memberID(a, name)
	req.Generation = r.generation(a, name)
	req.InstanceID = a.strPtr("instance")
	req.ProtocolType = a.strPtr("ptype")
	req.Protocol = a.strPtr("proto")
	reserved := map[string]bool{"v": true, "gen": true, "group": true, "instance": true, "ptype": true, "proto": true, "member": true}
	for _, kv := range a.raw {
		k, v, _ := strings.Cut(kv, "=")
		if reserved[k] {
			continue
		}
		ma := kmsg.ConsumerMemberAssignment{}
		byTopic := r.parseTopicList(v)
		for _, t := range slices.Sorted(maps.Keys(byTopic)) {
			ma.Topics = append(ma.Topics, kmsg.ConsumerMemberAssignmentTopic{Topic: t, Partitions: byTopic[t]})
		}
		r.mu.Lock()
		id := r.names[k]
		r.mu.Unlock()
		req.GroupAssignment = append(req.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: ma.AppendTo(nil)})
	}
	req = wire(r, req)
	r.async(func() string {
		resp := wireResp(r, r.c.SyncGroup(r.ctx(name), req), req.Version)
		if resp.ErrorCode != 0 {
			return fmt.Sprintf("sync %s: %s", name, errName(resp.ErrorCode))
		}
		return fmt.Sprintf("sync %s: protocol=%s assignment=%s", name, derefStr(resp.Protocol), formatConsumerAssignment(resp.MemberAssignment))
	})
}

func (r *scriptRunner) heartbeat(a scriptArgs, group string) string {
	name := a.pos[0]
	req := kmsg.NewPtrHeartbeatRequest()
	req.Version = int16(a.int(r, "v", 4))
	req.Group = group
	req.MemberID = r.memberID(a, name)
	req.Generation = r.generation(a, name)
	req.InstanceID = a.strPtr("instance")
	req = wire(r, req)
	resp := wireResp(r, r.c.Heartbeat(r.ctx(name), req), req.Version)
	return fmt.Sprintf("heartbeat %s: %s", name, errName(resp.ErrorCode))
}

func (r *scriptRunner) leave(a scriptArgs, group string) string {
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Version = int16(a.int(r, "v", 5))
	req.Group = group
	for _, name := range a.pos {
		m := kmsg.NewLeaveGroupRequestMember()
		if name != "-" {
			m.MemberID = r.memberID(a, name)
		}
		m.InstanceID = a.strPtr("instance")
		req.Members = append(req.Members, m)
		if req.Version < 3 {
			req.MemberID = m.MemberID
		}
	}
	req = wire(r, req)
	resp := wireResp(r, r.c.LeaveGroup(context.Background(), req), req.Version)
	if req.Version < 3 {
		return "leave: " + errName(resp.ErrorCode)
	}
	var parts []string
	for _, m := range resp.Members {
		id := m.MemberID
		if m.InstanceID != nil {
			id += "(" + *m.InstanceID + ")"
		}
		parts = append(parts, fmt.Sprintf("%s=%s", id, errName(m.ErrorCode)))
	}
	return strings.TrimSpace(fmt.Sprintf("leave: %s %s", errName(resp.ErrorCode), strings.Join(parts, " ")))
}

func (r *scriptRunner) commit(a scriptArgs, group string) string {
	name := a.pos[0]
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = int16(a.int(r, "v", 8))
	req.Group = group
	if name != "-" {
		req.MemberID = r.memberID(a, name)
		r.mu.Lock()
		gen := int64(r.gens[name])
		if c := r.clients[name]; c != nil {
			gen = int64(c.epoch)
			req.MemberID = c.id
		}
		r.mu.Unlock()
		req.Generation = int32(a.int(r, "gen", gen))
	} else {
		req.Generation = int32(a.int(r, "gen", -1))
	}
	req.InstanceID = a.strPtr("instance")
	if a.has("retention") {
		req.RetentionTimeMillis = a.dur(r, "retention", 0).Milliseconds()
	}
	for _, kv := range a.raw {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.Contains(k, "/") {
			continue
		}
		topic, ps := r.parseParts(k)
		off, _ := strconv.ParseInt(v, 10, 64)
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = topic
		if req.Version >= 10 {
			rt.TopicID = topicID(topic)
		}
		for _, p := range ps {
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition = p
			rp.Offset = off
			rp.LeaderEpoch = 5
			rp.Metadata = a.strPtr("meta")
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	req = wire(r, req)
	resp := wireResp(r, r.c.OffsetCommit(r.ctx(name), req), req.Version)
	var parts []string
	for _, t := range resp.Topics {
		topic := t.Topic
		if req.Version >= 10 {
			topic = r.topicName(t.TopicID)
		}
		for _, p := range t.Partitions {
			parts = append(parts, fmt.Sprintf("%s/%d=%s", topic, p.Partition, errName(p.ErrorCode)))
		}
	}
	return fmt.Sprintf("commit %s: %s", name, strings.Join(parts, " "))
}

func (r *scriptRunner) fetch(a scriptArgs, group string) string {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = int16(a.int(r, "v", 8))
	var topics []kmsg.OffsetFetchRequestGroupTopic
	for _, p := range a.pos {
		topic, ps := r.parseParts(p)
		t := kmsg.NewOffsetFetchRequestGroupTopic()
		t.Topic = topic
		if req.Version >= 10 {
			t.TopicID = topicID(topic)
		}
		t.Partitions = ps
		topics = append(topics, t)
	}
	type part struct {
		topic string
		p     int32
		off   int64
		meta  *string
		code  int16
	}
	var parts []part
	var code int16
	if req.Version >= 8 {
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = group
		rg.Topics = topics
		req.Groups = append(req.Groups, rg)
		req = wire(r, req)
		resp := wireResp(r, r.c.OffsetFetch(context.Background(), req), req.Version)
		g := resp.Groups[0]
		code = g.ErrorCode
		for _, t := range g.Topics {
			topic := t.Topic
			if req.Version >= 10 {
				topic = r.topicName(t.TopicID)
			}
			for _, p := range t.Partitions {
				parts = append(parts, part{topic, p.Partition, p.Offset, p.Metadata, p.ErrorCode})
			}
		}
	} else {
		req.Group = group
		for _, t := range topics {
			req.Topics = append(req.Topics, kmsg.OffsetFetchRequestTopic{Topic: t.Topic, Partitions: t.Partitions})
		}
		req = wire(r, req)
		resp := wireResp(r, r.c.OffsetFetch(context.Background(), req), req.Version)
		code = resp.ErrorCode
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				parts = append(parts, part{t.Topic, p.Partition, p.Offset, p.Metadata, p.ErrorCode})
			}
		}
	}
	var ss []string
	for _, p := range parts {
		s := fmt.Sprintf("%s/%d=%d", p.topic, p.p, p.off)
		if p.meta != nil && *p.meta != "" {
			s += "(" + *p.meta + ")"
		}
		if p.code != 0 {
			s += ":" + errName(p.code)
		}
		ss = append(ss, s)
	}
	return fmt.Sprintf("fetch %s: %s [%s]", group, errName(code), strings.Join(ss, " "))
}

func (r *scriptRunner) describe(a scriptArgs) []string {
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Version = int16(a.int(r, "v", 5))
	req.Groups = a.pos
	if len(req.Groups) == 0 {
		req.Groups = []string{"g"}
	}
	req = wire(r, req)
	resp := wireResp(r, r.c.DescribeGroups(context.Background(), req), req.Version)
	var out []string
	for _, g := range resp.Groups {
		s := fmt.Sprintf("%s: %s state=%s type=%q protocol=%q", g.Group, errName(g.ErrorCode), g.State, g.ProtocolType, g.Protocol)
		out = append(out, s)
		for _, m := range g.Members {
			ms := fmt.Sprintf("  %s client=%s host=%s", m.MemberID, m.ClientID, m.ClientHost)
			if m.InstanceID != nil {
				ms += " instance=" + *m.InstanceID
			}
			if len(m.MemberAssignment) > 0 {
				ms += " assignment=" + formatConsumerAssignment(m.MemberAssignment)
			}
			out = append(out, ms)
		}
	}
	return out
}

func (r *scriptRunner) list(a scriptArgs) []string {
	req := kmsg.NewPtrListGroupsRequest()
	req.Version = int16(a.int(r, "v", 5))
	if v := a.str("states", ""); v != "" {
		req.StatesFilter = strings.Split(v, ",")
	}
	if v := a.str("types", ""); v != "" {
		req.TypesFilter = strings.Split(v, ",")
	}
	req = wire(r, req)
	resp := wireResp(r, r.c.ListGroups(context.Background(), req), req.Version)
	out := []string{"list: " + errName(resp.ErrorCode)}
	for _, g := range resp.Groups {
		out = append(out, fmt.Sprintf("  %s state=%s type=%s protocol-type=%q", g.Group, g.GroupState, g.GroupType, g.ProtocolType))
	}
	return out
}

func (r *scriptRunner) offsetDelete(a scriptArgs, group string) string {
	req := kmsg.NewPtrOffsetDeleteRequest()
	req.Group = group
	for _, p := range a.pos {
		topic, ps := r.parseParts(p)
		t := kmsg.OffsetDeleteRequestTopic{Topic: topic}
		for _, p := range ps {
			t.Partitions = append(t.Partitions, kmsg.OffsetDeleteRequestTopicPartition{Partition: p})
		}
		req.Topics = append(req.Topics, t)
	}
	req = wire(r, req)
	resp := wireResp(r, r.c.OffsetDelete(context.Background(), req), req.Version)
	var ss []string
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			ss = append(ss, fmt.Sprintf("%s/%d=%s", t.Topic, p.Partition, errName(p.ErrorCode)))
		}
	}
	return fmt.Sprintf("offset-delete: %s %s", errName(resp.ErrorCode), strings.Join(ss, " "))
}

func (r *scriptRunner) cgh(a scriptArgs, group string) string {
	name := a.pos[0]
	r.mu.Lock()
	cl := r.clients[name]
	if cl == nil {
		cl = &scriptClient{id: name + "-id", owned: assignment{}}
		r.clients[name] = cl
	}
	r.mu.Unlock()
	if v, ok := a.kv["topics"]; ok {
		cl.topics = []string{}
		if v != "" {
			cl.topics = strings.Split(v, ",")
		}
	}
	if a.has("regex") {
		cl.regex = a.strPtr("regex")
	}
	if a.has("assignor") {
		cl.assignor = a.strPtr("assignor")
	}
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version = int16(a.int(r, "v", 1))
	req.Group = group
	req.MemberID = a.str("member", cl.id)
	req.InstanceID = a.strPtr("instance")
	req.MemberEpoch = cl.epoch
	switch {
	case slices.Contains(a.pos, "join"):
		req.MemberEpoch = 0
	case slices.Contains(a.pos, "leave"):
		req.MemberEpoch = -1
	case slices.Contains(a.pos, "static-leave"):
		req.MemberEpoch = -2
	}
	req.MemberEpoch = int32(a.int(r, "epoch", int64(req.MemberEpoch)))
	owned := func(as assignment) []kmsg.ConsumerGroupHeartbeatRequestTopic {
		ts := []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		for _, id := range as.sortedIDs() {
			t := kmsg.NewConsumerGroupHeartbeatRequestTopic()
			t.TopicID = id
			t.Partitions = slices.Clone(as[id])
			ts = append(ts, t)
		}
		return ts
	}
	if req.MemberEpoch == 0 {
		req.RebalanceTimeoutMillis = millis(a.dur(r, "rebalance", 30*time.Second))
		req.SubscribedTopicNames = cl.topics
		req.SubscribedTopicRegex = cl.regex
		if req.SubscribedTopicNames == nil && req.SubscribedTopicRegex == nil {
			req.SubscribedTopicNames = []string{}
		}
		req.ServerAssignor = cl.assignor
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	} else {
		if a.has("rebalance") {
			req.RebalanceTimeoutMillis = millis(a.dur(r, "rebalance", 0))
		}
		if a.has("topics") {
			req.SubscribedTopicNames = cl.topics
		}
		if a.has("regex") {
			req.SubscribedTopicRegex = cl.regex
		}
		if a.has("assignor") {
			req.ServerAssignor = cl.assignor
		}
		req.Topics = owned(cl.owned)
	}
	if v, ok := a.kv["owned"]; ok {
		if v == "none" {
			req.Topics = nil
		} else {
			as := assignment{}
			for t, ps := range r.parseTopicList(v) {
				for _, p := range ps {
					as.add(topicID(t), p)
				}
			}
			req.Topics = owned(as)
		}
	}
	req = wire(r, req)
	resp := wireResp(r, r.c.ConsumerGroupHeartbeat(r.ctx(name), req), req.Version)
	if resp.ErrorCode != 0 {
		if resp.ErrorCode == kerr.FencedMemberEpoch.Code || resp.ErrorCode == kerr.UnknownMemberID.Code {
			cl.epoch, cl.owned = 0, assignment{}
		}
		return fmt.Sprintf("cgh %s: %s %q", name, errName(resp.ErrorCode), derefStr(resp.ErrorMessage))
	}
	if slices.Contains(a.pos, "lose") {
		return fmt.Sprintf("cgh %s: (response lost)", name)
	}
	if resp.MemberID != nil {
		cl.id = *resp.MemberID
	}
	cl.epoch = resp.MemberEpoch
	if req.MemberEpoch < 0 {
		cl.epoch, cl.owned = 0, assignment{}
	}
	s := fmt.Sprintf("cgh %s: member=%s epoch=%d", name, derefStr(resp.MemberID), resp.MemberEpoch)
	if resp.Assignment != nil {
		as := assignment{}
		for _, t := range resp.Assignment.Topics {
			for _, p := range t.Partitions {
				as.add(t.TopicID, p)
			}
		}
		cl.owned = as
		s += " assigned=" + r.formatAssignment(as)
	}
	return s
}

func (r *scriptRunner) cgdescribe(a scriptArgs) []string {
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Version = 1
	req.Groups = a.pos
	if len(req.Groups) == 0 {
		req.Groups = []string{"g"}
	}
	req = wire(r, req)
	resp := wireResp(r, r.c.ConsumerGroupDescribe(context.Background(), req), req.Version)
	var out []string
	for _, g := range resp.Groups {
		if g.ErrorCode != 0 {
			out = append(out, fmt.Sprintf("%s: %s %q", g.Group, errName(g.ErrorCode), derefStr(g.ErrorMessage)))
			continue
		}
		out = append(out, fmt.Sprintf("%s: state=%s epoch=%d assignment-epoch=%d assignor=%s", g.Group, g.State, g.Epoch, g.AssignmentEpoch, g.AssignorName))
		for _, m := range g.Members {
			conv := func(as kmsg.Assignment) string {
				byTopic := make(map[string][]int32)
				for _, t := range as.TopicPartitions {
					byTopic[t.Topic] = t.Partitions
				}
				return formatParts(byTopic)
			}
			s := fmt.Sprintf("  %s epoch=%d topics=%s", m.MemberID, m.MemberEpoch, strings.Join(m.SubscribedTopics, ","))
			if m.SubscribedTopicRegex != nil {
				s += " regex=" + *m.SubscribedTopicRegex
			}
			if m.InstanceID != nil {
				s += " instance=" + *m.InstanceID
			}
			s += " assigned=" + conv(m.Assignment) + " target=" + conv(m.TargetAssignment)
			out = append(out, s)
		}
	}
	return out
}
