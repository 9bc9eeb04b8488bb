package postgres

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// Times a store accepts: partitions are named by date, and PostgreSQL's
// timestamps end long before Go's.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// maxText bounds every identifier, state and kind a store keeps.
const maxText = 1024

// checkText rejects what PostgreSQL's text type cannot hold (NUL bytes,
// invalid UTF-8) and absurd lengths.
func checkText(field, s string, required bool) error {
	switch {
	case required && s == "":
		return homemesh.Invalid(field, "is empty")
	case len(s) > maxText:
		return homemesh.Invalid(field, "is %d bytes long; at most %d are kept", len(s), maxText)
	case !utf8.ValidString(s):
		return homemesh.Invalid(field, "is not valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return homemesh.Invalid(field, "contains a NUL byte")
	}
	return nil
}

func checkTime(field string, t time.Time) error {
	if t.Before(minTime) || !t.Before(maxTime) {
		return homemesh.Invalid(field, "%v is outside the years 1970 to 9999", t)
	}
	return nil
}

// validateBatch checks the whole batch before anything is stored, so that a
// bad message fails the batch with an error naming the field instead of
// storing part of it.
func validateBatch(b history.Batch) error {
	if err := checkText("home", b.Home, true); err != nil {
		return err
	}
	if err := checkText("stream", b.Stream, true); err != nil {
		return err
	}
	for i, m := range b.Messages {
		f := fmt.Sprintf("messages[%d]", i)
		if m.Seq == 0 || m.Seq > math.MaxInt64 {
			return homemesh.Invalid(f+".seq", "%d is not a stream sequence", m.Seq)
		}
		for j, p := range m.Points {
			if err := validatePoint(fmt.Sprintf("%s.points[%d]", f, j), p); err != nil {
				return err
			}
		}
		for j, e := range m.Events {
			if err := validateEvent(fmt.Sprintf("%s.events[%d]", f, j), e); err != nil {
				return err
			}
		}
	}
	return nil
}

func validatePoint(f string, p history.Point) error {
	if err := checkText(f+".entity", p.Entity, true); err != nil {
		return err
	}
	if err := checkText(f+".device", p.Device, false); err != nil {
		return err
	}
	if err := checkText(f+".kind", string(p.Kind), false); err != nil {
		return err
	}
	if err := checkText(f+".state", p.State, false); err != nil {
		return err
	}
	if err := checkTime(f+".time", p.Time); err != nil {
		return err
	}
	if p.Numeric && (math.IsNaN(p.Value) || math.IsInf(p.Value, 0)) {
		return homemesh.Invalid(f+".value", "%v is not a finite number", p.Value)
	}
	if len(p.Attrs) > 0 {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(p.Attrs, &obj); err != nil || obj == nil {
			return homemesh.Invalid(f+".attrs", "is not a JSON object")
		}
	}
	return nil
}

func validateEvent(f string, e history.Event) error {
	if err := checkText(f+".id", e.ID, true); err != nil {
		return err
	}
	if err := checkText(f+".kind", e.Kind, true); err != nil {
		return err
	}
	if err := checkText(f+".device", e.Device, false); err != nil {
		return err
	}
	if err := checkText(f+".entity", e.Entity, false); err != nil {
		return err
	}
	if err := checkTime(f+".time", e.Time); err != nil {
		return err
	}
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return homemesh.Invalid(f+".data", "is not valid JSON")
	}
	return nil
}
