package homemesh

import "time"

// Home is one household: the unit of tenancy. Every subject, key and row
// carries its ID.
type Home struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Room groups devices inside a home.
type Room struct {
	ID     string `json:"id"`
	HomeID string `json:"home_id"`
	Name   string `json:"name"`
}

// Device is a physical or virtual thing that exposes entities, as Home
// Assistant's device registry models it.
type Device struct {
	ID               string      `json:"id"`
	HomeID           string      `json:"home_id"`
	Name             string      `json:"name"`
	Manufacturer     string      `json:"manufacturer,omitempty"`
	Model            string      `json:"model,omitempty"`
	ModelID          string      `json:"model_id,omitempty"`
	HWVersion        string      `json:"hw_version,omitempty"`
	SWVersion        string      `json:"sw_version,omitempty"`
	SerialNumber     string      `json:"serial_number,omitempty"`
	ConfigurationURL string      `json:"configuration_url,omitempty"`
	SuggestedArea    string      `json:"suggested_area,omitempty"`
	RoomID           string      `json:"room_id,omitempty"`
	NameByUser       string      `json:"name_by_user,omitempty"` // a name a person gave; it wins over Name on re-announcement
	Identifiers      []string    `json:"identifiers,omitempty"`
	Connections      [][2]string `json:"connections,omitempty"` // [type, value], e.g. ["mac", "aa:bb:…"]
	ViaDevice        string      `json:"via_device,omitempty"`  // an identifier of the parent device (a bridge)
	Source           string      `json:"source"`                // "mqtt", "mesh", "demo"
	CreatedAt        time.Time   `json:"created_at"`
	UpdatedAt        time.Time   `json:"updated_at"`
}

// EntityKind is what an entity is, named as Home Assistant names its
// platforms.
type EntityKind string

// The entity kinds homemesh understands.
const (
	KindLight             EntityKind = "light"
	KindSwitch            EntityKind = "switch"
	KindSensor            EntityKind = "sensor"
	KindBinarySensor      EntityKind = "binary_sensor"
	KindClimate           EntityKind = "climate"
	KindLock              EntityKind = "lock"
	KindCover             EntityKind = "cover"
	KindFan               EntityKind = "fan"
	KindAlarmControlPanel EntityKind = "alarm_control_panel"
	KindButton            EntityKind = "button"
	KindNumber            EntityKind = "number"
	KindSelect            EntityKind = "select"
	KindEvent             EntityKind = "event"
)

// EntityKinds lists every kind, in a stable order.
var EntityKinds = []EntityKind{
	KindLight, KindSwitch, KindSensor, KindBinarySensor, KindClimate, KindLock,
	KindCover, KindFan, KindAlarmControlPanel, KindButton, KindNumber, KindSelect, KindEvent,
}

// Valid reports whether k is one of EntityKinds.
func (k EntityKind) Valid() bool {
	for _, x := range EntityKinds {
		if k == x {
			return true
		}
	}
	return false
}

// Entity is one controllable or observable aspect of a device: a light, a
// temperature sensor, a lock.
type Entity struct {
	ID             string       `json:"id"`
	HomeID         string       `json:"home_id"`
	DeviceID       string       `json:"device_id"`
	UniqueID       string       `json:"unique_id"` // as the device announced it
	Kind           EntityKind   `json:"kind"`
	Name           string       `json:"name"`
	DeviceClass    string       `json:"device_class,omitempty"`
	Unit           string       `json:"unit_of_measurement,omitempty"`
	StateClass     string       `json:"state_class,omitempty"`
	EntityCategory string       `json:"entity_category,omitempty"`
	Icon           string       `json:"icon,omitempty"`
	Capabilities   Capabilities `json:"capabilities"`
	Source         string       `json:"source"`
	State          State        `json:"state"`
	CreatedAt      time.Time    `json:"created_at"`
	UpdatedAt      time.Time    `json:"updated_at"`
}

