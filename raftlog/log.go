package raftlog

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/ferrymq/ferry/meta"
)

var (
	// ErrTimeout: a proposal was not committed in time. It may still be
	// committed later.
	ErrTimeout = errors.New("raftlog: proposal not committed in time")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("raftlog: closed")
)

// Voter is one member of the metadata quorum.
type Voter struct {
	// NodeID is the node's node.id.
	NodeID int32
	// Addr is the host:port of its controller listener.
	Addr string
}

// ParseVoters parses controller.quorum.voters, Kafka's
// "id@host:port,id@host:port" form.
func ParseVoters(s string) ([]Voter, error) {
	var out []Voter
	seen := map[int32]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, addr, ok := strings.Cut(item, "@")
		n, err := strconv.ParseInt(id, 10, 32)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("controller.quorum.voters: %q is not id@host:port", item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("controller.quorum.voters: %q: %v", item, err)
		}
		if seen[int32(n)] {
			return nil, fmt.Errorf("controller.quorum.voters: node %d named twice", n)
		}
		seen[int32(n)] = true
		out = append(out, Voter{NodeID: int32(n), Addr: addr})
	}
	if len(out) == 0 {
		return nil, errors.New("controller.quorum.voters is empty")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out, nil
}

// Config configures a replicated metadata log.
type Config struct {
	// Dir holds the WAL and snapshots. Required.
	Dir string
	// NodeID is this node's node.id. A node not among Voters is a
	// Learner, or a controller to be added as a voter (AddVoter), which
	// needs ListenAddr or Listener.
	NodeID int32
	// Voters are the voters at the quorum's first start
	// (controller.quorum.voters): the bootstrap of a new cluster, the
	// addresses of an older one's voters, where a new node finds the
	// quorum. The voters change since with AddVoter and RemoveVoter.
	Voters []Voter
	// Learner makes this node a raft learner: it follows the log
	// without voting (a broker-only node, process.roles=broker). Its
	// NodeID is not among Voters, it has no controller listener, and it
	// asks to join by connecting to the voters: their leader adds it
	// with a ConfChange (AddLearnerNode).
	Learner bool
	// ListenAddr is where the controller listener binds. Default: this
	// node's address in Voters. A learner has none.
	ListenAddr string
	// Listener, if set, is used instead of listening on ListenAddr.
	Listener net.Listener
	// ServerTLS and DialTLS, if set, make the transport mutual TLS
	// (the controller listener is SSL): ServerTLS serves the
	// connections peers open, and must require and verify their
	// certificates; DialTLS gives the settings of a connection this
	// node opens to host. A peer whose handshake fails is refused.
	// Both nil: plain TCP.
	ServerTLS *tls.Config
	DialTLS   func(host string) *tls.Config
	// ClusterID must be the same on every node; a connection from
	// another cluster is refused.
	ClusterID string
	// TickInterval is raft's clock. Default 100ms.
	TickInterval time.Duration
	// ElectionTimeout: a follower that hears from no leader this long
	// starts an election (raft randomizes it up to twice this).
	// Corresponds to controller.quorum.election.timeout.ms; default 1s.
	ElectionTimeout time.Duration
	// ProposeTimeout bounds Propose. Default 10s.
	ProposeTimeout time.Duration
	// SnapshotEntries: a snapshot is taken once this many entries were
	// applied since the last one. Default 10,000.
	SnapshotEntries uint64
	// Logger receives the log's lines. nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.TickInterval <= 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.ElectionTimeout <= 0 {
		c.ElectionTimeout = time.Second
	}
	if c.ProposeTimeout <= 0 {
		c.ProposeTimeout = 10 * time.Second
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = 10_000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// raftID is the raft id of a node: raft reserves 0.
func raftID(node int32) uint64 { return uint64(node) + 1 }

// Log is a meta.Log replicated by go.etcd.io/raft across the voters of
// controller.quorum.voters. See the package comment.
type Log struct {
	cfg     Config
	logger  *slog.Logger
	id      uint64
	disk    *disk
	storage *raft.MemoryStorage
	rn      *raft.RawNode
	tr      *transport

	// Channels into the node's goroutine.
	recvc    chan *pb.Message
	propc    chan proposal
	reportc  chan report
	quorumc  chan quorumAsk
	barrierc chan barrierAsk
	confc    chan confAsk
	voterc   chan voterAsk
	quit     chan struct{}
	done     chan struct{}
	started  atomic.Bool
	closed   atomic.Bool
	closeErr error

	// initialCommit is the commit index found on disk; Replay returns
	// once it is applied.
	initialCommit uint64
	replayed      chan struct{}
	replayOnce    sync.Once

	// learnerAsked is when the leader last proposed to add each
	// connected learner; owned by the node's goroutine.
	learnerAsked map[uint64]time.Time
	// learnerIDs are the learners of the last configuration applied.
	learnerIDs atomic.Pointer[[]int32]
	// caughtUp is, on the leader, when each member's log last reached
	// the leader's end (seen at a tick); owned by the node's goroutine,
	// emptied when the leader changes.
	caughtUp map[uint64]time.Time

	// Owned by the node's goroutine.
	apply      func(meta.Entry) error
	snapshotFn func() []meta.Record
	applied    uint64
	snapIndex  uint64
	confState  *pb.ConfState
	fatal      error
	// book is the address book: the controller address of each voter,
	// by raft id (voters.go).
	book map[uint64]string
	// removed are the voters removed (and not added again): their
	// messages are dropped, so that one that never learned of its
	// removal cannot disrupt the quorum with its campaigns.
	removed map[uint64]bool
	// leaderStart is, on the leader, the index of the first entry of
	// its term: raft refuses a configuration change until it applied it.
	leaderStart uint64
	// votersView is the voters of the configuration applied, with their
	// addresses, for other goroutines.
	votersView atomic.Pointer[[]Voter]
	// snapNow asks for a snapshot once the entries of this Ready are
	// applied: a learner was added, and a snapshot sent to it must name
	// it (raft ignores one whose configuration lacks the receiver).
	snapNow bool

	// recent holds the ids of the proposals applied last.
	recent recentIDs

	// waiters are the proposals waiting to be applied, by id.
	waiters struct {
		sync.Mutex
		m map[uint64]chan error
	}
	// status, read by other goroutines.
	leader     atomic.Uint64 // raft id of the leader, 0 if none known
	appliedIdx atomic.Uint64
	commitIdx  atomic.Uint64
	// readIdx is the leader's commit index, learned with a ReadIndex
	// request since this node last came to know a leader; 0 until then.
	// A node that hears from a leader learns from its heartbeats only
	// the commit index the leader knows it holds, which for a node back
	// from a restart or a cut is what it had before: CaughtUp waits for
	// readIdx instead. readCtx and readAsked are the run goroutine's.
	readIdx   atomic.Uint64
	readCtx   uint64
	readAsked time.Time

	// barriers are the Barrier calls waiting for their ReadIndex
	// answer, by the sequence number in its context; the run
	// goroutine's.
	barriers   map[uint64]chan uint64
	barrierSeq uint64
	// appliedCh is closed, and replaced, when the applied index moves.
	appliedMu sync.Mutex
	appliedCh chan struct{}
}

type proposal struct {
	data []byte
	errc chan error
}

type report struct {
	id   uint64
	snap bool // a snapshot send finished (ok) or failed
	ok   bool
}

// Open recovers the node's raft state from cfg.Dir and starts its
// controller listener. Nothing is applied until Replay.
func Open(cfg Config) (*Log, error) {
	cfg = cfg.withDefaults()
	if cfg.Dir == "" {
		return nil, errors.New("raftlog: Dir is required")
	}
	var self *Voter
	for i := range cfg.Voters {
		if cfg.Voters[i].NodeID == cfg.NodeID {
			self = &cfg.Voters[i]
		}
	}
	switch {
	case self != nil && cfg.Learner:
		return nil, fmt.Errorf("raftlog: node.id %d of a learner (a broker-only node) is in controller.quorum.voters", cfg.NodeID)
	case cfg.Learner && (cfg.ListenAddr != "" || cfg.Listener != nil):
		return nil, errors.New("raftlog: a learner (a broker-only node) has no controller listener")
	case self == nil && !cfg.Learner && cfg.ListenAddr == "" && cfg.Listener == nil:
		// A controller that is not among the bootstrap voters: one to
		// be added (AddVoter), or added already.
		return nil, fmt.Errorf("raftlog: node.id %d is not in controller.quorum.voters and has no controller listener address", cfg.NodeID)
	}
	if cfg.ListenAddr == "" && self != nil {
		cfg.ListenAddr = self.Addr
	}
	l := &Log{
		cfg:      cfg,
		logger:   cfg.Logger.With("component", "raft"),
		id:       raftID(cfg.NodeID),
		storage:  raft.NewMemoryStorage(),
		recvc:    make(chan *pb.Message, 4096),
		propc:    make(chan proposal, 256),
		reportc:  make(chan report, 256),
		quorumc:  make(chan quorumAsk),
		barrierc: make(chan barrierAsk),
		confc:    make(chan confAsk),
		voterc:   make(chan voterAsk),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		replayed: make(chan struct{}),

		learnerAsked: map[uint64]time.Time{},
		caughtUp:     map[uint64]time.Time{},
		book:         map[uint64]string{},
		removed:      map[uint64]bool{},
		barriers:     map[uint64]chan uint64{},
		appliedCh:    make(chan struct{}),
	}
	l.waiters.m = map[uint64]chan error{}
	ln := cfg.Listener
	if ln == nil && !cfg.Learner {
		var err error
		if ln, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
			return nil, fmt.Errorf("raftlog: controller listener: %w", err)
		}
	}
	l.tr = newTransport(l.id, cfg.ClusterID, ln, l.logger)
	l.tr.serverTLS, l.tr.dialTLS = cfg.ServerTLS, cfg.DialTLS
	l.tr.recv = func(m *pb.Message) {
		select {
		case l.recvc <- m:
		case <-l.quit:
		}
	}
	l.tr.unreachable = func(id uint64) {
		select {
		case l.reportc <- report{id: id}:
		default:
		}
	}
	l.tr.snapDone = func(id uint64, ok bool) {
		select {
		case l.reportc <- report{id: id, snap: true, ok: ok}:
		case <-l.quit:
		}
	}
	return l, nil
}

