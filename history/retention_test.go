package history

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
)

func TestParseRetention(t *testing.T) {
	day := 24 * time.Hour
	got, err := ParseRetention([]string{"sensor.raw=30d", "raw=5d", "5m=12h", "1h=forever", "events=90m",
		"binary_sensor.5m=90d", "light.1h=3600s", "sensor.5m=0"})
	if err != nil {
		t.Fatal(err)
	}
	def := Retention{Raw: 5 * day, FiveMinutes: 12 * time.Hour}
	want := RetentionPolicy{
		Default: def,
		Events:  90 * time.Minute,
		Kinds: map[homemesh.EntityKind]Retention{
			// A kind starts from the default, whatever the order.
			homemesh.KindSensor:       {Raw: 30 * day},
			homemesh.KindBinarySensor: {Raw: 5 * day, FiveMinutes: 90 * day},
			homemesh.KindLight:        {Raw: 5 * day, FiveMinutes: 12 * time.Hour, Hourly: time.Hour},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("policy (-want +got):\n%s", diff)
	}
	if r := got.For(homemesh.KindSwitch); r != def {
		t.Errorf("switch = %+v, want the default", r)
	}

	empty, err := ParseRetention(nil)
	if err != nil {
		t.Fatal(err)
	}
	if empty.Default != DefaultRetention().Default || empty.Events != DefaultRetention().Events || empty.Kinds == nil {
		t.Errorf("no entries = %+v, want the default policy", empty)
	}
}

func TestParseRetentionRejects(t *testing.T) {
	for _, spec := range []string{"raw", "raw=", "raw=10", "raw=10w", "raw=-1d", "raw=1.5d", "raw=d", "2m=1d", "events.raw=1d",
		"toaster.raw=1d", "sensor.events=1d", "raw=1d,5m=2d", "raw=99999999999999999d", "raw=1d raw=2d"} {
		t.Run(spec, func(t *testing.T) {
			_, err := ParseRetention(strings.Fields(spec))
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != "history_retention" {
				t.Fatalf("got %v, want invalid history_retention", err)
			}
			if !strings.Contains(err.Error(), "entry ") {
				t.Errorf("error %q does not name the entry", err)
			}
		})
	}
}

func FuzzParseRetention(f *testing.F) {
	f.Add("raw=10d 5m=30d 1h=forever events=30d sensor.raw=30d binary_sensor.5m=90d")
	f.Add("raw=0 x=1s")
	f.Fuzz(func(t *testing.T, spec string) {
		p, err := ParseRetention(strings.Fields(spec))
		if err != nil {
			if homemesh.ErrorField(err) != "history_retention" {
				t.Fatalf("error %v does not name history_retention", err)
			}
			return
		}
		for k, r := range p.Kinds {
			if !k.Valid() || r.Raw < 0 || r.FiveMinutes < 0 || r.Hourly < 0 {
				t.Fatalf("accepted %q → %s %+v", spec, k, r)
			}
		}
		if p.Default.Raw < 0 || p.Default.FiveMinutes < 0 || p.Default.Hourly < 0 || p.Events < 0 {
			t.Fatalf("accepted %q → %+v", spec, p)
		}
	})
}
