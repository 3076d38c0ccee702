package coordstate

import (
	"github.com/ferrymq/ferry/group"
	"github.com/ferrymq/ferry/share"
	"github.com/ferrymq/ferry/txn"
)

// One store serves every coordinator, each through its own Store
// interface and record type.
var (
	_ group.Store        = (*Store[group.Record])(nil)
	_ txn.Store          = (*Store[txn.Record])(nil)
	_ txn.NoSyncAppender = (*Store[txn.Record])(nil)
	_ share.Store        = (*Store[share.Record])(nil)
)
