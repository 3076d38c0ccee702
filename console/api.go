package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
)

// apiError is the body of every failed API call.
type apiError struct {
	Error string `json:"error"`
	// Code is Kafka's error name when a broker refused the request
	// (UNKNOWN_TOPIC_OR_PARTITION, NON_EMPTY_GROUP, ...).
	Code string `json:"code,omitempty"`
}

// errBadRequest marks errors in what the caller sent; they answer 400.
var errBadRequest = errors.New("bad request")

// badRequest returns an error answered with 400 and msg.
func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// errNotFound marks a topic or group that does not exist: 404.
var errNotFound = errors.New("not found")

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// writeError answers err with its status: 400 for bad input, 404 for
// what does not exist, 409 for a conflict (topic exists, group active),
// 504 when the broker did not answer in time, else 502 (the broker
// refused or failed).
func (c *Console) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	var ke *kerr.Error
	code := ""
	if errors.As(err, &ke) {
		code = ke.Message
	}
	switch {
	case errors.Is(err, errBadRequest):
		status = http.StatusBadRequest
		err = errors.New(strings.TrimPrefix(err.Error(), errBadRequest.Error()+": "))
	case errors.Is(err, errNotFound), errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.GroupIDNotFound), errors.Is(err, kerr.UnknownTopicID):
		status = http.StatusNotFound
	case errors.Is(err, kerr.TopicAlreadyExists), errors.Is(err, kerr.NonEmptyGroup):
		status = http.StatusConflict
	case errors.Is(err, kerr.InvalidTopicException), errors.Is(err, kerr.InvalidPartitions),
		errors.Is(err, kerr.InvalidReplicationFactor), errors.Is(err, kerr.InvalidConfig),
		errors.Is(err, kerr.InvalidRequest), errors.Is(err, kerr.PolicyViolation):
		status = http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	}
	if status >= 500 {
		c.logger.Warn("console request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, apiError{Error: err.Error(), Code: code})
}

// page is the window of a paged list: Offset rows skipped, at most Limit
// returned, of Total.
type page struct {
	Total  int `json:"total"`
	Offset int `json:"offset"`
	Limit  int `json:"limit"`
}

const (
	defaultLimit = 50
	maxLimit     = 1000
)

// parsePage reads offset and limit from the query (limit default 50, at
// most 1000).
func parsePage(r *http.Request) (page, error) {
	p := page{Limit: defaultLimit}
	var err error
	if p.Offset, err = intParam(r, "offset", 0); err != nil {
		return p, err
	}
	if p.Limit, err = intParam(r, "limit", defaultLimit); err != nil {
		return p, err
	}
	if p.Offset < 0 || p.Limit <= 0 {
		return p, badRequest("offset must be >= 0 and limit > 0")
	}
	p.Limit = min(p.Limit, maxLimit)
	return p, nil
}

// window returns the bounds [lo, hi) of the page in a list of n rows and
// records n as the total.
func (p *page) window(n int) (lo, hi int) {
	p.Total = n
	lo = min(p.Offset, n)
	return lo, min(lo+p.Limit, n)
}

func intParam(r *http.Request, name string, def int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, badRequest("%s %q is not a number", name, s)
	}
	return n, nil
}

// decodeBody reads a JSON request body of at most 1 MiB into v, refusing
// unknown fields.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	return nil
}

// matches reports whether name contains q, ignoring case; an empty q
// matches everything.
func matches(name, q string) bool {
	return q == "" || strings.Contains(strings.ToLower(name), strings.ToLower(q))
}
