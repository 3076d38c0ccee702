package server

import "github.com/twmb/franz-go/pkg/kmsg"

// AlterShareGroupOffsets, v0 (KIP-932): sets the start offset of
// partitions of an empty share group (NON_EMPTY_GROUP otherwise),
// dropping their in-flight state; creates the group if it does not
// exist. Durable before the answer.

func init() {
	regKey(91, 0, 0, func(s *Server, r *request) kmsg.Response {
		return shareCall(s, r, true, s.shares.AlterShareGroupOffsets)
	})
}