// load recovers the node's raft state from its directory. Replay calls
// it: by then meta.Store holds the data directory's lock, so no other
// broker writes the WAL.
func (l *Log) load() error {
	cfg := l.cfg
	d, ld, err := openDisk(cfg.Dir)
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	l.disk = d
	fresh := ld.snap == nil && ld.hard == nil && len(ld.entries) == 0
	bootstrap := fresh && slices.ContainsFunc(cfg.Voters, func(v Voter) bool { return v.NodeID == cfg.NodeID }) && !cfg.Learner
	l.loadBook(ld)
	if ld.snap != nil {
		if err := l.storage.ApplySnapshot(ld.snap); err != nil {
			return err
		}
		l.snapIndex = ld.snap.GetMetadata().GetIndex()
		l.applied = l.snapIndex
		l.setConfState(ld.snap.GetMetadata().GetConfState())
	}
	if ld.hard != nil {
		l.storage.SetHardState(ld.hard)
		l.initialCommit = ld.hard.GetCommit()
	}
	if err := l.storage.Append(ld.entries); err != nil {
		return err
	}
	ticks := int(cfg.ElectionTimeout / cfg.TickInterval)
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        l.id,
		ElectionTick:              max(ticks, 2),
		HeartbeatTick:             1,
		Storage:                   l.storage,
		Applied:                   l.applied,
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           256,
		MaxUncommittedEntriesSize: 64 << 20,
		CheckQuorum:               true,
		PreVote:                   true,
		Logger:                    raftLogger{l.logger},
	})
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	if bootstrap {
		// A learner starts empty: the leader sends it the log (or a
		// snapshot) from the start, configuration changes included; so
		// does a controller to be added as a voter. Each voter's entry
		// carries its address (the address book).
		peers := make([]raft.Peer, 0, len(cfg.Voters))
		for _, v := range cfg.Voters {
			peers = append(peers, raft.Peer{ID: raftID(v.NodeID), Context: []byte(v.Addr)})
		}
		if err := rn.Bootstrap(peers); err != nil {
			return fmt.Errorf("raftlog: bootstrap: %w", err)
		}
	}
	l.rn = rn
	l.tr.learner = cfg.Learner || !l.voterAtStart(ld, bootstrap)
	return nil
}

