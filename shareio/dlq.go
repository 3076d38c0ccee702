package shareio

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/share"
)

// Config names this package reads (KIP-1191).
const (
	// TopicDLQEnable is the topic config that lets share groups write
	// dead letters to a topic.
	TopicDLQEnable = "errors.deadletterqueue.group.enable"
	// BrokerDLQAutoCreate is the broker config that creates a missing
	// dead-letter topic at the first dead letter.
	BrokerDLQAutoCreate = "errors.deadletterqueue.auto.create.topics.enable"
)

// DLQWriter implements share.DLQWriter over the topics of a metadata
// store.
type DLQWriter struct {
	meta   *meta.Store
	logger *slog.Logger
	now    func() time.Time
}

var _ share.DLQWriter = (*DLQWriter)(nil)

// NewDLQWriter returns a DLQWriter over the topics of st; nil logger
// discards its lines.
func NewDLQWriter(st *meta.Store, logger *slog.Logger) *DLQWriter {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &DLQWriter{meta: st, logger: logger, now: time.Now}
}

// rejected wraps share.ErrDeadLetterRejected: retrying cannot help.
func rejected(format string, args ...any) error {
	return fmt.Errorf("%w: %s", share.ErrDeadLetterRejected, fmt.Sprintf(format, args...))
}

// target returns the dead-letter partition of dl, creating its topic if
// create is set and the broker allows it. With create unset, a missing
// topic returns nil and no error.
func (w *DLQWriter) target(dl *share.DeadLetter, create bool) (*partition.Partition, int, error) {
	settings := w.meta.Settings()
	t := w.meta.Topic(dl.Topic)
	if t == nil {
		if !create {
			return nil, 0, nil
		}
		if !settings.Bool(BrokerDLQAutoCreate) {
			return nil, 0, rejected("dead-letter topic %s does not exist (%s is false)", dl.Topic, BrokerDLQAutoCreate)
		}
		enable := "true"
		var err error
		t, err = w.meta.CreateTopic(meta.NewTopic{
			Name:              dl.Topic,
			Partitions:        -1,
			ReplicationFactor: -1,
			Configs:           map[string]*string{TopicDLQEnable: &enable},
		})
		switch {
		case errors.Is(err, meta.ErrTopicExists):
			if t = w.meta.Topic(dl.Topic); t == nil {
				return nil, 0, err
			}
		case errors.Is(err, meta.ErrInvalidTopic), errors.Is(err, meta.ErrInvalidConfig), errors.Is(err, meta.ErrInvalidRequest):
			return nil, 0, rejected("creating dead-letter topic %s: %v", dl.Topic, err)
		case err != nil:
			return nil, 0, err
		default:
			w.logger.Info("dead-letter topic created", "topic", dl.Topic, "group", dl.Group, "partitions", t.NumPartitions())
		}
	}
	if t.Internal() {
		return nil, 0, rejected("dead-letter topic %s is internal", dl.Topic)
	}
	if v, _ := settings.TopicValue(t.Configs(), TopicDLQEnable); v != "true" {
		return nil, 0, rejected("topic %s does not accept dead letters (%s is not true)", dl.Topic, TopicDLQEnable)
	}
	n := t.NumPartitions()
	if n <= 0 {
		return nil, 0, fmt.Errorf("shareio: dead-letter topic %s has no partitions", dl.Topic)
	}
	p, err := t.Partition(dl.Source.Partition % n)
	if err != nil {
		return nil, 0, err
	}
	maxBytes, _ := settings.TopicValue(t.Configs(), "max.message.bytes")
	mb, _ := strconv.Atoi(maxBytes)
	return p, mb, nil
}

// sourceTopic is the name the dead letters give the source topic.
func sourceTopic(dl *share.DeadLetter) string {
	if dl.SourceTopic != "" {
		return dl.SourceTopic
	}
	return base64.RawURLEncoding.EncodeToString(dl.Source.TopicID[:])
}

