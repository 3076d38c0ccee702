package server

// ShareGroupHeartbeat, v0-v1 (KIP-932): a share group member joins
// (member epoch 0), heartbeats, and leaves (-1); the answer carries its
// assignment. Package share owns the membership; changes are durable in
// __share_group_state before the answer.
//
// Behavior:
//   - A member that leaves or whose session times out has its records
//     released at once and its share sessions ended, on this broker and,
//     in a cluster, on the others (shareMemberGone).
//   - In a cluster the partitions a member is assigned are initialized
//     before the answer, if they have no state yet.
//   - A group ID used by a consumer group answers GROUP_ID_NOT_FOUND.

func init() {
	regKey(76, 0, 1, handleShareGroupHeartbeat) // shares_authz.go
}
