package server

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// securedBroker starts a broker with the ACL authorizer: a PLAINTEXT
// listener (User:ANONYMOUS), a SASL_PLAINTEXT one with PLAIN users admin
// (a super user), alice and bob, and an SSL one asking for client
// certificates. extra adds configs.
func securedBroker(t *testing.T, ca *testCA, extra map[string]string) *multiBroker {
	t.Helper()
	keystore, _ := ca.issue(t, "broker", true)
	props := map[string]string{
		"listeners":                    "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
		"authorizer.class.name":        "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
		"super.users":                  "User:admin",
		"sasl.enabled.mechanisms":      "PLAIN",
		"sasl.jaas.config":             `org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin" user_alice="alice" user_bob="bob";`,
		"ssl.keystore.location":        ca.file(t, "broker.pem", keystore),
		"ssl.truststore.location":      ca.file(t, "ca.pem", ca.pem),
		"ssl.client.auth":              "requested",
		"offsets.topic.num.partitions": "2",
	}
	for k, v := range extra {
		props[k] = v
	}
	return startListeners(t, props)
}

func (b *multiBroker) as(user string, opts ...kgo.Opt) *kgo.Client {
	return b.client("SASL_PLAINTEXT", append([]kgo.Opt{kgo.SASL(plain.Auth{User: user, Pass: user}.AsMechanism())}, opts...)...)
}

var authzCodes = []int16{kerr.TopicAuthorizationFailed.Code, kerr.GroupAuthorizationFailed.Code, kerr.ClusterAuthorizationFailed.Code, kerr.TransactionalIDAuthorizationFailed.Code}

// authzError finds an authorization error code in any ErrorCode field of
// v.
func authzError(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && authzError(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if f.Name == "ErrorCode" && f.Type.Kind() == reflect.Int16 && slices.Contains(authzCodes, int16(v.Field(i).Int())) {
				return true
			}
			if authzError(v.Field(i)) {
				return true
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			if authzError(v.Index(i)) {
				return true
			}
		}
	}
	return false
}

