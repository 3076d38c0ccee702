package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/ferrymq/ferry/internal/peer"
)

// plainJAAS is a PlainLoginModule config: the broker's own username and
// password (its inter-broker credentials) and the users it accepts.
func plainJAAS(user, pass string, users map[string]string) string {
	var b strings.Builder
	b.WriteString("org.apache.kafka.common.security.plain.PlainLoginModule required")
	if user != "" {
		fmt.Fprintf(&b, " username=%q password=%q", user, pass)
	}
	for u, p := range users {
		fmt.Fprintf(&b, " user_%s=%q", u, p)
	}
	return b.String() + ";"
}

// String returns what was written.
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestInterBrokerDialer connects to a SASL_SSL listener the way a broker
// of a cluster connects to another, with the dialer its configs give:
// PLAIN and both SCRAMs authenticate (the connection then carries
// requests), wrong credentials and an untrusted certificate are refused
// with errors that say so, and configs that cannot work are refused at
// once.
func TestInterBrokerDialer(t *testing.T) {
	ca := newTestCA(t, "brokers")
	keystore, _ := ca.issue(t, "broker", true)
	users := map[string]string{"broker": "broker-secret"}
	props := map[string]string{
		"listeners":                                     "SASL_SSL://127.0.0.1:0",
		"ssl.keystore.location":                         ca.file(t, "broker.pem", keystore),
		"ssl.truststore.location":                       ca.file(t, "ca.pem", ca.pem),
		"security.inter.broker.protocol":                "SASL_SSL",
		"listener.name.sasl_ssl.plain.sasl.jaas.config": plainJAAS("broker", "broker-secret", users),
	}
	b := startListeners(t, props)
	addr := b.addrs["SASL_SSL"]
	ctx := context.Background()
	// SCRAM credentials for the same user, set through the listener.
	adm := b.admin("SASL_SSL", kgo.DialTLSConfig(ca.clientTLS()), kgo.SASL(plain.Auth{User: "broker", Pass: "broker-secret"}.AsMechanism()))
	if _, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{
		{User: "broker", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "broker-secret"},
		{User: "broker", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "broker-secret"},
	}); err != nil {
		t.Fatal(err)
	}
	waitCluster(t, "SCRAM credentials", 5*time.Second, func() bool {
		_, ok := b.srv.meta.ScramCredential("broker", "SCRAM-SHA-512")
		return ok
	})
	// dialer builds the dialer of a broker configured as b but for
	// over (on a copy of its configs: b runs on).
	dialer := func(t *testing.T, over map[string]string) (peer.Dialer, error) {
		t.Helper()
		cfg := b.srv.cfg
		cfg.Props = maps.Clone(cfg.Props)
		maps.Copy(cfg.Props, over)
		s := &Server{cfg: cfg, listeners: b.srv.listeners, meta: b.srv.meta, logger: b.srv.logger}
		l, err := s.interBrokerListener()
		if err != nil {
			return peer.Dialer{}, err
		}
		return s.interBrokerDialer(l, "ferry-broker-test")
	}
	request := func(d peer.Dialer) error {
		c, err := d.Dial(addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		req := kmsg.NewPtrMetadataRequest()
		req.Version = 12
		resp, err := c.Request(req, 5*time.Second)
		if err != nil {
			return err
		}
		if n := len(resp.(*kmsg.MetadataResponse).Brokers); n != 1 {
			return fmt.Errorf("metadata lists %d brokers", n)
		}
		return nil
	}
	scramJAAS := `org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="broker-secret";`
	for _, tc := range []struct {
		name string
		over map[string]string
	}{
		{"PLAIN by default", nil},
		{"SCRAM-SHA-256", map[string]string{"sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256", "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scramJAAS}},
		{"SCRAM-SHA-512", map[string]string{"sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512", "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scramJAAS}},
		{"no host name check", map[string]string{"ssl.endpoint.identification.algorithm": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := dialer(t, tc.over)
			if err != nil {
				t.Fatal(err)
			}
			if err := request(d); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			over map[string]string
		}{
			{"wrong password", map[string]string{"listener.name.sasl_ssl.plain.sasl.jaas.config": plainJAAS("broker", "wrong", users)}},
			{"unknown SCRAM user", map[string]string{"sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256",
				"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": strings.Replace(scramJAAS, `username="broker"`, `username="nobody"`, 1)}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				d, err := dialer(t, tc.over)
				if err != nil {
					t.Fatal(err)
				}
				if err := request(d); !errors.Is(err, peer.ErrAuthentication) {
					t.Fatalf("got %v, want an authentication error", err)
				}
			})
		}
		d, err := dialer(t, nil)
		if err != nil {
			t.Fatal(err)
		}
		// A mechanism the other broker does not serve (OAUTHBEARER
		// without a key set).
		od := d
		od.SASL = oauth.Auth{Token: "x"}.AsMechanism()
		if err := request(od); !errors.Is(err, peer.ErrAuthentication) || !strings.Contains(err.Error(), "not enabled") {
			t.Errorf("mechanism not served: got %v", err)
		}
		// A broker whose truststore does not hold the CA that signed
		// the other's certificate.
		other := newTestCA(t, "other")
		d.TLS = func(host string) *tls.Config {
			cfg := other.clientTLS()
			cfg.ServerName = host
			return cfg
		}
		var tlsErr *peer.TLSError
		if err := request(d); !errors.As(err, &tlsErr) {
			t.Fatalf("untrusted certificate: got %v, want a TLS error", err)
		}
		// Without TLS, a SASL_SSL listener is not spoken to.
		d.TLS = nil
		if err := request(d); err == nil {
			t.Fatal("plain TCP to a SASL_SSL listener succeeded")
		}
	})

	t.Run("bad configs", func(t *testing.T) {
		for _, tc := range []struct {
			over map[string]string
			want string
		}{
			{map[string]string{"sasl.mechanism.inter.broker.protocol": "GSSAPI"}, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
			{map[string]string{"sasl.mechanism.inter.broker.protocol": "OAUTHBEARER"}, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
			{map[string]string{"sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256"}, "scram-sha-256.sasl.jaas.config"},
			{map[string]string{"listener.name.sasl_ssl.plain.sasl.jaas.config": plainJAAS("", "", users)}, "username and password"},
			{map[string]string{"inter.broker.listener.name": "CLIENT", "security.inter.broker.protocol": ""}, "not in listeners"},
			{map[string]string{"listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512"}, "not in sasl.enabled.mechanisms"},
			{map[string]string{"inter.broker.listener.name": "SASL_SSL", "security.inter.broker.protocol": "SASL_SSL"}, "both set"},
		} {
			_, err := dialer(t, tc.over)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v: got %v, want an error with %q", tc.over, err, tc.want)
			}
		}
	})
}

// TestClusterSASLSSL runs three nodes whose only Kafka listener is
// SASL_SSL, with an authorizer: the brokers replicate to each other over
// it, authenticated as the super user "broker", while the client alice
// has only ACLs on her topic and group. acks=all produces (which wait for
// the followers' fetches) and consumption go through alice's SASL
// client, and go on when the leader stops; a transaction's markers reach
// the leaders through the peer pool. Brought back with a wrong
// inter-broker password, that node cannot fetch: its log says why, and
// it stays out of the ISR while the others take acks=all produces.
func TestClusterSASLSSL(t *testing.T) {
	ca := newTestCA(t, "brokers")
	keystore, _ := ca.issue(t, "broker", true)
	users := map[string]string{"broker": "broker-secret", "alice": "alice-secret"}
	c := startCluster(t, 3, map[string]string{
		"listeners":                                     "SASL_SSL://127.0.0.1:0",
		"ssl.keystore.location":                         ca.file(t, "broker.pem", keystore),
		"ssl.truststore.location":                       ca.file(t, "ca.pem", ca.pem),
		"ssl.client.auth":                               "requested",
		"security.inter.broker.protocol":                "SASL_SSL",
		"sasl.mechanism.inter.broker.protocol":          "PLAIN",
		"listener.name.sasl_ssl.plain.sasl.jaas.config": plainJAAS("broker", "broker-secret", users),
		"authorizer.class.name":                         "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
		"super.users":                                   "User:broker",
	})
	ctx := context.Background()
	as := func(user string, opts ...kgo.Opt) *kgo.Client {
		return c.client(append([]kgo.Opt{kgo.DialTLSConfig(ca.clientTLS()), kgo.SASL(plain.Auth{User: user, Pass: users[user]}.AsMechanism())}, opts...)...)
	}
	c.waitRegistered()
	for _, nd := range c.nodes {
		for _, b := range nd.srv.meta.Brokers() {
			if len(b.Endpoints) != 1 || b.Endpoints[0].Name != "SASL_SSL" || fmt.Sprintf("%s:%d", b.Host, b.Port) != c.nodes[b.ID].addr {
				t.Fatalf("node %d sees broker %+v", nd.id, b)
			}
		}
	}
	adm := kadm.NewClient(as("broker"))
	if resp, err := adm.CreateTopics(ctx, 1, 3, map[string]*string{"min.insync.replicas": ptr("2")}, "orders"); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	for _, b := range []*kadm.ACLBuilder{
		kadm.NewACLs().Allow("User:alice").Topics("orders").Operations(kadm.OpWrite, kadm.OpRead),
		kadm.NewACLs().Allow("User:alice").Groups("readers-").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpRead),
	} {
		if res, err := adm.CreateACLs(ctx, b); err != nil || res[0].Err != nil {
			t.Fatal(err, res)
		}
	}
	leaderOf := func() int32 {
		for _, nd := range c.nodes {
			if nd.srv != nil {
				if tp := nd.srv.meta.Topic("orders"); tp != nil {
					return tp.State(0).Leader
				}
			}
		}
		return -1
	}
	waitCluster(t, "a leader", 10*time.Second, func() bool { return leaderOf() >= 0 })
	alice := as("alice", kgo.DefaultProduceTopic("orders"), kgo.RequiredAcks(kgo.AllISRAcks()))
	produce := func(from, to int) {
		t.Helper()
		pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		for i := from; i < to; i++ {
			if err := alice.ProduceSync(pctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
		}
	}
	consume := func(want int) {
		t.Helper()
		// A new group each time, reading everything from the start.
		cl := as("alice", kgo.ConsumeTopics("orders"), kgo.ConsumerGroup(fmt.Sprint("readers-", want)), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		defer cl.Close()
		seen := map[string]bool{}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for len(seen) < want {
			fs := cl.PollFetches(cctx)
			if err := cctx.Err(); err != nil {
				t.Fatalf("consumed %d of %d records", len(seen), want)
			}
			fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch: %v", err) })
			fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
		}
		for i := range want {
			if !seen[fmt.Sprint(i)] {
				t.Fatalf("record %d not consumed", i)
			}
		}
	}
	produce(0, 100)
	consume(100)

	// A transaction over three partitions: its coordinator writes the
	// markers of those it does not lead through the peer pool, and
	// read_committed sees the records only once every marker is in.
	if resp, err := adm.CreateTopics(ctx, 3, 3, nil, "txn"); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	tx := as("broker", kgo.TransactionalID("ib"), kgo.DefaultProduceTopic("txn"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if err := tx.ProduceSync(tctx, &kgo.Record{Partition: int32(i % 3), Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.EndTransaction(tctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	rc := as("broker", kgo.ConsumeTopics("txn"), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for n := 0; n < 30; {
		fs := rc.PollFetches(tctx)
		if tctx.Err() != nil {
			t.Fatalf("read_committed: %d of 30 records", n)
		}
		n += fs.NumRecords()
	}

	// The leader stops; the others go on, each holding every record.
	old := leaderOf()
	c.stop(int(old))
	waitCluster(t, "a new leader", 20*time.Second, func() bool { l := leaderOf(); return l >= 0 && l != old })
	produce(100, 200)
	consume(200)

	// Back with a wrong password: it cannot fetch, says so, and is left
	// out of the ISR.
	nd := c.nodes[old]
	logs := &syncBuffer{}
	nd.log = logs
	nd.props = map[string]string{"listener.name.sasl_ssl.plain.sasl.jaas.config": plainJAAS("broker", "wrong-secret", users)}
	c.start(int(old))
	waitCluster(t, "the refused fetch logged", 30*time.Second, func() bool {
		s := logs.String()
		return strings.Contains(s, "cannot replicate from the partition leader") && strings.Contains(s, "SASL authentication failed")
	})
	produce(200, 300)
	c.waitRegistered() // registered and unfenced: its raft link is not the Kafka listener
	for _, n := range c.nodes {
		st := n.srv.meta.Topic("orders").State(0)
		if len(st.ISR) != 2 || slices.Contains(st.ISR, old) {
			t.Fatalf("node %d: ISR %v, want the two nodes without %d", n.id, st.ISR, old)
		}
	}
	consume(300)
}

// TestClusterShareForwardedAuthz checks share-group requests a broker
// forwards to the group's coordinator under an authorizer: the broker
// that takes the client's request checks the client's ACLs before
// forwarding, the coordinator checks only that the forwarding broker's
// principal has CLUSTER_ACTION (the inter-broker user "broker" has
// nothing else), and a client cannot pass for a forwarding broker by
// taking the peer pool's client ID.
func TestClusterShareForwardedAuthz(t *testing.T) {
	users := map[string]string{"admin": "admin-secret", "broker": "broker-secret", "alice": "alice-secret", "bob": "bob-secret"}
	props := shareClusterProps()
	maps.Copy(props, map[string]string{
		"listeners":                      "SASL_PLAINTEXT://127.0.0.1:0",
		"security.inter.broker.protocol": "SASL_PLAINTEXT",
		"listener.name.sasl_plaintext.plain.sasl.jaas.config": plainJAAS("broker", "broker-secret", users),
		"authorizer.class.name":                               "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
		"super.users":                                         "User:admin",
	})
	c := startCluster(t, 3, props)
	ctx := context.Background()
	c.waitRegistered()
	adm := kadm.NewClient(c.client(kgo.SASL(plain.Auth{User: "admin", Pass: "admin-secret"}.AsMechanism())))
	for _, b := range []*kadm.ACLBuilder{
		kadm.NewACLs().Allow("User:broker").Clusters().Operations(kadm.OpClusterAction),
		kadm.NewACLs().Allow("User:alice").Groups("queue").Operations(kadm.OpRead),
		kadm.NewACLs().Allow("User:alice").Topics("jobs").Operations(kadm.OpDescribe),
	} {
		if res, err := adm.CreateACLs(ctx, b); err != nil || res[0].Err != nil {
			t.Fatal(err, res)
		}
	}
	if resp, err := adm.CreateTopics(ctx, 1, 3, nil, "jobs"); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	waitCluster(t, "__share_group_state", 30*time.Second, func() bool { return c.nodes[0].srv.meta.Topic(shareStateTopic) != nil })
	coord := c.leaderOf(shareStateTopic, c.nodes[0].srv.shares.Partition("queue"), -1)
	via := c.liveOther(coord)
	dial := func(user, clientID string, nd *clusterNode) *peer.Conn {
		t.Helper()
		d := peer.Dialer{ClientID: clientID, SASL: plain.Auth{User: user, Pass: users[user]}.AsMechanism()}
		conn, err := d.Dial(nd.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(conn.Close)
		return conn
	}
	heartbeat := func(conn *peer.Conn) int16 {
		t.Helper()
		req := kmsg.NewPtrShareGroupHeartbeatRequest()
		req.Version = 1
		req.GroupID, req.MemberID, req.SubscribedTopicNames = "queue", fmt.Sprint("member-", time.Now().UnixNano()), []string{"jobs"}
		resp, err := conn.Request(req, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.ShareGroupHeartbeatResponse).ErrorCode
	}
	describe := func(conn *peer.Conn) kmsg.ShareGroupDescribeResponseGroup {
		t.Helper()
		req := kmsg.NewPtrShareGroupDescribeRequest()
		req.Version = 1
		req.GroupIDs = []string{"queue"}
		resp, err := conn.Request(req, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.ShareGroupDescribeResponse).Groups[0]
	}

	// alice, through a broker that forwards: joins. Forwarded requests
	// are not checked against the forwarding broker's group ACLs (it
	// has none).
	alice := dial("alice", "alice", via)
	waitCluster(t, "alice joins through a forwarding broker", 30*time.Second, func() bool {
		code := heartbeat(alice)
		if code == kerr.GroupAuthorizationFailed.Code {
			t.Fatal("the forwarded heartbeat was refused: authorized at the coordinator as the forwarding broker")
		}
		return code == 0
	})
	// bob is refused by the broker he talks to, which forwards nothing.
	bob := dial("bob", "bob", via)
	if code := heartbeat(bob); code != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("bob's heartbeat: %v", kerr.ErrorForCode(code))
	}
	if g := describe(bob); g.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("bob describes the group: %v, %d members", kerr.ErrorForCode(g.ErrorCode), len(g.Members))
	}
	// bob with the peer pool's client ID, at the coordinator itself.
	spoof := dial("bob", shareForwardPrefix+"9", c.nodes[coord])
	if code := heartbeat(spoof); code != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("bob as a forwarding broker: %v", kerr.ErrorForCode(code))
	}
	if g := describe(spoof); g.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("bob as a forwarding broker describes the group: %v", kerr.ErrorForCode(g.ErrorCode))
	}
	// The group holds alice's member only; she may describe it (READ
	// implies DESCRIBE) through the forwarding broker.
	if g := describe(alice); g.ErrorCode != 0 || len(g.Members) != 1 {
		t.Fatalf("alice describes the group: %v, %d members", kerr.ErrorForCode(g.ErrorCode), len(g.Members))
	}
}

// TestClusterControllerTLS runs the raft transport of three voters and a
// broker-only node (a learner, which dials the voters) over an SSL
// controller listener (mutual TLS): the metadata quorum forms, the
// learner joins, a topic made through one node reaches all and takes
// acks=all produces, and a restarted voter rejoins. A peer that does not
// do TLS, or whose certificate the truststore does not vouch for, is
// refused.
func TestClusterControllerTLS(t *testing.T) {
	ca := newTestCA(t, "nodes")
	keystore, _ := ca.issue(t, "node", true)
	c := startRolesCluster(t, []string{"", "", "", "broker"}, map[string]string{
		"controller.listener.names":                        "CONTROLLER",
		"listener.security.protocol.map":                   "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
		"listener.name.controller.ssl.keystore.location":   ca.file(t, "node.pem", keystore),
		"listener.name.controller.ssl.truststore.location": ca.file(t, "ca.pem", ca.pem),
	})
	ctx := context.Background()
	c.waitRegistered()
	// Node 0 again, its log kept.
	logs := &syncBuffer{}
	c.stop(0)
	c.nodes[0].log = logs
	c.start(0)
	c.waitRegistered()
	adm := kadm.NewClient(c.nodeClient(c.nodes[2]))
	if resp, err := adm.CreateTopics(ctx, 1, 3, map[string]*string{"min.insync.replicas": ptr("2")}, "orders"); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	for _, nd := range c.nodes {
		waitCluster(t, "the topic on every node", 10*time.Second, func() bool { return nd.srv.meta.Topic("orders") != nil })
	}
	pcl := c.client(kgo.DefaultProduceTopic("orders"))
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i := range 20 {
		if err := pcl.ProduceSync(pctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// refused dials node 0's controller listener, writes a hello with
	// the cluster id, and reads: the node closes the connection.
	hello := append([]byte("FRAFT\x01"), 0, 0, 0, 0, 0, 0, 0, 9)
	id := c.nodes[0].srv.meta.ClusterID()
	hello = append(hello, byte(len(id)>>8), byte(len(id)))
	hello = append(hello, id...)
	refused := func(what string, cfg *tls.Config) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", c.nodes[0].ctrlAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		if cfg != nil {
			tc := tls.Client(conn, cfg)
			if err := tc.Handshake(); err != nil {
				return // refused at the handshake (TLS 1.2)
			}
			conn = tc
		}
		conn.Write(hello)
		if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: the connection is still open (%v)", what, err)
		}
	}
	refused("plain TCP", nil)
	waitCluster(t, "the refusal logged", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "TLS handshake failed")
	})
	other := newTestCA(t, "other")
	_, stranger := other.issue(t, "stranger", false)
	refused("a certificate of another CA", ca.clientTLS(stranger))
	refused("no certificate", ca.clientTLS())
}

// TestClusterListenerPerClient runs three nodes with two listeners,
// CLIENT (served first) and REPLICATION, the inter-broker listener: every
// broker registers both, the brokers replicate on REPLICATION, and a
// client is told the brokers' addresses (Metadata, FindCoordinator) on
// the listener it is connected to.
func TestClusterListenerPerClient(t *testing.T) {
	c := startCluster(t, 3, map[string]string{
		"listeners":                      "CLIENT://127.0.0.1:0,REPLICATION://127.0.0.1:0",
		"listener.security.protocol.map": "CLIENT:PLAINTEXT,REPLICATION:PLAINTEXT",
		"inter.broker.listener.name":     "REPLICATION",
	})
	repl := map[int32]string{} // REPLICATION addresses, by node
	for _, nd := range c.nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		repl[nd.id] = ln.Addr().String()
		srv, done := nd.srv, make(chan error, 1)
		go func() { done <- srv.ServeListener("REPLICATION", ln) }()
		t.Cleanup(func() { srv.Close(); <-done })
	}
	waitCluster(t, "every broker registered with both listeners", 20*time.Second, func() bool {
		for _, nd := range c.nodes {
			bs := nd.srv.meta.Brokers()
			if len(bs) != 3 {
				return false
			}
			for _, b := range bs {
				if b.Fenced || len(b.Endpoints) != 2 || fmt.Sprintf("%s:%d", b.Host, b.Port) != repl[b.ID] {
					return false
				}
			}
		}
		return true
	})
	ctx := context.Background()
	adm := kadm.NewClient(c.client())
	if resp, err := adm.CreateTopics(ctx, 1, 3, map[string]*string{"min.insync.replicas": ptr("3")}, "orders"); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	// acks=all with min.insync.replicas=3: both followers fetched over
	// REPLICATION.
	pcl := c.client(kgo.DefaultProduceTopic("orders"))
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i := range 20 {
		if err := pcl.ProduceSync(pctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Each listener's clients are told that listener's addresses.
	for _, tc := range []struct {
		listener string
		seed     string
		want     func(id int32) string
	}{
		{"CLIENT", c.nodes[1].addr, func(id int32) string { return c.nodes[id].addr }},
		{"REPLICATION", repl[1], func(id int32) string { return repl[id] }},
	} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(tc.seed))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		req := kmsg.NewPtrMetadataRequest()
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Brokers) != 3 {
			t.Fatalf("%s: %d brokers", tc.listener, len(resp.Brokers))
		}
		for _, b := range resp.Brokers {
			if got := fmt.Sprintf("%s:%d", b.Host, b.Port); got != tc.want(b.NodeID) {
				t.Errorf("%s: broker %d at %s, want %s", tc.listener, b.NodeID, got, tc.want(b.NodeID))
			}
		}
		fc := kmsg.NewPtrFindCoordinatorRequest()
		fc.CoordinatorKeys = []string{"readers"} // v4+, as kgo sends it
		var co kmsg.FindCoordinatorResponseCoordinator
		waitCluster(t, "a group coordinator", 20*time.Second, func() bool {
			fr, err := fc.RequestWith(ctx, cl.Broker(1))
			if err != nil || len(fr.Coordinators) != 1 {
				return false
			}
			co = fr.Coordinators[0]
			return co.ErrorCode == 0
		})
		if got := fmt.Sprintf("%s:%d", co.Host, co.Port); got != tc.want(co.NodeID) {
			t.Errorf("%s: coordinator %d at %s, want %s", tc.listener, co.NodeID, got, tc.want(co.NodeID))
		}
	}
}

// TestClusterSCRAMInterBroker runs three SASL_SSL nodes whose brokers
// authenticate to each other with SCRAM-SHA-512, Kafka's way to bootstrap
// it: the broker user's credentials do not exist at first, so the
// followers cannot fetch (a record the leader took stays there alone); an
// admin creates them through any node (the metadata log needs no Kafka
// listener), and replication starts.
func TestClusterSCRAMInterBroker(t *testing.T) {
	ca := newTestCA(t, "brokers")
	keystore, _ := ca.issue(t, "broker", true)
	c := startCluster(t, 3, map[string]string{
		"listeners":                                             "SASL_SSL://127.0.0.1:0",
		"ssl.keystore.location":                                 ca.file(t, "broker.pem", keystore),
		"ssl.truststore.location":                               ca.file(t, "ca.pem", ca.pem),
		"security.inter.broker.protocol":                        "SASL_SSL",
		"sasl.mechanism.inter.broker.protocol":                  "SCRAM-SHA-512",
		"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": `org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="broker-secret";`,
		"listener.name.sasl_ssl.plain.sasl.jaas.config":         plainJAAS("", "", map[string]string{"admin": "admin-secret"}),
	})
	ctx := context.Background()
	c.waitRegistered()
	admin := func(opts ...kgo.Opt) *kgo.Client {
		return c.client(append([]kgo.Opt{kgo.DialTLSConfig(ca.clientTLS()), kgo.SASL(plain.Auth{User: "admin", Pass: "admin-secret"}.AsMechanism())}, opts...)...)
	}
	adm := kadm.NewClient(admin())
	if resp, err := adm.CreateTopics(ctx, 1, 3, nil, "orders"); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// acks=1: the leader alone has it while no broker can
	// authenticate to another.
	one := admin(kgo.DefaultProduceTopic("orders"), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	if err := one.ProduceSync(pctx, &kgo.Record{Value: []byte("early")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ends := func() (leader int32, followers []int64) {
		leader = c.nodes[0].srv.meta.Topic("orders").State(0).Leader
		for _, nd := range c.nodes {
			if nd.id != leader {
				p, err := nd.srv.meta.Topic("orders").Partition(0)
				if err != nil {
					t.Fatal(err)
				}
				followers = append(followers, p.LogEndOffset())
			}
		}
		return leader, followers
	}
	time.Sleep(2 * time.Second) // several fetch attempts
	if l, fs := ends(); fs[0] != 0 || fs[1] != 0 {
		t.Fatalf("followers of %d hold %v records without the broker user's credentials", l, fs)
	}
	if _, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "broker", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "broker-secret"}}); err != nil {
		t.Fatal(err)
	}
	waitCluster(t, "the followers replicate", 30*time.Second, func() bool {
		_, fs := ends()
		return fs[0] == 1 && fs[1] == 1
	})
	all := admin(kgo.DefaultProduceTopic("orders"))
	for i := range 20 {
		if err := all.ProduceSync(pctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatalf("record %d after the broker user was created: %v", i, err)
		}
	}
}
