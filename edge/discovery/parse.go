package discovery

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/homemesh/homemesh"
)

// DefaultPrefix is Home Assistant's default discovery prefix.
const DefaultPrefix = "homeassistant"

// Limits on what a discovery message may cost.
const (
	MaxPayloadLen  = 512 << 10 // bytes of one discovery message
	MaxComponents  = 512       // components in one device-based message
	MaxTopicLen    = 1024      // bytes of any topic in a config
	maxStringValue = 16 << 10  // bytes of any other string option
)

// DeviceComponent is the component of a Key that stands for every component
// of a device-based discovery topic (see Key.Covers).
const DeviceComponent = "device"

// Key identifies one discovered entity, as Home Assistant's discovery hash
// does.
type Key struct {
	Component string `json:"component"`
	// ID is "<node_id> <object_id>" or "<object_id>" for per-entity
	// topics, and "<discovery id> <component id>" for device-based ones.
	ID string `json:"id"`
}

// String returns "component/id".
func (k Key) String() string { return k.Component + "/" + k.ID }

// Covers reports whether removing k removes other: it is k itself, or k
// stands for a whole device-based topic (Component DeviceComponent) and
// other is one of its components.
func (k Key) Covers(other Key) bool {
	if k == other {
		return true
	}
	return k.Component == DeviceComponent && strings.HasPrefix(other.ID, k.ID+" ")
}

// Announcement is what one discovery message announces.
type Announcement struct {
	Configs []*Config        // added or updated entities
	Removed []Key            // removed entities
	Errors  []ComponentError // components rejected; the others still apply
	// Migrate is set when the removal comes from migrate_discovery: the
	// entities move to another discovery topic, so their registry entries
	// should be kept.
	Migrate bool
}

// ComponentError says why one component of a message was rejected.
type ComponentError struct {
	Key    Key
	Field  string // the offending option, e.g. "state_topic"
	Reason string
}

func (e ComponentError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("discovery %s: %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("discovery %s: %s: %s", e.Key, e.Field, e.Reason)
}

var topicRE = regexp.MustCompile(`^([a-zA-Z0-9_]+)/(?:([a-zA-Z0-9_-]+)/)?([a-zA-Z0-9_-]+)/config$`)

// splitTopic returns the component, node id and object id of a discovery
// topic under prefix.
func splitTopic(prefix, topic string) (component, node, object string, ok bool) {
	if prefix == "" || !strings.HasPrefix(topic, prefix+"/") {
		return "", "", "", false
	}
	m := topicRE.FindStringSubmatch(topic[len(prefix)+1:])
	if m == nil {
		return "", "", "", false
	}
	return m[1], m[2], m[3], true
}

// IsDiscoveryTopic reports whether topic is a discovery config topic under
// prefix. Prefixes may contain '/'.
func IsDiscoveryTopic(prefix, topic string) bool {
	_, _, _, ok := splitTopic(prefix, topic)
	return ok
}

func invalid(field, format string, args ...any) error {
	e := homemesh.Invalid(field, format, args...)
	e.Op = "discovery.parse"
	return e
}

// Parse parses one message on a discovery topic. A top-level error (always
// a KindInvalid homemesh.Error) means the whole message is rejected: the
// topic is not a discovery topic, the payload is not a JSON object, too
// large, or a device message lacks its components. Problems with single
// components go to Announcement.Errors while the others still apply.
func Parse(prefix, topic string, payload []byte) (*Announcement, error) {
	component, node, object, ok := splitTopic(prefix, topic)
	if !ok {
		return nil, invalid("topic", "%q is not a discovery topic under %q", topic, prefix)
	}
	discoveryID := object
	if node != "" {
		discoveryID = node + " " + object
	}
	a := &Announcement{}
	if len(bytes.TrimSpace(payload)) == 0 {
		a.Removed = []Key{{Component: component, ID: discoveryID}}
		return a, nil
	}
	if len(payload) > MaxPayloadLen {
		return nil, invalid("payload", "is %d bytes, more than the limit of %d", len(payload), MaxPayloadLen)
	}
	raw, err := decodeObject(payload)
	if err != nil {
		return nil, invalid("payload", "%v", err)
	}
	root := expandConfig(raw)
	if migrate, _ := asBool(root["migrate_discovery"]); migrate {
		a.Migrate = true
		a.Removed = []Key{{Component: component, ID: discoveryID}}
		return a, nil
	}
	if component == DeviceComponent {
		return parseDevice(a, topic, payload, root, discoveryID, node, object)
	}
	key := Key{Component: component, ID: discoveryID}
	c, cerr := newConfig(key, topic, payload, root, node, object, false)
	if cerr != nil {
		a.Errors = append(a.Errors, *cerr)
		return a, nil
	}
	a.Configs = append(a.Configs, c)
	return a, nil
}

// sharedOptions are the root options of a device-based message that every
// component inherits unless it sets them itself.
var sharedOptions = []string{
	"availability", "availability_topic", "availability_mode", "availability_template",
	"payload_available", "payload_not_available", "state_topic", "command_topic",
	"qos", "retain", "encoding", "~",
}

func parseDevice(a *Announcement, topic string, payload []byte, root map[string]any, discoveryID, node, object string) (*Announcement, error) {
	var cmps any
	field := "components"
	for _, k := range []string{"components", "cmp"} {
		if v, ok := root[k]; ok {
			cmps, field = v, k
			break
		}
	}
	m, ok := cmps.(map[string]any)
	if !ok {
		return nil, invalid(field, "a device message needs a components (cmps) object")
	}
	if len(m) > MaxComponents {
		return nil, invalid(field, "has %d components, more than the limit of %d", len(m), MaxComponents)
	}
	if _, ok := root["device"].(map[string]any); !ok {
		return nil, invalid("device", "a device message needs a device object")
	}
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		key := Key{ID: discoveryID + " " + id}
		cm, ok := m[id].(map[string]any)
		if !ok {
			a.Errors = append(a.Errors, ComponentError{Key: key, Field: field + "." + id, Reason: "must be an object"})
			continue
		}
		cfg := expandConfig(cm)
		platform, _ := cfg["platform"].(string)
		key.Component = platform
		if platform == "" {
			a.Errors = append(a.Errors, ComponentError{Key: key, Field: "platform", Reason: "is required"})
			continue
		}
		if len(cfg) == 1 {
			// {"p": "sensor"} alone removes that component.
			a.Removed = append(a.Removed, key)
			continue
		}
		for _, k := range sharedOptions {
			if _, set := cfg[k]; !set {
				if v, ok := root[k]; ok {
					cfg[k] = v
				}
			}
		}
		cfg["device"] = root["device"]
		if o, ok := root["origin"]; ok {
			cfg["origin"] = o
		}
		c, cerr := newConfig(key, topic, payload, cfg, node, object+" "+id, true)
		if cerr != nil {
			a.Errors = append(a.Errors, *cerr)
			continue
		}
		a.Configs = append(a.Configs, c)
	}
	return a, nil
}

func decodeObject(payload []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(payload))
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data after the JSON object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("must be a JSON object")
	}
	return m, nil
}

// stableID turns free text into a valid homemesh ID. Text that is already
// valid is kept; anything else is slugged and, when slugging changed it,
// suffixed with a short hash so that distinct inputs stay distinct.
func stableID(s string) string {
	if homemesh.ValidID(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	slug := homemesh.Slug(s)
	if len(slug) > homemesh.MaxIDLen-9 {
		slug = slug[:homemesh.MaxIDLen-9]
	}
	return slug + "-" + hex.EncodeToString(sum[:4])
}
