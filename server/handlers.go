package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handlerFunc answers one request. It runs on the connection's reader
// goroutine, in request order, and must not block: work that waits
// (fsync, long polls, rebalances) goes into r.await, and the handler then
// returns nil.
type handlerFunc func(s *Server, r *request) kmsg.Response

type handler struct {
	min, max int16
	fn       handlerFunc
}

var handlers = map[int16]*handler{}

// regKey registers the handler of an API key and the versions it serves.
// Each handler file calls it from init, so ApiVersions advertises exactly
// what exists.
func regKey(key, min, max int16, fn handlerFunc) {
	if kmsg.RequestForKey(key) == nil {
		panic("server: unknown API key")
	}
	if max > kmsg.RequestForKey(key).MaxVersion() {
		panic("server: version above what kmsg knows")
	}
	handlers[key] = &handler{min: min, max: max, fn: fn}
}

func handlerFor(key int16) *handler { return handlers[key] }

// errMsg returns a pointer for an optional error message field.
func errMsg(format string) *string { return &format }
