package route

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func testID(i int) NodeID { return IDFromKey([]byte(fmt.Sprintf("test node %d", i))) }

// sampleMessages has one message of every type.
func sampleMessages() []message {
	dest := testID(1)
	return []message{
		{typ: tlvIHU, cost: 273},
		{typ: tlvHello, seqno: 0xBEEF, interval: 100},
		{typ: tlvAck, serial: 7},
		{typ: tlvAck, serial: 0xFFFFFFFF},
		{typ: tlvRouteRequest, wildcard: true},
		{typ: tlvRouteRequest, dest: dest},
		{typ: tlvSeqnoRequest, seqno: 42, hops: 255, dest: dest},
		{typ: tlvSerial, serial: 1 << 31},
		{typ: tlvUpdate, flags: flagHub, seqno: 3, metric: 512, dest: dest},
		{typ: tlvUpdate, seqno: 65535, metric: MetricInfinity, dest: testID(2)},
	}
}

func encodePacket(msgs []message) []byte {
	b := []byte{controlMagic}
	for _, m := range msgs {
		b = encodeMessage(b, m)
	}
	return b
}

func TestControlRoundTrip(t *testing.T) {
	want := sampleMessages()
	b := encodePacket(want)
	got, unknown, err := decodeControl(b, nil)
	if err != nil || unknown != 0 {
		t.Fatalf("decode: %v, %d unknown", err, unknown)
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(message{})); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	golden(t, "control.hex", b)
}

func TestDataRoundTrip(t *testing.T) {
	h := DataHeader{Src: testID(1), Dst: testID(2), TTL: 9, Flow: 0xCAFE}
	b := AppendData(nil, h, []byte("hello"))
	if !IsData(b) || IsData(encodePacket(nil)) {
		t.Fatal("IsData cannot tell data from control")
	}
	got, payload, err := ParseData(b)
	if err != nil || got != h || string(payload) != "hello" {
		t.Fatalf("ParseData = %+v, %q, %v", got, payload, err)
	}
	golden(t, "data.hex", b)
}

// golden compares b with testdata/name (hex, 32 bytes a line), or rewrites
// the file with -update. The files pin the wire format: a change to them is
// a protocol change.
func golden(t *testing.T, name string, b []byte) {
	t.Helper()
	var sb strings.Builder
	for len(b) > 0 {
		n := min(len(b), 32)
		sb.WriteString(hex.EncodeToString(b[:n]))
		sb.WriteByte('\n')
		b = b[n:]
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sb.String() != string(want) {
		t.Errorf("%s changed:\ngot\n%swant\n%s", path, sb.String(), want)
	}
}

func TestDecodeControlErrors(t *testing.T) {
	serial := appendSerial(nil, 1)
	upd := appendUpdate(nil, 0, 1, 256, testID(1))
	for _, tc := range []struct {
		name   string
		packet []byte
		want   string
	}{
		{"empty", nil, "empty"},
		{"data packet", AppendData(nil, DataHeader{}, nil), "not a control packet"},
		{"future version", []byte{0xC2}, "version 2"},
		{"truncated header", []byte{controlMagic, 1}, "truncated"},
		{"length past the end", []byte{controlMagic, 1, 4, 0, 0}, "exceeds"},
		{"short hello", []byte{controlMagic, 1, 2, 0, 0}, "at least 4"},
		{"short update", append(append([]byte{controlMagic}, serial...), 4, 12), "exceeds"},
		{"update without serial", append([]byte{controlMagic}, upd...), "before the packet's serial"},
		{"two serials", append(append([]byte{controlMagic}, serial...), serial...), "two serial"},
		{"ack of 3 bytes", []byte{controlMagic, 5, 3, 0, 0, 0}, "multiple of 4"},
		{"empty ack", []byte{controlMagic, 5, 0}, "multiple of 4"},
		{"route request of 4 bytes", []byte{controlMagic, 6, 4, 0, 0, 0, 0}, "want 0 or 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeControl(tc.packet, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestDecodeControlSkipsUnknownAndExtendedTLVs(t *testing.T) {
	b := []byte{controlMagic, 200, 3, 1, 2, 3}                 // an unknown type
	b = append(b, byte(tlvHello), 6, 0, 9, 0, 100, 0xAA, 0xBB) // a Hello with two extra bytes
	msgs, unknown, err := decodeControl(b, nil)
	if err != nil || unknown != 1 || len(msgs) != 1 || msgs[0].seqno != 9 || msgs[0].interval != 100 {
		t.Fatalf("got %+v, %d unknown, %v", msgs, unknown, err)
	}
}

func TestParseDataErrors(t *testing.T) {
	good := AppendData(nil, DataHeader{TTL: 1}, nil)
	for _, b := range [][]byte{nil, {0xD2}, good[:DataHeaderLen-1], encodePacket(nil)} {
		if _, _, err := ParseData(b); err == nil {
			t.Errorf("ParseData(%x) accepted", b)
		}
	}
}

func FuzzDecodeControl(f *testing.F) {
	f.Add(encodePacket(sampleMessages()))
	f.Add([]byte{controlMagic, 200, 0, byte(tlvAck), 8, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Add([]byte{controlMagic})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, _, err := decodeControl(b, nil)
		if err != nil {
			return
		}
		again, unknown, err := decodeControl(encodePacket(msgs), nil)
		if err != nil || unknown != 0 {
			t.Fatalf("re-encoded packet: %v, %d unknown", err, unknown)
		}
		if diff := cmp.Diff(msgs, again, cmp.AllowUnexported(message{})); diff != "" {
			t.Fatalf("re-encoding changed the messages (-first +second):\n%s", diff)
		}
	})
}

func FuzzParseData(f *testing.F) {
	f.Add(AppendData(nil, DataHeader{Src: testID(1), Dst: testID(2), TTL: 3, Flow: 4}, []byte("x")))
	f.Add([]byte{dataMagic})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, err := ParseData(b)
		if err != nil {
			return
		}
		if again := AppendData(nil, h, payload); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x as %x", b, again)
		}
	})
}
