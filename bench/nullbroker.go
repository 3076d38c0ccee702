package bench

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// NullBrokerConfig configures a NullBroker.
type NullBrokerConfig struct {
	// Partitions is the partition count of a topic that is produced to
	// before it is created. Default 1.
	Partitions int32
	// Logger receives a line per connection error. nil discards them.
	Logger *slog.Logger
}

// NullBroker is a Kafka-protocol sink: it answers ApiVersions, Metadata,
// CreateTopics, DeleteTopics, InitProducerId, ListOffsets and Produce, counts
// the records of every produced batch and throws the bytes away. It measures
// the load generator's own ceiling (`ferry bench produce -sink`): nothing a
// real broker does costs anything here. It cannot be consumed from.
//
// Each connection is served by one goroutine that reads a request, answers it
// and reads the next; Close stops the listener and every connection and waits
// for those goroutines.
type NullBroker struct {
	cfg    NullBrokerConfig
	ln     net.Listener
	host   string
	port   int32
	closed atomic.Bool
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		conns  map[net.Conn]struct{}
		topics map[string]*nullTopic
		pid    int64
	}
}

type nullTopic struct {
	id   [16]byte
	next []int64 // next offset per partition
}

// StartNullBroker serves the Kafka protocol on ln until Close.
func StartNullBroker(ln net.Listener, cfg NullBrokerConfig) (*NullBroker, error) {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	host, portStr, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("bench: null broker address: %w", err)
	}
	port, err := strconv.ParseInt(portStr, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("bench: null broker port: %w", err)
	}
	b := &NullBroker{cfg: cfg, ln: ln, host: host, port: int32(port)}
	b.mu.conns = make(map[net.Conn]struct{})
	b.mu.topics = make(map[string]*nullTopic)
	b.wg.Add(1)
	go b.accept()
	return b, nil
}

// Addr is the host:port clients dial.
func (b *NullBroker) Addr() string { return b.ln.Addr().String() }

// Records is the number of records acknowledged so far.
func (b *NullBroker) Records() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	for _, t := range b.mu.topics {
		for _, off := range t.next {
			n += off
		}
	}
	return n
}

// Close stops the listener, closes every connection and waits for their
// goroutines. It is safe to call more than once.
func (b *NullBroker) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	err := b.ln.Close()
	b.mu.Lock()
	for c := range b.mu.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
	return err
}

func (b *NullBroker) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if b.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			b.cfg.Logger.Warn("null broker accept", "err", err)
			continue
		}
		b.mu.Lock()
		if b.closed.Load() {
			b.mu.Unlock()
			c.Close()
			return
		}
		b.mu.conns[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go b.serve(c)
	}
}

