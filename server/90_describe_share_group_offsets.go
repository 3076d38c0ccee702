package server

// DescribeShareGroupOffsets, v0-v1 (KIP-932): each partition's start
// offset and, from v1, its lag (KIP-1226): records from the start offset
// to the high watermark whose delivery is not complete.

func init() {
	regKey(90, 0, 1, handleDescribeShareGroupOffsets) // shares_authz.go
}