// TestAuthorizerCoversEveryAPI sends every API the broker serves, as a
// principal without ACLs, and expects each to be refused with an
// authorization error (or, for listings, to show nothing), except those
// Kafka lets anyone use. An API without a probe here fails the test: a
// new API must be authorized and its probe added.
func TestAuthorizerCoversEveryAPI(t *testing.T) {
	b := securedBroker(t, newTestCA(t, "authz"), nil)
	ctx := testCtx(t)
	admin := kadm.NewClient(b.as("admin"))
	if _, err := admin.CreateTopic(ctx, 1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CommitOffsets(ctx, "g", kadm.OffsetsFromRecords(kgo.Record{Topic: "t", Partition: 0, Offset: 0})); err != nil {
		t.Fatal(err)
	}
	// A transaction left open, so that ListTransactions has one to hide.
	tx := b.as("admin", kgo.TransactionalID("tx"), kgo.TransactionTimeout(time.Minute))
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	open := map[int16]bool{18: true, 17: true, 36: true, 60: true} // ApiVersions, SASL, DescribeCluster: anyone, as in Kafka
	probes := map[int16]func() kmsg.Request{
		0: func() kmsg.Request { return produceRequest("t", nil) },
		1: func() kmsg.Request {
			r := kmsg.NewPtrFetchRequest()
			r.Version, r.MaxBytes = 12, 1<<20
			ft := kmsg.NewFetchRequestTopic()
			ft.Topic = "t"
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.PartitionMaxBytes = 1 << 20
			ft.Partitions = append(ft.Partitions, fp)
			r.Topics = append(r.Topics, ft)
			return r
		},
		2: func() kmsg.Request {
			r := kmsg.NewPtrListOffsetsRequest()
			lt := kmsg.NewListOffsetsRequestTopic()
			lt.Topic = "t"
			lt.Partitions = append(lt.Partitions, kmsg.NewListOffsetsRequestTopicPartition())
			r.Topics = append(r.Topics, lt)
			return r
		},
		3: func() kmsg.Request {
			r := kmsg.NewPtrMetadataRequest()
			mt := kmsg.NewMetadataRequestTopic()
			mt.Topic = str("t")
			r.Topics = append(r.Topics, mt)
			return r
		},
		8: func() kmsg.Request {
			r := kmsg.NewPtrOffsetCommitRequest()
			r.Group = "g"
			ot := kmsg.NewOffsetCommitRequestTopic()
			ot.Topic = "t"
			ot.Partitions = append(ot.Partitions, kmsg.NewOffsetCommitRequestTopicPartition())
			r.Topics = append(r.Topics, ot)
			return r
		},
		9: func() kmsg.Request {
			r := kmsg.NewPtrOffsetFetchRequest()
			r.Version = 7
			r.Group = "g"
			return r
		},
		10: func() kmsg.Request { r := kmsg.NewPtrFindCoordinatorRequest(); r.CoordinatorKey = "g"; return r },
		11: func() kmsg.Request {
			r := kmsg.NewPtrJoinGroupRequest()
			r.Group, r.ProtocolType, r.SessionTimeoutMillis = "g", "consumer", 10000
			return r
		},
		12: func() kmsg.Request { r := kmsg.NewPtrHeartbeatRequest(); r.Group = "g"; return r },
		13: func() kmsg.Request { r := kmsg.NewPtrLeaveGroupRequest(); r.Group = "g"; return r },
		14: func() kmsg.Request { r := kmsg.NewPtrSyncGroupRequest(); r.Group = "g"; return r },
		15: func() kmsg.Request { r := kmsg.NewPtrDescribeGroupsRequest(); r.Groups = []string{"g"}; return r },
		19: func() kmsg.Request {
			r := kmsg.NewPtrCreateTopicsRequest()
			ct := kmsg.NewCreateTopicsRequestTopic()
			ct.Topic, ct.NumPartitions, ct.ReplicationFactor = "new", 1, 1
			r.Topics = append(r.Topics, ct)
			return r
		},
		20: func() kmsg.Request {
			r := kmsg.NewPtrDeleteTopicsRequest()
			r.Version = 5
			r.TopicNames = []string{"t"}
			return r
		},
		21: func() kmsg.Request {
			r := kmsg.NewPtrDeleteRecordsRequest()
			dt := kmsg.NewDeleteRecordsRequestTopic()
			dt.Topic = "t"
			dt.Partitions = append(dt.Partitions, kmsg.NewDeleteRecordsRequestTopicPartition())
			r.Topics = append(r.Topics, dt)
			return r
		},
		22: func() kmsg.Request { return kmsg.NewPtrInitProducerIDRequest() },
		23: func() kmsg.Request {
			r := kmsg.NewPtrOffsetForLeaderEpochRequest()
			ot := kmsg.NewOffsetForLeaderEpochRequestTopic()
			ot.Topic = "t"
			ot.Partitions = append(ot.Partitions, kmsg.NewOffsetForLeaderEpochRequestTopicPartition())
			r.Topics = append(r.Topics, ot)
			return r
		},
		24: func() kmsg.Request {
			r := kmsg.NewPtrAddPartitionsToTxnRequest()
			r.Version, r.TransactionalID = 3, "tx"
			at := kmsg.NewAddPartitionsToTxnRequestTopic()
			at.Topic, at.Partitions = "t", []int32{0}
			r.Topics = append(r.Topics, at)
			return r
		},
		25: func() kmsg.Request {
			r := kmsg.NewPtrAddOffsetsToTxnRequest()
			r.TransactionalID, r.Group = "tx", "g"
			return r
		},
		26: func() kmsg.Request { r := kmsg.NewPtrEndTxnRequest(); r.TransactionalID = "tx"; return r },
		84: func() kmsg.Request {
			r := kmsg.NewPtrReadShareGroupStateRequest()
			r.GroupID = "sg"
			rt := kmsg.NewReadShareGroupStateRequestTopic()
			rt.Partitions = append(rt.Partitions, kmsg.NewReadShareGroupStateRequestTopicPartition())
			r.Topics = append(r.Topics, rt)
			return r
		},
		85: func() kmsg.Request {
			r := kmsg.NewPtrWriteShareGroupStateRequest()
			r.GroupID = "sg"
			rt := kmsg.NewWriteShareGroupStateRequestTopic()
			rt.Partitions = append(rt.Partitions, kmsg.NewWriteShareGroupStateRequestTopicPartition())
			r.Topics = append(r.Topics, rt)
			return r
		},
		27: func() kmsg.Request {
			r := kmsg.NewPtrWriteTxnMarkersRequest()
			m := kmsg.NewWriteTxnMarkersRequestMarker()
			m.ProducerID, m.Committed = 1, true
			mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
			mt.Topic, mt.Partitions = "t", []int32{0}
			m.Topics = append(m.Topics, mt)
			r.Markers = append(r.Markers, m)
			return r
		},
		28: func() kmsg.Request {
			r := kmsg.NewPtrTxnOffsetCommitRequest()
			r.TransactionalID, r.Group = "tx", "g"
			ot := kmsg.NewTxnOffsetCommitRequestTopic()
			ot.Topic = "t"
			ot.Partitions = append(ot.Partitions, kmsg.NewTxnOffsetCommitRequestTopicPartition())
			r.Topics = append(r.Topics, ot)
			return r
		},
		29: func() kmsg.Request {
			r := kmsg.NewPtrDescribeACLsRequest()
			r.ResourceType, r.ResourcePatternType = 1, 1
			r.Operation, r.PermissionType = 1, 1
			return r
		},
		30: func() kmsg.Request {
			r := kmsg.NewPtrCreateACLsRequest()
			c := kmsg.NewCreateACLsRequestCreation()
			c.ResourceType, c.ResourceName, c.ResourcePatternType, c.Principal, c.Host, c.Operation, c.PermissionType = 2, "t", 3, "User:ANONYMOUS", "*", 2, 3
			r.Creations = append(r.Creations, c)
			return r
		},
		31: func() kmsg.Request {
			r := kmsg.NewPtrDeleteACLsRequest()
			f := kmsg.NewDeleteACLsRequestFilter()
			f.ResourceType, f.ResourcePatternType, f.Operation, f.PermissionType = 1, 1, 1, 1
			r.Filters = append(r.Filters, f)
			return r
		},
		32: func() kmsg.Request {
			r := kmsg.NewPtrDescribeConfigsRequest()
			rr := kmsg.NewDescribeConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = 2, "t"
			r.Resources = append(r.Resources, rr)
			return r
		},
		33: func() kmsg.Request {
			r := kmsg.NewPtrAlterConfigsRequest()
			rr := kmsg.NewAlterConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = 2, "t"
			r.Resources = append(r.Resources, rr)
			return r
		},
		35: func() kmsg.Request { r := kmsg.NewPtrDescribeLogDirsRequest(); r.Version = 4; return r },
		37: func() kmsg.Request {
			r := kmsg.NewPtrCreatePartitionsRequest()
			ct := kmsg.NewCreatePartitionsRequestTopic()
			ct.Topic, ct.Count = "t", 2
			r.Topics = append(r.Topics, ct)
			return r
		},
		42: func() kmsg.Request { r := kmsg.NewPtrDeleteGroupsRequest(); r.Groups = []string{"g"}; return r },
		43: func() kmsg.Request {
			r := kmsg.NewPtrElectLeadersRequest()
			r.Version = 2
			r.Topics = []kmsg.ElectLeadersRequestTopic{{Topic: "t", Partitions: []int32{0}}}
			return r
		},
		45: func() kmsg.Request {
			r := kmsg.NewPtrAlterPartitionAssignmentsRequest()
			rt := kmsg.NewAlterPartitionAssignmentsRequestTopic()
			rt.Topic = "t"
			rt.Partitions = []kmsg.AlterPartitionAssignmentsRequestTopicPartition{{Partition: 0, Replicas: []int32{0}}}
			r.Topics = append(r.Topics, rt)
			return r
		},
		46: func() kmsg.Request { return kmsg.NewPtrListPartitionReassignmentsRequest() },
		44: func() kmsg.Request {
			r := kmsg.NewPtrIncrementalAlterConfigsRequest()
			rr := kmsg.NewIncrementalAlterConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = 4, ""
			r.Resources = append(r.Resources, rr)
			return r
		},
		47: func() kmsg.Request { r := kmsg.NewPtrOffsetDeleteRequest(); r.Group = "g"; return r },
		48: func() kmsg.Request { return kmsg.NewPtrDescribeClientQuotasRequest() },
		49: func() kmsg.Request {
			r := kmsg.NewPtrAlterClientQuotasRequest()
			e := kmsg.NewAlterClientQuotasRequestEntry()
			e.Entity = []kmsg.AlterClientQuotasRequestEntryEntity{{Type: "user", Name: str("x")}}
			e.Ops = []kmsg.AlterClientQuotasRequestEntryOp{{Key: "producer_byte_rate", Value: 1024}}
			r.Entries = append(r.Entries, e)
			return r
		},
		50: func() kmsg.Request { return kmsg.NewPtrDescribeUserSCRAMCredentialsRequest() },
		51: func() kmsg.Request {
			r := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
			d := kmsg.NewAlterUserSCRAMCredentialsRequestDeletion()
			d.Name, d.Mechanism = "x", 1
			r.Deletions = append(r.Deletions, d)
			return r
		},
		55: func() kmsg.Request {
			r := kmsg.NewPtrDescribeQuorumRequest()
			rt := kmsg.NewDescribeQuorumRequestTopic()
			rt.Topic = "__cluster_metadata"
			rt.Partitions = append(rt.Partitions, kmsg.NewDescribeQuorumRequestTopicPartition())
			r.Topics = append(r.Topics, rt)
			return r
		},
		64: func() kmsg.Request {
			r := kmsg.NewPtrUnregisterBrokerRequest()
			r.BrokerID = 1
			return r
		},
		80: func() kmsg.Request {
			r := kmsg.NewPtrAddRaftVoterRequest()
			r.VoterID = 1
			l := kmsg.NewAddRaftVoterRequestListener()
			l.Name, l.Host, l.Port = "CONTROLLER", "127.0.0.1", 1
			r.Listeners = append(r.Listeners, l)
			return r
		},
		81: func() kmsg.Request {
			r := kmsg.NewPtrRemoveRaftVoterRequest()
			r.VoterID = 1
			return r
		},
		61: func() kmsg.Request {
			r := kmsg.NewPtrDescribeProducersRequest()
			dt := kmsg.NewDescribeProducersRequestTopic()
			dt.Topic, dt.Partitions = "t", []int32{0}
			r.Topics = append(r.Topics, dt)
			return r
		},
		65: func() kmsg.Request {
			r := kmsg.NewPtrDescribeTransactionsRequest()
			r.TransactionalIDs = []string{"tx"}
			return r
		},
		68: func() kmsg.Request {
			r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
			r.Group, r.MemberEpoch, r.RebalanceTimeoutMillis = "g2", 0, 1000
			r.SubscribedTopicNames = []string{"t"}
			return r
		},
		69: func() kmsg.Request {
			r := kmsg.NewPtrConsumerGroupDescribeRequest()
			r.Groups = []string{"g"}
			return r
		},
		76: func() kmsg.Request {
			r := kmsg.NewPtrShareGroupHeartbeatRequest()
			r.GroupID, r.MemberID = "sg", "m-1"
			r.SubscribedTopicNames = []string{"t"}
			return r
		},
		77: func() kmsg.Request {
			r := kmsg.NewPtrShareGroupDescribeRequest()
			r.GroupIDs = []string{"sg"}
			return r
		},
		78: func() kmsg.Request {
			r := kmsg.NewPtrShareFetchRequest()
			r.Version = 1
			r.GroupID, r.MemberID = str("sg"), str("m-1")
			ft := kmsg.NewShareFetchRequestTopic()
			ft.TopicID = b.srv.meta.Topic("t").ID()
			ft.Partitions = append(ft.Partitions, kmsg.NewShareFetchRequestTopicPartition())
			r.Topics = append(r.Topics, ft)
			return r
		},
		79: func() kmsg.Request {
			r := kmsg.NewPtrShareAcknowledgeRequest()
			r.GroupID, r.MemberID, r.ShareSessionEpoch = str("sg"), str("m-1"), 1
			return r
		},
		90: func() kmsg.Request {
			r := kmsg.NewPtrDescribeShareGroupOffsetsRequest()
			g := kmsg.NewDescribeShareGroupOffsetsRequestGroup()
			g.GroupID = "sg"
			r.Groups = append(r.Groups, g)
			return r
		},
		91: func() kmsg.Request {
			r := kmsg.NewPtrAlterShareGroupOffsetsRequest()
			r.GroupID = "sg"
			at := kmsg.NewAlterShareGroupOffsetsRequestTopic()
			at.Topic = "t"
			at.Partitions = append(at.Partitions, kmsg.NewAlterShareGroupOffsetsRequestTopicPartition())
			r.Topics = append(r.Topics, at)
			return r
		},
		92: func() kmsg.Request {
			r := kmsg.NewPtrDeleteShareGroupOffsetsRequest()
			r.GroupID = "sg"
			dt := kmsg.NewDeleteShareGroupOffsetsRequestTopic()
			dt.Topic = "t"
			r.Topics = append(r.Topics, dt)
			return r
		},
	}
	// Second probes of APIs whose resource depends on the request: share
	// coordinators (FindCoordinator key type 2) and group configs.
	extra := []func() kmsg.Request{
		func() kmsg.Request {
			r := kmsg.NewPtrFindCoordinatorRequest()
			r.Version, r.CoordinatorType, r.CoordinatorKeys = 4, 2, []string{"sg:AAAAAAAAAAAAAAAAAAAAAA:0"}
			return r
		},
		func() kmsg.Request {
			r := kmsg.NewPtrDescribeConfigsRequest()
			rr := kmsg.NewDescribeConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = 32, "sg"
			r.Resources = append(r.Resources, rr)
			return r
		},
		func() kmsg.Request {
			r := kmsg.NewPtrIncrementalAlterConfigsRequest()
			rr := kmsg.NewIncrementalAlterConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = 32, "sg"
			c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
			c.Name, c.Value = "share.auto.offset.reset", str("earliest")
			rr.Configs = append(rr.Configs, c)
			r.Resources = append(r.Resources, rr)
			return r
		},
	}
	// Listings without an error: what the principal may not describe is
	// left out.
	listings := map[int16]func() (kmsg.Request, func(kmsg.Response) bool){
		16: func() (kmsg.Request, func(kmsg.Response) bool) {
			return kmsg.NewPtrListGroupsRequest(), func(r kmsg.Response) bool { return len(r.(*kmsg.ListGroupsResponse).Groups) == 0 }
		},
		66: func() (kmsg.Request, func(kmsg.Response) bool) {
			return kmsg.NewPtrListTransactionsRequest(), func(r kmsg.Response) bool {
				return len(r.(*kmsg.ListTransactionsResponse).TransactionStates) == 0
			}
		},
	}
	anon := b.client("PLAINTEXT")
	nc := dialRaw(t, b.addrs["PLAINTEXT"])
	corr := int32(1)
	for key := range handlers {
		name := kmsg.NameForKey(key)
		if open[key] {
			continue
		}
		if l, ok := listings[key]; ok {
			req, empty := l()
			resp, err := anon.Request(ctx, req)
			if err != nil || !empty(resp) {
				t.Errorf("%s: listing shows what the principal may not describe: %v", name, err)
			}
			continue
		}
		probe, ok := probes[key]
		if !ok {
			t.Errorf("%s (key %d) has no authorization probe: authorize it (server/authorize.go) and add one here", name, key)
			continue
		}
		req := probe()
		resp, err := rawRoundTrip(nc, corr, req)
		corr++
		if err != nil {
			t.Fatalf("%s v%d: %v", name, req.GetVersion(), err)
		}
		if !authzError(reflect.ValueOf(resp)) {
			t.Errorf("%s v%d: answered without an authorization error to a principal without ACLs: %+v", name, req.GetVersion(), resp)
		}
	}
	// The transactional forms of InitProducerID and Produce.
	initTxn := kmsg.NewPtrInitProducerIDRequest()
	initTxn.TransactionalID, initTxn.TransactionTimeoutMillis = str("tx"), 60000
	txnProduce := produceRequest("t", nil)
	txnProduce.TransactionID = str("tx")
	for _, req := range []kmsg.Request{initTxn, txnProduce} {
		resp, err := rawRoundTrip(nc, corr, req)
		corr++
		if err != nil {
			t.Fatalf("%s v%d: %v", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
		}
		if !authzError(reflect.ValueOf(resp)) {
			t.Errorf("transactional %s: answered without an authorization error to a principal without ACLs: %+v", kmsg.NameForKey(req.Key()), resp)
		}
	}
	for _, probe := range extra {
		req := probe()
		resp, err := rawRoundTrip(nc, corr, req)
		corr++
		if err != nil {
			t.Fatalf("%s v%d: %v", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
		}
		if !authzError(reflect.ValueOf(resp)) {
			t.Errorf("%s v%d: answered without an authorization error to a principal without ACLs: %+v", kmsg.NameForKey(req.Key()), req.GetVersion(), resp)
		}
	}
	// Every topic is hidden from a listing, and none was created.
	md, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, anon)
	if err != nil || len(md.Topics) != 0 {
		t.Errorf("metadata lists %d topics to a principal without ACLs (%v)", len(md.Topics), err)
	}
	if b.srv.meta.Topic("new") != nil {
		t.Error("a topic was created without authorization")
	}
}

// TestACLs gives users ACLs on topics (literal and prefixed), groups, the
// cluster and transactional ids, with a client certificate principal
// among them, and checks what each may and may not do.
func TestACLs(t *testing.T) {
	ca := newTestCA(t, "acls")
	b := securedBroker(t, ca, nil)
	ctx := testCtx(t)
	admin := kadm.NewClient(b.as("admin"))
	if _, err := admin.CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateTopic(ctx, 1, 1, nil, "secret"); err != nil {
		t.Fatal(err)
	}
	carolCert, carol := ca.issue(t, "carol", false)
	_ = carolCert
	carolPrincipal := "User:CN=carol,OU=eng,O=Ferry tests"
	acls := kadm.NewACLs().Allow("User:alice").Topics("orders").Operations(kadm.OpWrite).ResourcePatternType(kadm.ACLPatternLiteral)
	created, err := admin.CreateACLs(ctx, acls)
	if err != nil || created[0].Err != nil {
		t.Fatal(err, created)
	}
	for _, b := range []*kadm.ACLBuilder{
		kadm.NewACLs().Allow("User:alice").Topics("logs-").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpRead),
		kadm.NewACLs().Allow("User:alice").Groups("readers").Operations(kadm.OpRead),
		kadm.NewACLs().Allow("User:alice").Clusters().Operations(kadm.OpCreate),
		kadm.NewACLs().Deny("User:alice").Topics("logs-private").Operations(kadm.OpRead),
		kadm.NewACLs().Allow(carolPrincipal).Topics("orders").Operations(kadm.OpWrite),
	} {
		if res, err := admin.CreateACLs(ctx, b); err != nil || res[0].Err != nil {
			t.Fatal(err, res)
		}
	}
	described, err := describeAllACLs(ctx, b.as("admin"))
	if err != nil || described.ErrorCode != 0 || len(described.Resources) != 5 {
		t.Fatalf("described %+v, %v", described, err)
	}

	alice := b.as("alice")
	bob := b.as("bob")
	produce := func(cl *kgo.Client, topic string) error {
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
	}
	if err := produce(alice, "orders"); err != nil {
		t.Errorf("alice writes orders: %v", err)
	}
	if err := produce(alice, "secret"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("alice writes secret: %v", err)
	}
	if err := produce(bob, "orders"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("bob writes orders: %v", err)
	}
	carolCl := b.client("SSL", kgo.DialTLSConfig(ca.clientTLS(carol)))
	if err := produce(carolCl, "orders"); err != nil {
		t.Errorf("carol (client certificate) writes orders: %v", err)
	}
	if err := produce(b.client("SSL", kgo.DialTLSConfig(ca.clientTLS())), "orders"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("an anonymous TLS client writes orders: %v", err)
	}

	// CREATE on the cluster lets alice create logs-app; READ on the
	// prefix lets her consume it in group readers, not in another group,
	// and not logs-private (denied).
	if _, err := kadm.NewClient(alice).CreateTopic(ctx, 1, 1, nil, "logs-app"); err != nil {
		t.Fatalf("alice creates logs-app: %v", err)
	}
	if _, err := kadm.NewClient(bob).CreateTopic(ctx, 1, 1, nil, "bobs"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("bob creates a topic: %v", err)
	}
	if err := produce(b.as("admin"), "logs-app"); err != nil {
		t.Fatal(err)
	}
	consume := func(user, group, topic string) error {
		cl := b.as(user, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for {
			fs := cl.PollFetches(cctx)
			if err := fs.Err0(); err != nil {
				return err
			}
			if fs.NumRecords() > 0 {
				return cl.CommitUncommittedOffsets(cctx)
			}
		}
	}
	if err := consume("alice", "readers", "logs-app"); err != nil {
		t.Errorf("alice consumes logs-app in readers: %v", err)
	}
	if err := consume("alice", "others", "logs-app"); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Errorf("alice consumes in group others: %v", err)
	}
	md, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, mt := range md.Topics {
		seen = append(seen, *mt.Topic)
	}
	slices.Sort(seen)
	if !slices.Equal(seen, []string{"logs-app", "orders"}) {
		t.Errorf("alice's metadata lists %v, want [logs-app orders]", seen)
	}
	if resp, err := describeAllACLs(ctx, alice); err != nil || resp.ErrorCode != kerr.ClusterAuthorizationFailed.Code {
		t.Errorf("alice describes ACLs: %v %v", err, resp)
	}
	// A transactional producer needs WRITE on its transactional id.
	tx := b.as("alice", kgo.TransactionalID("tx-1"))
	if err := tx.BeginTransaction(); err == nil {
		err = produce(tx, "orders")
		if !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
			t.Errorf("a transactional producer without ACLs: %v", err)
		}
	}

	// Deleting the ACL takes effect at once; the deletion survives a
	// restart of the authorizer's view (it is in the metadata log).
	dreq := kmsg.NewPtrDeleteACLsRequest()
	f := kmsg.NewDeleteACLsRequestFilter()
	f.ResourceType, f.ResourceName, f.ResourcePatternType = kmsg.ACLResourceTypeTopic, kmsg.StringPtr("orders"), kmsg.ACLResourcePatternTypeLiteral
	f.Principal, f.Operation, f.PermissionType = kmsg.StringPtr("User:alice"), kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	dreq.Filters = append(dreq.Filters, f)
	del, err := dreq.RequestWith(ctx, b.as("admin"))
	if err != nil || len(del.Results) != 1 || len(del.Results[0].MatchingACLs) != 1 {
		t.Fatalf("deleted %+v, %v", del, err)
	}
	if err := produce(b.as("alice"), "orders"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("alice writes orders after her ACL was deleted: %v", err)
	}
	if n := len(b.srv.meta.ACLs()); n != 5 {
		t.Errorf("%d ACLs left, want 5", n)
	}
}

