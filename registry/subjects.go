package registry

import "github.com/homemesh/homemesh/bus"

// Service verbs, requested on bus.ServiceSubject("registry", verb) with the
// queue group "registry".
const (
	verbDevicesList    = "devices.list"
	verbDevicesGet     = "devices.get"
	verbDevicesPut     = "devices.put"
	verbEntitiesList   = "entities.list"
	verbEntitiesGet    = "entities.get"
	verbEntitiesPut    = "entities.put"
	verbEntitiesRemove = "entities.remove"
	verbDevicesUpdate  = "devices.update"
	verbRoomsList      = "rooms.list"
	verbRoomsCreate    = "rooms.create"
	verbRoomsRemove    = "rooms.remove"
)

const queueGroup = "registry"

// ReportsStream is the JetStream stream that holds a home's state reports
// until the registry has stored them. Each home has its own streams: a
// consumer whose filter is its stream's one subject is served by a linear
// scan of the stream, where a filter on a stream shared by many homes makes
// the server match every subject it holds on each fetch; and one home's
// burst cannot push another's messages out of a shared stream.
func ReportsStream(home string) string { return "REPORTS_" + home }

// TypeStateChanges is the envelope type of the state log's messages: a
// JSON array of StateChange.
const TypeStateChanges = "state_changes"

// ReportSubject is where connectivity services report the state of one
// entity.
func ReportSubject(home, device, entity string) string {
	return bus.Prefix + "." + home + ".report." + device + "." + entity
}

// reportBatchSubject carries batches of reports. Device reports have two
// tokens after "report", so the single token "batch" cannot clash.
func reportBatchSubject(home string) string { return bus.Prefix + "." + home + ".report.batch" }

func reportWildcard(home string) string { return bus.Prefix + "." + home + ".report.>" }

// Event kinds published on bus.EventSubject by the registry.
const (
	EventEntityAdded   = "entity_added"
	EventEntityUpdated = "entity_updated"
	EventEntityRemoved = "entity_removed"
	EventDeviceAdded   = "device_added"
	EventDeviceUpdated = "device_updated"
	EventDeviceRemoved = "device_removed"
	EventRoomAdded     = "room_added"
	EventRoomRemoved   = "room_removed"
)
