package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/homemesh/homemesh"
)

// bodyTypes makes a fresh value of every request body type the gateway
// decodes, so that tests and fuzzing cover all of them.
var bodyTypes = []func() request{
	func() request { return &onboardRequest{} },
	func() request { return &loginRequest{} },
	func() request { return &refreshRequest{} },
	func() request { return &logoutRequest{} },
	func() request { return &tokenRequest{} },
	func() request { return &totpConfirmRequest{} },
	func() request { return &totpDisableRequest{} },
	func() request { return &commandRequest{} },
	func() request { return &credentialRequest{} },
	func() request { return &wsMessage{} },
	func() request { return &pairingRequest{} },
	func() request { return &pairingClaimRequest{} },
	func() request { return &emptyRequest{} },
	func() request { return &passkeyRegisterFinishRequest{} },
	func() request { return &passkeyLoginBeginRequest{} },
	func() request { return &passkeyLoginFinishRequest{} },
	func() request { return &createUserRequest{} },
	func() request { return &patchUserRequest{} },
	func() request { return &passwordRequest{} },
	func() request { return &roomRequest{} },
	func() request { return &devicePatchRequest{} },
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantField  string
		wantStatus int
	}{
		{"nested wrong type", `{"command":"turn_on","params":{"a":1},"x":1}`, "x", 400},
		{"params string", `{"command":"turn_on","params":"x"}`, "params", 400},
		{"null params", `{"command":"turn_on","params":null}`, "", 0},
		{"too many params", `{"command":"turn_on","params":{` + manyParams(maxParams+1) + `}}`, "params", 400},
		{"leading whitespace and trailing newline", " \n{\"command\":\"toggle\"}\n", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decodeBytes([]byte(tt.body), &commandRequest{})
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if got := homemesh.ErrorField(err); got != tt.wantField {
				t.Errorf("field = %q, want %q (err %v)", got, tt.wantField, err)
			}
			if got := statusFor(err); got != tt.wantStatus {
				t.Errorf("status = %d, want %d", got, tt.wantStatus)
			}
		})
	}
}

func manyParams(n int) string {
	s := ""
	for i := range n {
		if i > 0 {
			s += ","
		}
		s += `"p` + string(rune('a'+i/26)) + string(rune('a'+i%26)) + `":1`
	}
	return s
}

func TestStatusTable(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{homemesh.Invalid("f", "x"), http.StatusBadRequest},
		{homemesh.Errorf(homemesh.KindUnauthenticated, "x"), http.StatusUnauthorized},
		{homemesh.Errorf(homemesh.KindPermission, "x"), http.StatusForbidden},
		{homemesh.Errorf(homemesh.KindNotFound, "x"), http.StatusNotFound},
		{homemesh.Errorf(homemesh.KindConflict, "x"), http.StatusConflict},
		{homemesh.Errorf(homemesh.KindUnavailable, "x"), http.StatusServiceUnavailable},
		{homemesh.Errorf(homemesh.KindInternal, "x"), http.StatusInternalServerError},
		{homemesh.Errorf("mystery", "x"), http.StatusInternalServerError},
		{errors.New("plain"), http.StatusInternalServerError},
		{tooLarge(), http.StatusRequestEntityTooLarge},
		{&homemesh.Error{Kind: homemesh.KindInvalid, Err: errMethodNotAllowed}, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			if got := statusFor(tt.err); got != tt.want {
				t.Errorf("statusFor = %d, want %d", got, tt.want)
			}
		})
	}
}

// FuzzDecodeBodies feeds arbitrary bytes to the decoder of every request
// body type. Decoding must never panic; every failure must be a 400 or 413
// naming a field; and whatever is accepted must survive a round trip.
func FuzzDecodeBodies(f *testing.F) {
	for _, s := range []string{
		`{"code":"abc","username":"alice","password":"correct horse"}`,
		`{"username":"alice","password":"pw","totp":"123456"}`,
		`{"refresh_token":"x"}`,
		`{"command":"turn_on","params":{"brightness":128,"rgb_color":[255,0,0]}}`,
		`{"name":"z2m","allow":["zigbee2mqtt/#"]}`,
		`{"type":"auth","access_token":"t"}`,
		`{"name":"hall sensor"}`, `{"name":"bridge","allow":["zigbee2mqtt/#"]}`, `{"name":"x","allow":[]}`,
		`{"code":"ABCDE-FGHIJ-KLMNO-PQRST"}`, `{"code":"abcde fghij","csr":"-----BEGIN CERTIFICATE REQUEST-----\nMA==\n-----END CERTIFICATE REQUEST-----\n"}`,
		`{"session_id":"s","name":"laptop","credential":{"id":"AA","response":{"clientDataJSON":"e30"}}}`,
		`{"session_id":"s","credential":{ "id" : "<&>" }}`, `{"username":"alice"}`, `{}`, `{"credential":[]}`,
		`{"command":"turn_on","params":{"a":{"b":[1,{"c":null}]}}} `,
		`{"username":"bob","password":"pw","role":"guest","scope":{"rooms":["living_room"],"kinds":["light"]}}`,
		`{"username":"bob","password":"pw","role":"guest","scopes":{"entities":["a","a"]}}`,
		`{"role":"member","scope":{},"password":"a long password"}`,
		`{"current_password":"a","new_password":"b"}`,
		`{"name":"Living room"}`, `{"room_id":"","name":"Sofa lamp"}`, `{"room_id":"Bad Room"}`,
		`{"a":1}`, `[]`, `null`, `{"command":1e999}`, `{"allow":[1]}`, "{\"name\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, mk := range bodyTypes {
			v := mk()
			err := decodeBytes(data, v)
			if err != nil {
				if s := statusFor(err); s != http.StatusBadRequest && s != http.StatusRequestEntityTooLarge {
					t.Fatalf("%T: status %d for %v", v, s, err)
				}
				if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) == "" {
					t.Fatalf("%T: error without kind invalid and a field: %#v", v, err)
				}
				continue
			}
			again, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%T: accepted but cannot re-encode: %v", v, err)
			}
			w := mk()
			if err := decodeBytes(again, w); err != nil {
				t.Fatalf("%T: re-encoded %s is refused: %v", v, again, err)
			}
			if diff := cmp.Diff(v, w, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("%T: round trip changed the value (-first +second):\n%s", v, diff)
			}
		}
	})
}
