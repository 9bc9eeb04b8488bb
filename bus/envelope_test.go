package bus

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/homemesh/homemesh"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	env, err := NewEnvelope("h1", "registry", "state_changed", map[string]any{"value": "on"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEnvelope(data)
	if err != nil || got.ID != env.ID || got.Type != "state_changed" || string(got.Payload) != `{"value":"on"}` {
		t.Fatalf("DecodeEnvelope = %+v, %v", got, err)
	}
	if _, err := DecodeEnvelope([]byte(`{"v":99}`)); homemesh.ErrorField(err) != "envelope.v" {
		t.Fatalf("unknown version: %v", err)
	}
	if _, err := DecodeEnvelope([]byte(`nope`)); homemesh.ErrorKind(err) != homemesh.KindInvalid {
		t.Fatalf("garbage: %v", err)
	}
}

func TestEncodeEnvelopeMatchesNewEnvelope(t *testing.T) {
	data, err := EncodeEnvelope("h1", "registry", "state_changed", map[string]any{"value": "on", "odd": "quote\" <tag>"})
	if err != nil {
		t.Fatal(err)
	}
	env, err := DecodeEnvelope(data)
	if err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	if env.Home != "h1" || env.Source != "registry" || env.Type != "state_changed" || env.ID == "" || env.Time.IsZero() {
		t.Fatalf("decoded %+v", env)
	}
	var payload map[string]string
	if err := json.Unmarshal(env.Payload, &payload); err != nil || payload["odd"] != "quote\" <tag>" {
		t.Fatalf("payload %s: %v", env.Payload, err)
	}
	if _, err := EncodeEnvelope("h1", "x", "t", func() {}); err == nil {
		t.Fatal("an unmarshalable payload was accepted")
	}
}

func TestErrorsCrossTheWireWithoutTheirCause(t *testing.T) {
	secret := errors.New("dial tcp 10.0.0.5:5432: password authentication failed for user admin")
	for _, tt := range []struct {
		name  string
		err   error
		kind  homemesh.Kind
		msg   string
		field string
	}{
		{"invalid", homemesh.Invalid("params.brightness", "must be 0 to 255"), homemesh.KindInvalid, "must be 0 to 255", "params.brightness"},
		{"internal hides cause", secret, homemesh.KindInternal, "internal error", ""},
		{"wrapped kind", &homemesh.Error{Kind: homemesh.KindUnavailable, Message: "storage unavailable", Err: secret}, homemesh.KindUnavailable, "storage unavailable", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kind, body := EncodeError(tt.err)
			got := DecodeError("op", body)
			if kind != tt.kind || homemesh.ErrorKind(got) != tt.kind || homemesh.ErrorMessage(got) != tt.msg || homemesh.ErrorField(got) != tt.field {
				t.Fatalf("got kind %s, %v (field %q)", kind, got, homemesh.ErrorField(got))
			}
			if string(body) != "" && strings.Contains(string(body), "10.0.0.5") {
				t.Fatalf("cause leaked onto the wire: %s", body)
			}
		})
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"x","home":"h","type":"t","payload":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = DecodeEnvelope(data)
		_ = DecodeError("op", data)
	})
}
