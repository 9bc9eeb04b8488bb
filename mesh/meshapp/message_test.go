package meshapp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func ptr[T any](v T) *T { return &v }

var at = time.Date(2026, 11, 29, 20, 15, 0, 123000000, time.UTC)

// examples holds one message of each type, as an agent or hub builds it,
// with values of the types Decode produces so that they compare equal.
var examples = map[string]Message{
	"announce": &Announce{
		Device: DeviceInfo{Name: "Hall sensor", Manufacturer: "homemesh", Model: "agent", SWVersion: "1.2.0"},
		Entities: []Entity{
			{
				UniqueID: "temperature", Kind: homemesh.KindSensor, Name: "Temperature",
				DeviceClass: "temperature", Unit: "°C", StateClass: "measurement",
				State: &Reading{Value: 21.5, Available: true, Time: at},
			},
			{
				UniqueID: "light", Kind: homemesh.KindLight, Name: "Ceiling",
				Caps:  homemesh.Capabilities{ColorModes: []string{"brightness"}, Commands: []string{"turn_on", "turn_off", "toggle"}},
				State: &Reading{Value: "on", Attributes: map[string]any{"brightness": 128.0}, Available: true},
			},
			{
				UniqueID: "thermostat", Kind: homemesh.KindClimate,
				Caps: homemesh.Capabilities{HVACModes: []string{"off", "heat"}, MinTemp: ptr(7.0), MaxTemp: ptr(30.0), TempStep: 0.5},
			},
		},
	},
	"state":   &State{UniqueID: "door", Reading: Reading{Value: "off", Attributes: map[string]any{"battery": 87.0}, Available: true, Time: at}},
	"command": &Command{ID: 18446744073709551615, UniqueID: "light", Name: "turn_on", Params: map[string]any{"brightness": 128.0, "rgb_color": []any{255.0, 0.0, 10.0}}},
	"result":  &Result{ID: 7, Error: "brightness: must be 0 to 255"},
	"resync":  &Resync{},
	"revoked": &Revoked{Nodes: []route.NodeID{{0x3f, 0x2a, 0x91, 0x0c, 0x55, 0x17, 0xe8, 0x4d}, {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0xff}}},
	"links": &Links{Neighbours: []Neighbour{
		{ID: route.NodeID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}, Role: link.RoleHub, Cost: 256, RxCost: 256, TxCost: 256, Quality: 1},
		{ID: route.NodeID{0x3f, 0x2a, 0x91, 0x0c, 0x55, 0x17, 0xe8, 0x4d}, Role: link.RoleRouter, Cost: 341, RxCost: 301, TxCost: 290, Quality: 256.0 / 341},
		{ID: route.NodeID{0xa0, 0, 0, 0, 0, 0, 0, 0x01}, Role: link.RoleLeaf, Cost: 65535, RxCost: 65535, TxCost: 256},
	}},
}

