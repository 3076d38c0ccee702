package server

import "github.com/twmb/franz-go/pkg/kmsg"

// DescribeShareGroupOffsets, v0-v1 (KIP-932): each partition's start
// offset and, from v1, its lag (KIP-1226): records from the start offset
// to the high watermark whose delivery is not complete.

func init() {
	regKey(90, 0, 1, func(s *Server, r *request) kmsg.Response {
		return shareCall(s, r, false, s.shares.DescribeShareGroupOffsets)
	})
}