// WriteDeadLetters writes one dead letter per source offset of dl, in
// offset order, each batch fsynced before the next.
func (w *DLQWriter) WriteDeadLetters(dl *share.DeadLetter) error {
	if dl.FirstOffset > dl.LastOffset {
		return nil
	}
	part, maxBytes, err := w.target(dl, true)
	if err != nil {
		return err
	}
	b := batcher{
		part:     part,
		limit:    max(maxBytes-record.HeaderSize, 1024),
		ts:       w.now().UnixMilli(),
		topic:    sourceTopic(dl),
		dl:       dl,
		logger:   w.logger,
		nextSelf: dl.FirstOffset,
	}
	if src := w.sourcePartition(dl); src != nil && dl.CopyRecord {
		var werr error
		err := src.Walk(dl.FirstOffset, func(batch []byte, h *record.Header) bool {
			if h.BaseOffset > dl.LastOffset {
				return false
			}
			if h.IsControl() {
				return true
			}
			recs, err := record.Decompress(h.Codec(), batch[record.HeaderSize:h.Size()])
			if err != nil {
				return true // unreadable: its offsets get the headers alone
			}
			record.ForEachIn(recs, h.RecordCount, func(r *record.Record) error {
				off := h.BaseOffset + int64(r.OffsetDelta)
				if off < b.nextSelf || off > dl.LastOffset {
					return nil
				}
				if werr = b.gapTo(off); werr != nil {
					return werr
				}
				werr = b.add(off, r)
				return werr
			})
			return werr == nil && b.nextSelf <= dl.LastOffset
		})
		if werr != nil {
			return werr
		}
		if err != nil {
			return fmt.Errorf("shareio: reading %s-%d for dead letters: %w", b.topic, dl.Source.Partition, err)
		}
	}
	if err := b.gapTo(dl.LastOffset + 1); err != nil {
		return err
	}
	return b.flush()
}

// sourcePartition returns the partition the dead letters come from, or
// nil when it is gone (its records are then written as headers alone).
func (w *DLQWriter) sourcePartition(dl *share.DeadLetter) *partition.Partition {
	t := w.meta.TopicByID(dl.Source.TopicID)
	if t == nil {
		return nil
	}
	p, err := t.Partition(dl.Source.Partition)
	if err != nil {
		return nil
	}
	return p
}

// batcher builds dead-letter batches and appends them.
type batcher struct {
	part     *partition.Partition
	limit    int // bytes of records a batch may hold
	ts       int64
	topic    string
	dl       *share.DeadLetter
	logger   *slog.Logger
	recs     []record.Record
	size     int
	nextSelf int64 // the next source offset to write
}

// headers returns the __dlq.errors.* headers of source offset off.
func (b *batcher) headers(dst []record.RecordHeader, off int64) []record.RecordHeader {
	dl := b.dl
	return append(dst,
		record.RecordHeader{Key: share.HeaderDLQTopic, Value: []byte(b.topic)},
		record.RecordHeader{Key: share.HeaderDLQPartition, Value: strconv.AppendInt(nil, int64(dl.Source.Partition), 10)},
		record.RecordHeader{Key: share.HeaderDLQOffset, Value: strconv.AppendInt(nil, off, 10)},
		record.RecordHeader{Key: share.HeaderDLQGroup, Value: []byte(dl.Group)},
		record.RecordHeader{Key: share.HeaderDLQDeliveryCount, Value: strconv.AppendInt(nil, int64(dl.DeliveryCount), 10)},
		record.RecordHeader{Key: share.HeaderDLQMessage, Value: []byte(dl.Reason.Message())},
	)
}

// gapTo writes headers-only dead letters for the source offsets from
// nextSelf up to end (exclusive): offsets with no record.
func (b *batcher) gapTo(end int64) error {
	for ; b.nextSelf < end; b.nextSelf++ {
		if err := b.push(record.Record{Headers: b.headers(nil, b.nextSelf)}); err != nil {
			return err
		}
	}
	return nil
}

