package broker

import (
	"strings"
	"testing"
)

func TestFilterSubset(t *testing.T) {
	tests := []struct {
		name               string
		allowed, requested string
		want               bool
	}{
		{"same literal", "a/b", "a/b", true},
		{"other literal", "a/b", "a/c", false},
		{"hash covers plus", "zigbee2mqtt/#", "zigbee2mqtt/+/set", true},
		{"hash covers literal", "zigbee2mqtt/#", "zigbee2mqtt/lamp/set", true},
		{"hash covers itself", "zigbee2mqtt/#", "zigbee2mqtt/#", true},
		{"hash covers parent", "zigbee2mqtt/#", "zigbee2mqtt", true},
		{"hash covers deeper hash", "zigbee2mqtt/#", "zigbee2mqtt/a/#", true},
		{"hash not root hash", "zigbee2mqtt/#", "#", false},
		{"hash not leading plus", "zigbee2mqtt/#", "+/foo", false},
		{"hash not sibling", "zigbee2mqtt/#", "zigbee2mqttx/a", false},
		{"plus covers literal", "a/+/c", "a/b/c", true},
		{"plus covers plus", "a/+/c", "a/+/c", true},
		{"plus not hash", "a/+", "a/#", false},
		{"plus not deeper", "a/+", "a/b/c", false},
		{"plus not shorter", "a/+", "a", false},
		{"literal not plus", "a/b", "a/+", false},
		{"literal not hash", "a/b", "a/#", false},
		{"plus hash not parent", "a/+/#", "a/#", false},
		{"plus hash covers", "a/+/#", "a/b/#", true},
		{"plus hash covers one level", "a/+/#", "a/b", true},
		{"root hash covers all", "#", "a/b/c", true},
		{"root hash not dollar", "#", "$foo/bar", false},
		{"root plus not dollar", "+/bar", "$foo/bar", false},
		{"literal dollar allowed", "$foo/#", "$foo/bar", true},
		{"sys never", "$SYS/#", "$SYS/broker/uptime", false},
		{"sys never lowercase", "#", "$sys/x", false},
		{"sys root never", "$SYS/#", "$SYS", false},
		{"spaces and dots", "living room/#", "living room/lamp 1.2/state", true},
		{"empty levels", "a//b", "a//b", true},
		{"empty level vs plus", "a/+/b", "a//b", true},
		{"leading slash", "/a", "/a", true},
		{"leading slash differs", "/a", "a", false},
		{"trailing slash", "a/", "a", false},
		{"share stripped", "zigbee2mqtt/#", "$share/g/zigbee2mqtt/+", true},
		{"share lowercase", "zigbee2mqtt/#", "$SHARE/g/zigbee2mqtt/x", true},
		{"share outside", "zigbee2mqtt/#", "$share/g/other", false},
		{"share without filter", "#", "$share/g", false},
		{"share with wildcard group", "#", "$share/+/a", false},
		{"share in grant", "$share/g/#", "$share/g/a", false},
		{"invalid hash mid", "a/#/b", "a/x/b", false},
		{"invalid hash glued", "a#", "a#", false},
		{"invalid plus glued", "a+/b", "a+/b", false},
		{"invalid requested", "#", "a/b#", false},
		{"empty requested", "#", "", false},
		{"empty allowed", "", "a", false},
		{"nul", "#", "a\x00b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := filterSubset(tt.allowed, tt.requested); got != tt.want {
				t.Errorf("filterSubset(%q, %q) = %v, want %v", tt.allowed, tt.requested, got, tt.want)
			}
		})
	}
}

// matchTopic is a plain reference implementation of MQTT topic matching,
// used to check filterSubset against the definition of a subset.
func matchTopic(filter, topic string) bool {
	f := strings.Split(filter, "/")
	tp := strings.Split(topic, "/")
	if strings.HasPrefix(topic, "$") && (f[0] == "+" || f[0] == "#") {
		return false
	}
	for i, lv := range f {
		if lv == "#" {
			return true
		}
		if i >= len(tp) {
			return false
		}
		if lv != "+" && lv != tp[i] {
			return false
		}
	}
	return len(f) == len(tp)
}

// instantiate turns a filter into a topic it matches, filling wildcards
// from fill: each '+' takes the next '/'-free piece of fill, '#' takes the
// rest (possibly several levels, possibly none).
func instantiate(filter, fill string) string {
	pieces := strings.Split(fill, "/")
	levels := strings.Split(filter, "/")
	out := make([]string, 0, len(levels))
	next := 0
	for i, lv := range levels {
		switch lv {
		case "+":
			out = append(out, pieces[next%len(pieces)])
			next++
		case "#":
			if fill == "" && i > 0 {
				return strings.Join(out, "/") // '#' also matches its parent
			}
			out = append(out, fill)
		default:
			out = append(out, lv)
		}
	}
	return strings.Join(out, "/")
}

func FuzzFilterSubset(f *testing.F) {
	seeds := [][3]string{
		{"zigbee2mqtt/#", "zigbee2mqtt/+/set", "lamp"},
		{"zigbee2mqtt/#", "#", "x/y"},
		{"a/+/c", "a/b/c", ""},
		{"#", "$share/g/a/#", "b/c"},
		{"+/+", "+/#", ""},
		{"a/+/#", "a/#", ""},
		{"living room/#", "living room/lamp 1.2", "z"},
		{"#", "$SYS/#", "broker"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, allowed, requested, fill string) {
		ok := filterSubset(allowed, requested)
		if !ok {
			return
		}
		if !validFilter(allowed) || !validFilter(requested) {
			t.Fatalf("accepted malformed filters %q ⊆ %q", allowed, requested)
		}
		inner := requested
		if r, shared := stripShare(requested); shared {
			inner = r
		}
		if isSys(inner) {
			t.Fatalf("accepted $SYS filter %q", requested)
		}
		if strings.ContainsAny(fill, "+#\x00") {
			return
		}
		topic := instantiate(inner, fill)
		if topic == "" || !matchTopic(inner, topic) {
			return // fill made a topic the filter does not match (e.g. a '$' first level)
		}
		if !matchTopic(allowed, topic) {
			t.Fatalf("filterSubset(%q, %q) = true, but topic %q matches the request and not the grant", allowed, requested, topic)
		}
		if !filterSubset(allowed, topic) && !isSys(topic) {
			t.Fatalf("filterSubset(%q, %q) = true but the topic %q it matches is refused", allowed, requested, topic)
		}
	})
}
