package server

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestIdleConnectionClosed checks connections.max.idle.ms: a connection
// that sends nothing is closed by the broker, one that keeps talking is not.
func TestIdleConnectionClosed(t *testing.T) {
	b := startBroker(t, map[string]string{"connections.max.idle.ms": "300"})
	idle, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	busy, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	start := time.Now()
	for i := int32(1); i <= 6; i++ {
		req := kmsg.NewPtrApiVersionsRequest()
		req.SetVersion(0)
		if _, err := rawRoundTrip(busy, i, req); err != nil {
			t.Fatalf("busy connection closed after %v: %v", time.Since(start), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	var one [1]byte
	_, err = idle.Read(one[:])
	if !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection read = %v, want EOF (closed by the broker)", err)
	}
}

// TestAcksZeroErrorClosesConnection: an acks=0 produce gets no answer, but
// one that is refused closes the connection, as Kafka does, while one that
// succeeds leaves it open.
func TestAcksZeroErrorClosesConnection(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.admin().CreateTopic(testCtx(t), 1, 1, nil, "acks0"); err != nil {
		t.Fatal(err)
	}
	send := func(nc net.Conn, topic string) {
		req := kmsg.NewPtrProduceRequest()
		req.SetVersion(9)
		req.Acks = 0
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = testBatch("acks0", 2, time.Now().UnixMilli())
		rt.Partitions = []kmsg.ProduceRequestTopicPartition{rp}
		req.Topics = []kmsg.ProduceRequestTopic{rt}
		frame := []byte{0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 7, 0, 0, 0}
		frame = req.AppendTo(frame)
		binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
		if _, err := nc.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	ok, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	send(ok, "acks0")
	if _, err := rawRoundTrip(ok, 8, kmsg.NewPtrApiVersionsRequest()); err != nil {
		t.Fatalf("connection unusable after a good acks=0 produce: %v", err)
	}
	bad, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	send(bad, "no-such-topic")
	bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	var one [1]byte
	if _, err := bad.Read(one[:]); !errors.Is(err, io.EOF) {
		t.Fatalf("after a refused acks=0 produce, read = %v, want EOF", err)
	}
}