// Addr is the controller listener's address; nil on a learner.
func (l *Log) Addr() net.Addr {
	if l.tr.ln == nil {
		return nil
	}
	return l.tr.ln.Addr()
}

// SetSnapshotSource is called by meta.Store before Replay: fn returns the
// image as records, consistent with the last entry applied.
func (l *Log) SetSnapshotSource(fn func() []meta.Record) { l.snapshotFn = fn }

// Replay applies the snapshot and every entry committed on disk, starts
// the node, and returns once they are applied; entries committed later
// are applied as they commit, from the node's goroutine.
func (l *Log) Replay(apply func(meta.Entry) error) error {
	if l.started.Swap(true) {
		return errors.New("raftlog: Replay called twice")
	}
	if err := l.load(); err != nil {
		l.started.Store(false)
		return err
	}
	l.apply = apply
	if l.snapIndex > 0 {
		snap, err := l.storage.Snapshot()
		if err != nil {
			return err
		}
		if err := l.restore(snap); err != nil {
			return err
		}
	}
	if l.applied >= l.initialCommit {
		l.replayOnce.Do(func() { close(l.replayed) })
	}
	l.tr.start()
	go l.run()
	select {
	case <-l.replayed:
		return l.fatal
	case <-l.done:
		if l.fatal != nil {
			return l.fatal
		}
		return ErrClosed
	}
}

