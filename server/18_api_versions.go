package server

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ApiVersions, v0-v5.
//
// The answer lists every registered handler's version range. A request
// newer than we know is answered in v0 form with UNSUPPORTED_VERSION and
// the same list (KIP-511), in conn.dispatch.

func init() { regKey(18, 0, 5, handleApiVersions) }

func apiKeys() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]kmsg.ApiVersionsResponseApiKey, 0, len(handlers))
	for k, h := range handlers {
		keys = append(keys, kmsg.ApiVersionsResponseApiKey{ApiKey: k, MinVersion: h.min, MaxVersion: h.max})
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ApiKey < keys[j].ApiKey })
	return keys
}

func handleApiVersions(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if r.version >= 3 && (req.ClientSoftwareName == "" || req.ClientSoftwareVersion == "") {
		// Kafka requires both on v3+.
		resp.ErrorCode = kerr.InvalidRequest.Code
	}
	resp.ApiKeys = apiKeys()
	return resp
}

// apiVersionsUnsupported builds the v0 ApiVersions answer for a version
// we do not know, by hand, as its body is the v0 layout regardless of the
// version asked.
func apiVersionsUnsupported(corr int32) *[]byte {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = apiKeys()
	b := getBuf()
	*b = appendResponse((*b)[:0], corr, resp)
	return b
}
