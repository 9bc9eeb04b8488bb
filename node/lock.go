package node

import "errors"

// errLocked reports a lock file another process holds.
var errLocked = errors.New("locked by another process")
