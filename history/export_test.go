package history

import "time"

// SetPullHeartbeat shortens how soon a lost consumer is noticed, for
// tests, and returns a function that restores it.
func SetPullHeartbeat(d time.Duration) (restore func()) {
	old := pullHeartbeat
	pullHeartbeat = d
	return func() { pullHeartbeat = old }
}

// SetAckWait shortens how long JetStream waits for an ack, for tests, and
// returns a function that restores it.
func SetAckWait(d time.Duration) (restore func()) {
	old := ackWait
	ackWait = d
	return func() { ackWait = old }
}
