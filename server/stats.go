package server

import (
	"log/slog"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/internal/metric"
	"github.com/ferrymq/ferry/meta"
)

// Request counting. Each request is counted by its API key with atomic
// adds on the broker's apiStats: at dispatch (requests, request bytes),
// when its response is built (error codes), and once the writer has
// written it (latency, response bytes, slow requests). Nothing here takes
// a lock or allocates; the collector (metrics.go) reads the counters at
// scrape time.

// errorSlots bounds the Kafka error codes counted one by one: codes -1
// (UNKNOWN_SERVER_ERROR) to errorSlots-2; any other is counted in the
// last slot.
const errorSlots = 192

// apiStats counts the requests of one API key.
type apiStats struct {
	// requests counts the requests dispatched to the handler.
	requests atomic.Uint64
	// requestBytes and responseBytes count the frames read and written.
	requestBytes, responseBytes atomic.Uint64
	// slow counts requests slower than slow.request.threshold.ms.
	slow atomic.Uint64
	// latency observes nanoseconds from a request read to its response
	// written.
	latency *metric.Histogram
	// errors counts the non-zero error codes in the responses, at every
	// level (top, topic, partition), as Kafka's ErrorsPerSec does: index
	// code+1, the last slot for codes out of range.
	errors [errorSlots]atomic.Uint64
}

// serverStats holds the broker's request and connection counters.
type serverStats struct {
	// apis holds the counters of each API key the broker serves; nil
	// for the others.
	apis [kmsg.MaxKey + 1]*apiStats
	// connsAccepted and connsRefused count connections admitted and
	// refused by the connection limits.
	connsAccepted, connsRefused atomic.Uint64
	// nextConn numbers connections for log lines.
	nextConn atomic.Uint64
	// slow caches slow.request.threshold.ms for the settings it was read
	// from.
	slow atomic.Pointer[slowThreshold]
}

func newServerStats() *serverStats {
	st := &serverStats{}
	for key := range handlers {
		st.apis[key] = &apiStats{latency: metric.NewHistogram(metric.LatencyBounds)}
	}
	return st
}

// api returns the counters of a served API key.
func (st *serverStats) api(key int16) *apiStats { return st.apis[key] }

// countError counts one error code of a response (0 is not an error).
func (a *apiStats) countError(code int16) {
	if code == 0 {
		return
	}
	i := int(code) + 1
	if i < 0 || i >= errorSlots {
		i = errorSlots - 1
	}
	a.errors[i].Add(1)
}

// errorName is the label of errors slot i: Kafka's name of the code.
func errorName(i int) string {
	if i == errorSlots-1 {
		return "UNKNOWN_CODE"
	}
	code := int16(i - 1)
	if e, ok := kerr.ErrorForCode(code).(*kerr.Error); ok && e.Code == code {
		return e.Message
	}
	return "CODE_" + strconv.Itoa(int(code))
}

// slowThreshold is slow.request.threshold.ms of one Settings.
type slowThreshold struct {
	settings  *meta.Settings
	threshold time.Duration // <0: off
}

// slowRequestThreshold returns slow.request.threshold.ms as a duration,
// negative when slow requests are not logged. It reads the config again
// only when the broker's settings changed.
func (s *Server) slowRequestThreshold() time.Duration {
	cur := s.meta.Settings()
	if c := s.stats.slow.Load(); c != nil && c.settings == cur {
		return c.threshold
	}
	d := time.Duration(-1)
	if ms := cur.Int64("slow.request.threshold.ms"); ms >= 0 {
		d = time.Duration(ms) * time.Millisecond
	}
	s.stats.slow.Store(&slowThreshold{settings: cur, threshold: d})
	return d
}

// waitAllowance is how long a request may wait by design, added to the
// slow-request threshold: a fetch's long poll, a JoinGroup's rebalance.
func waitAllowance(kreq kmsg.Request) time.Duration {
	ms := int32(0)
	switch req := kreq.(type) {
	case *kmsg.FetchRequest:
		ms = req.MaxWaitMillis
	case *kmsg.ShareFetchRequest:
		ms = req.MaxWaitMillis
	case *kmsg.JoinGroupRequest:
		ms = max(req.RebalanceTimeoutMillis, req.SessionTimeoutMillis)
	}
	return time.Duration(max(ms, 0)) * time.Millisecond
}

// requestDone counts a request whose response r the writer is done
// with (written, skipped or abandoned), and logs it if it was slow. It
// runs on the writer goroutine.
func (c *conn) requestDone(req *request, r *response) {
	st := c.s.stats.api(req.key)
	took := time.Since(req.start)
	st.latency.Observe(int64(took))
	st.responseBytes.Add(uint64(r.size))
	if th := c.s.slowRequestThreshold(); th >= 0 && took > th+req.allowance {
		st.slow.Add(1)
		c.logger.LogAttrs(c.ctx, slog.LevelWarn, "slow request",
			slog.String("api", kmsg.NameForKey(req.key)),
			slog.Int("version", int(req.version)),
			slog.String("client_id", req.clientID),
			slog.Int("correlation_id", int(req.corr)),
			slog.Duration("duration", took),
			slog.Int64("request_bytes", req.size),
			slog.Int64("response_bytes", r.size),
		)
	}
}

