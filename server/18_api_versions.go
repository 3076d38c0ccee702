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
// the same list (KIP-511), in conn.dispatch. v3+ lists the features
// (KIP-584) registered with regFeature, each finalized at one level:
// clients pick what they use by it (franz-go uses transactions of
// KIP-890 only once transaction.version is finalized at 2).

func init() {
	regKey(18, 0, 5, handleApiVersions)
	regFeature("transaction.version", 0, 2, transactionVersion)
}

// feature is one feature advertised in ApiVersions v3+.
type feature struct {
	name               string
	minLevel, maxLevel int16 // supported
	finalized          int16 // the level in effect
}

var features []feature

// regFeature registers a feature: the levels this broker supports and the
// one it has finalized.
func regFeature(name string, minLevel, maxLevel, finalized int16) {
	features = append(features, feature{name, minLevel, maxLevel, finalized})
	sort.Slice(features, func(i, j int) bool { return features[i].name < features[j].name })
}

func apiKeys(s *Server) []kmsg.ApiVersionsResponseApiKey {
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
	resp.ApiKeys = apiKeys(s)
	if r.version >= 3 {
		// One broker: the finalized levels never change, epoch 0.
		resp.FinalizedFeaturesEpoch = 0
		for _, f := range features {
			sf := kmsg.NewApiVersionsResponseSupportedFeature()
			sf.Name, sf.MinVersion, sf.MaxVersion = f.name, f.minLevel, f.maxLevel
			resp.SupportedFeatures = append(resp.SupportedFeatures, sf)
			ff := kmsg.NewApiVersionsResponseFinalizedFeature()
			ff.Name, ff.MinVersionLevel, ff.MaxVersionLevel = f.name, f.finalized, f.finalized
			resp.FinalizedFeatures = append(resp.FinalizedFeatures, ff)
		}
	}
	return resp
}

// apiVersionsUnsupported builds the v0 ApiVersions answer for a version
// we do not know, by hand, as its body is the v0 layout regardless of the
// version asked.
func apiVersionsUnsupported(s *Server, corr int32) *[]byte {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = apiKeys(s)
	b := getBuf()
	*b = appendResponse((*b)[:0], corr, resp)
	return b
}
