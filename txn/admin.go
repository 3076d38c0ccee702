package txn

import (
	"context"
	"regexp"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeTransactions handles a DescribeTransactions request (v0): the
// state, timeout, start time, producer id and epoch, and partitions of each
// transactional id; TRANSACTIONAL_ID_NOT_FOUND for an unknown one,
// INVALID_REQUEST for "". The partitions of a transaction whose markers are
// being written are all listed until it completes.
func (c *Coordinator) DescribeTransactions(ctx context.Context, req *kmsg.DescribeTransactionsRequest) *kmsg.DescribeTransactionsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	entered := c.enter()
	if entered {
		defer c.wg.Done()
	}
	for _, id := range req.TransactionalIDs {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID = id
		switch {
		case !entered:
			st.ErrorCode = kerr.CoordinatorNotAvailable.Code
		case id == "":
			st.ErrorCode = kerr.InvalidRequest.Code
		default:
			c.describe(id, &st)
		}
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return resp
}

func (c *Coordinator) describe(id string, st *kmsg.DescribeTransactionsResponseTransactionState) {
	e, err := c.lockEntry(id)
	if err != nil {
		st.ErrorCode = err.Code
		return
	}
	if e == nil {
		st.ErrorCode = kerr.TransactionalIDNotFound.Code
		return
	}
	defer e.mu.Unlock()
	m := &e.m
	st.State = m.state.String()
	st.TimeoutMillis = m.timeoutMs
	st.StartTimestamp = m.startMs
	st.ProducerID = m.producerID
	st.ProducerEpoch = m.epoch
	for i, tp := range m.partitions {
		if i == 0 || tp.Topic != m.partitions[i-1].Topic {
			t := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
			t.Topic = tp.Topic
			st.Topics = append(st.Topics, t)
		}
		t := &st.Topics[len(st.Topics)-1]
		t.Partitions = append(t.Partitions, tp.Partition)
	}
}

// ListTransactions handles a ListTransactions request (v0-v2): every
// transactional id, sorted, filtered by state names (unknown names are
// echoed in UnknownStateFilters), by producer id, by duration (v1+: only
// transactions started more than DurationFilterMillis ago, as Kafka
// computes it from the start time, -1 for Empty) and by a regular
// expression the whole id must match (v2+; INVALID_REGULAR_EXPRESSION when
// it does not compile).
func (c *Coordinator) ListTransactions(ctx context.Context, req *kmsg.ListTransactionsRequest) *kmsg.ListTransactionsResponse {
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	if !c.enter() {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	defer c.wg.Done()
	var states []state
	for _, name := range req.StateFilters {
		if s, ok := parseState(name); ok {
			states = append(states, s)
		} else {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, name)
		}
	}
	duration := int64(-1)
	if req.Version >= 1 {
		duration = req.DurationFilterMillis
	}
	var re *regexp.Regexp
	if req.Version >= 2 && req.TransactionalIDPattern != nil && *req.TransactionalIDPattern != "" {
		var err error
		if re, err = regexp.Compile(`^(?:` + *req.TransactionalIDPattern + `)$`); err != nil {
			resp.ErrorCode = kerr.InvalidRegularExpression.Code
			return resp
		}
	}
	now := nowMs()
	for _, e := range c.entries() {
		e.mu.Lock()
		m := e.m
		dead := e.goneLocked()
		e.mu.Unlock()
		switch {
		case dead:
		case len(req.StateFilters) > 0 && !slices.Contains(states, m.state):
		case len(req.ProducerIDFilters) > 0 && !slices.Contains(req.ProducerIDFilters, m.producerID):
		case duration >= 0 && now-m.startMs <= duration:
		case re != nil && !re.MatchString(e.id):
		default:
			ts := kmsg.NewListTransactionsResponseTransactionState()
			ts.TransactionalID = e.id
			ts.ProducerID = m.producerID
			ts.TransactionState = m.state.String()
			resp.TransactionStates = append(resp.TransactionStates, ts)
		}
	}
	return resp
}
