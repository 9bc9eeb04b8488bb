package audit

import "github.com/homemesh/homemesh"

func fieldOf(err error) string { return homemesh.ErrorField(err) }
