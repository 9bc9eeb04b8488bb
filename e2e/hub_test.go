package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

const (
	lampConfigTopic = "homeassistant/light/0x00158d0001a2b3c4/light/config"
	// A Zigbee2MQTT JSON-schema light as its Home Assistant extension
	// announces it (abridged; see edge/discovery/testdata for full ones).
	lampConfig = `{"availability":[{"topic":"zigbee2mqtt/bridge/state","value_template":"{{ value_json.state }}"}],
"brightness":true,"brightness_scale":254,"command_topic":"zigbee2mqtt/lamp/set",
"device":{"identifiers":["zigbee2mqtt_0x00158d0001a2b3c4"],"manufacturer":"IKEA","model":"TRADFRI bulb E27","name":"lamp"},
"json_attributes_topic":"zigbee2mqtt/lamp","name":null,"schema":"json","state_topic":"zigbee2mqtt/lamp",
"supported_color_modes":["color_temp"],"max_mireds":454,"min_mireds":250,
"unique_id":"0x00158d0001a2b3c4_light_zigbee2mqtt","object_id":"lamp"}`
	tempConfigTopic = "homeassistant/sensor/0x00158d0001a2b3c5/temperature/config"
	tempConfig      = `{"dev":{"ids":"zigbee2mqtt_0x00158d0001a2b3c5","name":"hall sensor","mf":"Aqara"},
"dev_cla":"temperature","unit_of_meas":"°C","stat_cla":"measurement","stat_t":"zigbee2mqtt/hall sensor",
"val_tpl":"{{ value_json.temperature | float | round(1) }}","uniq_id":"0x00158d0001a2b3c5_temperature_zigbee2mqtt","name":"Temperature"}`
)

type entity struct {
	ID       string `json:"id"`
	UniqueID string `json:"unique_id"`
	Kind     string `json:"kind"`
	DeviceID string `json:"device_id"`
	Name     string `json:"name"`
	State    struct {
		Value      any            `json:"value"`
		Attributes map[string]any `json:"attributes"`
		Available  bool           `json:"available"`
	} `json:"state"`
}

type apiError struct {
	Error struct{ Kind, Message, Field string } `json:"error"`
}

func TestAllInOne(t *testing.T) { scenario(t, allInOne(t)) }

func TestSplit(t *testing.T) { scenario(t, split(t)) }