// TestACLsWithoutAuthorizer: the default broker lets everyone do
// everything and answers the ACL APIs SECURITY_DISABLED, as Kafka does.
func TestACLsWithoutAuthorizer(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	adm := b.admin()
	if _, err := adm.CreateACLs(ctx, kadm.NewACLs().Allow("User:a").Topics("t").Operations(kadm.OpRead)); !errors.Is(err, kerr.SecurityDisabled) {
		res, _ := adm.CreateACLs(ctx, kadm.NewACLs().Allow("User:a").Topics("t").Operations(kadm.OpRead))
		if len(res) == 0 || !errors.Is(res[0].Err, kerr.SecurityDisabled) {
			t.Errorf("CreateAcls without an authorizer: %v %+v", err, res)
		}
	}
	if resp, err := describeAllACLs(ctx, b.client()); err != nil || resp.ErrorCode != kerr.SecurityDisabled.Code {
		t.Errorf("DescribeAcls without an authorizer: %v %v", err, resp)
	}
}

// describeAllACLs asks for every ACL.
func describeAllACLs(ctx context.Context, cl *kgo.Client) (*kmsg.DescribeACLsResponse, error) {
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType, req.ResourcePatternType, req.Operation, req.PermissionType = 1, 1, 1, 1
	return req.RequestWith(ctx, cl)
}
