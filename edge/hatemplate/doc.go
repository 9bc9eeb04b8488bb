// Package hatemplate renders Home Assistant style Jinja templates — the
// value_template, command_template and friends that MQTT devices announce in
// their discovery payloads — with gonja.
//
// Parse compiles a template once; the result is safe for concurrent use and
// is rendered with Render or, for a received MQTT payload, RenderValue, which
// binds value (the payload as text) and value_json (the payload decoded, when
// it is JSON).
//
// Templates come from untrusted devices, so the environment is locked down:
// no include, import, extends or macros (nothing can touch the file system or
// recurse), a bounded range, a per-render loop budget, bounded source,
// string and output sizes, and a curated set of filters. On top of gonja's
// Jinja builtins it provides the Home Assistant filters and functions real
// payloads use: float, int, bool, round, multiply, is_defined, tojson and
// to_json, from_json, regex_match, regex_search, regex_findall,
// regex_findall_index, regex_replace, as_timestamp, timestamp_local,
// timestamp_utc, timestamp_custom, iif and is_number, with Home Assistant's
// semantics (float and int return their default argument on failure and fail
// without one).
package hatemplate
