package bus

import (
	"strings"
)

// Prefix starts every homemesh subject.
const Prefix = "hm"

// StateSubject is where state changes of one entity are published.
func StateSubject(home, device, entity string) string {
	return Prefix + "." + home + ".state." + device + "." + entity
}

// StateWildcard matches every state change of a home ("*" for all homes).
func StateWildcard(home string) string { return Prefix + "." + home + ".state.>" }

// CommandSubject is where commands for one entity are requested.
func CommandSubject(home, device, entity string) string {
	return Prefix + "." + home + ".cmd." + device + "." + entity
}

// CommandWildcard matches every command of a home.
func CommandWildcard(home string) string { return Prefix + "." + home + ".cmd.>" }

// EventSubject is where events of one kind are published.
func EventSubject(home, kind string) string { return Prefix + "." + home + ".event." + kind }

// EventWildcard matches every event of a home.
func EventWildcard(home string) string { return Prefix + "." + home + ".event.>" }

// TelemetrySubject carries raw telemetry of one device.
func TelemetrySubject(home, device string) string {
	return Prefix + "." + home + ".telemetry." + device
}

// StateLogSubject carries a home's state changes in batches, as the
// registry commits them, for history: one stored message per batch rather
// than per change. Live subscribers use the per-entity StateSubject.
func StateLogSubject(home string) string { return Prefix + "." + home + ".statelog" }

// TelemetryWildcard matches all telemetry of a home.
func TelemetryWildcard(home string) string { return Prefix + "." + home + ".telemetry.>" }

// ServiceSubject is the request subject of a service's verb.
func ServiceSubject(service, verb string) string {
	return Prefix + ".svc." + service + "." + verb
}

// SplitStateSubject returns the home, device and entity of a state subject.
func SplitStateSubject(subject string) (home, device, entity string, ok bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 5 || parts[0] != Prefix || parts[2] != "state" {
		return "", "", "", false
	}
	return parts[1], parts[3], parts[4], true
}

// SplitCommandSubject returns the home, device and entity of a command subject.
func SplitCommandSubject(subject string) (home, device, entity string, ok bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 5 || parts[0] != Prefix || parts[2] != "cmd" {
		return "", "", "", false
	}
	return parts[1], parts[3], parts[4], true
}

// InboxPrefix starts the reply subjects of one service's connections in
// home. Giving each service its own prefix lets the bus permissions confine
// a service to the replies meant for it: a service that could subscribe to
// every reply would read every other service's answers.
func InboxPrefix(home, service string) string {
	return "_INBOX." + Prefix + "." + home + "." + service
}