func TestGoldenRoundTrip(t *testing.T) {
	for name, m := range examples {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", name+".json")
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, b, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			if *update {
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), pretty.String()); diff != "" {
				t.Errorf("encoding differs from %s (-want +got), run with -update if intended:\n%s", path, diff)
			}
			if !bytes.HasPrefix(b, []byte(`{"type":"`+string(m.MessageType())+`"`)) {
				t.Errorf("encoding does not start with the type: %s", b)
			}
			// The golden file, indented as a person would write it, must
			// decode to the message.
			got, err := Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(m, got); diff != "" {
				t.Errorf("decoded golden file differs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	long := strings.Repeat("a", MaxIDLen+1)
	manyEntities := `{"type":"announce","device":{"name":"x"},"entities":[` +
		strings.TrimSuffix(strings.Repeat(`{"unique_id":"a","kind":"switch"},`, MaxEntities+1), ",") + `]}`
	tests := []struct {
		name, in, field string
	}{
		{"not JSON", `{"type":`, "message"},
		{"not an object", `[1]`, "message"},
		{"null", `null`, "message"},
		{"trailing data", `{"type":"resync"} {}`, "message"},
		{"no type", `{}`, "type"},
		{"type not a string", `{"type":1}`, "type"},
		{"unknown type", `{"type":"reboot"}`, "type"},
		{"unknown field", `{"type":"resync","please":true}`, "please"},
		{"field in another case", `{"type":"state","Unique_ID":"a","value":1,"available":true}`, "unique_id"},
		{"missing unique_id", `{"type":"state","value":1,"available":true}`, "unique_id"},
		{"empty unique_id", `{"type":"state","unique_id":"","value":1,"available":true}`, "unique_id"},
		{"unique_id too long", `{"type":"state","unique_id":"` + long + `","value":1,"available":true}`, "unique_id"},
		{"unique_id bad characters", `{"type":"state","unique_id":"Door 1","value":1,"available":true}`, "unique_id"},
		{"missing value", `{"type":"state","unique_id":"a","available":true}`, "value"},
		{"object value", `{"type":"state","unique_id":"a","value":{"x":1},"available":true}`, "value"},
		{"long string value", `{"type":"state","unique_id":"a","value":"` + strings.Repeat("v", MaxValueLen+1) + `","available":true}`, "value"},
		{"missing available", `{"type":"state","unique_id":"a","value":1}`, "available"},
		{"available not a boolean", `{"type":"state","unique_id":"a","value":1,"available":"yes"}`, "available"},
		{"bad time", `{"type":"state","unique_id":"a","value":1,"available":true,"time":"yesterday"}`, "time"},
		{"attributes not an object", `{"type":"state","unique_id":"a","value":1,"available":true,"attributes":[]}`, "attributes"},
		{"command without id", `{"type":"command","unique_id":"a","command":"turn_on"}`, "id"},
		{"negative id", `{"type":"command","id":-1,"unique_id":"a","command":"turn_on"}`, "id"},
		{"fractional id", `{"type":"command","id":1.5,"unique_id":"a","command":"turn_on"}`, "id"},
		{"exponent id", `{"type":"command","id":1e3,"unique_id":"a","command":"turn_on"}`, "id"},
		{"id past uint64", `{"type":"command","id":18446744073709551616,"unique_id":"a","command":"turn_on"}`, "id"},
		{"missing command", `{"type":"command","id":1,"unique_id":"a"}`, "command"},
		{"bad command", `{"type":"command","id":1,"unique_id":"a","command":"Turn On"}`, "command"},
		{"params not an object", `{"type":"command","id":1,"unique_id":"a","command":"turn_on","params":"x"}`, "params"},
		{"long error", `{"type":"result","id":1,"error":"` + strings.Repeat("e", MaxErrorLen+1) + `"}`, "error"},
		{"no device", `{"type":"announce","entities":[]}`, "device"},
		{"no device name", `{"type":"announce","device":{},"entities":[]}`, "device.name"},
		{"control character in name", `{"type":"announce","device":{"name":"a\u0007"},"entities":[]}`, "device.name"},
		{"long model", `{"type":"announce","device":{"name":"a","model":"` + strings.Repeat("m", MaxTextLen+1) + `"},"entities":[]}`, "device.model"},
		{"unknown device field", `{"type":"announce","device":{"name":"a","id":"x"},"entities":[]}`, "device.id"},
		{"no entities", `{"type":"announce","device":{"name":"a"}}`, "entities"},
		{"entities not an array", `{"type":"announce","device":{"name":"a"},"entities":{}}`, "entities"},
		{"too many entities", manyEntities, "entities"},
		{"entity not an object", `{"type":"announce","device":{"name":"a"},"entities":[1]}`, "entities[0]"},
		{"entity without kind", `{"type":"announce","device":{"name":"a"},"entities":[{"unique_id":"a"}]}`, "entities[0].kind"},
		{"unknown kind", `{"type":"announce","device":{"name":"a"},"entities":[{"unique_id":"a","kind":"toaster"}]}`, "entities[0].kind"},
		{"duplicate unique_id", `{"type":"announce","device":{"name":"a"},"entities":[{"unique_id":"a","kind":"switch"},{"unique_id":"a","kind":"light"}]}`, "entities[1].unique_id"},
		{"unknown capability", `{"type":"announce","device":{"name":"a"},"entities":[{"unique_id":"a","kind":"light","capabilities":{"colour_modes":[]}}]}`, "entities[0].capabilities.colour_modes"},
		{"capability of wrong type", `{"type":"announce","device":{"name":"a"},"entities":[{"unique_id":"a","kind":"climate","capabilities":{"min_temp":"cold"}}]}`, "entities[0].capabilities.min_temp"},
		{"bad command in capabilities", `{"type":"announce","device":{"name":"a"},"entities":[{"unique_id":"a","kind":"light","capabilities":{"commands":["turn_on","Off!"]}}]}`, "entities[0].capabilities.commands[1]"},
		{"state without available", `{"type":"announce","device":{"name":"a"},"entities":[{"unique_id":"a","kind":"switch","state":{"value":"on"}}]}`, "entities[0].state.available"},
		{"unknown state field", `{"type":"announce","device":{"name":"a"},"entities":[{"unique_id":"a","kind":"switch","state":{"value":"on","available":true,"x":1}}]}`, "entities[0].state.x"},
		{"revoked without nodes", `{"type":"revoked"}`, "nodes"},
		{"revoked nodes not an array", `{"type":"revoked","nodes":"3f2a910c5517e84d"}`, "nodes"},
		{"revoked nobody", `{"type":"revoked","nodes":[]}`, "nodes"},
		{"node id not a string", `{"type":"revoked","nodes":[4546]}`, "nodes[0]"},
		{"node id in upper case", `{"type":"revoked","nodes":["3f2a910c5517e84d","3F2A910C5517E84E"]}`, "nodes[1]"},
		{"node id too short", `{"type":"revoked","nodes":["3f2a910c"]}`, "nodes[0]"},
		{"node id not hex", `{"type":"revoked","nodes":["3f2a910c5517e84g"]}`, "nodes[0]"},
		{"node named twice", `{"type":"revoked","nodes":["3f2a910c5517e84d","3f2a910c5517e84d"]}`, "nodes[1]"},
		{"too many revoked", revokedList(MaxRevoked + 1), "nodes"},
		{"unknown revoked field", `{"type":"revoked","nodes":["3f2a910c5517e84d"],"reason":"stolen"}`, "reason"},
		{"links without neighbours", `{"type":"links"}`, "neighbours"},
		{"neighbours not an array", `{"type":"links","neighbours":{}}`, "neighbours"},
		{"too many neighbours", linksList(MaxNeighbours+1, "router", 256, "1"), "neighbours"},
		{"neighbour not an object", `{"type":"links","neighbours":["3f2a910c5517e84d"]}`, "neighbours[0]"},
		{"neighbour without node_id", links(`"role":"router","cost":256,"rx_cost":256,"tx_cost":256,"quality":1`), "neighbours[0].node_id"},
		{"neighbour id in upper case", links(`"node_id":"3F2A910C5517E84D","role":"router","cost":256,"rx_cost":256,"tx_cost":256,"quality":1`), "neighbours[0].node_id"},
		{"neighbour id not a string", links(`"node_id":7,"role":"router","cost":256,"rx_cost":256,"tx_cost":256,"quality":1`), "neighbours[0].node_id"},
		{"neighbour without role", links(`"node_id":"3f2a910c5517e84d","cost":256,"rx_cost":256,"tx_cost":256,"quality":1`), "neighbours[0].role"},
		{"unknown role", links(`"node_id":"3f2a910c5517e84d","role":"relay","cost":256,"rx_cost":256,"tx_cost":256,"quality":1`), "neighbours[0].role"},
		{"role in upper case", links(`"node_id":"3f2a910c5517e84d","role":"Hub","cost":256,"rx_cost":256,"tx_cost":256,"quality":1`), "neighbours[0].role"},
		{"neighbour without cost", links(`"node_id":"3f2a910c5517e84d","role":"router","rx_cost":256,"tx_cost":256,"quality":1`), "neighbours[0].cost"},
		{"negative cost", links(`"node_id":"3f2a910c5517e84d","role":"router","cost":-1,"rx_cost":256,"tx_cost":256,"quality":1`), "neighbours[0].cost"},
		{"cost past 65535", links(`"node_id":"3f2a910c5517e84d","role":"router","cost":65536,"rx_cost":256,"tx_cost":256,"quality":1`), "neighbours[0].cost"},
		{"fractional rx_cost", links(`"node_id":"3f2a910c5517e84d","role":"router","cost":256,"rx_cost":256.5,"tx_cost":256,"quality":1`), "neighbours[0].rx_cost"},
		{"tx_cost a string", links(`"node_id":"3f2a910c5517e84d","role":"router","cost":256,"rx_cost":256,"tx_cost":"256","quality":1`), "neighbours[0].tx_cost"},
		{"neighbour without quality", links(`"node_id":"3f2a910c5517e84d","role":"router","cost":256,"rx_cost":256,"tx_cost":256`), "neighbours[0].quality"},
		{"quality a string", links(`"node_id":"3f2a910c5517e84d","role":"router","cost":256,"rx_cost":256,"tx_cost":256,"quality":"1"`), "neighbours[0].quality"},
		{"quality over 1", links(`"node_id":"3f2a910c5517e84d","role":"router","cost":256,"rx_cost":256,"tx_cost":256,"quality":1.5`), "neighbours[0].quality"},
		{"negative quality", links(`"node_id":"3f2a910c5517e84d","role":"router","cost":256,"rx_cost":256,"tx_cost":256,"quality":-0.1`), "neighbours[0].quality"},
		{"unknown neighbour field", links(`"node_id":"3f2a910c5517e84d","role":"router","cost":256,"rx_cost":256,"tx_cost":256,"quality":1,"addr":"10.0.0.2:4790"`), "neighbours[0].addr"},
		{"neighbour listed twice", `{"type":"links","neighbours":[` + neighbour(1, "router", 256, "1") + `,` + neighbour(2, "leaf", 256, "1") + `,` + neighbour(1, "router", 300, "0.85") + `]}`, "neighbours[2].node_id"},
		{"unknown links field", `{"type":"links","neighbours":[],"from":"3f2a910c5517e84d"}`, "from"},
		{"too big", `{"type":"resync","pad":"` + strings.Repeat(" ", MaxMessageSize) + `"}`, "message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("decoded %#v, want an error naming %s", m, tt.field)
			}
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != tt.field {
				t.Errorf("error %q has kind %s, field %q; want invalid, %q", err, homemesh.ErrorKind(err), homemesh.ErrorField(err), tt.field)
			}
		})
	}
}