// snapshotData is the JSON of a snapshot's data.
type snapshotData struct {
	V       int          `json:"v"`
	Records []wireRecord `json:"records"`
	// Voters is the address book of the snapshot's voters (raft's
	// ConfState holds their ids only). Absent in snapshots written
	// before voters could change: their voters are
	// controller.quorum.voters.
	Voters []bookEntry `json:"voters,omitempty"`
	// Removed are the node ids of the voters removed since, whose
	// messages are dropped.
	Removed []int32 `json:"removed,omitempty"`
}

// wireRecord is a metadata record with its type, as entries and snapshots
// hold it.
type wireRecord struct {
	Type meta.RecordType `json:"type"`
	meta.Record
}

// entryData is the JSON of a normal entry's data.
type entryData struct {
	// ID names the proposal so that its proposer learns when it is
	// applied; 0 for none.
	ID      uint64       `json:"id"`
	Records []wireRecord `json:"records"`
}

func toWire(recs []meta.Record) []wireRecord {
	out := make([]wireRecord, len(recs))
	for i := range recs {
		recs[i].V = meta.FormatVersion
		out[i] = wireRecord{Type: recs[i].Type, Record: recs[i]}
	}
	return out
}

func fromWire(ws []wireRecord) []meta.Record {
	out := make([]meta.Record, len(ws))
	for i := range ws {
		out[i] = ws[i].Record
		out[i].Type = ws[i].Type
	}
	return out
}