func (b *NullBroker) serve(c net.Conn) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.mu.conns, c)
		b.mu.Unlock()
		c.Close()
	}()
	defer func() {
		if r := recover(); r != nil {
			b.cfg.Logger.Error("null broker: panic serving connection", "remote", c.RemoteAddr(), "panic", r)
		}
	}()
	rd := bufio.NewReaderSize(c, 1<<20)
	var (
		size [4]byte
		in   []byte
		out  []byte
	)
	for {
		if _, err := io.ReadFull(rd, size[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(size[:]))
		if n < 8 || n > 200<<20 {
			b.cfg.Logger.Warn("null broker: bad frame size", "size", n)
			return
		}
		if cap(in) < n {
			in = make([]byte, n)
		}
		in = in[:n]
		if _, err := io.ReadFull(rd, in); err != nil {
			return
		}
		var err error
		out, err = b.handle(in, out[:0])
		if err != nil {
			b.cfg.Logger.Warn("null broker: bad request", "err", err)
			return
		}
		if len(out) == 0 {
			continue
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// maxVersions caps what the null broker advertises: Produce v13 and Metadata
// v13 move to topic IDs, which this sink does not track.
var nullMaxVersions = map[int16]int16{
	0:  12, // Produce
	2:  9,  // ListOffsets
	3:  12, // Metadata
	18: 4,  // ApiVersions
	19: 7,  // CreateTopics
	20: 6,  // DeleteTopics
	22: 5,  // InitProducerId
}

func (b *NullBroker) handle(in, out []byte) ([]byte, error) {
	key := int16(binary.BigEndian.Uint16(in[0:2]))
	version := int16(binary.BigEndian.Uint16(in[2:4]))
	corr := binary.BigEndian.Uint32(in[4:8])
	rest := in[8:]
	if len(rest) < 2 {
		return nil, kbin.ErrNotEnoughData
	}
	if l := int16(binary.BigEndian.Uint16(rest)); l > 0 {
		if len(rest) < 2+int(l) {
			return nil, kbin.ErrNotEnoughData
		}
		rest = rest[2+int(l):]
	} else {
		rest = rest[2:]
	}
	req := kmsg.RequestForKey(key)
	max, ok := nullMaxVersions[key]
	if req == nil || !ok || version < 0 || version > max {
		if key == 18 { // KIP-511: answer v0 so the client retries lower.
			resp := b.apiVersions()
			resp.SetVersion(0)
			resp.ErrorCode = kerr.UnsupportedVersion.Code
			return appendResponse(out, corr, false, resp), nil
		}
		return nil, fmt.Errorf("unsupported key %d version %d", key, version)
	}
	req.SetVersion(version)
	if req.IsFlexible() {
		r := kbin.Reader{Src: rest}
		for n := r.Uvarint(); n > 0 && r.Ok(); n-- {
			r.Uvarint()
			r.Span(int(r.Uvarint()))
		}
		if !r.Ok() {
			return nil, kbin.ErrNotEnoughData
		}
		rest = r.Src
	}
	if err := req.ReadFrom(rest); err != nil {
		return nil, err
	}
	var resp kmsg.Response
	switch r := req.(type) {
	case *kmsg.ApiVersionsRequest:
		resp = b.apiVersions()
	case *kmsg.MetadataRequest:
		resp = b.metadata(r)
	case *kmsg.ProduceRequest:
		pr := b.produce(r)
		if r.Acks == 0 {
			return out, nil
		}
		resp = pr
	case *kmsg.InitProducerIDRequest:
		p := r.ResponseKind().(*kmsg.InitProducerIDResponse)
		b.mu.Lock()
		b.mu.pid++
		p.ProducerID = b.mu.pid
		b.mu.Unlock()
		resp = p
	case *kmsg.CreateTopicsRequest:
		resp = b.createTopics(r)
	case *kmsg.DeleteTopicsRequest:
		resp = b.deleteTopics(r)
	case *kmsg.ListOffsetsRequest:
		resp = b.listOffsets(r)
	}
	resp.SetVersion(version)
	return appendResponse(out, corr, key != 18 && resp.IsFlexible(), resp), nil
}

func appendResponse(out []byte, corr uint32, flexibleHeader bool, resp kmsg.Response) []byte {
	out = append(out, 0, 0, 0, 0)
	out = binary.BigEndian.AppendUint32(out, corr)
	if flexibleHeader {
		out = append(out, 0)
	}
	out = resp.AppendTo(out)
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	return out
}

func (b *NullBroker) apiVersions() *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	for key, max := range nullMaxVersions {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey = key
		k.MaxVersion = max
		if key == 0 {
			k.MinVersion = 3
		}
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	return resp
}

// topicLocked returns the named topic, creating it with n partitions (the
// default count when n <= 0). b.mu must be held.
func (b *NullBroker) topicLocked(name string, n int32) *nullTopic {
	if t, ok := b.mu.topics[name]; ok {
		return t
	}
	if n <= 0 {
		n = b.cfg.Partitions
	}
	t := &nullTopic{next: make([]int64, n)}
	rand.Read(t.id[:])
	b.mu.topics[name] = t
	return t
}

func (b *NullBroker) metadata(r *kmsg.MetadataRequest) *kmsg.MetadataResponse {
	resp := r.ResponseKind().(*kmsg.MetadataResponse)
	br := kmsg.NewMetadataResponseBroker()
	br.Host, br.Port = b.host, b.port
	resp.Brokers = append(resp.Brokers, br)
	cluster := "ferry-null-broker"
	resp.ClusterID = &cluster
	b.mu.Lock()
	defer b.mu.Unlock()
	names := make([]string, 0, len(r.Topics))
	if r.Topics == nil {
		for name := range b.mu.topics {
			names = append(names, name)
		}
	}
	for _, t := range r.Topics {
		if t.Topic != nil {
			names = append(names, *t.Topic)
		}
	}
	for _, name := range names {
		t := b.topicLocked(name, 0)
		mt := kmsg.NewMetadataResponseTopic()
		mt.Topic = kmsg.StringPtr(name)
		mt.TopicID = t.id
		for p := range t.next {
			mp := kmsg.NewMetadataResponseTopicPartition()
			mp.Partition = int32(p)
			mp.Replicas = []int32{0}
			mp.ISR = []int32{0}
			mt.Partitions = append(mt.Partitions, mp)
		}
		resp.Topics = append(resp.Topics, mt)
	}
	return resp
}

func (b *NullBroker) produce(r *kmsg.ProduceRequest) *kmsg.ProduceResponse {
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, rt := range r.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		t := b.topicLocked(rt.Topic, 0)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LogAppendTime = -1
			if rp.Partition < 0 || int(rp.Partition) >= len(t.next) {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else {
				sp.BaseOffset = t.next[rp.Partition]
				t.next[rp.Partition] += countRecords(rp.Records)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// countRecords adds up the record counts of the v2 batches in raw.
func countRecords(raw []byte) int64 {
	var n int64
	for len(raw) >= 61 {
		l := int(int32(binary.BigEndian.Uint32(raw[8:12]))) + 12
		if l < 61 || l > len(raw) {
			break
		}
		n += int64(int32(binary.BigEndian.Uint32(raw[57:61])))
		raw = raw[l:]
	}
	return n
}

func (b *NullBroker) createTopics(r *kmsg.CreateTopicsRequest) *kmsg.CreateTopicsResponse {
	resp := r.ResponseKind().(*kmsg.CreateTopicsResponse)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, rt := range r.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		if _, ok := b.mu.topics[rt.Topic]; ok {
			st.ErrorCode = kerr.TopicAlreadyExists.Code
		} else {
			t := b.topicLocked(rt.Topic, rt.NumPartitions)
			st.TopicID = t.id
			st.NumPartitions = int32(len(t.next))
			st.ReplicationFactor = 1
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *NullBroker) deleteTopics(r *kmsg.DeleteTopicsRequest) *kmsg.DeleteTopicsResponse {
	resp := r.ResponseKind().(*kmsg.DeleteTopicsResponse)
	b.mu.Lock()
	defer b.mu.Unlock()
	names := r.TopicNames
	for _, t := range r.Topics {
		if t.Topic != nil {
			names = append(names, *t.Topic)
		}
	}
	for _, name := range names {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic = kmsg.StringPtr(name)
		if _, ok := b.mu.topics[name]; !ok {
			st.ErrorCode = kerr.UnknownTopicOrPartition.Code
		}
		delete(b.mu.topics, name)
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *NullBroker) listOffsets(r *kmsg.ListOffsetsRequest) *kmsg.ListOffsetsResponse {
	resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, rt := range r.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		t, ok := b.mu.topics[rt.Topic]
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp = -1
			switch {
			case !ok || rp.Partition < 0 || int(rp.Partition) >= len(t.next):
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case rp.Timestamp == -2:
				sp.Offset = 0
			default:
				sp.Offset = t.next[rp.Partition]
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
