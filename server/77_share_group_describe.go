package server

// ShareGroupDescribe, v0-v1 (KIP-932): a share group's state, epochs,
// members with their subscriptions and assignments.

func init() {
	regKey(77, 0, 1, handleShareGroupDescribe) // shares_authz.go
}
