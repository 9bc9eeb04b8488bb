package bus

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMQTTSubjectRoundTrip(t *testing.T) {
	tests := []struct {
		topic, subject string
	}{
		{"zigbee2mqtt/kitchen light/set", "hm.h1.mqtt.zigbee2mqtt.kitchen_20light.set"},
		{"odd/v1.2/temp", "hm.h1.mqtt.odd.v1_2E2.temp"},
		{"homeassistant/sensor/node_1/temp/config", "hm.h1.mqtt.homeassistant.sensor.node_5F1.temp.config"},
		{"/leading", "hm.h1.mqtt._.leading"},
		{"trailing/", "hm.h1.mqtt.trailing._"},
		{"a//b", "hm.h1.mqtt.a._.b"},
		{"$SYS/broker", "hm.h1.mqtt._24SYS.broker"},
		{"Wohnzimmer/Lüfter", "hm.h1.mqtt.Wohnzimmer.L_C3_BCfter"},
		{"x*y>z", "hm.h1.mqtt.x_2Ay_3Ez"},
		{"_", "hm.h1.mqtt._5F"},
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			got, err := MQTTSubject("h1", tt.topic)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.subject {
				t.Fatalf("MQTTSubject(%q) = %q, want %q", tt.topic, got, tt.subject)
			}
			back, err := MQTTTopic("h1", got)
			if err != nil || back != tt.topic {
				t.Fatalf("MQTTTopic(%q) = %q, %v; want %q", got, back, err, tt.topic)
			}
		})
	}
}

func TestMQTTSubjectRejects(t *testing.T) {
	for _, topic := range []string{"", "a/+/b", "a/#", strings.Repeat("x", MaxTopicLen+1), "a\x00b"} {
		if _, err := MQTTSubject("h1", topic); err == nil {
			t.Errorf("MQTTSubject(%q) accepted a topic it must refuse", topic)
		}
	}
	for _, subject := range []string{"hm.h2.mqtt.a", "hm.h1.mqtt.", "hm.h1.mqtt.a_zz", "hm.h1.mqtt.a.b c", "hm.h1.mqtt.a_2e"} {
		if _, err := MQTTTopic("h1", subject); err == nil {
			t.Errorf("MQTTTopic(%q) accepted a subject it must refuse", subject)
		}
	}
}

func TestMQTTFilterSubject(t *testing.T) {
	tests := []struct {
		filter, subject, parent string
	}{
		{"#", "hm.h1.mqtt.>", ""},
		{"zigbee2mqtt/#", "hm.h1.mqtt.zigbee2mqtt.>", "hm.h1.mqtt.zigbee2mqtt"},
		{"homeassistant/+/+/config", "hm.h1.mqtt.homeassistant.*.*.config", ""},
		{"a b/+", "hm.h1.mqtt.a_20b.*", ""},
	}
	for _, tt := range tests {
		s, p, err := MQTTFilterSubject("h1", tt.filter)
		if err != nil || s != tt.subject || p != tt.parent {
			t.Errorf("MQTTFilterSubject(%q) = %q, %q, %v; want %q, %q", tt.filter, s, p, err, tt.subject, tt.parent)
		}
	}
	for _, bad := range []string{"a/#/b", "a+/b", "a/b#", ""} {
		if _, _, err := MQTTFilterSubject("h1", bad); err == nil {
			t.Errorf("MQTTFilterSubject(%q) accepted a malformed filter", bad)
		}
	}
}

// FuzzMQTTSubject checks that every valid topic maps to a subject made only
// of safe tokens and maps back to itself exactly.
func FuzzMQTTSubject(f *testing.F) {
	for _, s := range []string{"a/b", "zigbee2mqtt/Living Room/set", "odd/v1.2", "/", "__/_5F", "ü/ß"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		subject, err := MQTTSubject("h1", topic)
		if err != nil {
			return
		}
		for _, tok := range strings.Split(subject, ".") {
			if tok == "" || strings.ContainsAny(tok, " *>\t\r\n") || !utf8.ValidString(tok) {
				t.Fatalf("topic %q gave unsafe subject %q", topic, subject)
			}
		}
		back, err := MQTTTopic("h1", subject)
		if err != nil || back != topic {
			t.Fatalf("round trip of %q: got %q, %v", topic, back, err)
		}
	})
}

// FuzzMQTTTopic checks that decoding arbitrary subjects never panics and
// that whatever decodes re-encodes to the same subject.
func FuzzMQTTTopic(f *testing.F) {
	f.Add("hm.h1.mqtt.a._20.b")
	f.Add("hm.h1.mqtt._")
	f.Fuzz(func(t *testing.T, subject string) {
		topic, err := MQTTTopic("h1", subject)
		if err != nil {
			return
		}
		again, err := MQTTSubject("h1", topic)
		if err == nil && again != subject {
			t.Fatalf("subject %q decodes to %q which encodes to %q", subject, topic, again)
		}
	})
}