// add writes the dead letter of source record r at offset off (a copy of
// it: r aliases memory that is reused).
func (b *batcher) add(off int64, r *record.Record) error {
	dr := record.Record{
		Key:     slices.Clone(r.Key),
		Value:   slices.Clone(r.Value),
		Headers: make([]record.RecordHeader, 0, len(r.Headers)+6),
	}
	for _, h := range r.Headers {
		dr.Headers = append(dr.Headers, record.RecordHeader{Key: h.Key, Value: slices.Clone(h.Value)})
	}
	dr.Headers = b.headers(dr.Headers, off)
	if recordSize(&dr) > b.limit {
		b.logger.Warn("dead letter too large for its topic; writing its headers alone", "topic", b.dl.Topic, "group", b.dl.Group, "source_offset", off)
		dr = record.Record{Headers: b.headers(nil, off)}
	}
	b.nextSelf = off + 1
	return b.push(dr)
}

// recordSize bounds the encoded size of r.
func recordSize(r *record.Record) int {
	n := len(r.Key) + len(r.Value) + 32
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 10
	}
	return n
}

// push adds r to the batch being built, appending that batch first if r
// would take it past the limit.
func (b *batcher) push(r record.Record) error {
	n := recordSize(&r)
	if len(b.recs) > 0 && b.size+n > b.limit {
		if err := b.flush(); err != nil {
			return err
		}
	}
	b.recs = append(b.recs, r)
	b.size += n
	return nil
}

// flush appends the batch being built and fsyncs it.
func (b *batcher) flush() error {
	if len(b.recs) == 0 {
		return nil
	}
	batch := record.AppendBatch(nil, record.Batch{
		BaseTimestamp: b.ts,
		ProducerID:    -1,
		ProducerEpoch: -1,
		BaseSequence:  -1,
		Records:       b.recs,
	})
	if _, err := b.part.Append(batch); err != nil {
		if errors.Is(err, partition.ErrMessageTooLarge) || errors.Is(err, partition.ErrRecordListTooLarge) {
			return rejected("dead letters for %s: %v", b.dl.Topic, err)
		}
		return err
	}
	if err := b.part.Sync(); err != nil {
		return err
	}
	b.recs, b.size = b.recs[:0], 0
	return nil
}

// DeadLettersWritten returns the first source offset of dl whose dead
// letter is not in dl.Topic, reading the dead-letter partition's records:
// what a write leaves is a prefix of its run.
func (w *DLQWriter) DeadLettersWritten(dl *share.DeadLetter) (int64, error) {
	part, _, err := w.target(dl, false)
	if err != nil {
		if errors.Is(err, share.ErrDeadLetterRejected) {
			return dl.FirstOffset, nil // nothing can have been written
		}
		return 0, err
	}
	if part == nil {
		return dl.FirstOffset, nil
	}
	topic := sourceTopic(dl)
	partStr := strconv.Itoa(int(dl.Source.Partition))
	next := dl.FirstOffset
	err = part.Walk(part.LogStartOffset(), func(batch []byte, h *record.Header) bool {
		if h.IsControl() {
			return true
		}
		recs, err := record.Decompress(h.Codec(), batch[record.HeaderSize:h.Size()])
		if err != nil {
			return true
		}
		record.ForEachIn(recs, h.RecordCount, func(r *record.Record) error {
			var group, tp, p, off []byte
			for _, hd := range r.Headers {
				switch hd.Key {
				case share.HeaderDLQGroup:
					group = hd.Value
				case share.HeaderDLQTopic:
					tp = hd.Value
				case share.HeaderDLQPartition:
					p = hd.Value
				case share.HeaderDLQOffset:
					off = hd.Value
				}
			}
			if string(group) != dl.Group || string(tp) != topic || string(p) != partStr {
				return nil
			}
			o, err := strconv.ParseInt(string(off), 10, 64)
			if err == nil && o >= dl.FirstOffset && o <= dl.LastOffset && o >= next {
				next = o + 1
			}
			return nil
		})
		return next <= dl.LastOffset
	})
	return next, err
}
