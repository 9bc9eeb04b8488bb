package hatemplate

import (
	"strings"
	"sync"
	"testing"

	"github.com/homemesh/homemesh"
)

func TestRenderValue(t *testing.T) {
	tests := []struct {
		name, src, payload, want string
	}{
		{"attribute", "{{ value_json.temperature }}", `{"temperature":21.5}`, "21.5"},
		{"integer stays integer", "{{ value_json.brightness }}", `{"brightness":128}`, "128"},
		{"item", "{{ value_json['state'] }}", `{"state":"ON"}`, "ON"},
		{"nested", "{{ value_json.ENERGY.Power }}", `{"ENERGY":{"Power":12}}`, "12"},
		{"value", "{{ value }}", `hello`, "hello"},
		{"value of json", "{{ value }}", `{"a":1}`, `{"a":1}`},
		{"default missing", "{{ value_json.missing | default('x') }}", `{}`, "x"},
		{"d alias", "{{ value_json.missing | d(5) }}", `{}`, "5"},
		{"float", "{{ value | float }}", `21`, "21.0"},
		{"float default", "{{ value | float(0) }}", `n/a`, "0"},
		{"float global", "{{ float(value, 1) }}", `n/a`, "1"},
		{"int", "{{ value | int }}", `21.7`, "21"},
		{"int default", "{{ value | int(-1) }}", `x`, "-1"},
		{"round", "{{ value | float | round(1) }}", `21.456`, "21.5"},
		{"round to int", "{{ value | round }}", `21.6`, "22"},
		{"multiply", "{{ value | multiply(10) }}", `2.5`, "25.0"},
		{"multiply ints", "{{ value_json.x | multiply(3) }}", `{"x":2}`, "6"},
		{"is defined test", "{% if value_json.x is defined %}yes{% else %}no{% endif %}", `{"x":1}`, "yes"},
		{"is defined false", "{% if value_json.y is defined %}yes{% else %}no{% endif %}", `{"x":1}`, "no"},
		{"is_defined filter", "{{ value_json.x | is_defined }}", `{"x":"a"}`, "a"},
		{"tojson", "{{ value_json | tojson }}", `{"b":1,"a":[true,null]}`, `{"a":[true,null],"b":1}`},
		{"to_json", "{{ {'state': 'ON'} | to_json }}", ``, `{"state":"ON"}`},
		{"from_json", "{{ (value | from_json).a }}", `{"a":"z"}`, "z"},
		{"lower upper", "{{ value | lower }}{{ value | upper }}", `On`, "onON"},
		{"regex_findall", "{{ value | regex_findall('[0-9]+') }}", `a1b22`, "['1', '22']"},
		{"regex_findall_index", "{{ value | regex_findall_index('([0-9]+)', 1) }}", `a1b22`, "22"},
		{"regex_replace", "{{ value | regex_replace('([0-9])', 'n\\\\1') }}", `a1b2`, "an1bn2"},
		{"regex_match", "{{ value | regex_match('a') }}", `abc`, "True"},
		{"as_timestamp", "{{ as_timestamp(value) }}", `2024-01-02T03:04:05Z`, "1704164645.0"},
		{"as_timestamp filter", "{{ value | as_timestamp | int }}", `2024-01-02T03:04:05+00:00`, "1704164645"},
		{"timestamp_utc", "{{ value | timestamp_utc }}", `1704164645`, "2024-01-02T03:04:05+00:00"},
		{"timestamp_custom", "{{ value | timestamp_custom('%Y/%m/%d %H:%M', false) }}", `1704164645`, "2024/01/02 03:04"},
		{"iif", "{{ (value == 'ON') | iif('on', 'off') }}", `ON`, "on"},
		{"iif global", "{{ iif(value == 'ON', 'on', 'off') }}", `OFF`, "off"},
		{"if elif", "{% if value_json.v > 10 %}big{% elif value_json.v > 5 %}mid{% else %}small{% endif %}", `{"v":7}`, "mid"},
		{"set", "{% set x = value_json.a * 2 %}{{ x }}", `{"a":4}`, "8"},
		{"tilde", "{{ 'a' ~ value ~ 1 }}", `b`, "ab1"},
		{"plus strings", "{{ 'a' + 'b' }}", ``, "ab"},
		{"plus numbers", "{{ value_json.a + 1 }}", `{"a":1.5}`, "2.5"},
		{"compare", "{{ value_json.a >= 3 and value_json.a != 4 }}", `{"a":3}`, "True"},
		{"string", "{{ value_json.a | string }}", `{"a":3}`, "3"},
		{"abs", "{{ value_json.a | abs }}", `{"a":-3}`, "3"},
		{"replace", "{{ value | replace('-', '_') }}", `a-b-c`, "a_b_c"},
		{"trim", "{{ value | trim }}", `  x `, "x"},
		{"length", "{{ value_json.l | length }}", `{"l":[1,2,3]}`, "3"},
		{"for", "{% for x in value_json.l %}{{ x }},{% endfor %}", `{"l":[1,2,3]}`, "1,2,3,"},
		{"range", "{% for i in range(3) %}{{ i }}{% endfor %}", ``, "012"},
		{"z2m light state", "{{ value_json.state }}", `{"state":"ON","brightness":254}`, "ON"},
		{"tasmota", "{{ value_json.POWER }}", `{"POWER":"OFF"}`, "OFF"},
		{"esphome style", "{{ value_json.color_mode }}", `{"color_mode":"rgb"}`, "rgb"},
		{"python escape in regex", `{{ value | regex_findall_index('\d+', 1) }}`, `a1b22`, "22"},
		{"python escape replace", `{{ value | regex_replace('(\d)', '<\\1>') }}`, `a1`, "a<1>"},
		{"escaped quote", `{{ 'it\'s' }}`, ``, "it's"},
		{"newline escape", `{{ 'a\nb' | length }}`, ``, "3"},
		{"backslash outside tags", `C:\dir {{ value }}`, `x`, `C:\dir x`},
		{"zip", "{% for k, v in zip(['a','b','c'], [1,2]) %}{{ k }}={{ v }};{% endfor %}", ``, "a=1;b=2;"},
		{"dict from_keys", "{{ dict.from_keys([('b', 2), ('a', 'x')]) | to_json }}", ``, `{"a":"x","b":2}`},
		{"dict call", "{{ dict(a=1)['a'] }}", ``, "1"},
		{"z2m action", "{% set m = value_json.action | regex_findall('^(?P<button>[a-z0-9]+)_(?P<action>press|hold)$') %}{{ dict.from_keys(zip(['button', 'action'], m[0])) | to_json }}", `{"action":"left_press"}`, `{"action":"press","button":"left"}`},
		{"dict int keys", "{{ {0:'off', 1:'low', 2:'medium'}[value_json.v] | default('') }}", `{"v":2}`, "medium"},
		{"dict none key", "{% set values = {None:None,'idle':'idle','heat':'heating'} %}{{ values[value_json.s] }}", `{"s":"heat"}`, "heating"},
		{"dict missing key", "{{ {'a':1}['b'] | default('none') }}", ``, "none"},
		{"list index", "{{ value_json.l[1] }}", `{"l":[5,6]}`, "6"},
		{"string index", "{{ value[0] }}", `abc`, "a"},
		{"namespace item", "{% set ns = namespace(x=1) %}{% set ns.x = ns.x + 1 %}{{ ns['x'] }}", ``, "2"},
		{"repeat bounded", "{{ 'ab' * 3 }}", ``, "ababab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl, err := Parse(tt.src)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := tpl.RenderValue([]byte(tt.payload), nil)
			if err != nil {
				t.Fatalf("RenderValue: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRender(t *testing.T) {
	tpl, err := Parse("{{ action }}{% if code %}:{{ code }}{% endif %}")
	if err != nil {
		t.Fatal(err)
	}
	got, err := tpl.Render(map[string]any{"action": "ARM_AWAY", "code": "1234"})
	if err != nil {
		t.Fatal(err)
	}
	if got != "ARM_AWAY:1234" {
		t.Errorf("got %q", got)
	}
	if tpl.Source() != "{{ action }}{% if code %}:{{ code }}{% endif %}" {
		t.Errorf("Source = %q", tpl.Source())
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, src, payload, want string
		parse                    bool // the error comes from Parse
	}{
		{"syntax", "{{ value_json. }}", "", "template", true},
		{"unclosed", "{% if x %}", "", "template", true},
		{"include", "{% include 'x' %}", "", "include", true},
		{"import", "{% import 'x' as y %}", "", "import", true},
		{"extends", "{% extends '/etc/passwd' %}", "", "extends", true},
		{"macro", "{% macro f() %}{{ f() }}{% endmacro %}", "", "macro", true},
		{"too long", strings.Repeat("x", MaxSourceLen+1), "", "limit", true},
		{"float without default", "{{ value | float }}", "abc", "no default", false},
		{"int without default", "{{ value | int }}", "abc", "no default", false},
		{"is_defined", "{{ value_json.x | is_defined }}", "{}", "undefined", false},
		{"string repeat", "{{ 'x' * 1000000000 }}", "", "longer than", false},
		{"doubling", "{% set a = 'abcdefghijklmnop' %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}", "", "longer than", false},
		{"range", "{% for i in range(100000) %}{% endfor %}", "", "range", false},
		{"loop budget", "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "", "iterations", false},
		{"output", "{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}", "", "output", false},
		{"bad regex", "{{ value | regex_findall('(') }}", "a", "regular expression", false},
		{"center not allowed", "{{ value | center(1000000000) }}", "a", "center", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl, err := Parse(tt.src)
			if err == nil {
				if tt.parse {
					t.Fatalf("Parse succeeded, want an error")
				}
				_, err = tpl.RenderValue([]byte(tt.payload), nil)
			} else if !tt.parse {
				t.Fatalf("Parse: %v", err)
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if homemesh.ErrorKind(err) != homemesh.KindInvalid {
				t.Errorf("kind %s, want invalid", homemesh.ErrorKind(err))
			}
		})
	}
}

func TestConcurrentRender(t *testing.T) {
	tpl, err := Parse("{% set t = value_json.temperature | float %}{% for i in range(3) %}{{ t + i }};{% endfor %}")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				got, err := tpl.RenderValue([]byte(`{"temperature":1}`), nil)
				if err != nil || got != "1.0;2.0;3.0;" {
					t.Errorf("got %q, %v", got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkRenderValue(b *testing.B) {
	tpl, err := Parse("{{ value_json.temperature }}")
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"temperature":21.5,"humidity":40,"linkquality":120}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tpl.RenderValue(payload, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParseRender(f *testing.F) {
	f.Add("{{ value_json.temperature }}", []byte(`{"temperature":21.5}`))
	f.Add("{{ value | float(0) | round(2) }}", []byte(`12.345`))
	f.Add("{% if value_json.state == 'ON' %}on{% else %}off{% endif %}", []byte(`{"state":"ON"}`))
	f.Add("{% for x in value_json %}{{ x ~ x }}{% endfor %}", []byte(`[1,2,"a"]`))
	f.Add("{{ value | regex_replace('(a)', '\\\\1b') }}", []byte(`aaa`))
	f.Add("{{ 'a' * -1 }}{{ value_json[0] }}", []byte(`[]`))
	f.Fuzz(func(t *testing.T, src string, payload []byte) {
		tpl, err := Parse(src)
		if err != nil {
			return
		}
		out, err := tpl.RenderValue(payload, map[string]any{"extra": 1})
		if err == nil && len(out) > MaxOutputLen {
			t.Fatalf("output of %d bytes exceeds the limit", len(out))
		}
	})
}
