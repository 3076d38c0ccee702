package server

import "github.com/twmb/franz-go/pkg/kmsg"

// ShareGroupDescribe, v0-v1 (KIP-932): a share group's state, epochs,
// members with their subscriptions and assignments.

func init() {
	regKey(77, 0, 1, func(s *Server, r *request) kmsg.Response { return shareCall(s, r, false, s.shares.ShareGroupDescribe) })
}