func scenario(t *testing.T, h *hub) {
	needMosquitto(t)
	api := h.api

	// No token, no API.
	if code := call(t, "GET", api+"/entities", "", nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("GET /entities without a token = %d, want 401", code)
	}

	// The owner is created with the one-time code, once.
	owner := map[string]string{"code": h.code, "username": "owner", "password": "correct horse battery"}
	if code := call(t, "POST", api+"/onboard", "", owner, nil); code != http.StatusCreated {
		t.Fatalf("onboard = %d", code)
	}
	if code := call(t, "POST", api+"/onboard", "", owner, nil); code < 400 {
		t.Fatalf("second onboard = %d, want an error", code)
	}
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	if code := call(t, "POST", api+"/auth/login", "", map[string]string{"username": "owner", "password": "correct horse battery"}, &tokens); code != 200 || tokens.AccessToken == "" {
		t.Fatalf("login = %d", code)
	}
	tok := tokens.AccessToken

	type cred struct{ Username, Password string }
	newCred := func(name string, allow ...string) cred {
		var c cred
		if code := call(t, "POST", api+"/credentials", tok, map[string]any{"name": name, "allow": allow}, &c); code != http.StatusCreated || c.Password == "" {
			t.Fatalf("create credential %s = %d", name, code)
		}
		return c
	}
	z2m := newCred("zigbee2mqtt", "zigbee2mqtt/#", "homeassistant/#")
	garage := newCred("garage door", "garage/#")
	spy := newCred("monitor", "#")

	// The bridge said it was online (retained) before the lamp was announced;
	// binding the lamp delivers that, as an MQTT subscription would.
	if err := pub(t, h.mqtt, z2m.Username, z2m.Password, "-r", "-q", "1", "-t", "zigbee2mqtt/bridge/state", "-m", `{"state":"online"}`); err != nil {
		t.Fatal(err)
	}
	// A retained discovery config from an allowed credential becomes an
	// entity with the right kind, unique_id and device.
	if err := pub(t, h.mqtt, z2m.Username, z2m.Password, "-r", "-q", "1", "-t", lampConfigTopic, "-m", lampConfig); err != nil {
		t.Fatal(err)
	}
	if err := pub(t, h.mqtt, z2m.Username, z2m.Password, "-r", "-q", "1", "-t", tempConfigTopic, "-m", tempConfig); err != nil {
		t.Fatal(err)
	}
	lamp := findEntity(t, api, tok, "0x00158d0001a2b3c4_light_zigbee2mqtt")
	if lamp.Kind != "light" || lamp.DeviceID == "" {
		t.Fatalf("lamp = %+v; want a light on a device", lamp)
	}
	waitUntil(t, "lamp available from the retained bridge state", func() bool { return getEntity(t, api, tok, lamp.ID).State.Available })
	var dev struct{ Manufacturer, Model, Name string }
	if code := call(t, "GET", api+"/devices/"+lamp.DeviceID, tok, nil, &dev); code != 200 || dev.Manufacturer != "IKEA" || dev.Name != "lamp" {
		t.Fatalf("lamp device = %d %+v", code, dev)
	}
	temp := findEntity(t, api, tok, "0x00158d0001a2b3c5_temperature_zigbee2mqtt")
	if temp.Kind != "sensor" {
		t.Fatalf("temperature entity kind = %q", temp.Kind)
	}

	// State payloads become state values through their templates.
	if err := pub(t, h.mqtt, z2m.Username, z2m.Password, "-q", "1", "-t", "zigbee2mqtt/lamp", "-m", `{"state":"ON","brightness":200,"color_temp":300,"linkquality":87}`); err != nil {
		t.Fatal(err)
	}
	if err := pub(t, h.mqtt, z2m.Username, z2m.Password, "-q", "1", "-t", "zigbee2mqtt/hall sensor", "-m", `{"temperature":"21.46","humidity":40}`); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "lamp on and available", func() bool {
		e := getEntity(t, api, tok, lamp.ID)
		return e.State.Value == "on" && e.State.Available
	})
	waitUntil(t, "temperature 21.5", func() bool {
		v, ok := getEntity(t, api, tok, temp.ID).State.Value.(float64)
		return ok && v == 21.5
	})
	// Every state change is kept: the history service stored it, and the
	// gateway answers for it.
	waitUntil(t, "temperature 21.5 in the history", func() bool {
		var page struct {
			Points []struct {
				Value any `json:"value"`
			} `json:"points"`
		}
		if call(t, "GET", api+"/entities/"+temp.ID+"/history?resolution=raw", tok, nil, &page) != http.StatusOK {
			return false
		}
		for _, p := range page.Points {
			if p.Value == 21.5 {
				return true
			}
		}
		return false
	})

	// A command arrives on the command topic exactly as the device expects.
	device := stream(t, sub(h.mqtt, z2m.Username, z2m.Password, 0, "-t", "zigbee2mqtt/lamp/set", "-q", "1"))
	device.ready(t, func() error {
		return pub(t, h.mqtt, z2m.Username, z2m.Password, "-t", "zigbee2mqtt/lamp/set", "-m", "probe")
	}, "probe")
	if code := call(t, "POST", api+"/entities/"+lamp.ID+"/commands", tok, map[string]any{"command": "turn_on", "params": map[string]any{"brightness": 255}}, nil); code != http.StatusAccepted {
		t.Fatalf("turn_on = %d", code)
	}
	got := device.next(t, func(line string) bool { return strings.HasPrefix(line, "{") })
	var payload map[string]any
	if err := json.Unmarshal([]byte(got), &payload); err != nil || payload["state"] != "ON" || payload["brightness"] != 254.0 {
		t.Fatalf("command payload = %q, want {\"state\":\"ON\",\"brightness\":254}", got)
	}
	var e apiError
	if code := call(t, "POST", api+"/entities/"+lamp.ID+"/commands", tok, map[string]any{"command": "turn_on", "params": map[string]any{"brightness": 300}}, &e); code != http.StatusBadRequest || e.Error.Field != "params.brightness" {
		t.Fatalf("out-of-range brightness = %d %+v", code, e)
	}

	// MQTTS with the home CA's certificate, which clients verify.
	if err := pub(t, h.mqtts, z2m.Username, z2m.Password, "--cafile", h.caFile, "-t", "zigbee2mqtt/tls", "-m", "over tls"); err != nil {
		t.Fatalf("MQTTS with the home CA: %v", err)
	}
	if err := pub(t, h.mqtts, z2m.Username, z2m.Password, "-t", "zigbee2mqtt/tls", "-m", "plain on the TLS port"); err == nil {
		t.Fatal("a plaintext client was accepted on the MQTTS port")
	}

	// The firewall: nothing outside a credential's allow list.
	if err := pub(t, h.mqtt, z2m.Username, "wrong-password", "-t", "zigbee2mqtt/x", "-m", "1"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if err := pub(t, h.mqtt, "", "", "-t", "zigbee2mqtt/x", "-m", "1"); err == nil {
		t.Fatal("an anonymous client was accepted")
	}
	monitor := stream(t, sub(h.mqtt, spy.Username, spy.Password, 0, "-t", "zigbee2mqtt/#", "-t", "garage/canary", "-v", "-q", "1"))
	monitor.ready(t, func() error {
		return pub(t, h.mqtt, garage.Username, garage.Password, "-t", "garage/canary", "-m", "probe")
	}, "garage/canary probe")
	_ = pub(t, h.mqtt, garage.Username, garage.Password, "-q", "1", "-t", "zigbee2mqtt/lamp/set", "-m", "intruder")
	if err := pub(t, h.mqtt, garage.Username, garage.Password, "-q", "1", "-t", "garage/canary", "-m", "canary"); err != nil {
		t.Fatal(err)
	}
	monitor.next(t, func(line string) bool {
		if strings.Contains(line, "intruder") {
			t.Fatalf("a publish outside the allow list leaked: %q", line)
		}
		return line == "garage/canary canary"
	})
	denied := sub(h.mqtt, garage.Username, garage.Password, 0, "-t", "zigbee2mqtt/#", "-C", "1", "-W", "5")
	// mosquitto_sub reports a refused SUBACK on its output (its exit code
	// does not tell), then stops.
	if outp, err := denied.CombinedOutput(); err == nil && !strings.Contains(string(outp), "denied") {
		t.Fatalf("a subscription outside the allow list was granted: %s", outp)
	}

	// Everything survives a restart: devices, states, retained configs.
	h.restart(t)
	api = h.api
	tok = login(t, api)
	after := getEntity(t, api, tok, lamp.ID)
	if after.UniqueID != lamp.UniqueID || after.State.Value != "on" {
		t.Fatalf("lamp after restart = %+v", after)
	}
	retained := sub(h.mqtt, spy.Username, spy.Password, 0, "-t", lampConfigTopic, "-C", "1", "-W", "10")
	if outp, err := retained.Output(); err != nil || !strings.Contains(string(outp), "0x00158d0001a2b3c4_light_zigbee2mqtt") {
		t.Fatalf("retained config after restart: %v %q", err, outp)
	}

	// An empty config removes the entity.
	if err := pub(t, h.mqtt, z2m.Username, z2m.Password, "-r", "-q", "1", "-t", tempConfigTopic, "-n"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "temperature entity removed", func() bool {
		return call(t, "GET", api+"/entities/"+temp.ID, tok, nil, nil) == http.StatusNotFound
	})
}

// login returns an access token of the owner that onboarding created.
func login(t *testing.T, api string) string {
	t.Helper()
	return loginAs(t, api, "owner", "correct horse battery").AccessToken
}

func getEntity(t *testing.T, api, tok, id string) entity {
	var e entity
	if code := call(t, "GET", api+"/entities/"+id, tok, nil, &e); code != 200 {
		t.Fatalf("GET /entities/%s = %d", id, code)
	}
	return e
}

func findEntity(t *testing.T, api, tok, uniqueID string) entity {
	var found entity
	waitUntil(t, "entity "+uniqueID, func() bool {
		var list []entity
		call(t, "GET", api+"/entities", tok, nil, &list)
		for _, e := range list {
			if e.UniqueID == uniqueID {
				found = e
				return true
			}
		}
		return false
	})
	return found
}
