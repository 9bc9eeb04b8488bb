package discovery

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/edge/hatemplate"
)

// Config is one discovered entity: its derived device and entity, and what
// is needed to decode its state and encode its commands. It is safe for
// concurrent use.
type Config struct {
	Key Key
	// Topic and Payload are the discovery message as received, so that the
	// config can be stored and re-parsed later. For device-based discovery
	// Payload is the whole device message; re-parsing it yields this Key
	// again.
	Topic   string
	Payload []byte
	// Device is the device the entity belongs to. HomeID is left empty.
	Device homemesh.Device
	// Entity is the entity. HomeID is left empty.
	Entity homemesh.Entity

	kind   homemesh.EntityKind
	opts   options
	tpls   map[string]*hatemplate.Template
	subs   []subscription
	avail  []availability
	amode  string // latest, any or all
	qos    byte
	retain bool
	schema string // light: default, json or template

	mu     sync.Mutex
	astate []int8 // per availability item: -1 unknown, 0 not available, 1 available
}

type subscription struct {
	filter string
	role   string // the option naming the topic, or "availability"
	index  int    // for availability: the item
}

type availability struct {
	topic     string
	on, off   string
	tpl       *hatemplate.Template
	tplSource string
}

// options is an expanded discovery config.
type options map[string]any

func (o options) has(k string) bool {
	v, ok := o[k]
	if !ok || v == nil {
		return false
	}
	if s, isStr := v.(string); isStr && s == "" {
		return false
	}
	return true
}

// str returns option k as a string; numbers and booleans are formatted as
// firmware means them.
func (o options) str(k string) string {
	s, _ := asString(o[k])
	return s
}

// strDefault returns option k, or def when k is absent. An explicit null
// yields "" (Home Assistant uses null to disable a payload).
func (o options) strDefault(k, def string) string {
	v, ok := o[k]
	if !ok {
		return def
	}
	s, _ := asString(v)
	return s
}

func (o options) boolean(k string, def bool) bool {
	if b, ok := asBool(o[k]); ok {
		return b
	}
	return def
}

func (o options) number(k string, def float64) float64 {
	if f, ok := asFloat(o[k]); ok {
		return f
	}
	return def
}

func (o options) strs(k string, def []string) []string {
	v, ok := o[k]
	if !ok || v == nil {
		return def
	}
	return asStrings(v)
}

func asString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case float64:
		return formatNumber(x), true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

func formatNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// asBool accepts what firmware sends for booleans: true, "true", "ON",
// "yes", 1.
func asBool(v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case float64:
		return x != 0, true
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "on", "yes", "1", "enable", "enabled":
			return true, true
		case "false", "off", "no", "0", "disable", "disabled":
			return false, true
		}
	}
	return false, false
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, !math.IsNaN(x) && !math.IsInf(x, 0)
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// asStrings accepts a list or a single value.
func asStrings(v any) []string {
	switch x := v.(type) {
	case []any:
		out := make([]string, 0, len(x))
		for _, it := range x {
			if s, ok := asString(it); ok {
				out = append(out, s)
			}
		}
		return out
	default:
		if s, ok := asString(x); ok && s != "" {
			return []string{s}
		}
	}
	return nil
}

// applyBase replaces ~ as Home Assistant does: only in keys ending in
// "topic" and in availability[].topic, and only where ~ is the first or
// last character.
func applyBase(o options) {
	base, ok := o["~"].(string)
	delete(o, "~")
	if !ok {
		return
	}
	sub := func(v string) string {
		out := v
		if v[0] == '~' {
			out = base + v[1:]
		}
		if v[len(v)-1] == '~' {
			out = v[:len(v)-1] + base
		}
		return out
	}
	for k, v := range o {
		if s, isStr := v.(string); isStr && s != "" && strings.HasSuffix(k, "topic") {
			o[k] = sub(s)
		}
	}
	if list, ok := o["availability"].([]any); ok {
		for _, it := range list {
			if m, ok := it.(map[string]any); ok {
				if s, isStr := m["topic"].(string); isStr && s != "" {
					m["topic"] = sub(s)
				}
			}
		}
	}
}

func validFilter(t string) error {
	if t == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(t) > MaxTopicLen {
		return fmt.Errorf("is longer than %d bytes", MaxTopicLen)
	}
	if !utf8.ValidString(t) || strings.ContainsRune(t, 0) {
		return fmt.Errorf("is not valid UTF-8 without NUL")
	}
	levels := strings.Split(t, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("has a misplaced #")
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("has a misplaced +")
		}
	}
	return nil
}

