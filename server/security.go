package server

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ferrymq/ferry/auth"
)

// authorizerClasses are the values of authorizer.class.name that turn on
// the ACL authorizer: Kafka's own authorizers, whose ACLs Ferry keeps the
// same way.
var authorizerClasses = []string{
	"org.apache.kafka.metadata.authorizer.StandardAuthorizer",
	"kafka.security.authorizer.AclAuthorizer",
	"kafka.security.auth.SimpleAclAuthorizer",
}

// startSecurity sets up the listeners and, when authorizer.class.name
// names one, the authorizer.
func (s *Server) startSecurity() error {
	var err error
	if s.listeners, err = s.newListeners(); err != nil {
		return err
	}
	if s.interBroker, err = s.interBrokerListener(); err != nil {
		return err
	}
	if s.raft != nil {
		// Only a cluster's brokers dial each other: a single broker
		// needs no inter-broker credentials.
		id := strconv.Itoa(int(s.cfg.NodeID))
		if s.replicaDialer, err = s.interBrokerDialer(s.interBroker, "ferry-replica-"+id); err != nil {
			return err
		}
		if s.peerDialer, err = s.interBrokerDialer(s.interBroker, shareForwardPrefix+id); err != nil {
			return err
		}
	}
	s.startQuotas()
	bs := s.settings()
	class, _ := bs.Get("authorizer.class.name")
	if class = strings.TrimSpace(class); class != "" {
		known := false
		for _, c := range authorizerClasses {
			known = known || c == class
		}
		if !known {
			return fmt.Errorf("authorizer.class.name %q: Ferry's ACL authorizer answers to %s", class, strings.Join(authorizerClasses, " or "))
		}
		supers, _ := bs.Get("super.users")
		s.authz = auth.NewAuthorizer(auth.AuthorizerConfig{
			SuperUsers:   strings.Split(supers, ";"),
			AllowIfNoACL: bs.bool("allow.everyone.if.no.acl.found"),
		})
		s.authz.Update(s.meta.ACLs())
	}
	return nil
}

// securityChanged follows changes of ACLs, SCRAM credentials and quotas in
// the metadata image.
func (s *Server) securityChanged() {
	if s.authz != nil {
		s.authz.Update(s.meta.ACLs())
	}
	s.quotasChanged()
}
