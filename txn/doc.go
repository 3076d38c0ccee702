// Package txn is Ferry's transaction coordinator.
package txn