// restore hands a snapshot's image to the store.
func (l *Log) restore(snap *pb.Snapshot) error {
	var sd snapshotData
	if len(snap.GetData()) > 0 {
		if err := json.Unmarshal(snap.GetData(), &sd); err != nil {
			return fmt.Errorf("%w: snapshot %d: %v", ErrCorrupt, snap.GetMetadata().GetIndex(), err)
		}
	}
	if err := l.apply(meta.Entry{Offset: int64(snap.GetMetadata().GetIndex()), Snapshot: true, Records: fromWire(sd.Records)}); err != nil {
		return err
	}
	l.applied = snap.GetMetadata().GetIndex()
	l.restoreBook(sd.Voters, snap.GetMetadata().GetConfState())
	l.restoreRemoved(sd.Removed)
	l.setConfState(snap.GetMetadata().GetConfState())
	l.setApplied(l.applied)
	return nil
}

// Propose appends recs as one entry through the quorum (a follower
// forwards it to the leader) and returns once it is applied here.
func (l *Log) Propose(recs []meta.Record) error {
	if l.closed.Load() {
		return ErrClosed
	}
	var idb [8]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint64(idb[:]) | 1
	data, err := json.Marshal(entryData{ID: id, Records: toWire(recs)})
	if err != nil {
		return err
	}
	applied := make(chan error, 1)
	l.waiters.Lock()
	l.waiters.m[id] = applied
	l.waiters.Unlock()
	defer func() {
		l.waiters.Lock()
		delete(l.waiters.m, id)
		l.waiters.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.ProposeTimeout)
	defer cancel()
	// Raft may lose a proposal (a leader change while it is forwarded):
	// one not applied within two election timeouts is proposed again
	// with the same id, and applied once (applyEntry skips ids it has
	// applied recently).
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case err := <-applied:
			return err
		case <-l.done:
			return ErrClosed
		case <-ctx.Done():
			return ErrTimeout
		case <-retry.C:
		}
		p := proposal{data: data, errc: make(chan error, 1)}
		select {
		case l.propc <- p:
		case <-l.done:
			return ErrClosed
		case <-ctx.Done():
			return ErrTimeout
		}
		var perr error
		select {
		case perr = <-p.errc:
		case <-l.done:
			return ErrClosed
		}
		switch {
		case perr == nil:
			retry.Reset(2 * l.cfg.ElectionTimeout)
		case errors.Is(perr, raft.ErrProposalDropped):
			// No leader yet (an election is running).
			retry.Reset(l.cfg.TickInterval)
		default:
			return perr
		}
	}
}

// Close stops the node and its transport, and closes the WAL.
func (l *Log) Close() error {
	if l.closed.Swap(true) {
		return l.closeErr
	}
	close(l.quit)
	if l.started.Load() {
		<-l.done
	}
	l.tr.stop()
	if l.disk != nil {
		l.closeErr = l.disk.close()
	}
	return l.closeErr
}

// LeaderID is the node.id of the quorum's leader (the controller), or -1
// when none is known.
func (l *Log) LeaderID() int32 {
	id := l.leader.Load()
	if id == 0 {
		return -1
	}
	return int32(id - 1)
}

// IsLeader reports whether this node leads the quorum.
func (l *Log) IsLeader() bool { return l.leader.Load() == l.id }

// LastContact is when a message from node was last received (zero if
// never). The leader hears from every live voter each heartbeat.
func (l *Log) LastContact(node int32) time.Time { return l.tr.lastContact(raftID(node)) }

// Voters returns the voters of the configuration this node applied last,
// with their controller addresses from the address book (Addr "" if
// unknown); before any is applied, controller.quorum.voters.
func (l *Log) Voters() []Voter {
	if p := l.votersView.Load(); p != nil {
		return *p
	}
	return l.cfg.Voters
}

// Learners returns the node ids of the learners (broker-only nodes) in
// the configuration this node applied last.
func (l *Log) Learners() []int32 {
	if p := l.learnerIDs.Load(); p != nil {
		return *p
	}
	return nil
}

// IsLearner reports whether this node is a learner (Config.Learner).
func (l *Log) IsLearner() bool { return l.cfg.Learner }

