// Package homemesh holds the domain vocabulary shared by every service:
// homes, devices, entities, their state, commands, events, identifiers and
// the one error type. It imports only the standard library and does no I/O,
// so that every service, adapter and test speaks the same language without
// depending on how messages travel or where they are stored.
package homemesh
