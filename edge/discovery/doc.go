// Package discovery understands Home Assistant's MQTT discovery convention,
// so that any device speaking it (Zigbee2MQTT, Tasmota, ESPHome, Shelly,
// OpenMQTTGateway, …) becomes homemesh devices and entities.
//
// The package is pure: it does no I/O. The MQTT edge feeds it messages.
//
//   - Parse turns one message on a discovery topic
//     (<prefix>/<component>/[<node_id>/]<object_id>/config, or device-based
//     <prefix>/device/[<node_id>/]<object_id>/config) into an Announcement:
//     the Configs to add or update, the Keys to remove and the components
//     rejected, each with the field at fault. Abbreviated keys, ~ base
//     topics, shared device-level options and lenient typing follow Home
//     Assistant's rules.
//   - A Config carries the derived homemesh.Device and homemesh.Entity
//     (HomeID left for the caller), the Topics it needs, and Decode, which
//     turns a message on one of them into a state Update (value, attributes,
//     availability) following Home Assistant's state conventions.
//   - Command validates a homemesh.Command against the entity's capabilities
//     and renders exactly the MQTT publishes the device expects, scaled to
//     its own ranges and rendered through its command templates.
//
// Configs are safe for concurrent use. Templates are rendered by package
// hatemplate, which bounds what a hostile device can make them cost.
//
// Parse is stateless, so two cases need the caller's memory: an empty
// payload on a device-based topic removes every component previously
// announced there (Removed holds a Key with Component "device" whose
// Covers method matches them), and a device message that no longer lists
// a component implicitly removes it.
package discovery