// setConfState records the configuration applied; the node's goroutine
// (or load, before it starts) calls it.
func (l *Log) setConfState(cs *pb.ConfState) {
	l.confState = cs
	ids := make([]int32, 0, len(cs.GetLearners()))
	for _, id := range cs.GetLearners() {
		ids = append(ids, int32(id-1))
	}
	l.learnerIDs.Store(&ids)
	l.updateVotersView()
}

// isMember reports whether raft id is a voter or learner of the
// configuration applied.
func (l *Log) isMember(id uint64) bool {
	cs := l.confState
	return slices.Contains(cs.GetVoters(), id) || slices.Contains(cs.GetLearners(), id) ||
		slices.Contains(cs.GetVotersOutgoing(), id) || slices.Contains(cs.GetLearnersNext(), id)
}

// maybeAddLearners, on the leader, proposes to add as a learner each
// node connected to it that is not a member: a broker-only node asks to
// join by connecting. A proposal raft drops (another configuration
// change is pending) or loses is made again a second later. Voters are
// never touched: the voters are controller.quorum.voters, fixed.
func (l *Log) maybeAddLearners() {
	if !l.IsLeader() || l.confState == nil {
		return
	}
	now := time.Now()
	for _, id := range l.tr.learners() {
		if l.isMember(id) || l.removed[id] || now.Sub(l.learnerAsked[id]) < time.Second {
			// A removed voter is not taken back: it may still run on
			// its old state, believing it votes.
			continue
		}
		l.learnerAsked[id] = now
		l.logger.Info("adding a node to the metadata log as a learner", "node", int64(id)-1)
		if err := l.rn.ProposeConfChange(&pb.ConfChange{Type: pb.ConfChangeType_ConfChangeAddLearnerNode.Enum(), NodeId: &id}); err != nil {
			l.logger.Debug("learner proposal dropped", "node", int64(id)-1, "err", err)
		}
	}
}

// CaughtUp reports whether this node knows a leader and has applied
// everything that leader had committed when this node came to know it
// (a ReadIndex request answers that), and everything known committed.
func (l *Log) CaughtUp() bool {
	read := l.readIdx.Load()
	applied := l.appliedIdx.Load()
	return l.leader.Load() != 0 && read != 0 && applied >= read && applied >= l.commitIdx.Load()
}

// maybeReadIndex asks the leader for its commit index (raft's ReadIndex)
// while this node knows a leader but not yet what it committed; the
// answer comes in a Ready's ReadStates. A request the leader drops (one
// elected that has not committed in its term yet) is asked again.
func (l *Log) maybeReadIndex() {
	if l.leader.Load() == 0 || l.readIdx.Load() != 0 || time.Since(l.readAsked) < 2*l.cfg.TickInterval {
		return
	}
	l.readCtx++
	l.readAsked = time.Now()
	l.rn.ReadIndex(binary.BigEndian.AppendUint64(nil, l.readCtx))
}

// run is the node's goroutine: it ticks raft, steps messages, proposes,
// and handles each Ready: persist, send, apply, snapshot.
func (l *Log) run() {
	defer close(l.done)
	ticker := time.NewTicker(l.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-l.quit:
			return
		case <-ticker.C:
			l.rn.Tick()
			l.maybeAddLearners()
			l.trackCaughtUp()
		case m := <-l.recvc:
			if !l.removed[m.GetFrom()] {
				l.rn.Step(m)
			}
		case p := <-l.propc:
			p.errc <- l.rn.Propose(p.data)
		case a := <-l.confc:
			a.errc <- l.rn.ProposeConfChange(a.cc)
		case a := <-l.voterc:
			a.errc <- l.startVoterChange(a)
		case a := <-l.quorumc:
			q, err := l.quorum()
			a.reply <- quorumReply{q, err}
		case a := <-l.barrierc:
			l.askBarrier(a)
		case r := <-l.reportc:
			if r.snap {
				st := raft.SnapshotFinish
				if !r.ok {
					st = raft.SnapshotFailure
				}
				l.rn.ReportSnapshot(r.id, st)
			} else {
				l.rn.ReportUnreachable(r.id)
			}
		}
		l.maybeReadIndex()
		for l.rn.HasReady() {
			if err := l.handleReady(l.rn.Ready()); err != nil {
				l.fatal = err
				l.logger.Error("metadata log stopped", "err", err)
				l.failWaiters(err)
				return
			}
		}
	}
}