func validPublishTopic(t string) error {
	if err := validFilter(t); err != nil {
		return err
	}
	if strings.ContainsAny(t, "+#") {
		return fmt.Errorf("must not contain wildcards")
	}
	return nil
}

// topicMatch reports whether topic matches the MQTT filter.
func topicMatch(filter, topic string) bool {
	if filter == topic {
		return true
	}
	if !strings.ContainsAny(filter, "+#") {
		return false
	}
	f := strings.Split(filter, "/")
	t := strings.Split(topic, "/")
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(t) {
			return false
		}
		if l != "+" && l != t[i] {
			return false
		}
	}
	return len(f) == len(t)
}

func newConfig(key Key, topic string, payload []byte, cfg map[string]any, node, object string, deviceBased bool) (*Config, *ComponentError) {
	fail := func(field, format string, args ...any) *ComponentError {
		return &ComponentError{Key: key, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	kind := homemesh.EntityKind(key.Component)
	if !kind.Valid() {
		return nil, fail("component", "%q is not a supported component", key.Component)
	}
	o := options(cfg)
	applyBase(o)
	c := &Config{Key: key, Topic: topic, Payload: append([]byte(nil), payload...), kind: kind, opts: o,
		tpls: map[string]*hatemplate.Template{}}

	// Sizes, topics and templates.
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := o[k]
		s, isStr := v.(string)
		if isStr && len(s) > maxStringValue {
			return nil, fail(k, "is longer than %d bytes", maxStringValue)
		}
		switch {
		case strings.HasSuffix(k, "_topic"):
			if v == nil {
				continue
			}
			if !isStr {
				return nil, fail(k, "must be a string")
			}
			if s == "" {
				continue
			}
			check := validFilter
			if strings.Contains(k, "command") || k == "set_position_topic" {
				check = validPublishTopic
			}
			if err := check(s); err != nil {
				return nil, fail(k, "%v", err)
			}
		case strings.HasSuffix(k, "template"):
			if v == nil {
				continue
			}
			if !isStr {
				return nil, fail(k, "must be a string")
			}
			if s == "" {
				continue
			}
			t, err := hatemplate.Parse(s)
			if err != nil {
				return nil, fail(k, "%s", homemesh.ErrorMessage(err))
			}
			c.tpls[k] = t
		}
	}
	if q, ok := asFloat(o["qos"]); ok {
		if q != 0 && q != 1 && q != 2 {
			return nil, fail("qos", "must be 0, 1 or 2")
		}
		c.qos = byte(q)
	}
	c.retain = o.boolean("retain", false)

	if err := c.setupAvailability(); err != nil {
		return nil, err
	}
	if err := c.setupDevice(node, object); err != nil {
		return nil, err
	}
	if err := c.setupEntity(deviceBased); err != nil {
		return nil, err
	}
	if err := c.setupKind(); err != nil {
		return nil, err
	}
	if o.has("json_attributes_topic") {
		c.subscribe("json_attributes_topic")
	}
	c.Entity.State.Available = c.InitialAvailable()
	return c, nil
}

func (c *Config) fail(field, format string, args ...any) *ComponentError {
	return &ComponentError{Key: c.Key, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// subscribe records that the topic in option role carries messages for
// Decode. Absent options are ignored.
func (c *Config) subscribe(role string) {
	if t := c.opts.str(role); t != "" {
		c.subs = append(c.subs, subscription{filter: t, role: role})
	}
}

func (c *Config) setupAvailability() *ComponentError {
	o := c.opts
	add := func(field string, m map[string]any, defTpl string) *ComponentError {
		mo := options(m)
		t := mo.str("topic")
		if err := validFilter(t); err != nil {
			return c.fail(field+".topic", "%v", err)
		}
		a := availability{topic: t, on: mo.strDefault("payload_available", "online"),
			off: mo.strDefault("payload_not_available", "offline")}
		src := mo.str("value_template")
		if src == "" {
			src = defTpl
		}
		if src != "" {
			tpl, err := hatemplate.Parse(src)
			if err != nil {
				return c.fail(field+".value_template", "%s", homemesh.ErrorMessage(err))
			}
			a.tpl, a.tplSource = tpl, src
		}
		c.subs = append(c.subs, subscription{filter: t, role: "availability", index: len(c.avail)})
		c.avail = append(c.avail, a)
		return nil
	}
	if t := o.str("availability_topic"); t != "" {
		if err := add("availability_topic", map[string]any{
			"topic":                 t,
			"payload_available":     o["payload_available"],
			"payload_not_available": o["payload_not_available"],
		}, o.str("availability_template")); err != nil {
			return err
		}
		// Keep the defaults when the options were absent.
		if _, ok := o["payload_available"]; !ok {
			c.avail[len(c.avail)-1].on = "online"
		}
		if _, ok := o["payload_not_available"]; !ok {
			c.avail[len(c.avail)-1].off = "offline"
		}
	}
	if v, ok := o["availability"]; ok && v != nil {
		list, isList := v.([]any)
		if !isList {
			return c.fail("availability", "must be a list")
		}
		if len(list) > 16 {
			return c.fail("availability", "has more than 16 items")
		}
		for i, it := range list {
			field := fmt.Sprintf("availability[%d]", i)
			switch x := it.(type) {
			case map[string]any:
				if err := add(field, x, ""); err != nil {
					return err
				}
			case string:
				if err := add(field, map[string]any{"topic": x}, ""); err != nil {
					return err
				}
			default:
				return c.fail(field, "must be an object with a topic")
			}
		}
	}
	c.amode = strings.ToLower(o.strDefault("availability_mode", "latest"))
	switch c.amode {
	case "latest", "any", "all":
	default:
		return c.fail("availability_mode", "must be latest, any or all")
	}
	c.astate = make([]int8, len(c.avail))
	for i := range c.astate {
		c.astate[i] = -1
	}
	return nil
}

// InitialAvailable reports whether the entity counts as available before any
// message arrives: false when availability is configured, as in Home
// Assistant, which waits for the first "online".
func (c *Config) InitialAvailable() bool { return len(c.avail) == 0 }

func (c *Config) setupDevice(node, object string) *ComponentError {
	d := homemesh.Device{Source: "mqtt"}
	dm, _ := c.opts["device"].(map[string]any)
	if v, ok := c.opts["device"]; ok && v != nil && dm == nil {
		return c.fail("device", "must be an object")
	}
	do := options(dm)
	d.Identifiers = do.strs("identifiers", nil)
	if v, ok := do["connections"]; ok && v != nil {
		list, isList := v.([]any)
		if !isList {
			return c.fail("device.connections", "must be a list of [type, value] pairs")
		}
		for i, it := range list {
			pair, isPair := it.([]any)
			if !isPair || len(pair) != 2 {
				return c.fail(fmt.Sprintf("device.connections[%d]", i), "must be a [type, value] pair")
			}
			t, _ := asString(pair[0])
			val, _ := asString(pair[1])
			d.Connections = append(d.Connections, [2]string{strings.ToLower(t), val})
		}
	}
	d.Name = do.str("name")
	d.Manufacturer = do.str("manufacturer")
	d.Model = do.str("model")
	d.ModelID = do.str("model_id")
	d.HWVersion = do.str("hw_version")
	d.SWVersion = do.str("sw_version")
	d.SerialNumber = do.str("serial_number")
	d.ConfigurationURL = do.str("configuration_url")
	d.SuggestedArea = do.str("suggested_area")
	d.ViaDevice = do.str("via_device")
	switch {
	case len(d.Identifiers) > 0:
		d.ID = stableID(d.Identifiers[0])
	case len(d.Connections) > 0:
		d.ID = stableID(d.Connections[0][0] + "_" + d.Connections[0][1])
	case node != "":
		d.ID = stableID(node)
	default:
		d.ID = stableID(strings.ReplaceAll(object, " ", "_"))
	}
	c.Device = d
	return nil
}

func (c *Config) setupEntity(deviceBased bool) *ComponentError {
	o := c.opts
	e := homemesh.Entity{Kind: c.kind, DeviceID: c.Device.ID, Source: "mqtt"}
	e.UniqueID = o.str("unique_id")
	if e.UniqueID == "" && deviceBased {
		return c.fail("unique_id", "is required for device-based discovery")
	}
	if e.UniqueID != "" {
		e.ID = stableID(e.UniqueID)
	} else {
		e.ID = stableID(c.Key.Component + "_" + strings.ReplaceAll(c.Key.ID, " ", "_"))
	}
	e.DeviceClass = o.str("device_class")
	e.Unit = o.str("unit_of_measurement")
	e.StateClass = o.str("state_class")
	e.EntityCategory = o.str("entity_category")
	e.Icon = o.str("icon")
	name, set := o["name"]
	switch {
	case set && name == nil:
		e.Name = c.Device.Name
	case set:
		e.Name, _ = asString(name)
	case e.DeviceClass != "":
		e.Name = humanize(e.DeviceClass)
	default:
		e.Name = c.Device.Name
	}
	if e.Name == "" {
		e.Name = humanize(strings.ReplaceAll(c.Key.ID, " ", "_"))
	}
	if c.Device.Name == "" {
		c.Device.Name = e.Name
	}
	c.Entity = e
	return nil
}

func humanize(s string) string {
	s = strings.ReplaceAll(s, "_", " ")
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