// Capabilities describe what an entity accepts and reports. Only the fields
// that apply to the entity's kind are set.
type Capabilities struct {
	// light
	ColorModes      []string `json:"supported_color_modes,omitempty"`
	MinMireds       int      `json:"min_mireds,omitempty"`
	MaxMireds       int      `json:"max_mireds,omitempty"`
	Effects         []string `json:"effect_list,omitempty"`
	BrightnessScale int      `json:"brightness_scale,omitempty"`
	// climate
	HVACModes       []string `json:"hvac_modes,omitempty"`
	FanModes        []string `json:"fan_modes,omitempty"`
	SwingModes      []string `json:"swing_modes,omitempty"`
	PresetModes     []string `json:"preset_modes,omitempty"` // climate and fan
	MinTemp         *float64 `json:"min_temp,omitempty"`
	MaxTemp         *float64 `json:"max_temp,omitempty"`
	TempStep        float64  `json:"target_temp_step,omitempty"`
	TemperatureUnit string   `json:"temperature_unit,omitempty"`
	// cover
	Position bool `json:"position,omitempty"`
	Tilt     bool `json:"tilt,omitempty"`
	// lock
	Open       bool   `json:"open,omitempty"`
	CodeFormat string `json:"code_format,omitempty"`
	// alarm_control_panel
	CodeArmRequired    bool     `json:"code_arm_required,omitempty"`
	CodeDisarmRequired bool     `json:"code_disarm_required,omitempty"`
	SupportedFeatures  []string `json:"supported_features,omitempty"`
	// fan
	Percentage  bool `json:"percentage,omitempty"`
	SpeedCount  int  `json:"speed_count,omitempty"`
	Oscillation bool `json:"oscillation,omitempty"`
	Direction   bool `json:"direction,omitempty"`
	// number
	Min  *float64 `json:"min,omitempty"`
	Max  *float64 `json:"max,omitempty"`
	Step float64  `json:"step,omitempty"`
	Mode string   `json:"mode,omitempty"`
	// select, and sensors of device class enum
	Options []string `json:"options,omitempty"`
	// event
	EventTypes []string `json:"event_types,omitempty"`
	// Commands lists the command names the entity accepts, derived from the
	// above and from which command topics the device configured.
	Commands []string `json:"commands,omitempty"`
}

// State is an entity's current state. Value follows Home Assistant's
// conventions: "on"/"off" for switches, lights and binary sensors, "locked",
// "open", HVAC modes, and numbers for numeric sensors.
type State struct {
	Value      any            `json:"value"`
	Attributes map[string]any `json:"attributes,omitempty"`
	Available  bool           `json:"available"`
	ChangedAt  time.Time      `json:"changed_at,omitzero"` // when Value last changed
	UpdatedAt  time.Time      `json:"updated_at,omitzero"` // when any report last arrived
}

// StateUpdate is one report about an entity's state, as a connectivity
// service (the MQTT edge, the mesh) hands it to the registry. Nil fields
// leave the stored value unchanged, so availability and value can arrive on
// separate topics.
type StateUpdate struct {
	HomeID     string         `json:"home_id"`
	DeviceID   string         `json:"device_id"`
	EntityID   string         `json:"entity_id"`
	Value      any            `json:"value,omitempty"`
	HasValue   bool           `json:"has_value,omitempty"`
	Attributes map[string]any `json:"attributes,omitempty"`
	Available  *bool          `json:"available,omitempty"`
	Time       time.Time      `json:"time"`
}

// Command asks an entity to do something. Name and Params are Home
// Assistant's service names and fields without the domain ("turn_on" with
// {"brightness": 128}).
type Command struct {
	HomeID   string         `json:"home_id"`
	EntityID string         `json:"entity_id"`
	Name     string         `json:"command"`
	Params   map[string]any `json:"params,omitempty"`
}

// Event is something that happened in a home, delivered to event
// subscribers (the WebSocket, automations, history).
type Event struct {
	Type   string    `json:"type"` // "state_changed", "entity_added", "entity_removed", …
	HomeID string    `json:"home_id"`
	Time   time.Time `json:"time"`
	Data   any       `json:"data"`
}