func (l *Log) handleReady(rd raft.Ready) error {
	if rd.SoftState != nil {
		old := l.leader.Swap(rd.SoftState.Lead)
		if old != rd.SoftState.Lead {
			l.readIdx.Store(0) // what this node holds is in doubt again
			l.readAsked = time.Time{}
			clear(l.barriers) // a request the old leader dropped is never answered
			clear(l.caughtUp)
			if rd.SoftState.Lead == l.id {
				l.leaderStart, _ = l.storage.LastIndex()
				if n := len(rd.Entries); n > 0 {
					l.leaderStart = max(l.leaderStart, rd.Entries[n-1].GetIndex())
				}
			}
			l.logger.Info("metadata quorum leader", "controller", int64(rd.SoftState.Lead)-1, "state", rd.SoftState.RaftState.String())
		}
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := l.disk.saveSnapshot(rd.Snapshot); err != nil {
			return err
		}
		if err := l.storage.ApplySnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	if err := l.disk.save(rd.HardState, rd.Entries, rd.MustSync); err != nil {
		return err
	}
	if rd.HardState != nil {
		l.storage.SetHardState(rd.HardState)
		l.commitIdx.Store(rd.HardState.GetCommit())
	}
	if err := l.storage.Append(rd.Entries); err != nil {
		return err
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		idx := rd.Snapshot.GetMetadata().GetIndex()
		l.snapIndex = idx
		if err := l.compactDisk(idx); err != nil {
			return err
		}
		if err := l.restore(rd.Snapshot); err != nil {
			return err
		}
	}
	for _, m := range rd.Messages {
		l.tr.send(m)
	}
	for _, rs := range rd.ReadStates {
		if len(rs.RequestCtx) == 8 && binary.BigEndian.Uint64(rs.RequestCtx) == l.readCtx {
			l.readIdx.Store(max(rs.Index, 1))
		}
		l.answerBarrier(rs.RequestCtx, rs.Index)
	}
	for _, e := range rd.CommittedEntries {
		if err := l.applyEntry(e); err != nil {
			return err
		}
	}
	if len(rd.CommittedEntries) > 0 {
		l.setApplied(l.applied)
		if l.applied >= l.initialCommit {
			l.replayOnce.Do(func() { close(l.replayed) })
		}
		if err := l.maybeSnapshot(); err != nil {
			return err
		}
	}
	l.rn.Advance(rd)
	return nil
}

func (l *Log) applyEntry(e *pb.Entry) error {
	idx := e.GetIndex()
	if idx <= l.applied {
		return nil
	}
	switch e.GetType() {
	case pb.EntryType_EntryNormal:
		if len(e.GetData()) == 0 {
			break // a new leader's empty entry
		}
		var ed entryData
		if err := json.Unmarshal(e.GetData(), &ed); err != nil {
			return fmt.Errorf("%w: entry %d: %v", ErrCorrupt, idx, err)
		}
		if ed.ID != 0 && l.recent.seen(ed.ID) {
			break // a proposal retried after it was committed
		}
		err := l.apply(meta.Entry{Offset: int64(idx), Records: fromWire(ed.Records)})
		if err != nil {
			return fmt.Errorf("raftlog: apply entry %d: %w", idx, err)
		}
		if ed.ID != 0 {
			l.waiters.Lock()
			if ch := l.waiters.m[ed.ID]; ch != nil {
				select {
				case ch <- nil:
				default:
				}
			}
			l.waiters.Unlock()
		}
	case pb.EntryType_EntryConfChange:
		var cc pb.ConfChange
		if err := unmarshal(e.GetData(), &cc); err != nil {
			return fmt.Errorf("%w: entry %d: %v", ErrCorrupt, idx, err)
		}
		if cc.GetType() == pb.ConfChangeType_ConfChangeAddLearnerNode && !l.isMember(cc.GetNodeId()) {
			l.logger.Info("node joined the metadata log as a learner", "node", int64(cc.GetNodeId())-1)
			l.snapNow = true
		}
		if cc.GetType() == pb.ConfChangeType_ConfChangeRemoveNode && l.isMember(cc.GetNodeId()) {
			l.logger.Info("node removed from the metadata log", "node", int64(cc.GetNodeId())-1)
		}
		l.applyBook(&cc)
		l.setConfState(l.rn.ApplyConfChange(&cc))
	case pb.EntryType_EntryConfChangeV2:
		var cc pb.ConfChangeV2
		if err := unmarshal(e.GetData(), &cc); err != nil {
			return fmt.Errorf("%w: entry %d: %v", ErrCorrupt, idx, err)
		}
		l.setConfState(l.rn.ApplyConfChange(&cc))
	}
	l.applied = idx
	return nil
}

// maybeSnapshot takes a snapshot of the image once SnapshotEntries were
// applied since the last one, and compacts the log and the WAL behind it.
func (l *Log) maybeSnapshot() error {
	if l.snapshotFn == nil || (l.applied-l.snapIndex < l.cfg.SnapshotEntries && !l.snapNow) || l.applied == l.snapIndex {
		return nil
	}
	l.snapNow = false
	data, err := json.Marshal(snapshotData{V: meta.FormatVersion, Records: toWire(l.snapshotFn()), Voters: l.bookEntries(), Removed: l.removedIDs()})
	if err != nil {
		return err
	}
	snap, err := l.storage.CreateSnapshot(l.applied, l.confState, data)
	if err != nil {
		return err
	}
	if err := l.disk.saveSnapshot(snap); err != nil {
		return err
	}
	// Keep some entries behind the snapshot so that a follower a little
	// behind catches up from the log, not a snapshot.
	keep := l.cfg.SnapshotEntries / 10
	if l.applied > keep {
		if err := l.storage.Compact(l.applied - keep); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return err
		}
	}
	l.snapIndex = l.applied
	l.logger.Info("metadata snapshot", "index", l.applied, "bytes", len(data))
	return l.compactDisk(l.applied)
}

