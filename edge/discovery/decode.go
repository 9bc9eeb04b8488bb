package discovery

import "github.com/homemesh/homemesh"

// Topics returns every topic (or topic filter) whose messages Decode wants,
// without duplicates.
func (c *Config) Topics() []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range c.subs {
		if !seen[s.filter] {
			seen[s.filter] = true
			out = append(out, s.filter)
		}
	}
	return out
}

// Update is how one message changes an entity's state. Value applies only
// when HasValue is set (a nil Value then means "unknown"); Attributes are
// merged into the current ones; Available is nil when the message says
// nothing about availability.
type Update struct {
	Value      any
	HasValue   bool
	Attributes map[string]any
	Available  *bool
}

// Decode interprets a message on one of Topics and returns how the entity's
// state changes. prev is the entity's current state, which some kinds need
// (a cover reporting "stopped", a light reporting only its brightness).
func (c *Config) Decode(topic string, payload []byte, prev homemesh.State) (Update, error) {
	return Update{}, homemesh.Invalid("topic", "not implemented")
}
