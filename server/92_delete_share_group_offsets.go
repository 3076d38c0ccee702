package server

// DeleteShareGroupOffsets, v0 (KIP-932): deletes the state of every
// partition of the listed topics for an empty share group; the next
// assignment starts them again from share.auto.offset.reset. In a
// cluster it is served by the group's coordinator, as
// AlterShareGroupOffsets is.

func init() {
	regKey(92, 0, 0, handleDeleteShareGroupOffsets) // shares_authz.go
}