// compactDisk rewrites the WAL as the hard state and the entries still in
// memory after a snapshot at index.
func (l *Log) compactDisk(index uint64) error {
	hs, _, err := l.storage.InitialState()
	if err != nil {
		return err
	}
	first, _ := l.storage.FirstIndex()
	last, _ := l.storage.LastIndex()
	var ents []*pb.Entry
	if last >= first {
		if ents, err = l.storage.Entries(first, last+1, 1<<62); err != nil {
			return err
		}
	}
	return l.disk.compact(index, hs, ents)
}

func (l *Log) failWaiters(err error) {
	l.waiters.Lock()
	defer l.waiters.Unlock()
	for _, ch := range l.waiters.m {
		select {
		case ch <- err:
		default:
		}
	}
}

// recentIDs remembers the last proposal ids applied, to apply a retried
// proposal once.
type recentIDs struct {
	set  map[uint64]struct{}
	ring [4096]uint64
	next int
}

// seen reports whether id was applied recently, and remembers it.
func (r *recentIDs) seen(id uint64) bool {
	if r.set == nil {
		r.set = make(map[uint64]struct{}, len(r.ring))
	}
	if _, ok := r.set[id]; ok {
		return true
	}
	if old := r.ring[r.next]; old != 0 {
		delete(r.set, old)
	}
	r.ring[r.next] = id
	r.next = (r.next + 1) % len(r.ring)
	r.set[id] = struct{}{}
	return false
}