// countErrors counts the error codes of a response built for r.
func (r *request) countErrors(resp kmsg.Response) {
	countErrorCodes(r.c.s.stats.api(r.key), resp)
}

// countErrorCodes counts every error code in resp: directly for the
// frequent APIs, through reflection (a walk planned once per type) for
// the others.
func countErrorCodes(st *apiStats, resp kmsg.Response) {
	switch resp := resp.(type) {
	case *kmsg.ProduceResponse:
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				st.countError(resp.Topics[i].Partitions[j].ErrorCode)
			}
		}
	case *kmsg.FetchResponse:
		st.countError(resp.ErrorCode)
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				st.countError(resp.Topics[i].Partitions[j].ErrorCode)
			}
		}
	case *kmsg.ListOffsetsResponse:
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				st.countError(resp.Topics[i].Partitions[j].ErrorCode)
			}
		}
	case *kmsg.MetadataResponse:
		for i := range resp.Topics {
			st.countError(resp.Topics[i].ErrorCode)
			for j := range resp.Topics[i].Partitions {
				st.countError(resp.Topics[i].Partitions[j].ErrorCode)
			}
		}
	case *kmsg.OffsetCommitResponse:
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				st.countError(resp.Topics[i].Partitions[j].ErrorCode)
			}
		}
	case *kmsg.HeartbeatResponse:
		st.countError(resp.ErrorCode)
	case *kmsg.ConsumerGroupHeartbeatResponse:
		st.countError(resp.ErrorCode)
	case *kmsg.ApiVersionsResponse:
		st.countError(resp.ErrorCode)
	default:
		v := reflect.ValueOf(resp)
		if v.Kind() != reflect.Pointer || v.IsNil() {
			return
		}
		if w := codeWalkerFor(v.Type().Elem()); w != nil {
			w.walk(v.Elem(), st)
		}
	}
}

// codeWalker counts the ErrorCode fields of a struct type and of the
// structs and slices of structs inside it.
type codeWalker struct {
	fields []codeField
}

type codeField struct {
	index int         // field index in the struct
	leaf  bool        // an int16 ErrorCode
	slice bool        // a slice of elem
	ptr   bool        // a pointer to elem
	elem  *codeWalker // for struct, slice and pointer fields
}

// codeWalkers caches the walker of each response type (nil: it holds no
// error code).
var codeWalkers sync.Map // reflect.Type → *codeWalker

func codeWalkerFor(t reflect.Type) *codeWalker {
	if w, ok := codeWalkers.Load(t); ok {
		return w.(*codeWalker)
	}
	w := planCodeWalker(t, 0)
	codeWalkers.Store(t, w)
	return w
}

// planCodeWalker plans the walk of struct type t; nil when nothing in it
// holds an error code. kmsg's types are trees a few levels deep; depth
// bounds the planning all the same.
func planCodeWalker(t reflect.Type, depth int) *codeWalker {
	if t.Kind() != reflect.Struct || depth > 8 {
		return nil
	}
	w := &codeWalker{}
	for i := range t.NumField() {
		f := t.Field(i)
		switch {
		case f.Name == "ErrorCode" && f.Type.Kind() == reflect.Int16:
			w.fields = append(w.fields, codeField{index: i, leaf: true})
		case f.Type.Kind() == reflect.Struct:
			if e := planCodeWalker(f.Type, depth+1); e != nil {
				w.fields = append(w.fields, codeField{index: i, elem: e})
			}
		case f.Type.Kind() == reflect.Slice:
			if e := planCodeWalker(f.Type.Elem(), depth+1); e != nil {
				w.fields = append(w.fields, codeField{index: i, slice: true, elem: e})
			}
		case f.Type.Kind() == reflect.Pointer:
			if e := planCodeWalker(f.Type.Elem(), depth+1); e != nil {
				w.fields = append(w.fields, codeField{index: i, ptr: true, elem: e})
			}
		}
	}
	if len(w.fields) == 0 {
		return nil
	}
	return w
}

func (w *codeWalker) walk(v reflect.Value, st *apiStats) {
	for _, f := range w.fields {
		fv := v.Field(f.index)
		switch {
		case f.leaf:
			st.countError(int16(fv.Int()))
		case f.slice:
			for i := range fv.Len() {
				f.elem.walk(fv.Index(i), st)
			}
		case f.ptr:
			if !fv.IsNil() {
				f.elem.walk(fv.Elem(), st)
			}
		default:
			f.elem.walk(fv, st)
		}
	}
}
