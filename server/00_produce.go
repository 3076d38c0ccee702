package server

import (
	"errors"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/record"
)

// Produce, v0-v13 (v13 names topics by id).
//
// v3 and up carry record batches v2, stored as sent. v0-v2 carry message
// sets of format v0/v1 (or batches v2, taken as they are): each
// partition's set is converted into one batch v2 first
// (record.ConvertLegacy), keeping the producer's codec. Every
// batch is validated (length, magic 2, CRC32C, record count and offset
// deltas against the records of an uncompressed batch, as Kafka's
// LogValidator, max.message.bytes) and idempotent sequences are checked
// before anything of a partition is appended. Appends run on the connection's reader
// goroutine, so pipelined requests keep their order. acks=0 gets no
// answer, acks=1 is answered once the batch is in the page cache, and
// acks=-1 only once it is fsynced (consumers see a batch only once it is
// fsynced, whatever the acks: by the partition's background flush for
// acks 0 and 1); the fsync waits run concurrently, so
// pipelined requests and other connections share fsyncs (group commit).

func init() { regKey(0, 0, 13, handleProduce) }

func handleProduce(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	if req.Acks != 0 && req.Acks != 1 && req.Acks != -1 {
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.InvalidRequiredAcks.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	}
	var toSync []*partition.Partition
	var synced []*kmsg.ProduceResponseTopicPartition
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var t *topic
		if r.version >= 13 {
			t = s.topics.getID(rt.TopicID)
		} else {
			t = s.topics.get(rt.Topic)
		}
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset = -1
			sp.LogAppendTime = -1
			sp.LogStartOffset = -1
			p := t.partition(rp.Partition)
			if p == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				if r.version >= 13 && t == nil {
					sp.ErrorCode = kerr.UnknownTopicID.Code
				}
				continue
			}
			if t.internal {
				sp.ErrorCode = kerr.InvalidTopicException.Code
				sp.ErrorMessage = errMsg("internal topics cannot be produced to")
				continue
			}
			records := rp.Records
			if r.version < 3 && !isBatchV2(records) {
				var err error
				if records, err = record.ConvertLegacy(records); err != nil {
					sp.ErrorCode = legacyErrorCode(err)
					continue
				} else if records == nil {
					continue // no complete message: nothing appended, as in Kafka
				}
			}
			res, err := p.Append(records)
			if err != nil {
				code, msg := kafkaError(err)
				sp.ErrorCode = code
				if r.version >= 8 {
					sp.ErrorMessage = &msg
				}
				if code == kerr.KafkaStorageError.Code {
					s.logger.Error("produce failed", "topic", t.name, "partition", rp.Partition, "err", err)
				}
				continue
			}
			sp.BaseOffset = res.BaseOffset
			sp.LogAppendTime = res.LogAppendTime
			sp.LogStartOffset = res.LogStartOffset
			if req.Acks == -1 {
				toSync = append(toSync, p)
				synced = append(synced, sp)
			}
		}
	}
	switch {
	case req.Acks == 0:
		// No answer; but, as Kafka does, an error closes the connection
		// so the client learns that something it sent was refused.
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				if code := resp.Topics[i].Partitions[j].ErrorCode; code != 0 {
					r.c.logger.Info("acks=0 produce refused; closing the connection", "topic", resp.Topics[i].Topic, "partition", resp.Topics[i].Partitions[j].Partition, "error", kerr.ErrorForCode(code))
					r.closeConnection()
					return nil
				}
			}
		}
		r.skipResponse()
		return nil
	case len(toSync) == 0:
		return resp
	}
	r.await(func() kmsg.Response {
		errs := make([]error, len(toSync))
		if len(toSync) == 1 {
			errs[0] = toSync[0].Sync()
		} else {
			var wg sync.WaitGroup
			for i, p := range toSync {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = p.Sync()
				}()
			}
			wg.Wait()
		}
		for i, err := range errs {
			if err != nil {
				code, msg := kafkaError(err)
				synced[i].ErrorCode = code
				synced[i].BaseOffset = -1
				if r.version >= 8 {
					synced[i].ErrorMessage = &msg
				}
				s.logger.Error("fsync failed; produce not acknowledged", "err", err)
			}
		}
		return resp
	})
	return nil
}

// isBatchV2 reports whether a record set starts with a batch of magic 2,
// which Produce v0-v2 may carry too (Kafka does not check their magic).
func isBatchV2(b []byte) bool {
	return len(b) > record.PosMagic && b[record.PosMagic] == record.Magic
}

// legacyErrorCode is Kafka's code for a message set that does not convert.
func legacyErrorCode(err error) int16 {
	switch {
	case errors.Is(err, record.ErrCodec):
		return kerr.UnsupportedCompressionType.Code
	case errors.Is(err, record.ErrCorrupt):
		return kerr.CorruptMessage.Code
	}
	return kerr.InvalidRecord.Code
}