func TestEncodeValidates(t *testing.T) {
	tests := []struct {
		name  string
		m     Message
		field string
	}{
		{"nil", nil, "type"},
		{"no unique_id", &State{Reading: Reading{Value: 1, Available: true}}, "unique_id"},
		{"value not scalar", &State{UniqueID: "a", Reading: Reading{Value: []int{1}}}, "value"},
		{"NaN value", &State{UniqueID: "a", Reading: Reading{Value: nan()}}, "value"},
		{"unencodable param", &Command{UniqueID: "a", Name: "turn_on", Params: map[string]any{"x": make(chan int)}}, "command"},
		{"entity without kind", &Announce{Device: DeviceInfo{Name: "x"}, Entities: []Entity{{UniqueID: "a"}}}, "entities[0].kind"},
		{"revoked nobody", &Revoked{}, "nodes"},
		{"revoked twice", &Revoked{Nodes: []route.NodeID{{1}, {2}, {1}}}, "nodes[2]"},
		{"neighbour twice", &Links{Neighbours: []Neighbour{{ID: route.NodeID{1}, Role: link.RoleRouter}, {ID: route.NodeID{1}, Role: link.RoleLeaf}}}, "neighbours[1].node_id"},
		{"neighbour without role", &Links{Neighbours: []Neighbour{{ID: route.NodeID{1}}}}, "neighbours[0].role"},
		{"NaN quality", &Links{Neighbours: []Neighbour{{ID: route.NodeID{1}, Role: link.RoleRouter, Quality: nan()}}}, "neighbours[0].quality"},
		{"quality over 1", &Links{Neighbours: []Neighbour{{ID: route.NodeID{1}, Role: link.RoleRouter, Quality: 1.01}}}, "neighbours[0].quality"},
		{"too many neighbours", &Links{Neighbours: make([]Neighbour, MaxNeighbours+1)}, "neighbours"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.m)
			if err == nil {
				t.Fatalf("encoded %s, want an error naming %s", b, tt.field)
			}
			if homemesh.ErrorField(err) != tt.field {
				t.Errorf("error %q names %q, want %q", err, homemesh.ErrorField(err), tt.field)
			}
		})
	}
}

