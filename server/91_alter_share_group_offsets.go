package server

// AlterShareGroupOffsets, v0 (KIP-932): sets the start offset of
// partitions of an empty share group (NON_EMPTY_GROUP otherwise),
// dropping their in-flight state; creates the group if it does not
// exist. Durable before the answer. In a cluster it is served by the
// group's coordinator (forwarded there, shareMembership), which writes
// the new state through the state partitions' leaders; the data
// partitions' leaders read it at the next share session started there.

func init() {
	regKey(91, 0, 0, handleAlterShareGroupOffsets) // shares_authz.go
}
