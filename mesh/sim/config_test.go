package sim

import (
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	for in, want := range map[string]float64{"0.01": 0.01, "1%": 0.01, " 2.5 % ": 0.025, "0": 0} {
		if got, err := ParseLoss(in); err != nil || got != want {
			t.Errorf("ParseLoss(%q) = %g, %v; want %g", in, got, err, want)
		}
	}
	for _, in := range []string{"1", "100%", "-0.1", "x", ""} {
		if _, err := ParseLoss(in); err == nil {
			t.Errorf("ParseLoss(%q) accepted", in)
		}
	}
	if lo, hi, err := ParseLatency("10ms-20ms"); err != nil || lo != 10*time.Millisecond || hi != 20*time.Millisecond {
		t.Errorf("10ms-20ms: %v %v %v", lo, hi, err)
	}
	if lo, hi, err := ParseLatency("15ms"); err != nil || lo != hi || lo != 15*time.Millisecond {
		t.Errorf("15ms: %v %v %v", lo, hi, err)
	}
	for _, in := range []string{"20ms-10ms", "0s", "10-20", "ms", "10ms-", "-5ms"} {
		if _, _, err := ParseLatency(in); err == nil {
			t.Errorf("ParseLatency(%q) accepted", in)
		}
	}
}
