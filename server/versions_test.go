package server

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestVersionsMatchKmsg checks that every API Ferry serves is served at
// every version kmsg knows, down to v0 (Fetch from v4: stored batches are
// v2 and are not converted down; Produce v0-v2 are converted up).
func TestVersionsMatchKmsg(t *testing.T) {
	for key, h := range handlers {
		want := kmsg.RequestForKey(key).MaxVersion()
		wantMin := int16(0)
		if key == 1 {
			wantMin = 4
		}
		if h.max != want || h.min != wantMin {
			t.Errorf("%s: serves v%d-v%d, kmsg knows up to v%d (want from v%d)", kmsg.NameForKey(key), h.min, h.max, want, wantMin)
		}
	}
}

// TestEveryVersionAnswers sends each API at every advertised version over
// a raw connection, with default (empty) fields, and checks that an answer
// of that version comes back, decodes, and leaves the connection usable.
func TestEveryVersionAnswers(t *testing.T) {
	b := startBroker(t, nil)
	nc, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	corr := int32(0)
	for key, h := range handlers {
		for v := h.min; v <= h.max; v++ {
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			switch r := req.(type) {
			case *kmsg.ApiVersionsRequest:
				r.ClientSoftwareName, r.ClientSoftwareVersion = "test", "1"
			case *kmsg.ProduceRequest:
				r.Acks = 1
			case *kmsg.FetchRequest:
				r.MaxWaitMillis = 0
			case *kmsg.JoinGroupRequest:
				r.Group, r.ProtocolType, r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = fmt.Sprintf("versions-%d", v), "consumer", 10000, 1000
				r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range"}}
			}
			corr++
			resp, err := rawRoundTrip(nc, corr, req)
			if err != nil {
				t.Fatalf("%s v%d: %v", kmsg.NameForKey(key), v, err)
			}
			if resp.GetVersion() != v {
				t.Errorf("%s v%d: answered at v%d", kmsg.NameForKey(key), v, resp.GetVersion())
			}
		}
	}
}

// rawRoundTrip writes one request frame at the request's version and reads
// and decodes its answer.
func rawRoundTrip(nc net.Conn, corr int32, req kmsg.Request) (kmsg.Response, error) {
	var frame []byte
	frame = append(frame, 0, 0, 0, 0)
	frame = binary.BigEndian.AppendUint16(frame, uint16(req.Key()))
	frame = binary.BigEndian.AppendUint16(frame, uint16(req.GetVersion()))
	frame = binary.BigEndian.AppendUint32(frame, uint32(corr))
	frame = binary.BigEndian.AppendUint16(frame, 4)
	frame = append(frame, "test"...)
	if req.IsFlexible() {
		frame = append(frame, 0)
	}
	frame = req.AppendTo(frame)
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(frame); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		return nil, fmt.Errorf("reading answer: %w", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(nc, body); err != nil {
		return nil, err
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		return nil, fmt.Errorf("correlation id %d, want %d", got, corr)
	}
	body = body[4:]
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if resp.IsFlexible() && req.Key() != 18 {
		rd := kbin.Reader{Src: body}
		kmsg.SkipTags(&rd)
		body = rd.Src
	}
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("answer does not decode: %w", err)
	}
	return resp, nil
}
