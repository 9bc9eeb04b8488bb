//go:build !unix

package node

// lockData is a no-op where flock does not exist; the hub targets Linux.
func lockData(dir string) (release func(), err error) { return func() {}, nil }

// lockFile is a no-op where flock does not exist.
func lockFile(path string) (release func(), err error) { return func() {}, nil }
