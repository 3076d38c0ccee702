package server

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestTransactionACLs: a SASL user without ACLs is refused each step of
// a transaction; given WRITE on its transactional ids (by prefix), WRITE
// on the output topic, READ on the input topic and its group, it runs one
// to the end, while what it was not given stays refused, per partition
// where Kafka answers per partition, and the transaction admin APIs show
// it only its own transactional ids.
func TestTransactionACLs(t *testing.T) {
	b := securedBroker(t, newTestCA(t, "txnacls"), nil)
	ctx := testCtx(t)
	admin := kadm.NewClient(b.as("admin"))
	for _, topic := range []string{"in", "out", "secret"} {
		if _, err := admin.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	// Another principal's transaction, left open.
	other := b.as("admin", kgo.TransactionalID("admin-tx"), kgo.TransactionTimeout(time.Minute))
	if err := other.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := other.ProduceSync(ctx, &kgo.Record{Topic: "secret", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	alice := b.as("alice")
	initPID := func() (*kmsg.InitProducerIDResponse, error) {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID, req.TransactionTimeoutMillis = kmsg.StringPtr("etl-1"), 60000
		resp, err := req.RequestWith(ctx, alice)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		return resp, err
	}
	// (The client's FindCoordinator is refused first.)
	if _, err := initPID(); !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		t.Fatalf("InitProducerID without ACLs: %v", err)
	}
	// The broker refuses it too.
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID, req.TransactionTimeoutMillis = kmsg.StringPtr("etl-1"), 60000
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, alice); err != nil {
		t.Fatal(err)
	}
	// direct sends req to the broker itself, past the client's routing
	// (which would ask FindCoordinator or Metadata first, refused on its
	// own).
	direct := func(cl *kgo.Client, req kmsg.Request) (kmsg.Response, error) {
		if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl); err != nil {
			return nil, err
		}
		return cl.Broker(int(b.srv.cfg.NodeID)).Request(ctx, req)
	}
	if resp, err := direct(alice, req); err != nil || resp.(*kmsg.InitProducerIDResponse).ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code {
		t.Fatalf("InitProducerID without ACLs, to the broker: %v %+v", err, resp)
	}

	for _, acl := range []*kadm.ACLBuilder{
		kadm.NewACLs().Allow("User:alice").TransactionalIDs("etl-").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpWrite),
		kadm.NewACLs().Allow("User:alice").Topics("out").Operations(kadm.OpWrite),
		kadm.NewACLs().Allow("User:alice").Topics("in").Operations(kadm.OpRead),
		kadm.NewACLs().Allow("User:alice").Groups("etl").Operations(kadm.OpRead),
	} {
		res, err := admin.CreateACLs(ctx, acl)
		if err != nil || res[0].Err != nil {
			t.Fatal(err, res)
		}
	}
	ip, err := initPID()
	if err != nil {
		t.Fatalf("InitProducerID with WRITE on the transactional id: %v", err)
	}

	// AddPartitionsToTxn: a topic without WRITE fails the request; the
	// partition allowed is not attempted.
	addParts := func(topics ...string) map[string]int16 {
		t.Helper()
		req := kmsg.NewPtrAddPartitionsToTxnRequest()
		req.Version = 3
		req.TransactionalID, req.ProducerID, req.ProducerEpoch = "etl-1", ip.ProducerID, ip.ProducerEpoch
		for _, tp := range topics {
			at := kmsg.NewAddPartitionsToTxnRequestTopic()
			at.Topic, at.Partitions = tp, []int32{0}
			req.Topics = append(req.Topics, at)
		}
		resp, err := req.RequestWith(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		codes := map[string]int16{}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				codes[rt.Topic] = rp.ErrorCode
			}
		}
		return codes
	}
	if got := addParts("out", "secret"); got["out"] != kerr.OperationNotAttempted.Code || got["secret"] != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("AddPartitionsToTxn out and secret: %v", got)
	}
	if got := addParts("out"); got["out"] != 0 {
		t.Errorf("AddPartitionsToTxn out: %v", kerr.ErrorForCode(got["out"]))
	}
	// The batched form is for brokers.
	v4 := kmsg.NewPtrAddPartitionsToTxnRequest()
	v4.Version = 4
	if resp, err := direct(alice, v4); err != nil || resp.(*kmsg.AddPartitionsToTxnResponse).ErrorCode != kerr.ClusterAuthorizationFailed.Code {
		t.Errorf("AddPartitionsToTxn v4 from a client: %v %+v", err, resp)
	}

	addOffsets := func(group string) int16 {
		t.Helper()
		req := kmsg.NewPtrAddOffsetsToTxnRequest()
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = "etl-1", ip.ProducerID, ip.ProducerEpoch, group
		resp, err := req.RequestWith(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		return resp.ErrorCode
	}
	if code := addOffsets("other"); code != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("AddOffsetsToTxn to a group without READ: %v", kerr.ErrorForCode(code))
	}
	if code := addOffsets("etl"); code != 0 {
		t.Fatalf("AddOffsetsToTxn: %v", kerr.ErrorForCode(code))
	}

	// TxnOffsetCommit: the topic without READ is refused, the other
	// committed.
	commit := kmsg.NewPtrTxnOffsetCommitRequest()
	commit.Version = 3
	commit.TransactionalID, commit.Group, commit.ProducerID, commit.ProducerEpoch = "etl-1", "etl", ip.ProducerID, ip.ProducerEpoch
	commit.Generation = -1
	tds, err := admin.ListTopics(ctx, "in", "secret")
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"in", "secret"} {
		ot := kmsg.NewTxnOffsetCommitRequestTopic()
		ot.Topic, ot.TopicID = topic, tds[topic].ID
		op := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		op.Offset = 7
		ot.Partitions = append(ot.Partitions, op)
		commit.Topics = append(commit.Topics, ot)
	}
	cresp, err := commit.RequestWith(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int16{}
	for _, rt := range cresp.Topics {
		name := rt.Topic
		for n, td := range tds {
			if rt.TopicID == td.ID && name == "" {
				name = n
			}
		}
		codes[name] = rt.Partitions[0].ErrorCode
	}
	if len(codes) != 2 || codes["in"] != 0 || codes["secret"] != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("TxnOffsetCommit in and secret: %v", codes)
	}
	bob := kmsg.NewPtrTxnOffsetCommitRequest()
	*bob = *commit
	if resp, err := direct(b.as("bob"), bob); err != nil || resp.(*kmsg.TxnOffsetCommitResponse).Topics[0].Partitions[0].ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code {
		t.Errorf("TxnOffsetCommit by bob: %v %+v", err, resp)
	}

	// DescribeProducers: READ on the topic.
	dp := kmsg.NewPtrDescribeProducersRequest()
	for _, topic := range []string{"in", "secret"} {
		dt := kmsg.NewDescribeProducersRequestTopic()
		dt.Topic, dt.Partitions = topic, []int32{0}
		dp.Topics = append(dp.Topics, dt)
	}
	dprr, err := direct(alice, dp)
	if err != nil {
		t.Fatal(err)
	}
	dpr := dprr.(*kmsg.DescribeProducersResponse)
	if len(dpr.Topics) != 2 || dpr.Topics[0].Partitions[0].ErrorCode != 0 ||
		dpr.Topics[1].Partitions[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("DescribeProducers in and secret: %v %+v", err, dpr)
	}

	// The admin APIs show alice her own transactional id only, and of
	// its partitions those she may describe.
	lt, err := kmsg.NewPtrListTransactionsRequest().RequestWith(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, st := range lt.TransactionStates {
		ids = append(ids, st.TransactionalID)
	}
	if !slices.Equal(ids, []string{"etl-1"}) {
		t.Errorf("ListTransactions by alice: %v", ids)
	}
	dt := kmsg.NewPtrDescribeTransactionsRequest()
	dt.TransactionalIDs = []string{"etl-1", "admin-tx"}
	dtrr, err := direct(alice, dt)
	if err != nil {
		t.Fatal(err)
	}
	dtr := dtrr.(*kmsg.DescribeTransactionsResponse)
	byID := map[string]kmsg.DescribeTransactionsResponseTransactionState{}
	for _, st := range dtr.TransactionStates {
		byID[st.TransactionalID] = st
	}
	if st := byID["etl-1"]; st.ErrorCode != 0 || st.State != "Ongoing" || len(st.Topics) != 1 || st.Topics[0].Topic != "out" {
		t.Errorf("DescribeTransactions etl-1 (the __consumer_offsets partition hidden): %+v", st)
	}
	if st := byID["admin-tx"]; st.ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code {
		t.Errorf("DescribeTransactions admin-tx by alice: %+v", st)
	}

	// EndTxn: bob may not; alice commits.
	end := kmsg.NewPtrEndTxnRequest()
	end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = "etl-1", ip.ProducerID, ip.ProducerEpoch, true
	if resp, err := direct(b.as("bob"), end); err != nil || resp.(*kmsg.EndTxnResponse).ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code {
		t.Errorf("EndTxn by bob: %v %+v", err, resp)
	}
	if resp, err := end.RequestWith(ctx, alice); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("EndTxn by alice: %v %+v", err, resp)
	}
	offs, err := admin.FetchOffsets(ctx, "etl")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("in", 0); !ok || o.At != 7 {
		t.Errorf("committed offset of in: %+v %v", o, ok)
	}
	if _, ok := offs.Lookup("secret", 0); ok {
		t.Error("an offset of secret was committed")
	}
	if err := other.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
}
