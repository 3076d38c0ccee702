package server

// DeleteShareGroupOffsets, v0 (KIP-932): deletes the state of every
// partition of the listed topics for an empty share group; the next
// assignment starts them again from share.auto.offset.reset.

func init() {
	regKey(92, 0, 0, handleDeleteShareGroupOffsets) // shares_authz.go
}