func nan() float64 { var zero float64; return zero / zero }

func TestEncodeAcceptsGoNumbers(t *testing.T) {
	// Entities written in Go report ints; they travel as JSON numbers and
	// decode as float64.
	b, err := Encode(&State{UniqueID: "count", Reading: Reading{Value: 42, Available: true}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if v := m.(*State).Value; v != 42.0 {
		t.Errorf("value %#v, want 42.0", v)
	}
}

// revokedList is a revoked message naming n distinct nodes.
func revokedList(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf(`"%016x"`, uint64(i)*0x9e3779b97f4a7c15)
	}
	return `{"type":"revoked","nodes":[` + strings.Join(ids, ",") + `]}`
}

func TestMaxRevokedFit(t *testing.T) {
	r := &Revoked{}
	for i := range MaxRevoked {
		var id route.NodeID
		binary.BigEndian.PutUint64(id[:], uint64(i)*0x9e3779b97f4a7c15)
		r.Nodes = append(r.Nodes, id)
	}
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d nodes: %d bytes of %d", MaxRevoked, len(b), MaxMessageSize)
	if string(b) != revokedList(MaxRevoked) {
		t.Fatal("the encoding differs from the test's")
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Message(r), got); diff != "" {
		t.Errorf("round trip differs (-want +got):\n%s", diff)
	}
	r.Nodes = append(r.Nodes, route.NodeID{1})
	if _, err := Encode(r); homemesh.ErrorField(err) != "nodes" {
		t.Errorf("one node more: %v, want an error naming nodes", err)
	}
}

// links is a links message with one neighbour of the given fields.
func links(fields string) string {
	return `{"type":"links","neighbours":[{` + fields + `}]}`
}

// neighbour is the i-th of distinct neighbours, as Encode writes it.
func neighbour(i int, role string, cost int, quality string) string {
	return fmt.Sprintf(`{"node_id":"%016x","role":"%s","cost":%d,"rx_cost":%d,"tx_cost":%d,"quality":%s}`,
		uint64(i)*0x9e3779b97f4a7c15, role, cost, cost, cost, quality)
}

// linksList is a links message listing n distinct neighbours.
func linksList(n int, role string, cost int, quality string) string {
	nbs := make([]string, n)
	for i := range nbs {
		nbs[i] = neighbour(i, role, cost, quality)
	}
	return `{"type":"links","neighbours":[` + strings.Join(nbs, ",") + `]}`
}

func TestMaxNeighboursFit(t *testing.T) {
	// The longest neighbours there can be: the longest role, the largest
	// costs, and a quality whose shortest decimal form is the longest
	// (17 significant digits below 1e-5, written without an exponent).
	const quality = 0.0000012345678901234567
	l := &Links{}
	for i := range MaxNeighbours {
		var id route.NodeID
		binary.BigEndian.PutUint64(id[:], uint64(i)*0x9e3779b97f4a7c15)
		l.Neighbours = append(l.Neighbours, Neighbour{ID: id, Role: link.RoleRouter,
			Cost: 65535, RxCost: 65535, TxCost: 65535, Quality: quality})
	}
	b, err := Encode(l)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d neighbours: %d bytes of %d", MaxNeighbours, len(b), MaxMessageSize)
	if want := linksList(MaxNeighbours, "router", 65535, "0.0000012345678901234567"); string(b) != want {
		t.Fatalf("the encoding differs from the test's:\n%.300s\n%.300s", b, want)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Message(l), got); diff != "" {
		t.Errorf("round trip differs (-want +got):\n%s", diff)
	}
	l.Neighbours = append(l.Neighbours, Neighbour{ID: route.NodeID{1}, Role: link.RoleLeaf})
	if _, err := Encode(l); homemesh.ErrorField(err) != "neighbours" {
		t.Errorf("one neighbour more: %v, want an error naming neighbours", err)
	}
}

func TestMaxEntitiesFit(t *testing.T) {
	// A device with the most entities, each with a state and names of a
	// usual length, fits one message. (At every field's limit it would
	// not: Encode then refuses it, and the agent learns before sending.)
	a := &Announce{Device: DeviceInfo{Name: strings.Repeat("n", MaxTextLen)}}
	for i := range MaxEntities {
		a.Entities = append(a.Entities, Entity{
			UniqueID: "temperature_" + string(rune('a'+i/26/26%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i%26)),
			Kind:     homemesh.KindSensor, Name: "Temperature of room 123", DeviceClass: "temperature", Unit: "°C",
			StateClass: "measurement", State: &Reading{Value: 21.25, Available: true, Time: at},
		})
	}
	b, err := Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entities: %d bytes", MaxEntities, len(b))
	if _, err := Decode(b); err != nil {
		t.Fatal(err)
	}
}
