// Package sim runs simulated smart-home devices that speak MQTT exactly as
// real Home Assistant discovery firmware does, so they work with a homemesh
// hub and with Home Assistant itself.
//
// Run connects a fleet of devices, one MQTT connection each. Every device
// announces itself with retained discovery configs, keeps an availability
// topic (online, with a retained last will saying offline), publishes its
// initial state, reports telemetry on a period, obeys commands by changing
// and republishing its state, and announces everything again when the
// discovery prefix's status topic says "online" (Home Assistant's birth
// message).
//
// Devices cover every entity kind, in the styles real firmware uses:
//
//   - light: Zigbee2MQTT's JSON schema (brightness, color_temp, rgb), JSON
//     availability with a value template
//   - switch: Tasmota, with abbreviated keys and a "~" base ending in "/"
//   - sensor: a multisensor using device-based discovery
//     (<prefix>/device/<id>/config with "cmps") and value templates
//   - binary_sensor: an ESPHome door contact, identifiers as a bare string
//   - climate: a Zigbee2MQTT thermostat with per-topic templates
//   - lock, cover, fan, alarm_control_panel, button, number, select, event
//
// A device's own topics all live under BaseTopic/<device-id>/, and its
// discovery topics under <prefix>/<component>/<device-id>/…, so Topics gives
// a tight per-device allow list. Values evolve by a random walk seeded from
// Config.Seed and the device number, so a run is reproducible.
package sim
